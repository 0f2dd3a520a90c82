import * as pulumi from "@pulumi/pulumi";
import { NixosBootstrap } from "./nixosBootstrap";
import { DeploySettings, NixosHost, NixosHostArgs } from "./nixosHost";
import { NixosSystem } from "./nixosSystem";

/** One host of a fleet: an existing NixOS machine, or an EC2 machine made for it. */
export interface NixosFleetHost {
    /** The name under the flake's nixosConfigurations; default the host's name in `hosts`. */
    configuration?: pulumi.Input<string>;
    /** An existing machine that runs NixOS: its address… */
    address?: pulumi.Input<string>;
    /** …and its pinned SSH host key. */
    hostPublicKey?: pulumi.Input<string>;
    port?: pulumi.Input<number>;
    /**
     * Wait until the machine runs NixOS before deploying: for a machine another resource has
     * just made (it may still be booting or converting); default false.
     */
    waitForBoot?: boolean;
    /** With waitForBoot: seconds to wait; default 900. */
    bootTimeoutSeconds?: pulumi.Input<number>;
    /** Or: make an EC2 machine for the host (see NixosHost). */
    aws?: Omit<NixosHostArgs, "flake" | "configuration" | "sshPrivateKey" | "sshPublicKey" | "deploy" | "deployAfter">;
}

export interface NixosFleetArgs {
    /** The one flake every host's configuration comes from (evaluated once for the whole fleet). */
    flake: pulumi.Input<string>;
    /** The deployer's private key (secret). */
    sshPrivateKey: pulumi.Input<string>;
    /** The deployer's public key: needed for hosts made on AWS. */
    sshPublicKey?: pulumi.Input<string>;
    /** The hosts, by name; the order is the rollout order. */
    hosts: Record<string, NixosFleetHost>;
    /**
     * How many hosts deploy at once. The rollout goes in batches of this size, each after the
     * whole previous batch succeeded, so a failing batch stops it. Default: all hosts at once.
     */
    batchSize?: number;
    /** Deploy settings for every host. */
    deploy?: DeploySettings;
}

/** What a fleet reports per host. */
export interface NixosFleetHostOutputs {
    address: string;
    closure: string;
    generation?: number;
}

/**
 * Many NixOS hosts from one flake, rolled out in batches. `pulumi destroy` removes every resource
 * it made (machines on AWS, key pairs, security groups); existing machines keep their system.
 */
export class NixosFleet extends pulumi.ComponentResource {
    /** Each host's NixosSystem, by host name. */
    readonly systems: Record<string, NixosSystem> = {};
    /** Each host's address, closure and generation, by host name. */
    readonly hosts: pulumi.Output<Record<string, NixosFleetHostOutputs>>;

    constructor(name: string, args: NixosFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pulumi-nixos:index:NixosFleet", name, {}, opts);
        const names = Object.keys(args.hosts);
        const batchSize = args.batchSize ?? names.length;
        if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`NixosFleet ${name}: batchSize must be a whole number of at least 1`);
        const outputs: Record<string, pulumi.Output<NixosFleetHostOutputs>> = {};
        let previousBatch: NixosSystem[] = [];
        for (let start = 0; start < names.length; start += batchSize) {
            const batch = names.slice(start, start + batchSize).map((hostName) => {
                const host = args.hosts[hostName];
                const system = this.makeHost(name, hostName, host, args, previousBatch);
                this.systems[hostName] = system;
                outputs[hostName] = pulumi.all([system.address, system.closure, system.generation])
                    .apply(([address, closure, generation]) => ({ address, closure, generation }));
                return system;
            });
            previousBatch = batch;
        }
        this.hosts = pulumi.all(outputs);
        this.registerOutputs({ hosts: this.hosts });
    }

    private makeHost(fleet: string, hostName: string, host: NixosFleetHost, args: NixosFleetArgs, deployAfter: NixosSystem[]): NixosSystem {
        const configuration = host.configuration ?? hostName;
        const resourceName = `${fleet}-${hostName}`;
        if (host.aws) {
            if (!args.sshPublicKey) throw new Error(`NixosFleet ${fleet}: host ${hostName} is made on AWS, which needs sshPublicKey`);
            return new NixosHost(resourceName, {
                ...host.aws, flake: args.flake, configuration, sshPrivateKey: args.sshPrivateKey, sshPublicKey: args.sshPublicKey,
                deploy: args.deploy, deployAfter,
            }, { parent: this }).bootstrap.system;
        }
        if (host.address === undefined || host.hostPublicKey === undefined) {
            throw new Error(`NixosFleet ${fleet}: host ${hostName} needs either aws, or address and hostPublicKey`);
        }
        const system = { ...args.deploy, port: host.port, flake: args.flake, configuration };
        const connection = { address: host.address, hostPublicKey: host.hostPublicKey, privateKey: args.sshPrivateKey };
        if (host.waitForBoot) {
            return new NixosBootstrap(resourceName, { ...connection, system, bootTimeoutSeconds: host.bootTimeoutSeconds, deployAfter },
                { parent: this }).system;
        }
        return new NixosSystem(resourceName, { ...system, ...connection }, { parent: this, dependsOn: deployAfter });
    }
}
