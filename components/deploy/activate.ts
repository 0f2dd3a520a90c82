// Stages 4 and 6 on the host: read what it runs, make the new system current, and return to the
// generation that was active before, by its number (never "one lower": that is a different
// generation whenever the active one is not the newest).
//
// Activation is a magic rollback. The deployer starts an agent on the host, detached from the SSH
// session (systemd-run where there is systemd, setsid elsewhere), so that the switch finishes even
// if the connection drops. After the switch, a file "pending" waits to be claimed, by an atomic
// rename that only one party can win: the deployer renames it to "confirmed" over a *fresh* SSH
// connection once the health checks pass (or to "aborted" to roll back now), and the agent renames
// it to "expired" when the confirm timeout runs out. Unless the deployer's confirmation won, the
// agent returns the host to the recorded generation itself. A confirmation is settled the moment
// its rename succeeds, so the deployer never waits for the agent to notice it.
//
// The scripts below are constants; every value reaches them as a positional argument, which the
// SSH transport quotes. Nothing is interpolated into script text.
import { randomBytes } from "node:crypto";
import { Action, CommandCheck } from "../schema";
import { RemoteCommandError, SshConnectionError } from "../transport/ssh";
import { RESTORE_FILES } from "./files";
import { Host } from "./host";
import { COMMAND_CHECKS, commandCheckArguments, commandCheckFailure, commandChecksMs } from "./verify";

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
    /** The host's boot id: it changes with every boot. */
    bootId?: string;
    /** What the host's `nix-store --version` says. */
    nixVersion?: string;
    /** For a deploy user other than root: what it may do (it needs both to deploy). */
    userRights?: { user: string; sudo: boolean; trustedNixUser: boolean };
}

const PROBE = `
current=$(readlink -f /run/current-system 2>/dev/null) || current=
link=$(readlink "$1" 2>/dev/null) || link=
closure=$(readlink -f "$1" 2>/dev/null) || closure=
printf 'current %s\\nprofile %s\\nclosure %s\\n' "$current" "$link" "$closure"
printf 'boot %s\\n' "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
printf 'nix %s\\n' "$(nix-store --version 2>/dev/null)"
if [ "$(id -u)" != 0 ]; then
  me=$(id -un)
  sudo -n true 2>/dev/null && sudo=yes || sudo=no
  trusted=no
  for entry in $(nix --extra-experimental-features nix-command show-config 2>/dev/null | sed -n 's/^trusted-users = //p'); do
    case "$entry" in
      "$me"|"*") trusted=yes ;;
      @*) id -Gn | tr ' ' '\\n' | grep -qx "\${entry#@}" && trusted=yes ;;
    esac
  done
  printf 'user %s %s %s\\n' "$me" "$sudo" "$trusted"
fi
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
        if (key === "boot") state.bootId = value;
        if (key === "nix") state.nixVersion = value;
        if (key === "user") {
            const [user, sudo, trusted] = value.split(" ");
            state.userRights = { user, sudo: sudo === "yes", trustedNixUser: trusted === "yes" };
        }
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

/** Where activation agents keep their files on the host (a tmpfs on NixOS: gone after a reboot). */
export const AGENT_DIR = "/run/pulumi-nixos";

/** A new, unique folder under AGENT_DIR for one activation (or one deploy of files alone). */
export function newAgentFolder(): string {
    return `${AGENT_DIR}/${Date.now()}-${randomBytes(4).toString("hex")}`;
}

/** The folder, inside an agent's, that keeps the previous versions of the files a deploy changes. */
export const FILES_BACKUP = "files";

// Returns the host to the generation it ran before: puts back the files the deploy changed (after
// waiting up to 30 s for a writer that holds "writing"), then switches to that generation (or,
// without one, runs the previous closure's switch), and publishes what happened as "result". Run by
// the agent, and by the deployer's abort when the agent is gone. Expects dir, action, profile,
// generation and previous (the closure to return to); generation and previous may be empty.
const ROLL_BACK = `
publish() { echo "$2" > "$dir/$1.new" && mv "$dir/$1.new" "$dir/$1"; }
finish() { publish result "$1"; exit 0; }
${RESTORE_FILES}
roll_back() {
  steps=0
  while [ -d "$dir/writing" ] && [ "$steps" -lt 60 ]; do sleep 0.5; steps=$((steps + 1)); done
  restore_files "$dir/${FILES_BACKUP}"
  back=switch; [ "$action" = boot ] && back=boot
  if [ -n "$generation" ]; then
    nix-env -p "$profile" --switch-generation "$generation" >> "$dir/rollback.log" 2>&1 || { finish "rollback-failed profile $?"; return; }
    "$profile/bin/switch-to-configuration" "$back" >> "$dir/rollback.log" 2>&1
    finish "rolled-back $generation $?"
  elif [ -n "$previous" ]; then
    "$previous/bin/switch-to-configuration" test >> "$dir/rollback.log" 2>&1
    finish "rolled-back - $?"
  else
    finish no-previous
  fi
}
`;

// Whether the agent of folder $1 ended without a result: killed, or the host ran out of memory
// (before its switch finished, or while it waited for the confirmation or rolled back).
const AGENT_GONE = `
agent_gone() {
  pid=$(cat "$1/pid" 2> /dev/null) || return 1
  ! kill -0 "$pid" 2> /dev/null && [ ! -e "$1/result" ]
}
`;

// The agent. $1 closure, $2 action, $3 profile, $4 its folder, $5 confirm timeout (s),
// $6 generation to return to (may be empty), $7 closure to return to (may be empty).
//
// A unit the new system failed does not stay failed under the old one: switch-to-configuration-ng
// resets every failed unit before it reloads systemd (ResetFailed), so the rollback's own switch
// clears it, and exits 4 only for units that fail again.
const AGENT = `
dir="$4" action="$2" profile="$3" generation="$6" previous="$7"
${ROLL_BACK}
echo $$ > "$dir/pid"
if [ "$action" != test ]; then
  nix-env -p "$profile" --set "$1" > "$dir/switch.log" 2>&1 || { publish switch-exit "profile $?"; restore_files "$dir/${FILES_BACKUP}"; finish unchanged; }
  readlink "$profile" > "$dir/generation"
