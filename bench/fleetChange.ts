// The fleet the benchmark deploys and the change it measures, shared by this checkout's rounds and
// the baseline revision's: the same program, hosts, systems and measurement for both, so that only
// the deployer's code differs between them.
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { REPO_ROOT } from "../test/engine/engine";
import { FIXTURE_FLAKE, HEALTHY_CHECK } from "../test/engine/systemStack";
import type { TestFleet } from "../testbed/testHosts";
import { DeployerCpu, machineCpuSeconds, peakMemoryDuring, ProcessKind } from "./probes";

/** The system every host starts on, the change (a new package and 3 MiB of new paths), the broken change. */
export const FIRST = "v1";
export const CHANGE = "large";
export const BROKEN = "switch-fails";
/** A change like CHANGE, with other new paths, which a binary cache holds. */
export const CACHED_CHANGE = "large-2";
/** Configurations that cost what a NixOS evaluation costs (host0 … host63): what previews evaluate. */
export const HEAVY_FLAKE = `path:${path.join(REPO_ROOT, "nix/fixtures/heavy")}`;

/**
 * A fleet program as a user writes it, run by the language host in its own process. With
 * `heavy`, each host's configuration is a heavy one (for previews only: they are not deployed).
 * Settings it is not given are left out, not passed as undefined: the baseline revision's schema
 * refuses keys it does not know.
 */
export const FLEET_PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { NixosFleet } = require(LIBRARY);
const config = new pulumi.Config();
const heavy = config.getBoolean("heavy");
const binaryCaches = config.getObject("binaryCaches");
const fleet = new NixosFleet("bench", {
    flake: heavy ? config.require("heavyFlake") : config.require("flake"),
    sshPrivateKey: config.requireSecret("privateKey"),
    deploy: { healthChecks: { commands: [config.requireObject("healthCheck")] }, ...(binaryCaches ? { binaryCaches } : {}) },
    hosts: Object.fromEntries(config.requireObject("hosts").map((host, i) =>
        [host.name, { address: host.address, hostPublicKey: host.hostPublicKey, configuration: heavy ? "host" + i : config.require("version") }])),
});
exports.hosts = fleet.hosts;
`;

/** The stack config of the fleet program for these hosts, deploying `flake`'s configurations. */
export function fleetConfig(hosts: TestFleet, flake = FIXTURE_FLAKE) {
    return {
        flake: { value: flake },
        heavyFlake: { value: HEAVY_FLAKE },
        privateKey: { value: hosts.deployerPrivateKey, secret: true },
        healthCheck: { value: JSON.stringify(HEALTHY_CHECK) },
        hosts: { value: JSON.stringify(hosts.hosts.map(({ name, address, hostPublicKey }) => ({ name, address, hostPublicKey }))) },
    };
}

export interface MeasuredChange {
    seconds: number;
    peakMiB: Record<ProcessKind, number>;
    /** CPU seconds the whole machine spent, all CPUs together. */
    machineCpuSeconds: number;
    /** Of those, the test hosts' own processes (sshd, nix-store, the switch). */
    hostCpuSeconds: number;
    /** The deployer's processes: the `up` and everything it started, ssh's master connections included. */
    deployerCpuSeconds: number;
    /** Bytes the deployer sent to all hosts, on their links. */
    bytesSent: number;
}

/** Deploys `version` to the fleet's stack and measures that `up` alone. */
export async function measureChange(stack: Stack, fleet: TestFleet, version: string, deployerCpu: DeployerCpu): Promise<MeasuredChange> {
    await stack.setConfig("version", { value: version });
    const hostCpu = () => fleet.hosts.reduce((sum, host) => sum + (host.cpuSeconds() ?? NaN), 0);
    const sent = () => fleet.hosts.reduce((sum, host) => sum + host.bytesSent(), 0);
    const before = { host: hostCpu(), machine: machineCpuSeconds(), deployer: deployerCpu.seconds(), sent: sent() };
    const startedAt = Date.now();
    const { peakMiB } = await peakMemoryDuring(() => stack.up());
    return {
        seconds: (Date.now() - startedAt) / 1000,
        peakMiB,
        machineCpuSeconds: machineCpuSeconds() - before.machine,
        hostCpuSeconds: hostCpu() - before.host,
        deployerCpuSeconds: deployerCpu.seconds() - before.deployer,
        bytesSent: sent() - before.sent,
    };
}
