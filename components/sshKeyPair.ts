import * as pulumi from "@pulumi/pulumi";
import { PLUGIN_OPTIONS, SSH_KEY_PAIR } from "../schema/resources";

export interface SshKeyPairArgs {
    /** The key's comment, e.g. the host's name; changing it makes a new key. */
    comment: pulumi.Input<string>;
}

/**
 * An ed25519 SSH key pair made by the provider and kept in the state, the private key a Pulumi
 * secret (`nixos:index:SshKeyPair`). As a host key it is known (and pinned) before the host first
 * boots: no trust on first use. It also serves as a deployer key where none is given.
 */
export class SshKeyPair extends pulumi.CustomResource {
    /** OpenSSH private key text (secret). */
    declare readonly privateKey: pulumi.Output<string>;
    /** "ssh-ed25519 AAAA…" */
    declare readonly publicKey: pulumi.Output<string>;

    constructor(name: string, args: SshKeyPairArgs, opts?: pulumi.CustomResourceOptions) {
        super(SSH_KEY_PAIR.token, name, { ...args, privateKey: undefined, publicKey: undefined },
            { ...PLUGIN_OPTIONS, ...opts, additionalSecretOutputs: ["privateKey"] });
    }
}
