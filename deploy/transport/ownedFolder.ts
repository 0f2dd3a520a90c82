// Private folders of this process under the temporary directory (key files, GC roots). Each names
// its owner's PID, so that the folders of a deployer killed before it could clean up are removed
// by the next one.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

function processIsAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (error) {
        return (error as NodeJS.ErrnoException).code === "EPERM";
    }
}

function sweepAbandonedFolders(prefix: string): void {
    for (const entry of fs.readdirSync(os.tmpdir())) {
        if (!entry.startsWith(prefix)) continue;
        const dir = path.join(os.tmpdir(), entry);
        try {
            const owner = Number(fs.readFileSync(path.join(dir, "owner"), "utf8"));
            if (owner && !processIsAlive(owner)) fs.rmSync(dir, { recursive: true, force: true });
        } catch {
            // Not ours, or being written right now.
        }
    }
}

/** Makes a new 0700 folder named `prefix…` owned by this process, after removing abandoned ones. */
export function makeOwnedFolder(prefix: string): string {
    sweepAbandonedFolders(prefix);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    fs.chmodSync(dir, 0o700);
    fs.writeFileSync(path.join(dir, "owner"), String(process.pid));
    return dir;
}
