// The CPU time a test host's processes use, counted by a control group of the host's own. On this
// machine the test hosts share the deployer's CPUs; the benchmark reports their share apart from
// the deployer's, since real hosts do that work on their own machines.
import * as fs from "node:fs";
import * as path from "node:path";

interface Hierarchy {
    root: string;
    /** How the hierarchy's line in /proc/PID/cgroup names its controllers ("" for cgroup v2). */
    controllers: string;
    /** A file only this kind of hierarchy has at its root. */
    marker: string;
    usageSeconds(group: string): number;
}

const HIERARCHIES: Hierarchy[] = [
    {
        root: "/sys/fs/cgroup/cpuacct",
        controllers: "cpuacct",
        marker: "cpuacct.usage",
        usageSeconds: (group) => Number(fs.readFileSync(path.join(group, "cpuacct.usage"), "utf8")) / 1e9,
    },
    {
        root: "/sys/fs/cgroup",
        controllers: "",
        marker: "cgroup.controllers",
        usageSeconds: (group) => Number(/^usage_usec (\d+)$/m.exec(fs.readFileSync(path.join(group, "cpu.stat"), "utf8"))?.[1]) / 1e6,
    },
];

const hierarchy = HIERARCHIES.find((candidate) => fs.existsSync(path.join(candidate.root, candidate.marker)));

const groupOf = (name: string) => hierarchy && path.join(hierarchy.root, `pulumi-nixos-${name}`);

/** The CPU account of one host. */
export interface CpuAccount {
    /** The group's cgroup.procs: a process that writes its PID there joins, with all it starts from then on. */
    procsFile: string;
    /** CPU seconds the host's processes have used since they joined. */
    seconds(): number;
}

/**
 * Makes a group named after `name` for a host's processes to join. Undefined where control groups
 * cannot be written: the account is for reports, never required.
 */
export function openCpuAccount(name: string): CpuAccount | undefined {
    const group = groupOf(name);
    if (!hierarchy || !group) return undefined;
    try {
        fs.mkdirSync(group, { recursive: true });
    } catch {
        return undefined;
    }
    const { usageSeconds } = hierarchy;
    return { procsFile: path.join(group, "cgroup.procs"), seconds: () => usageSeconds(group) };
}

/** Removes the group named after `name` once its processes are gone (a no-op where there is none). */
export function removeCpuAccount(name: string): void {
    const group = groupOf(name);
    if (!group || !fs.existsSync(group)) return;
    for (let attempt = 0; attempt < 20; attempt++) {
        try {
            fs.rmdirSync(group);
            return;
        } catch {
            // Killed processes leave the group a moment later.
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
        }
    }
}

/** The group of this hierarchy that this process is in now. */
function currentGroup(h: Hierarchy): string {
    const line = fs.readFileSync("/proc/self/cgroup", "utf8").split("\n")
        .map((entry) => entry.split(":"))
        .find(([, controllers]) => controllers.split(",").includes(h.controllers));
    return path.join(h.root, line?.[2] ?? "/");
}

/**
 * Moves this process into the account named after `name`, with everything it starts from then on.
 * `leave` moves it back to where it was and removes the account. Undefined where control groups
 * cannot be written.
 */
export function joinCpuAccount(name: string): (CpuAccount & { leave(): void }) | undefined {
    const account = openCpuAccount(name);
    if (!hierarchy || !account) return undefined;
    const previous = currentGroup(hierarchy);
    try {
        fs.writeFileSync(account.procsFile, String(process.pid));
    } catch {
        removeCpuAccount(name);
        return undefined;
    }
    return {
        ...account,
        leave() {
            fs.writeFileSync(path.join(previous, "cgroup.procs"), String(process.pid));
            removeCpuAccount(name);
        },
    };
}
