// Ed25519 key pairs in OpenSSH's own formats, generated in-process: a host's key is made by the
// program (never by the host), so the deployer can pin it before the first connection.
import { generateKeyPairSync, randomBytes } from "node:crypto";

export interface SshKeyPair {
    /** "-----BEGIN OPENSSH PRIVATE KEY-----…", unencrypted. */
    privateKey: string;
    /** "ssh-ed25519 AAAA…" */
    publicKey: string;
}

function sshString(data: Buffer | string): Buffer {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
}

function uint32(value: number): Buffer {
    const buffer = Buffer.alloc(4);
    buffer.writeUInt32BE(value);
    return buffer;
}

/** Generates an ed25519 key pair and encodes it as OpenSSH writes it (openssh-key-v1, cipher none). */
export function generateEd25519KeyPair(comment: string): SshKeyPair {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
    const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
    const publicBlob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);
    const check = randomBytes(4);
    let privateSection = Buffer.concat([check, check, sshString("ssh-ed25519"), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
    const padding = Buffer.from(Array.from({ length: (8 - (privateSection.length % 8)) % 8 }, (_, i) => i + 1));
    privateSection = Buffer.concat([privateSection, padding]);
    const body = Buffer.concat([
        Buffer.from("openssh-key-v1\0"), sshString("none"), sshString("none"), sshString(""), uint32(1),
        sshString(publicBlob), sshString(privateSection),
    ]).toString("base64");
    const lines = body.match(/.{1,70}/g) ?? [];
    return {
        privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`,
        publicKey: `ssh-ed25519 ${publicBlob.toString("base64")}`,
    };
}
