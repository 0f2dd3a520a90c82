// The deployer's CPU per added host for the change at an earlier revision, measured in the same
// run on the same machine and the same way as this checkout's (the same engine, fleet program and
// control group): that revision's checkout, built in a git worktree (with this checkout's
// node_modules, which hold every package it needs), deploys its own fixture systems to its own
// test hosts. Its own, because its deploy relies on what its test hosts were: its activation
// agent, for one, finds nix-env on a PATH that this checkout's NixOS-shaped hosts no longer give.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { evaluateConfigurations } from "../deploy/evaluate";
import { createTestStack, REPO_ROOT, TestStack } from "../test/engine/engine";
import type { startTestHosts as StartTestHosts, TestFleet } from "../testbed/testHosts";
import { CHANGE, FIRST, FLEET_PROGRAM, fleetConfig, measureChange } from "./fleetChange";
import { DeployerCpu, median } from "./probes";

/** main when the fleet-scale issue was filed: the dynamic provider, before the native plugin. */
export const DEFAULT_BASELINE = "0d7d8d7";

/** The change's deployer CPU per host added between the smallest and the largest fleet measured. */
export function perAddedHost(fleets: readonly { hosts: number; changeDeployerCpuSeconds: number }[]): number {
    const sorted = [...fleets].sort((a, b) => a.hosts - b.hosts);
    const [first, last] = [sorted[0], sorted[sorted.length - 1]];
    return (last.changeDeployerCpuSeconds - first.changeDeployerCpuSeconds) / (last.hosts - first.hosts);
}

export interface BaselineFleet {
    hosts: number;
    /** The median of the rounds' deployer CPU seconds for the change. */
    changeDeployerCpuSeconds: number;
    rounds: number[];
}

export interface Baseline {
    revision: string;
    fleets: BaselineFleet[];
    deployerCpuPerAddedHostSeconds: number;
}


/** The revision's checkout: its library, its test hosts and its fixture flake. */
interface Checkout {
    library: string;
    startTestHosts: typeof StartTestHosts;
    flake: string;
    changeClosure: string;
}

/** One round: fresh hosts on FIRST by the revision's library, then the change, measured. */
async function measureRound(checkout: Checkout, size: number, deployerCpu: DeployerCpu): Promise<number> {
    let hosts: TestFleet | undefined;
    let testStack: TestStack | undefined;
    try {
        hosts = await checkout.startTestHosts({ count: size, namePrefix: "base" });
        testStack = await createTestStack(`baseline-${size}`, { source: FLEET_PROGRAM, library: checkout.library }, fleetConfig(hosts, checkout.flake));
        await testStack.stack.setConfig("version", { value: FIRST });
        await testStack.stack.up();
        const change = await measureChange(testStack.stack, hosts, CHANGE, deployerCpu);
        for (const host of hosts.hosts) if (host.currentSystem() !== checkout.changeClosure) throw new Error(`baseline: ${host.name} does not run the change`);
        return change.deployerCpuSeconds;
    } finally {
        await testStack?.remove();
        hosts?.stop();
    }
}

/**
 * The revision's checkout, built in a git worktree. Its rounds are measured one at a time, each
 * beside one of this checkout's rounds of the same size, so that both meet the machine alike: a
 * shared VM's speed drifts over the minutes a benchmark runs.
 */
export class BaselineCheckout {
    private readonly rounds = new Map<number, number[]>();

    private constructor(readonly revision: string, private readonly worktree: string, private readonly checkout: Checkout) {}

    static async build(revision: string, log: (message: string) => void): Promise<BaselineCheckout> {
        const worktree = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-baseline-"));
        try {
            git("worktree", "add", "--detach", worktree, revision);
            fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(worktree, "node_modules"));
            log(`baseline ${revision}: building its checkout in ${worktree}`);
            execFileSync(path.join(REPO_ROOT, "node_modules/.bin/tsc"), ["-p", worktree], { stdio: "inherit" });
            const flake = `path:${path.join(worktree, "nix/fixtures")}`;
            return new BaselineCheckout(git("rev-parse", revision), worktree, {
                library: path.join(worktree, "dist/components"),
                // The revision's compiled testbed, known only at run time.
                startTestHosts: require(path.join(worktree, "dist/test/hosts/testHosts.js")).startTestHosts,
                flake,
                changeClosure: (await evaluateConfigurations(flake, [CHANGE]))[CHANGE].closure,
            });
        } catch (error) {
            removeWorktree(worktree);
            throw error;
        }
    }

    /** Measures one more round of the change on `size` hosts. */
    async measureRound(size: number, deployerCpu: DeployerCpu): Promise<void> {
        const measured = await measureRound(this.checkout, size, deployerCpu);
        this.rounds.set(size, [...(this.rounds.get(size) ?? []), measured]);
    }

    /** The medians of the rounds measured, by fleet size. */
    result(): Baseline {
        const fleets = [...this.rounds].map(([hosts, rounds]) => ({ hosts, changeDeployerCpuSeconds: median(rounds), rounds }));
        return { revision: this.revision, fleets, deployerCpuPerAddedHostSeconds: perAddedHost(fleets) };
    }

    remove(): void {
        removeWorktree(this.worktree);
    }
}

function git(...args: string[]): string {
    return execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

function removeWorktree(worktree: string): void {
    try {
        git("worktree", "remove", "--force", worktree);
    } catch {
        fs.rmSync(worktree, { recursive: true, force: true });
        git("worktree", "prune");
    }
}
