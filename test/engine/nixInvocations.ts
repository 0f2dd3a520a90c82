// Counts the nix processes the engine's plugins start, through a logging shim in front of the
// real nix on PATH (the bench and the tests that count evaluations use it).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * Counts nix invocations by subcommand through a shim that logs, then runs the real nix. The shim
 * is on PATH only while it counts, so nothing else pays for it.
 */
export class NixInvocations {
    private readonly log: string;
    private readonly binDir: string;

    constructor() {
        this.binDir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-bench-nix-"));
        this.log = path.join(this.binDir, "invocations");
        const realNix = process.env.PATH!.split(":").map((dir) => path.join(dir, "nix")).find((file) => fs.existsSync(file));
        if (!realNix) throw new Error("bench: nix is not on PATH");
        fs.writeFileSync(this.log, "");
        fs.writeFileSync(path.join(this.binDir, "nix"), `#!/bin/sh\necho "$1" >> '${this.log}'\nexec '${realNix}' "$@"\n`, { mode: 0o755 });
    }

    /**
     * How many `nix SUBCOMMAND` processes `work` started, with the shim first on this process's
     * PATH meanwhile (the engine, the program and the provider inherit it).
     */
    async countDuring<T>(subcommand: string, work: () => Promise<T>): Promise<{ result: T; count: number }> {
        const before = this.count(subcommand);
        const searchPath = process.env.PATH;
        process.env.PATH = `${this.binDir}:${searchPath}`;
        try {
            const result = await work();
            return { result, count: this.count(subcommand) - before };
        } finally {
            process.env.PATH = searchPath;
        }
    }

    private count(subcommand: string): number {
        return fs.readFileSync(this.log, "utf8").split("\n").filter((line) => line === subcommand).length;
    }

    remove(): void {
        fs.rmSync(this.binDir, { recursive: true, force: true });
    }
}
