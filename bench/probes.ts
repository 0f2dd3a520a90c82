// What the benchmark measures besides time, each read from the real thing: peak memory of the
// program and provider processes (their kernel high-water mark) and the CPU used. The nix
// processes started are counted by test/engine/nixInvocations.ts.
import * as fs from "node:fs";
import * as path from "node:path";

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

/** The unit of /proc/stat's times (USER_HZ, 100 on Linux whatever the kernel's own tick). */
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds of this process's children that have ended and been waited for, with theirs in turn
 * (/proc/self/stat's cutime and cstime): for a finished `pulumi up`, the CLI, the language host,
 * the program, the provider and the ssh and nix clients they ran. Unlike the machine's CPU less the
 * hosts', it leaves out the kernel's own work (writeback of the hosts' stores, their control
 * groups), which on this machine is done for the test hosts.
 */
export function childrenCpuSeconds(): number {
    const stat = fs.readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
}

/** CPU seconds the whole machine has spent busy since boot, all CPUs together (/proc/stat). */
export function machineCpuSeconds(): number {
    const [user, nice, system, , , irq, softirq, steal] = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
}
