// What the benchmark measures besides time, each read from the real thing: peak memory of the
// program and provider processes (their kernel high-water mark) and the CPU used. The nix
// processes started are counted by test/engine/nixInvocations.ts.
import * as fs from "node:fs";
import * as path from "node:path";
import { joinCpuAccount } from "../testbed/cpuAccount";

/** Pulumi's Node.js processes, by what they run. */
const PROCESS_KINDS = {
    program: "@pulumi/pulumi/cmd/run",
    provider: "pulumi-resource-nixos.js",
} as const;

export type ProcessKind = keyof typeof PROCESS_KINDS;

function readProcessFile(pid: number, file: string): string {
    try {
        return fs.readFileSync(`/proc/${pid}/${file}`, "utf8");
    } catch {
        return ""; // The process ended while we looked.
    }
}

/** The process's peak resident memory; 0 when it has ended meanwhile. */
function highWaterMarkKiB(pid: number): number {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readProcessFile(pid, "status"));
    return match ? Number(match[1]) : 0;
}

/** The processes `pid` started (from any of its threads). */
function childProcesses(pid: number): number[] {
    let tasks: string[];
    try {
        tasks = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
        return [];
    }
    return tasks.flatMap((task) => readProcessFile(pid, `task/${task}/children`).split(" ").filter(Boolean).map(Number));
}

/**
 * Samples the Pulumi processes under this one while `work` runs and returns the peak resident
 * memory (MiB) of the program and the provider plugin. VmHWM is the kernel's own peak, so a sample
 * between two peaks misses nothing. The walk follows only Pulumi's own processes (CLI, language
 * host, plugins, also when a plugin is a script): scanning every process would cost CPU in
 * proportion to the fleet and so skew the timings it runs beside.
 */
export async function peakMemoryDuring<T>(work: () => Promise<T>): Promise<{ result: T; peakMiB: Record<ProcessKind, number> }> {
    const peakKiB: Record<ProcessKind, number> = { program: 0, provider: 0 };
    const visit = (pid: number) => {
        const commandLine = readProcessFile(pid, "cmdline");
        const kind = (Object.keys(PROCESS_KINDS) as ProcessKind[]).find((candidate) => commandLine.includes(PROCESS_KINDS[candidate]));
        if (kind) peakKiB[kind] = Math.max(peakKiB[kind], highWaterMarkKiB(pid));
        else if (commandLine.split("\0").slice(0, 2).some((word) => path.basename(word).startsWith("pulumi"))) childProcesses(pid).forEach(visit);
    };
    const sample = () => childProcesses(process.pid).forEach(visit);
    const timer = setInterval(sample, 50);
    try {
        const result = await work();
        return { result, peakMiB: { program: peakKiB.program / 1024, provider: peakKiB.provider / 1024 } };
    } finally {
        clearInterval(timer);
    }
}

/** The middle of the values (of an even count, the upper of the two middle ones). */
export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** The unit of /proc/stat's times (USER_HZ, 100 on Linux whatever the kernel's own tick). */
const TICKS_PER_SECOND = 100;

/** What the deployer's processes use, for the benchmark: see joinDeployerCpuAccount. */
export interface DeployerCpu {
    /** CPU seconds so far, all CPUs together. */
    seconds(): number;
    /** Moves this process back and removes the account (once its children are gone). */
    leave(): void;
}

/**
 * Moves this process into a CPU account of its own, so that everything it starts from then on is
 * counted: for a `pulumi up`, the CLI, the language host, the program, the provider, the ssh and
 * nix clients, and also ssh's master connections, which fork away from their parent (so no
 * parent's cutime counts them) but stay in the group. Left out: this process's own CPU (the
 * sampling beside the deploy), the test hosts' (in accounts of their own), and the kernel's work
 * for the test hosts (writeback of their stores, their control groups). Undefined where control
 * groups cannot be written.
 */
export function joinDeployerCpuAccount(): DeployerCpu | undefined {
    const account = joinCpuAccount("bench-deployer");
    if (!account) return undefined;
    const ownSeconds = () => {
        const { user, system } = process.cpuUsage();
        return (user + system) / 1e6;
    };
    return { seconds: () => account.seconds() - ownSeconds(), leave: () => account.leave() };
}

/** CPU seconds the whole machine has spent busy since boot, all CPUs together (/proc/stat). */
export function machineCpuSeconds(): number {
    const [user, nice, system, , , irq, softirq, steal] = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
}
