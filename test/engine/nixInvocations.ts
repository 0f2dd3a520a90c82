// Records the nix and nix-store processes the engine's plugins (and anything else under this
// process) start, through shims in front of the real ones on PATH that run them under GNU time:
// each process's program, subcommand, start, end and peak memory (from the kernel's rusage when it ends, so nothing is
// missed between samples). The tests that count evaluations and the bench use it.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const GNU_TIME = "/usr/bin/time";

/** The programs NixInvocations records. */
const PROGRAMS = ["nix", "nix-store"] as const;

/** One nix process seen by NixInvocations. */
export interface NixProcess {
    program: (typeof PROGRAMS)[number];
    /** nix's subcommand ("eval"), or nix-store's operation ("--export"). */
    subcommand: string;
    /** When it started and ended (milliseconds since the epoch). */
    startedAt: number;
    endedAt: number;
    /** Its peak resident memory (the kernel's maximum RSS, MiB). */
    peakMiB: number;
    exitCode: number;
}

/** The shim is on PATH only while it records, so nothing else pays for it. */
export class NixInvocations {
    private readonly log: string;
    private readonly binDir: string;

    constructor() {
        this.binDir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-nix-shim-"));
        this.log = path.join(this.binDir, "invocations");
        if (!fs.existsSync(GNU_TIME)) throw new Error(`${GNU_TIME} (GNU time) is needed to measure nix processes`);
        fs.writeFileSync(this.log, "");
        for (const program of PROGRAMS) {
            const real = process.env.PATH!.split(":").map((dir) => path.join(dir, program)).find((file) => fs.existsSync(file));
            if (!real) throw new Error(`${program} is not on PATH`);
            fs.writeFileSync(path.join(this.binDir, program), `#!/bin/sh
printf 'start %s %s ${program} %s\\n' "$$" "$(date +%s%N)" "$1" >> '${this.log}'
exec ${GNU_TIME} -a -o '${this.log}' -f "end $$ %e %M %x" '${real}' "$@"
`, { mode: 0o755 });
        }
    }

    /**
     * The nix processes `work` started and that ended meanwhile, with the shim first on this
     * process's PATH meanwhile (the engine, the program and the provider inherit it).
     */
    async during<T>(work: () => Promise<T>): Promise<{ result: T; processes: NixProcess[] }> {
        const before = new Set(this.processes().map((p) => `${p.startedAt}`));
        const searchPath = process.env.PATH;
        process.env.PATH = `${this.binDir}:${searchPath}`;
        try {
            const result = await work();
            return { result, processes: this.processes().filter((p) => !before.has(`${p.startedAt}`)) };
        } finally {
            process.env.PATH = searchPath;
        }
    }

    /** How many `nix SUBCOMMAND` processes `work` started. */
    async countDuring<T>(subcommand: string, work: () => Promise<T>): Promise<{ result: T; count: number }> {
        const { result, processes } = await this.during(work);
        return { result, count: processes.filter((p) => p.subcommand === subcommand).length };
    }

    private processes(): NixProcess[] {
        const started = new Map<string, Pick<NixProcess, "program" | "subcommand" | "startedAt">>();
        const ended: NixProcess[] = [];
        for (const line of fs.readFileSync(this.log, "utf8").split("\n")) {
            const [kind, pid, ...fields] = line.split(" ");
            if (kind === "start") started.set(pid, { program: fields[1] as NixProcess["program"], subcommand: fields[2] ?? "", startedAt: Number(fields[0]) / 1e6 });
            const start = started.get(pid);
            if (kind !== "end" || !start) continue;
            const [elapsed, maxRssKiB, exitCode] = fields.map(Number);
            ended.push({ ...start, endedAt: start.startedAt + elapsed * 1000, peakMiB: maxRssKiB / 1024, exitCode });
            started.delete(pid);
        }
        return ended;
    }

    remove(): void {
        fs.rmSync(this.binDir, { recursive: true, force: true });
    }
}

/** How many of `processes` ran at the same time, at most. */
export function mostAtOnce(processes: readonly NixProcess[]): number {
    const events = processes.flatMap((p) => [[p.startedAt, 1], [p.endedAt, -1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let running = 0;
    let most = 0;
    for (const [, change] of events) most = Math.max(most, (running += change));
    return most;
}