fi
"$1/bin/switch-to-configuration" "$action" >> "$dir/switch.log" 2>&1
publish switch-exit "switch $?"
steps=0
while [ -e "$dir/pending" ] && [ "$steps" -lt $(($5 * 2)) ]; do sleep 0.5; steps=$((steps + 1)); done
if ! mv "$dir/pending" "$dir/expired" 2> /dev/null && [ -e "$dir/confirmed" ]; then rm -rf "$dir/${FILES_BACKUP}"; finish confirmed; fi
roll_back
`;

// Waits up to $2 0.2 s steps for the file $1 to appear.
const AWAIT_FILE = `
i=0
while [ ! -e "$1" ] && [ "$i" -lt "$2" ]; do sleep 0.2; i=$((i + 1)); done
`;

// Waits up to $2 0.2 s steps for the agent in folder $1 to finish the switch, then prints the step
// that ended it with its exit code, the generation it made, and of its log the lines that say what
// failed (switch-to-configuration-ng's, which `systemctl status` output follows) and the end; "absent" when
// there is no agent; "exit agent-gone" when it ended before the switch did; nothing while it still runs. (The agent publishes switch-exit by rename, so it
// is never seen half-written.)
const WAIT_FOR_SWITCH = `
[ -d "$1" ] || { echo absent; exit 0; }
dir="$1"
set -- "$dir/switch-exit" "$2"
${AWAIT_FILE}
${AGENT_GONE}
if [ ! -e "$dir/switch-exit" ]; then agent_gone "$dir" && [ ! -e "$dir/switch-exit" ] && echo "exit agent-gone"; exit 0; fi
printf 'exit %s\\n' "$(cat "$dir/switch-exit")"
printf 'generation %s\\n' "$(cat "$dir/generation" 2> /dev/null)"
{ grep -E '^(warning: the following units failed|Failed to |Pre-switch check)' "$dir/switch.log" | head -n 4; tail -n 6 "$dir/switch.log"; } 2> /dev/null | sed 's/^/log /'
`;

// Starts the agent detached, then waits for its switch in the same session: a dropped connection
// ends only the waiting. Exits non-zero only when the agent did not start. $1 how many 0.2 s steps
// to wait, $2 the agent's script, then the agent's own arguments.
//
// The agent gets its tools by their store paths, found from this session's PATH: on NixOS a
// transient unit's PATH holds only systemd's own bin/, and the switch replaces
// /run/current-system (and so the session's PATH) under the running agent. One readlink resolves
// them all (a process per tool is CPU the host spends on every deploy); the shell comes last.
const START_AGENT = `
steps="$1"; agent="$2"; shift 2
dir="$4"
found=
for tool in nix-env readlink mv sleep cp rm sh; do
  if where=$(command -v "$tool"); then found="$found $where"
  else echo "$tool is not on the host's PATH" >&2; exit 1; fi
