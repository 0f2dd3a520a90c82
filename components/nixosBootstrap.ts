import * as pulumi from "@pulumi/pulumi";
import { WaitForNixos } from "./waitForNixos";
import { NixosSystem, NixosSystemArgs } from "./nixosSystem";

export interface NixosBootstrapArgs {
    /** The machine's address, as soon as it has one (it may still be booting). */
    address: pulumi.Input<string>;
    /** The deployer's private key (secret). */
    privateKey: pulumi.Input<string>;
    /** The host key the machine was given at creation, pinned from the first connection. */
    hostPublicKey: pulumi.Input<string>;
    /** What to deploy once the machine runs NixOS. */
    system: Omit<NixosSystemArgs, "address" | "privateKey" | "hostPublicKey">;
    /** Seconds to wait for the machine to run NixOS; default 900. */
    bootTimeoutSeconds?: pulumi.Input<number>;
    /** Seconds between checks while waiting; default 5. */
    bootPollSeconds?: pulumi.Input<number>;
    /** Where to look when the machine does not come up (e.g. the cloud console command). */
    consoleHint?: pulumi.Input<string>;
    /** Resources the deploy waits for (a fleet's previous batch). */
    deployAfter?: pulumi.Resource[];
}

/**
 * The hand-over from a new machine to its NixOS system: wait (by checking) until the machine
 * runs NixOS, then deploy the flake's system to it. Cloud components (NixosHost) put a machine
 * in front of it.
 */
export class NixosBootstrap extends pulumi.ComponentResource {
    /** The system the machine booted before the flake was deployed. */
    readonly initialSystem: pulumi.Output<string>;
    readonly system: NixosSystem;
    readonly closure: pulumi.Output<string>;
    readonly generation: pulumi.Output<number | undefined>;

    constructor(name: string, args: NixosBootstrapArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pulumi-nixos:index:NixosBootstrap", name, {}, opts);
        const connection = { address: args.address, privateKey: args.privateKey, hostPublicKey: args.hostPublicKey };
        const booted = new WaitForNixos(`${name}-boot`, {
            ...connection,
            port: args.system.port,
            user: args.system.user,
            jumpHosts: args.system.jumpHosts,
            timeoutSeconds: args.bootTimeoutSeconds,
            pollSeconds: args.bootPollSeconds,
            consoleHint: args.consoleHint,
        }, { parent: this });
        this.system = new NixosSystem(`${name}-system`, { ...args.system, ...connection }, { parent: this, dependsOn: [booted, ...(args.deployAfter ?? [])] });
        this.initialSystem = booted.initialSystem;
        this.closure = this.system.closure;
        this.generation = this.system.generation;
        this.registerOutputs({ initialSystem: this.initialSystem, closure: this.closure, generation: this.generation });
    }
}
