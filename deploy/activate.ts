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
// agent returns the host to the recorded generation itself.
//
// An unconfirmed system is never what the host boots: the agent activates it with
// `switch-to-configuration test`, which leaves the system profile and the boot loader alone, and
// only a confirmation makes it the profile's new generation and the boot loader's default
// (`switch-to-configuration boot`), which together are what nixos-rebuild's `switch` does. A host
// that goes down before the confirmation (a panic, a power cut, an operator's reboot) boots its
// previous generation, with nothing left to undo. A reboot deploy's confirmation instead makes the
// new generation boot once (BOOT_ONCE), and only a confirmation after it came back makes it the
// default.
//
// The deployer keeps trying to reach the host through dropped and refused connections until the
// host's own window has closed (a switch often takes SSH away for a while: a restarted sshd@
// instance, a network unit), so a healthy system is confirmed rather than rolled back.
//
// The scripts below are constants; every value reaches them as a positional argument, which the
// SSH transport quotes. Nothing is interpolated into script text.
import { randomBytes } from "node:crypto";
import { Action, CommandCheck } from "../schema/inputs";
import { remoteCommandLine, RemoteCommandError, SshConnectionError, SUDO_WORDS } from "./transport/ssh";
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
  sudo -k -n true 2>/dev/null && sudo=yes || sudo=no
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
        input: paths.length ? `${paths.join("\n")}\n` : undefined,
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

// Makes the system $1 the system profile's new generation and the boot loader's default, as
// nixos-rebuild's `switch` does before it activates (here after the confirmation: the agent
// activated it with `test`). Its output goes to commit.log, which a failed confirmation reports.
const MAKE_DEFAULT = `
make_default() {
  nix-env -p "$profile" --set "$1" >> "$dir/commit.log" 2>&1 && "$1/bin/switch-to-configuration" boot >> "$dir/commit.log" 2>&1
}
`;

// Makes the system $1 boot once, for a reboot deploy: it becomes the system profile's newest
// generation, but the profile and the boot loader's default go back to the previous generation
// (whose own `switch-to-configuration boot` lists every generation), and the boot loader is told
// to start the new one at the next boot only: systemd-boot's one-shot entry (`bootctl
// set-oneshot`, the LoaderEntryOneShot EFI variable), or GRUB's next_entry in grubenv (what
// `grub-reboot` sets; NixOS's grub.cfg boots it once and clears it). A new system that never comes
// back is left by the next boot. Writes "LINK LOADER" to once: LOADER "default" when the host's boot
// loader has neither (then the new system is the default, as `nixos-rebuild boot` makes it).
const BOOT_ONCE = `
grub_entry() {
  submenu=
  while IFS= read -r line; do
    line=\${line#"\${line%%[! ]*}"}
    case "$line" in
      'submenu "'*) submenu=\${line#submenu \\"}; submenu="\${submenu%%\\"*}>" ;;
      'menuentry "'*" - Configuration $1 ("*) line=\${line#menuentry \\"}; echo "$submenu\${line%%\\"*}"; return 0 ;;
    esac
  done < /boot/grub/grub.cfg
  return 1
}
boot_once() {
  if [ -z "$generation" ]; then make_default "$1" && echo "$(readlink "$profile") default" > "$dir/once"; return; fi
  nix-env -p "$profile" --set "$1" && link=$(readlink "$profile") &&
    nix-env -p "$profile" --switch-generation "$generation" && "$profile/bin/switch-to-configuration" boot || return 1
  number=\${link%-link}; number=\${number##*-}
  if command -v bootctl > /dev/null && boot=$(bootctl --print-boot-path 2> /dev/null) &&
      [ -e "$boot/loader/entries/nixos-generation-$number.conf" ]; then
    bootctl set-oneshot "nixos-generation-$number.conf" && echo "$link systemd-boot" > "$dir/once"
  elif [ -e /boot/grub/grub.cfg ] && command -v grub-editenv > /dev/null && entry=$(grub_entry "$number"); then
    grub-editenv /boot/grub/grubenv set "next_entry=$entry" && echo "$link grub" > "$dir/once"
  else
    nix-env -p "$profile" --switch-generation "$number" && "$profile/bin/switch-to-configuration" boot && echo "$link default" > "$dir/once"
  fi
}
`;

