// Stages 4 and 6 on the host: read what it runs, make the new system current, and return to the
// generation that was active before, by its number (never "one lower": that is a different
// generation whenever the active one is not the newest).
//
// The scripts below are constants; every value reaches them as a positional argument, which the
// SSH transport quotes. Nothing is interpolated into script text.
import { Action } from "../schema";
import { Host } from "./host";

export const SYSTEM_PROFILE = "/nix/var/nix/profiles/system";

/** What a host runs, and which of a closure's paths it lacks: one round trip. */
export interface HostSystemState {
    /** readlink -f /run/current-system; undefined when the host has none. */
    current?: string;
    /** The system profile's generation number; undefined when there is no profile. */
    generation?: number;
    /** The store path that generation points at. */
    generationClosure?: string;
    /** Paths of the queried closure that are not valid in the host's store. */
    missing: string[];
}

const PROBE = `
current=$(readlink -f /run/current-system 2>/dev/null) || current=
link=$(readlink "$1" 2>/dev/null) || link=
closure=$(readlink -f "$1" 2>/dev/null) || closure=
printf 'current %s\\nprofile %s\\nclosure %s\\n' "$current" "$link" "$closure"
xargs -r nix-store --check-validity --print-invalid | sed 's/^/missing /'
`;

export function parseProbe(output: string): HostSystemState {
    const state: HostSystemState = { missing: [] };
    for (const line of output.split("\n")) {
        const [key, ...rest] = line.split(" ");
        const value = rest.join(" ").trim();
        if (!value) continue;
        if (key === "current") state.current = value;
        if (key === "closure") state.generationClosure = value;
        if (key === "missing") state.missing.push(value);
        if (key === "profile") {
            const match = /system-(\d+)-link$/.exec(value);
            if (match) state.generation = Number(match[1]);
        }
    }
    return state;
}

/** Reads the host's running system and generation, and which of `paths` it lacks. */
export async function probeHost(host: Host, paths: readonly string[] = []): Promise<HostSystemState> {
    const output = await host.check("reading the running system", ["sh", "-c", PROBE, "probe", SYSTEM_PROFILE], {
        input: paths.length ? `${paths.join("\n")}\n` : "",
        timeoutMs: 120_000,
    });
    return parseProbe(output);
}

/** Whether an action changes what runs now (and so whether health checks mean anything). */
export function activatesNow(action: Action): boolean {
    return action !== "boot";
}

/** Whether an action makes a new generation of the system profile (as nixos-rebuild does). */
export function setsProfile(action: Action): boolean {
    return action !== "test";
}

// $1 closure, $2 action, $3 profile.
const ACTIVATE = `
set -e
if [ "$2" != test ]; then
  nix-env -p "$3" --set "$1"
  echo "pulumi-nixos-generation $(readlink "$3")"
fi
exec "$1/bin/switch-to-configuration" "$2"
`;

// $1 generation number, $2 action, $3 profile.
const RETURN_TO_GENERATION = `
set -e
nix-env -p "$3" --switch-generation "$1"
exec "$3/bin/switch-to-configuration" "$2"
`;

/** switch-to-configuration's exit code when it worked but the host wants a reboot. */
const REBOOT_REQUIRED = 100;

export class ActivationError extends Error {
    constructor(readonly host: string, message: string) {
        super(message);
        this.name = "ActivationError";
    }
}

export interface ActivationResult {
    /** The new generation number, when the action made one. */
    generation?: number;
    rebootRequired: boolean;
}

/** Sets the system profile (unless `test`) and runs the closure's own switch-to-configuration. */
export async function activate(host: Host, closure: string, action: Action, timeoutMs = 600_000): Promise<ActivationResult> {
    const result = await host.run(["sh", "-c", ACTIVATE, "activate", closure, action, SYSTEM_PROFILE], { timeoutMs });
    const generationLine = /pulumi-nixos-generation \S*system-(\d+)-link/.exec(result.stdout);
    const generation = generationLine ? Number(generationLine[1]) : undefined;
    if (result.code === 0 || result.code === REBOOT_REQUIRED) return { generation, rebootRequired: result.code === REBOOT_REQUIRED };
    const why = result.timedOut ? "timed out" : result.code === 4 ? "exit code 4: some units failed" : `exit code ${result.code}`;
    const output = result.stderr.trim().split("\n").filter(Boolean).slice(-6).join("\n  ");
    throw new ActivationError(host.name, `switch-to-configuration ${action} failed (${why})${output ? `:\n  ${output}` : ""}`);
}

/** Where a failed deploy goes back to: what the host ran before it. */
export interface RollbackTarget {
    generation?: number;
    closure?: string;
}

/**
 * Returns the host to what it ran before: the recorded generation number for `switch` and `boot`,
 * the previously running closure for `test` (which made no generation). Resolves with a sentence
 * that says where the host is now.
 */
export async function rollBack(host: Host, target: RollbackTarget, action: Action, timeoutMs = 600_000): Promise<string> {
    if (action === "test" && target.closure) {
        await host.check(`returning to ${target.closure}`, [`${target.closure}/bin/switch-to-configuration`, "test"], { timeoutMs });
        return `returned to ${target.closure}`;
    }
    if (target.generation === undefined) return "the host had no earlier generation to return to; it stays on the failed system";
    await host.check(`returning to generation ${target.generation}`,
        ["sh", "-c", RETURN_TO_GENERATION, "rollback", String(target.generation), action === "test" ? "switch" : action, SYSTEM_PROFILE], { timeoutMs });
    return `rolled back to generation ${target.generation}${target.closure ? ` (${target.closure})` : ""}`;
}