done
tools= shell=
# Word splitting is safe here: tools on NixOS's PATH are store paths and /run/wrappers, without spaces.
for shell in $(readlink -f $found); do
  bin=\${shell%/*}
  case ":$tools:" in *":$bin:"*) ;; *) tools="$tools\${tools:+:}$bin" ;; esac
done
mkdir -p "$dir" && : > "$dir/pending" || exit 1
if command -v systemd-run > /dev/null 2>&1 && [ -d /run/systemd/system ]; then
  # systemd-run expands $NAME and \${…} in the command line it is given (systemd-run(1)), which
  # would rewrite the agent's script: every $ goes as $$, systemd's literal $, on every version
  # (--expand-environment=no needs systemd 254).
  count=$#
  for arg in "$agent" "$@"; do
    doubled= rest="$arg"
    while :; do
      case "$rest" in
        *'$'*) doubled="$doubled\${rest%%\\$*}\\$\\$"; rest=\${rest#*\\$} ;;
        *) doubled="$doubled$rest"; break ;;
      esac
    done
    set -- "$@" "$doubled"
  done
  shift "$count"
  agent=$1; shift
  systemd-run --quiet --collect --unit="pulumi-nixos-\${dir##*/}" --setenv=PATH="$tools" \\
    \${LOCALE_ARCHIVE:+--setenv=LOCALE_ARCHIVE="$LOCALE_ARCHIVE"} "$shell" -c "$agent" agent "$@" || exit 1
else
  setsid env PATH="$tools" "$shell" -c "$agent" agent "$@" < /dev/null > "$dir/agent.log" 2>&1 &
fi
set -- "$dir" "$steps"
${WAIT_FOR_SWITCH}`;

/**
 * What to do about a switch that refused to run: switch-to-configuration-ng's pre-switch checks
 * (system.preSwitchChecks) exit 1 before anything changes when the new system cannot be switched
 * to live. The deploy keeps them (it never passes NIXOS_NO_CHECK).
 */
export function switchFailureHint(report: SwitchReport): string {
    return report.step === "switch" && report.exit === 1 && report.log.some((line) => /Pre-switch checks? .*failed/i.test(line))
        ? "\nA pre-switch check refused to switch to the new system while it runs (e.g. the D-Bus implementation changed): deploy it with " +
            "`action: \"boot\"` and `reboot: true`, so that it starts at the next boot."
        : "";
}

/** What WAIT_FOR_SWITCH reports of a finished switch. */
export interface SwitchReport {
    /**
     * The step that ended it: setting the system profile (failed), switch-to-configuration, or
     * the agent's end before either said anything (it was killed).
     */
    step: "profile" | "switch" | "agent";
    exit: number;
    /** The generation the switch made, if it made one. */
    generation?: number;
    /** Of the switch's log (nix-env's and switch-to-configuration's output), the lines that say what failed, then its last lines. */
    log: string[];
}