// The agent. $1 closure, $2 action, $3 profile, $4 its folder, $5 confirm timeout (s),
// $6 generation to return to (may be empty), $7 closure to return to (may be empty).
//
// It activates with `test` (a `boot` deploy activates nothing) and waits for the claim on
// "pending": "confirmed" makes the system the boot default (MAKE_DEFAULT), "confirmed-once" makes
// it boot once (BOOT_ONCE, for a reboot deploy), anything else rolls back. Its result says which:
// "confirmed GENERATION-LINK", "once GENERATION-LINK LOADER", or the rollback's.
//
// A unit the new system failed does not stay failed under the old one: switch-to-configuration-ng
// resets every failed unit before it reloads systemd (ResetFailed), so the rollback's own switch
// clears it, and exits 4 only for units that fail again.
const AGENT = `
dir="$4" action="$2" profile="$3" generation="$6" previous="$7"
${ROLL_BACK}
${MAKE_DEFAULT}
${BOOT_ONCE}
echo $$ > "$dir/pid"
if [ "$action" = boot ]; then
  publish switch-exit "switch 0"
else
  "$1/bin/switch-to-configuration" test > "$dir/switch.log" 2>&1
  publish switch-exit "switch $?"
fi
steps=0
while [ -e "$dir/pending" ] && [ "$steps" -lt $(($5 * 5)) ]; do sleep 0.2; steps=$((steps + 1)); done
if ! mv "$dir/pending" "$dir/expired" 2> /dev/null; then
  if [ -e "$dir/confirmed" ]; then
    [ "$action" = test ] || make_default "$1" || roll_back
    rm -rf "$dir/${FILES_BACKUP}"
    finish "confirmed $(readlink "$profile")"
  fi
  if [ -e "$dir/confirmed-once" ]; then
    boot_once "$1" >> "$dir/commit.log" 2>&1 || roll_back
    rm -rf "$dir/${FILES_BACKUP}"
    finish "once $(cat "$dir/once")"
  fi
fi
roll_back
`;

// Waits up to $2 0.2 s steps for the file $1 to appear.
const AWAIT_FILE = `
i=0
while [ ! -e "$1" ] && [ "$i" -lt "$2" ]; do sleep 0.2; i=$((i + 1)); done
`;

