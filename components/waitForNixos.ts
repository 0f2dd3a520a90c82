import * as pulumi from "@pulumi/pulumi";
import { PLUGIN_OPTIONS, WAIT_FOR_NIXOS } from "../schema/resources";
import type { JumpHostArgs } from "./nixosSystem";

export interface WaitForNixosArgs {
    address: pulumi.Input<string>;
    port?: pulumi.Input<number>;
    user?: pulumi.Input<string>;
    /** The deployer's private key (secret). */
    privateKey: pulumi.Input<string>;
    /** The host's pinned public key: the program generated it, so it is known before first boot. */
    hostPublicKey: pulumi.Input<string>;
    /** Hosts the deployer reaches this one through, the first hop first (see NixosSystemArgs.jumpHosts). */
    jumpHosts?: pulumi.Input<pulumi.Input<JumpHostArgs>[]>;
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
 * system the host booted, which the host's NixosSystem then replaces with the flake's
 * (`nixos:index:WaitForNixos`).
 */
export class WaitForNixos extends pulumi.CustomResource {
    declare readonly initialSystem: pulumi.Output<string>;

    constructor(name: string, args: WaitForNixosArgs, opts?: pulumi.CustomResourceOptions) {
        super(WAIT_FOR_NIXOS.token, name, {
            ...args, privateKey: pulumi.secret(args.privateKey), jumpHosts: args.jumpHosts === undefined ? undefined : pulumi.secret(args.jumpHosts),
            initialSystem: undefined,
        },
            { ...PLUGIN_OPTIONS, ...opts, additionalSecretOutputs: ["privateKey"] });
    }
}