/** Parses WAIT_FOR_SWITCH's output; undefined while the switch still runs. */
export function parseSwitchReport(output: string): SwitchReport | undefined {
    let report: SwitchReport | undefined;
    const log: string[] = [];
    for (const line of output.split("\n")) {
        const [key, ...rest] = line.split(" ");
        const value = rest.join(" ");
        const ended = /^(profile|switch) (\d+)$/.exec(value);
        if (key === "exit" && ended) report = { step: ended[1] as SwitchReport["step"], exit: Number(ended[2]), log };
        if (key === "exit" && value === "agent-gone") report = { step: "agent", exit: -1, log };
        if (key === "generation") {
            const match = /system-(\d+)-link$/.exec(value);
            if (match && report) report.generation = Number(match[1]);
        }
        if (key === "log") log.push(value);
    }
    return report;
}

// Prints the result of the agent in folder $1, waiting up to $2 0.2 s steps for it (empty when it
// did not come; "absent" when there is no agent).
const READ_RESULT = `
[ -d "$1" ] || { echo absent; exit 0; }
set -- "$1/result" "$2"
${AWAIT_FILE}
cat "$1" 2> /dev/null || true
`;

// Claims "pending" for the deployer: $1 the agent's folder, $2 how many 0.2 s steps to wait for the
// agent's result when the agent claimed it first.
const CONFIRM = `mv "$1/pending" "$1/confirmed" 2> /dev/null && { echo confirmed; exit 0; }
${READ_RESULT}`;
// Runs the command checks (verify.ts) as the deploy user, then, when they pass, CONFIRM as root.
// $1 the agent's folder, $2 CONFIRM's steps, $3 CONFIRM itself, then the checks' arguments.
const CHECK_THEN_CONFIRM = `dir="$1"; steps="$2"; confirm="$3"; shift 3
${COMMAND_CHECKS}
run_checks "$@" || exit 0
if [ "$(id -u)" = 0 ]; then exec sh -c "$confirm" confirm "$dir" "$steps"; fi
exec sudo -n -- sh -c "$confirm" confirm "$dir" "$steps"`;
// Makes the agent roll back now by claiming "pending", and prints its result; when the agent is
// gone, rolls back itself, once (a retried abort finds "rolling-back" claimed and only waits for
// the result). $1 the agent's folder, $2 READ_RESULT's steps, $3 the action, $4 the profile, $5 the
// generation and $6 the closure to return to (either may be empty).
const ABORT = `dir="$1" action="$3" profile="$4" generation="$5" previous="$6"
${ROLL_BACK}
${AGENT_GONE}
mv "$dir/pending" "$dir/aborted" 2> /dev/null
if agent_gone "$dir" && mkdir "$dir/rolling-back" 2> /dev/null; then (roll_back); fi
${READ_RESULT}`;

/** switch-to-configuration's exit code when it worked but the host wants a reboot. */
const REBOOT_REQUIRED = 100;
/** How long one waiting command on the host waits before it answers (and the deployer asks again). */
const POLL_SECONDS = 5;
/** The same, in the scripts' 0.2 s steps. */
const POLL_STEPS = String(POLL_SECONDS * 5);
/** How long the deployer gives one waiting command, including the connection. */
const POLL_TIMEOUT_MS = (POLL_SECONDS + 30) * 1000;

export class ActivationError extends Error {
    constructor(readonly host: string, message: string) {
        super(message);
        this.name = "ActivationError";
    }
}

/** The host refused to start the activation agent: nothing was changed. */
export class ActivationNotStartedError extends ActivationError {
    constructor(host: string, cause: Error) {
        super(host, `the activation agent did not start: ${cause.message}`);
        this.name = "ActivationNotStartedError";
    }
}

/** Where a failed deploy goes back to: what the host ran before it. */
export interface RollbackTarget {
    generation?: number;
    closure?: string;
}

export interface SwitchResult {
    /** The new generation number, when the action made one. */
    generation?: number;
    /**
     * switch-to-configuration exited 100: the new system changes the init interface, nothing of
     * it was activated, and the host runs it only after a reboot.
     */
    rebootRequired: boolean;
}

/** One magic-rollback activation on one host. */
export class Activation {
    /** The agent's folder on the host (root-only files: its log, the claim, the files' backups). */
    readonly dir = newAgentFolder();
    /** What the start command saw of the switch, when it finished while it waited. */
    private startReport?: SwitchReport;
    /** Whether the host said the agent runs: its folder missing later is then a lost trace, not "never started". */
    private agentStarted = false;
    private switchedAt = 0;
    private action: Action = "switch";

