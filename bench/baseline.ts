// The deployer's CPU per added host for the change at an earlier revision, measured in the same
// run on the same machine: that revision's own benchmark, run from a git worktree of it (with this
// checkout's node_modules, which hold every package it needs), read from the report it writes.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../test/engine/engine";

/** main when the fleet-scale issue was filed: the dynamic provider, before the native plugin. */
export const DEFAULT_BASELINE = "0d7d8d7";

/** What both reports give per fleet size: the change's CPU, the whole machine's and the test hosts' own. */
interface ChangeCpu {
    hosts: number;
    changeMachineCpuSeconds: number;
    changeHostCpuSeconds: number;
}

/** The deployer's own CPU of the change: the machine's less the test hosts'. */
export const deployerCpuSeconds = (fleet: ChangeCpu) => fleet.changeMachineCpuSeconds - fleet.changeHostCpuSeconds;

/** The CPU per host added between the smallest and the largest fleet measured, by `cpuSeconds` of each. */
export function perAddedHost<Fleet extends { hosts: number }>(fleets: readonly Fleet[], cpuSeconds: (fleet: Fleet) => number): number {
    const sorted = [...fleets].sort((a, b) => a.hosts - b.hosts);
    const [first, last] = [sorted[0], sorted[sorted.length - 1]];
    return (cpuSeconds(last) - cpuSeconds(first)) / (last.hosts - first.hosts);
}

export interface Baseline {
    revision: string;
    /** The revision's fleets (its sizes), as its report gives them. */
    fleets: ChangeCpu[];
    deployerCpuPerAddedHostSeconds: number;
}

/** Runs the benchmark of `revision` and returns its change CPU per added host. */
export function measureBaseline(revision: string, log: (message: string) => void): Baseline {
    const worktree = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-baseline-"));
    const git = (...args: string[]) => execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
    try {
        git("worktree", "add", "--detach", worktree, revision);
        fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(worktree, "node_modules"));
        log(`baseline ${revision}: building its checkout in ${worktree}`);
        execFileSync(path.join(REPO_ROOT, "node_modules/.bin/tsc"), ["-p", worktree], { stdio: "inherit" });
        log(`baseline ${revision}: its benchmark (its own fleet sizes and rounds)`);
        // Its goals are its own: a missed one makes it exit non-zero, which does not matter here.
        try {
            execFileSync(process.execPath, [path.join(worktree, "dist/bench/run.js")], { cwd: worktree, stdio: "inherit" });
        } catch {
            // The report is written before it exits.
        }
        const report = JSON.parse(fs.readFileSync(path.join(worktree, "bench/results/latest.json"), "utf8")) as { commit: string; fleets: ChangeCpu[] };
        const fleets = report.fleets.map(({ hosts, changeMachineCpuSeconds, changeHostCpuSeconds }) => ({ hosts, changeMachineCpuSeconds, changeHostCpuSeconds }));
        return { revision: report.commit, fleets, deployerCpuPerAddedHostSeconds: perAddedHost(fleets, deployerCpuSeconds) };
    } finally {
        try {
            git("worktree", "remove", "--force", worktree);
        } catch {
            fs.rmSync(worktree, { recursive: true, force: true });
            git("worktree", "prune");
        }
    }
}
