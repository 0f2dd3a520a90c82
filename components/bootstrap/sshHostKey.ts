import * as pulumi from "@pulumi/pulumi";
import { moduleProvider } from "../provider/moduleProvider";

export interface SshHostKeyArgs {
    /** The key's comment, usually the host's name; changing it makes a new key. */
    comment: pulumi.Input<string>;
}

/**
 * An ed25519 SSH host key made by the program, so that the host's key is known (and pinned)
 * before the host first boots: no trust on first use. The private key is a Pulumi secret.
 */
export class SshHostKey extends pulumi.dynamic.Resource {
    /** OpenSSH private key text (secret). */
    declare readonly privateKey: pulumi.Output<string>;
    /** "ssh-ed25519 AAAA…" */
    declare readonly publicKey: pulumi.Output<string>;

    constructor(name: string, args: SshHostKeyArgs, opts?: pulumi.CustomResourceOptions) {
        super(moduleProvider(require.resolve("./sshHostKeyProvider")), name, { ...args, privateKey: undefined, publicKey: undefined },
            { ...opts, additionalSecretOutputs: ["privateKey"] }, "nixos", "SshHostKey");
    }
}
