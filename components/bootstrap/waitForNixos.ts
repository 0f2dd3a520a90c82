import * as pulumi from "@pulumi/pulumi";
import { moduleProvider } from "../provider/moduleProvider";

export interface WaitForNixosArgs {
    address: pulumi.Input<string>;
    port?: pulumi.Input<number>;
    user?: pulumi.Input<string>;
    /** The deployer's private key (secret). */
    privateKey: pulumi.Input<string>;
    /** The host's pinned public key: the program generated it, so it is known before first boot. */
    hostPublicKey: pulumi.Input<string>;
    /** Seconds to wait for NixOS; default 900 (nixos-infect builds a system and reboots). */
    timeoutSeconds?: pulumi.Input<number>;
    /** Seconds between attempts; default 5. */
    pollSeconds?: pulumi.Input<number>;
    /** Where a user should look when the host does not come up, for the timeout message. */
    consoleHint?: pulumi.Input<string>;
}

/**
 * Waits until a freshly provisioned machine runs NixOS: it checks over SSH (with the pinned host
 * key) for /run/current-system, it does not sleep a fixed time. Its output `initialSystem` is the
 * system the host booted, which the host's NixosSystem then replaces with the flake's.
 */
export class WaitForNixos extends pulumi.dynamic.Resource {
    declare readonly initialSystem: pulumi.Output<string>;

    constructor(name: string, args: WaitForNixosArgs, opts?: pulumi.CustomResourceOptions) {
        super(moduleProvider(require.resolve("./waitForNixosProvider")), name, {
            name,
            address: args.address,
            port: args.port ?? 22,
            user: args.user ?? "root",
            privateKey: pulumi.secret(args.privateKey),
            hostPublicKey: args.hostPublicKey,
            timeoutSeconds: args.timeoutSeconds ?? 900,
            pollSeconds: args.pollSeconds ?? 5,
            consoleHint: args.consoleHint ?? "the machine's console",
            initialSystem: undefined,
        }, { ...opts, additionalSecretOutputs: ["privateKey"] }, "nixos", "WaitForNixos");
    }
}