// Waits up to $2 0.2 s steps for the agent in folder $1 to finish the switch, then prints the step
// that ended it with its exit code, the agent's result when it has one already (it rolled back
// while the deployer could not reach it), and of its log the lines that say what failed
// (switch-to-configuration-ng's, which `systemctl status` output follows) and the end. Prints
// "absent" when there is no agent, "exit agent-gone" when it ended before the switch did, and
// nothing while it still runs. (The agent publishes by rename: nothing is seen half-written.)
const WAIT_FOR_SWITCH = `
[ -d "$1" ] || { echo absent; exit 0; }
dir="$1"
set -- "$dir/switch-exit" "$2"
${AWAIT_FILE}
${AGENT_GONE}
if [ ! -e "$dir/switch-exit" ]; then agent_gone "$dir" && [ ! -e "$dir/switch-exit" ] && echo "exit agent-gone"; exit 0; fi
printf 'exit %s\\n' "$(cat "$dir/switch-exit")"
[ -e "$dir/result" ] && printf 'result %s\\n' "$(cat "$dir/result")"
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
# What BOOT_ONCE tells the boot loader with, where the host has it (ahead: the shell stays last).
for tool in bootctl grub-editenv; do
  if where=$(command -v "$tool"); then found=" $where$found"; fi
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
    /** What ended it: switch-to-configuration, or the agent's end before it said anything (it was killed). */
    step: "switch" | "agent";
    exit: number;
    /** The agent's result, when it finished already (it rolled back: nobody confirmed in time). */
    result?: string;
    /** Of switch-to-configuration's output, the lines that say what failed, then its last lines. */
    log: string[];
}

/** Parses WAIT_FOR_SWITCH's output; undefined while the switch still runs. */
export function parseSwitchReport(output: string): SwitchReport | undefined {
    let report: SwitchReport | undefined;
    const log: string[] = [];
    for (const line of output.split("\n")) {
        const [key, ...rest] = line.split(" ");
        const value = rest.join(" ");
        const ended = /^switch (\d+)$/.exec(value);
        if (key === "exit" && ended) report = { step: "switch", exit: Number(ended[1]), log };
        if (key === "exit" && value === "agent-gone") report = { step: "agent", exit: -1, log };
        if (key === "result" && report && value) report.result = value;
        if (key === "log") log.push(value);
    }
    return report;
}

// Prints the result of the agent in folder $1, waiting up to $2 0.2 s steps for it (empty when it
// did not come; "absent" when there is no agent), then, unless it was confirmed, the end of what
// making the system the boot default printed (prefixed "log ").
const READ_RESULT = `
[ -d "$1" ] || { echo absent; exit 0; }
dir="$1"
set -- "$dir/result" "$2"
${AWAIT_FILE}
cat "$dir/result" 2> /dev/null || exit 0
case "$(cat "$dir/result")" in confirmed*|once*) ;; *) tail -n 6 "$dir/commit.log" 2> /dev/null | sed 's/^/log /' ;; esac
exit 0`;

// Claims "pending" for the deployer: $1 the agent's folder, $2 how many 0.2 s steps to wait for the
// agent's result, $3 the claim ("confirmed", or "confirmed-once" for a reboot deploy). Whoever
// claimed, it prints the agent's result, which a retried confirmation reads again.
const CONFIRM = `mv "$1/pending" "$1/$3" 2> /dev/null
${READ_RESULT}`;
// Runs the command checks (verify.ts) as the deploy user, then, when they pass, CONFIRM as root
// ($5: root, sudo or sudo-password, whose password is on standard input, kept from the checks).
// $1 the agent's folder, $2 CONFIRM's steps, $3 the claim, $4 CONFIRM itself, then the checks' arguments.
const CHECK_THEN_CONFIRM = `dir="$1"; steps="$2"; claim="$3"; confirm="$4"; access="$5"; shift 5
${COMMAND_CHECKS}
run_checks "$@" < /dev/null || exit 0
case "$access" in
  root) set -- ;;
  sudo) set -- ${remoteCommandLine(SUDO_WORDS.sudo)} ;;
  *) set -- ${remoteCommandLine(SUDO_WORDS["sudo-password"])} ;;