    constructor(
        private readonly host: Host,
        private readonly target: RollbackTarget,
        private readonly confirmTimeoutSeconds: number,
    ) {}

    /**
     * Arms the host's own rollback to the target and starts the switch, detached from this
     * connection, then waits a while for the switch in the same round trip. Throws an
     * ActivationNotStartedError when the host refused; any other error leaves it open whether the
     * agent runs, which only a rollback settles.
     */
    async start(closure: string, action: Action): Promise<void> {
        this.action = action;
        const result = await this.host.run(["sh", "-c", START_AGENT, "start", POLL_STEPS, AGENT, closure, action, SYSTEM_PROFILE, this.dir,
            String(this.confirmTimeoutSeconds), this.target.generation === undefined ? "" : String(this.target.generation), this.target.closure ?? ""],
        { timeoutMs: POLL_TIMEOUT_MS, privileged: true });
        if (result.code !== null && result.code !== 0 && !result.timedOut) {
            throw new ActivationNotStartedError(this.host.name, new RemoteCommandError(this.host.name, "starting the activation", result));
        }
        this.agentStarted = result.code === 0;
        this.startReport = parseSwitchReport(result.stdout);
    }

    /** Waits for switch-to-configuration to finish; throws an ActivationError when it failed. */
    async switched(timeoutSeconds = 1800): Promise<SwitchResult> {
        let report = this.startReport;
        for (let waited = POLL_SECONDS; !report && waited < timeoutSeconds; waited += POLL_SECONDS) {
            const output = await this.host.check("waiting for the switch",
                ["sh", "-c", WAIT_FOR_SWITCH, "wait", this.dir, POLL_STEPS], { timeoutMs: POLL_TIMEOUT_MS, privileged: true });
            if (output.trim() === "absent") throw new ActivationError(this.host.name, `the activation agent's folder ${this.dir} is gone from the host`);
            report = parseSwitchReport(output);
        }
        this.switchedAt = Date.now();
        if (report?.step === "switch" && report.exit === 0) return { generation: report.generation, rebootRequired: false };
        if (report?.step === "switch" && report.exit === REBOOT_REQUIRED) return { generation: report.generation, rebootRequired: true };
        if (report?.step === "agent") {
            throw new ActivationError(this.host.name, "the activation agent ended before the switch did (killed, or the host ran out of memory?); " +
                `its files are in ${this.dir} on the host`);
        }
        const what = report?.step === "profile" ? "setting the system profile" : "switch-to-configuration";
        const why = !report ? `did not finish within ${timeoutSeconds} s` : report.exit === 4 ? "exit code 4: some units failed to start" : `exit code ${report.exit}`;
        const log = report?.log.filter(Boolean).join("\n  ");
        throw new ActivationError(this.host.name, `${what} failed (${why})${log ? `:\n  ${log}` : ""}${report ? switchFailureHint(report) : ""}`);
    }

    /** What the agent says happened, for results other than a rollback (or "absent", or nothing yet). */
    private describe(result: string): string {
        if (result === "unchanged") return "the host was not changed";
        if (result === "absent") {
            return this.agentStarted
                ? `the activation's files are gone from ${AGENT_DIR} on the host (a reboot?): it may run the new system unconfirmed`
                : "the host was not changed";
        }
        if (result === "confirmed") return "the host had taken the confirmation and runs the new system";
        if (result === "no-previous") return "the host had no earlier generation to return to; it stays on the failed system";
        if (result.startsWith("rollback-failed")) return `returning to the previous generation failed (${result}; see ${AGENT_DIR} on the host)`;
        return `the host's own rollback has not finished yet (see ${AGENT_DIR} on the host)`;
    }

