import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { addressSchema, addressWithPort } from "../../schema/inputs";
import { SshConnection } from "../../deploy/transport/ssh";

const REPO_ROOT = path.resolve(__dirname, "../../..");
/** Every layer of the project's own code. */
const LAYERS = ["schema", "deploy", "provider", "components"];
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZVjbKFFju8WPwD5kP6G0EpwYW86fZQ4vj3A4Nn0q57";

function sources(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
        const full = path.join(dir, entry.name);
        return entry.isDirectory() ? sources(full) : entry.name.endsWith(".ts") ? [full] : [];
    });
}

test("no code path turns host key checking off", () => {
    const forbidden = [/StrictHostKeyChecking[ =]+(no|off|accept-new)/i, /UserKnownHostsFile[ =]+\/dev\/null/i, /--no-check-sigs/];
    const files = LAYERS.flatMap((layer) => sources(path.join(REPO_ROOT, layer)));
    for (const file of files) {
        const text = fs.readFileSync(file, "utf8");
        for (const pattern of forbidden) assert.doesNotMatch(text, pattern, `${path.relative(REPO_ROOT, file)}`);
    }
    // The scan reaches the transport that writes ssh's settings.
    assert.ok(files.some((file) => fs.readFileSync(file, "utf8").includes("StrictHostKeyChecking yes")), "no scanned file sets StrictHostKeyChecking yes");
});

test("the generated ssh config pins exactly the given host key, with strict checking", async () => {
    const connection = SshConnection.open({ address: "10.0.0.5", port: 2222, user: "root", privateKey: "key", hostPublicKey: KEY });
    try {
        const dir = connection.nixSshOpts.replace(/^-F /, "").replace(/\/config$/, "");
        const config = fs.readFileSync(path.join(dir, "config"), "utf8");
        assert.match(config, /^\s*StrictHostKeyChecking yes$/m);
        assert.match(config, /^\s*GlobalKnownHostsFile \/dev\/null$/m);
        assert.match(config, /^\s*BatchMode yes$/m);
        assert.equal(fs.readFileSync(path.join(dir, "known_hosts"), "utf8"), `pulumi-nixos-target ${KEY}\n`);
        assert.equal(fs.statSync(path.join(dir, "id")).mode & 0o777, 0o600);
        assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    } finally {
        await connection.close();
    }
    assert.equal(fs.existsSync(connection.nixSshOpts.replace(/^-F /, "")), false, "close removes the folder");
});

test("an IPv6 address reaches ssh bare, and messages give it in brackets", async () => {
    for (const address of ["fd37:237:0:1::2", "[fd37:237:0:1::2]"]) {
        assert.equal(addressSchema.safeParse(address).success, true, address);
        const connection = SshConnection.open({ address, port: 2222, user: "root", privateKey: "key", hostPublicKey: KEY });
        try {
            const config = fs.readFileSync(connection.nixSshOpts.replace(/^-F /, ""), "utf8");
            assert.match(config, /^\s*HostName fd37:237:0:1::2$/m);
            assert.equal(connection.host, "[fd37:237:0:1::2]:2222");
        } finally {
            await connection.close();
        }
    }
    assert.equal(addressWithPort("203.0.113.5", 22), "203.0.113.5:22");
    assert.equal(addressWithPort("host.example", 22), "host.example:22");
});
