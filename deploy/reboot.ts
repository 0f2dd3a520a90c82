// Stage 4b, on the host: reboot into the new system when activating it needs one (a `boot`
// deploy, a switch that exited 100, or one that changed the kernel), and wait until the host is
// back: a new boot id, read over fresh connections, within a bounded time (as colmena and morph
// tell that a reboot happened).
import { SshConnectionError } from "./transport/ssh";
import { Host } from "./host";

export class RebootError extends Error {
    constructor(readonly host: string, message: string) {
        super(message);
        this.name = "RebootError";
    }
}

const READ_BOOT_ID = ["cat", "/proc/sys/kernel/random/boot_id"];
/** How long to wait between tries while the host is down. */
const RETRY_MS = 1000;

/** The host's boot id, over a fresh connection (the shared one does not survive a reboot). */
export async function readBootId(host: Host): Promise<string> {
    return (await host.check("reading the boot id", READ_BOOT_ID, { fresh: true, timeoutMs: 30_000 })).trim();
}

/** What a switch cannot change in the running system: NixOS's boot parts, as a system's toplevel links them. */
const BOOT_PARTS = ["kernel", "initrd", "kernel-modules"];

// Prints each boot part the booted system (NixOS's stage 2 links it as /run/booted-system) and the
// running one do not share, as NixOS users compare them to tell that a reboot is due.
const COMPARE_BOOT_PARTS = `
for part in "$@"; do
  [ "$(readlink -f "/run/booted-system/$part")" = "$(readlink -f "/run/current-system/$part")" ] || echo "$part"
done`;

/** The boot parts (kernel, initrd, kernel-modules) the host booted and its current system do not share. */
export async function bootPartsChanged(host: Host): Promise<string[]> {
    const output = await host.check("comparing the booted kernel with the new system's", ["sh", "-c", COMPARE_BOOT_PARTS, "compare-boot-parts", ...BOOT_PARTS],
        { timeoutMs: 30_000 });
    return output.split("\n").filter((part) => BOOT_PARTS.includes(part));
}

/**
 * Reboots the host and resolves once it answers with a boot id other than `bootIdBefore`;
 * throws a RebootError when it does not within `timeoutSeconds`.
 */
export async function rebootHost(host: Host, bootIdBefore: string, timeoutSeconds: number, log: (message: string) => void): Promise<string> {
    log(`rebooting ${host.name}`);
    // The connection may drop before the command returns: the new boot id is the proof, not this.
    const refused = await host.run(["systemctl", "reboot"], { privileged: true, fresh: true, timeoutMs: 30_000 }).then(
        (result) => (result.code !== 0 && result.code !== null && !result.timedOut ? result.stderr.trim() || `exit code ${result.code}` : undefined),
        (error) => {
            if (error instanceof SshConnectionError) return undefined;
            throw error;
        });
    if (refused !== undefined) throw new RebootError(host.name, `the host refused to reboot: ${refused}`);
    const deadline = Date.now() + timeoutSeconds * 1000;
    let lastError = "";
    while (Date.now() < deadline) {
        try {
            const bootId = await readBootId(host);
            if (bootId && bootId !== bootIdBefore) {
                log(`${host.name} is back after the reboot`);
                return bootId;
            }
        } catch (error) {
            if (!(error instanceof SshConnectionError)) throw error;
            lastError = `: ${error.reason}`;
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
    throw new RebootError(host.name, `the host did not come back from its reboot within ${timeoutSeconds} s${lastError}`);
}