    /**
     * Where the host is after a rollback, read from the host itself: the exit code of the old
     * generation's switch does not say it (switch-to-configuration exits 4 when a unit of the old
     * generation fails again, although the host runs it).
     */
    private async whereAfterRollback(agentResult: string): Promise<{ outcome: string; returnedTo?: number }> {
        const switchExit = /^rolled-back \S+ (\d+)$/.exec(agentResult)?.[1];
        const exitNote = switchExit && switchExit !== "0"
            ? ` (its switch-to-configuration exited ${switchExit}${switchExit === "4" ? ": units of the previous generation failed to start again" : ""})` : "";
        const state = await probeHost(this.host);
        const { generation, closure } = this.target;
        const running = activatesNow(this.action) ? state.current : state.generationClosure;
        const back = running === closure && (generation === undefined || state.generation === generation);
        const now = `the host runs ${running ?? "no system"}${state.generation !== undefined ? ` (system profile generation ${state.generation})` : ""}`;
        if (back) {
            return { outcome: `the host is back on ${generation !== undefined ? `generation ${generation} (${closure})` : closure}, as read from the host${exitNote}`, returnedTo: generation };
        }
        return { outcome: `the rollback did not bring the host back to ${generation !== undefined ? `generation ${generation}` : closure}${exitNote}: ${now}` };
    }

    /**
     * Confirms over a fresh SSH connection (proving a new connection can still be made) by claiming
     * "pending"; when the agent's timeout claimed it first, says what the agent did instead. With
     * `commandChecks`, the same session runs them first and confirms only when they pass; a failed
     * one is thrown as a HealthCheckError, and the agent is left to be rolled back.
     */
    async confirm(commandChecks: readonly CommandCheck[] = []): Promise<void> {
        const output = commandChecks.length === 0
            ? await this.host.check("confirming the activation", ["sh", "-c", CONFIRM, "confirm", this.dir, "50"],
                { fresh: true, timeoutMs: 60_000, privileged: true })
            : await this.host.check("checking the host's health and confirming the activation",
                ["sh", "-c", CHECK_THEN_CONFIRM, "confirm", this.dir, "50", CONFIRM, ...commandCheckArguments(commandChecks)],
                { fresh: true, timeoutMs: 60_000 + commandChecksMs(commandChecks) });
        const unhealthy = commandCheckFailure(commandChecks, output);
        if (unhealthy) throw unhealthy;
        const result = output.trim();
        if (result !== "confirmed") {
            const where = result.startsWith("rolled-back") ? (await this.whereAfterRollback(result)).outcome : this.describe(result);
            throw new ActivationError(this.host.name, `the confirmation came too late: ${where}`);
        }
    }

    /**
     * Makes the host roll back now (or, when it cannot be reached, waits for it to roll itself
     * back when its confirm timeout runs out) and says where the host is now.
     */
    async rollBack(): Promise<{ outcome: string; returnedTo?: number }> {
        const deadline = Math.max(Date.now(), this.switchedAt) + (this.confirmTimeoutSeconds + 60) * 1000;
        let lastError: Error | undefined;
        while (Date.now() < deadline) {
            try {
                const { generation, closure } = this.target;
                const output = await this.host.check("rolling back", ["sh", "-c", ABORT, "abort", this.dir, POLL_STEPS, this.action, SYSTEM_PROFILE,
                    generation === undefined ? "" : String(generation), closure ?? ""],
                    { fresh: true, timeoutMs: POLL_TIMEOUT_MS, privileged: true });
                const result = output.trim();
                if (!result) continue;
                return result.startsWith("rolled-back") ? await this.whereAfterRollback(result) : { outcome: this.describe(result) };
            } catch (error) {
                // A command that fails rather than a connection: a new system that broke sudo for a
                // deploy user other than root. The host's own rollback brings the old sudo back.
                if (!(error instanceof SshConnectionError || error instanceof RemoteCommandError)) throw error;
                lastError = error;
                await new Promise((resolve) => setTimeout(resolve, 1000));
            }
        }
        const why = lastError instanceof RemoteCommandError ? "could not run the rollback's command (did the new system break sudo?)" : "could not be reached";
        return {
            outcome: `the host ${why} to confirm its rollback (${lastError?.message ?? "no answer"}); ` +
                `it returns to ${this.target.generation !== undefined ? `generation ${this.target.generation}` : "its previous system"} by itself ` +
                `${this.confirmTimeoutSeconds} s after the switch when nobody confirms`,
        };
    }
}