esac
exec "$@" sh -c "$confirm" confirm "$dir" "$steps" "$claim"`;
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
/**
 * How long past the host's own window the deployer keeps trying to reach it: time for the host's
 * rollback (the previous generation's switch) and for the deployer to read where the host is.
 */
const REACH_MARGIN_MS = 60_000;
/** How long the deployer waits between tries while the host cannot be reached. */
const RETRY_MS = 1000;

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

export interface ActivationOptions {
    /** Seconds the host waits for the confirmation after its switch before it rolls itself back. */
    confirmTimeoutSeconds: number;
    /** The host's boot id before the deploy: a new one means it rebooted during the activation. */
    bootId?: string;
    /** Progress for the user (Pulumi's log against the resource). */
    log?: (message: string) => void;
}

export interface SwitchResult {
    /**
     * switch-to-configuration exited 100: the new system changes the init interface, nothing of
     * it was activated, and the host runs it only after a reboot.
     */
    rebootRequired: boolean;
}

/** What a confirmation made of the new system. */
export interface ConfirmedActivation {
    /** The system profile generation it became. */
    generation?: number;
    /**
     * For a reboot deploy (`once`), how the next boot starts it once: "grub" (next_entry),
     * "systemd-boot" (its one-shot entry), or "default" where the boot loader has neither and the
     * new generation was made the boot default instead.
     */
    bootLoader?: string;
}

/** Whether a failure to run a command on the host is one that trying again may get past. */
function mayReachLater(error: unknown): error is SshConnectionError {
    return error instanceof SshConnectionError && error.failure !== "host-key-mismatch" && error.failure !== "key-refused";
}

/** The system profile's generation number in a link's name (".../system-7-link"). */
function generationOf(link: string): number | undefined {
    const match = /system-(\d+)-link$/.exec(link);
    return match ? Number(match[1]) : undefined;
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
    /** Since when the host could not be reached (undefined while it answers). */
    private unreachableSince?: number;
    private readonly confirmTimeoutSeconds: number;
    private readonly log: (message: string) => void;

    constructor(
        private readonly host: Host,
        private readonly target: RollbackTarget,
        private readonly options: ActivationOptions,
    ) {
        this.confirmTimeoutSeconds = options.confirmTimeoutSeconds;
        this.log = options.log ?? (() => undefined);
    }

    /**
     * Runs `attempt` until it gets through, through dropped and refused connections, while
     * `deadline()` (epoch ms) lies ahead; says in the log for how long the host could not be reached.
     * A host key that is not the pinned one, or a refused deploy key, is never tried again.
     */
    private async reach<T>(deadline: () => number, attempt: () => Promise<T>): Promise<T> {
        for (;;) {
            try {
                const value = await attempt();
                if (this.unreachableSince !== undefined) {
                    this.log(`${this.host.name} could not be reached for ${Math.round((Date.now() - this.unreachableSince) / 1000)} s during its activation; reached again`);
                    this.unreachableSince = undefined;
                }
                return value;
            } catch (error) {
                if (!mayReachLater(error)) throw error;
                if (this.unreachableSince === undefined) {
                    this.unreachableSince = Date.now();
                    this.log(`${this.host.name} cannot be reached (${error.reason}); trying again until its confirmation window closes`);
                }
                if (Date.now() >= deadline()) throw error;
                await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
            }
        }
    }

    /** When the host's own rollback is due at the latest, plus the margin to read what it did. */
    private windowClosesAt(switchedAt: number): number {
        return switchedAt + this.confirmTimeoutSeconds * 1000 + REACH_MARGIN_MS;
    }

    /**
     * Arms the host's own rollback to the target and starts the switch, detached from this
     * connection, then waits a while for the switch in the same round trip. Throws an
     * ActivationNotStartedError when the host refused; any other error leaves it open whether the
     * agent runs, which only a rollback settles. A connection lost while it waits (a switch that
     * restarts sshd) leaves that to `switched`.
     */
    async start(closure: string, action: Action): Promise<void> {
        this.action = action;
        const result = await this.host.run(["sh", "-c", START_AGENT, "start", POLL_STEPS, AGENT, closure, action, SYSTEM_PROFILE, this.dir,
            String(this.confirmTimeoutSeconds), this.target.generation === undefined ? "" : String(this.target.generation), this.target.closure ?? ""],
        { timeoutMs: POLL_TIMEOUT_MS, privileged: true }).catch((error) => {
            if (!mayReachLater(error) || error.failure === "unreachable") throw new ActivationNotStartedError(this.host.name, error);
            this.unreachableSince = Date.now();
            this.log(`${this.host.name} dropped the connection during its switch (${error.reason}); waiting for the switch over a new one`);
            return undefined;
        });
        if (!result) return;
        if (result.code !== null && result.code !== 0 && !result.timedOut) {
            throw new ActivationNotStartedError(this.host.name, new RemoteCommandError(this.host.name, "starting the activation", result));
        }
        this.agentStarted = result.code === 0;
        this.startReport = parseSwitchReport(result.stdout);
    }

    /**
     * Waits for switch-to-configuration to finish; throws an ActivationError when it failed, or
     * when the host rolled itself back (or rebooted) while it could not be reached.
     */
    async switched(timeoutSeconds = 1800): Promise<SwitchResult> {
        let report = this.startReport;
        const gaveUpAt = Date.now() + timeoutSeconds * 1000;
        // Unreachable, the switch may have ended when the host was last seen, and its window with it.
        const deadline = () => Math.min(gaveUpAt, this.windowClosesAt(this.unreachableSince ?? Date.now()));
        while (!report && Date.now() < gaveUpAt) {
            const output = await this.reach(deadline, () => this.host.check("waiting for the switch",
                ["sh", "-c", WAIT_FOR_SWITCH, "wait", this.dir, POLL_STEPS], { timeoutMs: POLL_TIMEOUT_MS, privileged: true }))
                .catch((error) => {
                    this.switchedAt = this.unreachableSince ?? Date.now();
                    throw error;
                });
            if (output.trim() === "absent") throw new ActivationError(this.host.name, await this.whyAbsent());
            this.agentStarted = true;
            report = parseSwitchReport(output);
        }
        this.switchedAt = Date.now();
        if (report?.result) {
            throw new ActivationError(this.host.name, "the host could not be reached after its switch until its confirmation window had closed, " +
                "and returned to its previous generation by itself");
        }
        if (report?.step === "switch" && report.exit === 0) return { rebootRequired: false };
        if (report?.step === "switch" && report.exit === REBOOT_REQUIRED) return { rebootRequired: true };
        if (report?.step === "agent") {
            throw new ActivationError(this.host.name, "the activation agent ended before the switch did (killed, or the host ran out of memory?); " +
                `its files are in ${this.dir} on the host`);
        }
        const why = !report ? `did not finish within ${timeoutSeconds} s` : report.exit === 4 ? "exit code 4: some units failed to start" : `exit code ${report.exit}`;
        const log = report?.log.filter(Boolean).join("\n  ");
        throw new ActivationError(this.host.name, `switch-to-configuration failed (${why})${log ? `:\n  ${log}` : ""}${report ? switchFailureHint(report) : ""}`);
    }

    /** Why the agent's folder is not on the host: it never started, or the host rebooted (/run is a tmpfs). */
    private async whyAbsent(): Promise<string> {
        const state = await probeHost(this.host);
        if (this.options.bootId && state.bootId && state.bootId !== this.options.bootId) {
            return "the host restarted before the new system was confirmed (a crash, a power cut, or someone rebooted it)";
        }
        return this.agentStarted ? `the activation agent's folder ${this.dir} is gone from the host` : "the activation agent did not start";
    }

    /** What the agent says happened, for results other than a rollback (or "absent", or nothing yet). */
    private async describe(result: string): Promise<{ outcome: string; returnedTo?: number }> {
        if (result === "unchanged") return { outcome: "the host was not changed" };
        if (result === "absent") return this.whereAfterAbsence();
        if (result.startsWith("confirmed") || result.startsWith("once")) return { outcome: "the host had taken the confirmation and runs the new system" };
        if (result === "no-previous") return { outcome: "the host had no earlier generation to return to; it stays on the failed system" };
        if (result.startsWith("rollback-failed")) return { outcome: `returning to the previous generation failed (${result}; see ${AGENT_DIR} on the host)` };
        return { outcome: `what the host did is not known yet (see ${this.dir} on the host)` };
    }

    /**
     * Where the host is when the activation's files are gone from it: after a reboot it boots the
     * generation the boot loader had before the deploy, since only a confirmation changes that.
     */
    private async whereAfterAbsence(): Promise<{ outcome: string; returnedTo?: number }> {
        if (!this.agentStarted) return { outcome: "the host was not changed" };
        const state = await probeHost(this.host);
        const { generation, closure } = this.target;
        const rebooted = this.options.bootId !== undefined && state.bootId !== this.options.bootId;
        const running = activatesNow(this.action) ? state.current : state.generationClosure;
        if (rebooted && running === closure && (generation === undefined || state.generation === generation)) {
            return {
                outcome: `the host restarted before the confirmation and came back on its previous generation${generation !== undefined ? ` ${generation}` : ""} ` +
                    `(${closure}), as read from the host; run \`pulumi up\` again to deploy the new system`,
                returnedTo: generation,
            };
        }
        return {
            outcome: `the activation's files are gone from ${AGENT_DIR} on the host${rebooted ? " (it restarted)" : ""}: ` +
                `it runs ${running ?? "no system"}${state.generation !== undefined ? ` (system profile generation ${state.generation})` : ""}`,
        };
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

    /** Where the host is after the agent's result, read from the host when it rolled back. */
    private outcomeOf(result: string): Promise<{ outcome: string; returnedTo?: number }> {
        return result.startsWith("rolled-back") ? this.whereAfterRollback(result) : this.describe(result);
    }

    /**
     * Confirms over a fresh SSH connection (proving a new connection can still be made) by claiming
     * "pending", and returns the generation the system became. Until the host's own window closes
     * it tries again through dropped and refused connections; a confirmation the host took is read
     * again, never made twice. When the agent's timeout claimed first, says what the agent did
     * instead. With `commandChecks`, the same session runs them first and confirms only when they
     * pass; a failed one is thrown as a HealthCheckError, and the agent is left to be rolled back.
     *
     * `once` (a reboot deploy) makes the new generation boot once instead of making it the default
     * (BOOT_ONCE); the deploy makes it the default once the host came back on it, healthy.
     */
    async confirm(commandChecks: readonly CommandCheck[] = [], { once = false } = {}): Promise<ConfirmedActivation> {
        const claim = once ? "confirmed-once" : "confirmed";
        const access = await this.host.rootAccess();
        const output = await this.reach(() => this.windowClosesAt(this.switchedAt), () => commandChecks.length === 0
            ? this.host.check("confirming the activation", ["sh", "-c", CONFIRM, "confirm", this.dir, "150", claim],
                { fresh: true, timeoutMs: 60_000, privileged: true })
            : this.host.check("checking the host's health and confirming the activation",
                ["sh", "-c", CHECK_THEN_CONFIRM, "confirm", this.dir, "150", claim, CONFIRM, access, ...commandCheckArguments(commandChecks)],
                { fresh: true, sudoWithin: true, timeoutMs: 60_000 + commandChecksMs(commandChecks) }));
        const unhealthy = commandCheckFailure(commandChecks, output);
        if (unhealthy) throw unhealthy;
        const [result = "", ...details] = output.trim().split("\n");
        const taken = /^(?:confirmed|once)(?: (\S+))?(?: (\S+))?$/.exec(result);
        if (taken) return taken[2] ? { generation: generationOf(taken[1] ?? ""), bootLoader: taken[2] } : { generation: generationOf(taken[1] ?? "") };
        const { outcome } = await this.outcomeOf(result);
        const log = details.map((line) => line.replace(/^log /, "")).filter(Boolean);
        const why = result === "absent" ? ""
            : result.startsWith("rolled-back") && log.length > 0 ? `making the new system the boot default failed:\n  ${log.join("\n  ")}\n`
            : !result ? "the host took the confirmation but did not say within 30 s that the new system is the boot default: "
            : "the confirmation came too late: ";
        throw new ActivationError(this.host.name, `${why}${outcome}`);
    }

    /**
     * Makes the host roll back now (or, when it cannot be reached, waits for it to roll itself
     * back when its confirm timeout runs out) and says where the host is now.
     */
    async rollBack(): Promise<{ outcome: string; returnedTo?: number }> {
        const deadline = this.windowClosesAt(Math.max(Date.now() - this.confirmTimeoutSeconds * 1000, this.switchedAt));
        let lastError: Error | undefined;
        while (Date.now() < deadline) {
            try {
                const { generation, closure } = this.target;
                const output = await this.host.check("rolling back", ["sh", "-c", ABORT, "abort", this.dir, POLL_STEPS, this.action, SYSTEM_PROFILE,
                    generation === undefined ? "" : String(generation), closure ?? ""],
                    { fresh: true, timeoutMs: POLL_TIMEOUT_MS, privileged: true });
                const result = output.trim().split("\n")[0] ?? "";
                if (!result) continue;
                return await this.outcomeOf(result);
            } catch (error) {
                // A command that fails rather than a connection: a new system that broke sudo for a
                // deploy user other than root. The host's own rollback brings the old sudo back.
                if (!(mayReachLater(error) || error instanceof RemoteCommandError)) throw error;
                lastError = error;
                await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
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
