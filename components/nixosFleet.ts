import * as pulumi from "@pulumi/pulumi";
import { NixosBootstrap } from "./nixosBootstrap";
import { DeploySettings, NixosHost, NixosHostArgs } from "./nixosHost";
import { NixosSystem } from "./nixosSystem";
import { parseInput, rolloutSchema } from "../schema/inputs";

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
     * Hosts that deploy first, on their own: a number (that many hosts from the start of `hosts`)
     * or a list of host names. Every other host waits until the whole canary has deployed and passed
     * its health checks, so a system that fails on the canary stops the rollout before any other
     * host is touched. It must leave at least one host to follow. Default: no canary.
     */
    canary?: number | string[];
    /**
     * How many hosts deploy at once after the canary. The rollout goes in batches of this size,
     * each after the whole previous batch succeeded, so a failing batch stops it. Default: all
     * (remaining) hosts at once.
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
    /** Whether the host is in the canary, the batch that deploys before all others. */
    canary: boolean;
}

/** A fleet's rollout: batches of host names in order, each after the whole previous one succeeded. */
export interface RolloutPlan {
    batches: string[][];
    /** The first batch's hosts when there is a canary; empty otherwise. */
    canary: string[];
}

/**
 * Validates a fleet's rollout settings and plans it: the canary (if any) first, then the other
 * hosts in `hosts` order, batchSize at a time (default: all of them in one batch).
 */
export function planRollout(fleet: string, args: Pick<NixosFleetArgs, "hosts" | "canary" | "batchSize">): RolloutPlan {
    const hostNames = Object.keys(args.hosts);
    const { canary, batchSize } = parseInput(rolloutSchema(hostNames), { canary: args.canary, batchSize: args.batchSize }, `NixosFleet ${fleet}`);
    const canaryHosts = typeof canary === "number" ? hostNames.slice(0, canary) : canary ?? [];
    const rest = hostNames.filter((hostName) => !canaryHosts.includes(hostName));
    const size = batchSize ?? Math.max(rest.length, 1);
    const batches = canaryHosts.length ? [canaryHosts] : [];
    for (let start = 0; start < rest.length; start += size) batches.push(rest.slice(start, start + size));
    return { batches, canary: canaryHosts };
}

/**
 * Many NixOS hosts from one flake, rolled out in batches, optionally after a canary. `pulumi
 * destroy` removes every resource it made (machines on AWS, key pairs, security groups); existing
 * machines keep their system.
 */
export class NixosFleet extends pulumi.ComponentResource {
    /** Each host's NixosSystem, by host name. */
    readonly systems: Record<string, NixosSystem> = {};
    /** Each host's address, closure, generation and whether it is in the canary, by host name. */
    readonly hosts: pulumi.Output<Record<string, NixosFleetHostOutputs>>;
    /** The canary's host names (empty without a canary). */
    readonly canary: pulumi.Output<string[]>;

    constructor(name: string, args: NixosFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        const plan = planRollout(name, args);
        super("pulumi-nixos:index:NixosFleet", name, {}, opts);
        if (plan.batches.length > 1) {
            const described = plan.batches.map((batch) => `[${batch.join(", ")}]`);
            if (plan.canary.length) described[0] = `canary ${described[0]}`;
            pulumi.log.info(`rollout: ${described.join(", then ")}; each batch starts after the whole previous one succeeded`, this);
        }
        // The flake's first check evaluates the fleet's configurations together, and no others: each
        // once, made once for all hosts (every host's state holds the list).
        const evaluateWith = pulumi.all(Object.entries(args.hosts).map(([hostName, host]) => host.configuration ?? hostName))
            .apply((configurations) => [...new Set(configurations)].sort());
        const outputs: Record<string, pulumi.Output<NixosFleetHostOutputs>> = {};
        let previousBatch: NixosSystem[] = [];
        for (const batch of plan.batches) {
            previousBatch = batch.map((hostName) => {
                const system = this.makeHost(name, hostName, args.hosts[hostName], { ...args.deploy, evaluateWith }, args, previousBatch);
                this.systems[hostName] = system;
                const canary = plan.canary.includes(hostName);
                outputs[hostName] = pulumi.all([system.address, system.closure, system.generation])
                    .apply(([address, closure, generation]) => ({ address, closure, generation, canary }));
                return system;
            });
        }
        // In the order of `hosts`, whatever the rollout order.
        this.hosts = pulumi.all(Object.fromEntries(Object.keys(args.hosts).map((hostName) => [hostName, outputs[hostName]])));
        this.canary = pulumi.output(plan.canary);
        this.registerOutputs({ hosts: this.hosts, canary: this.canary });
    }

    private makeHost(
        fleet: string, hostName: string, host: NixosFleetHost, deploy: NixosFleetArgs["deploy"] & { evaluateWith: pulumi.Input<string[]> },
        args: NixosFleetArgs, deployAfter: NixosSystem[],
    ): NixosSystem {
        const configuration = host.configuration ?? hostName;
        const resourceName = `${fleet}-${hostName}`;
        if (host.aws) {
            if (!args.sshPublicKey) throw new Error(`NixosFleet ${fleet}: host ${hostName} is made on AWS, which needs sshPublicKey`);
            return new NixosHost(resourceName, {
                ...host.aws, flake: args.flake, configuration, sshPrivateKey: args.sshPrivateKey, sshPublicKey: args.sshPublicKey,
                deploy, deployAfter,
            }, { parent: this }).bootstrap.system;
        }
        if (host.address === undefined || host.hostPublicKey === undefined) {
            throw new Error(`NixosFleet ${fleet}: host ${hostName} needs either aws, or address and hostPublicKey`);
        }
        const system = { ...deploy, port: host.port, flake: args.flake, configuration };
        const connection = { address: host.address, hostPublicKey: host.hostPublicKey, privateKey: args.sshPrivateKey };
        if (host.waitForBoot) {
            return new NixosBootstrap(resourceName, { ...connection, system, bootTimeoutSeconds: host.bootTimeoutSeconds, deployAfter },
                { parent: this }).system;
        }
        return new NixosSystem(resourceName, { ...system, ...connection }, { parent: this, dependsOn: deployAfter });
    }
}
