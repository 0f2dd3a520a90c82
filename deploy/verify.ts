// Stage 5: health checks after activation. Command checks run on the host, retried there by one
// script (COMMAND_CHECKS): in the same fresh session as the confirmation when they are the only
// checks (activate.ts confirms only a healthy host, one round trip fewer), otherwise on their own
// over the deploy's connection. HTTP checks are fetched from the deployer. Each check retries,
// a second apart, until it passes or its own timeout runs out.
import { CommandCheck, HealthChecks } from "../schema/inputs";
import { Host } from "./host";

export class HealthCheckError extends Error {
    constructor(readonly check: string, detail: string) {
        super(`health check "${check}" failed: ${detail}`);
        this.name = "HealthCheckError";
    }
}

const RETRY_INTERVAL_MS = 1000;

// Runs the checks given as pairs of arguments (whole seconds, command), each retried a second
// apart until it passes or its seconds run out, with `timeout` ending each attempt in time. For
// the first that does not pass it prints "failed INDEX EXIT-CODE" and the last lines of its
// output ("out …"), and returns 1.
export const COMMAND_CHECKS = `
run_checks() {
  index=0
  while [ "$#" -ge 2 ]; do
    seconds="$1"; command="$2"; shift 2
    deadline=$(($(date +%s) + seconds))
    while :; do
      remaining=$((deadline - $(date +%s))); [ "$remaining" -ge 1 ] || remaining=1
      out=$(timeout -k 2 "$remaining" sh -c "$command" 2>&1); code=$?
      [ "$code" -eq 0 ] && break
      if [ $(($(date +%s) + 1)) -ge "$deadline" ]; then
        printf 'failed %s %s\\n' "$index" "$code"
        printf '%s\\n' "$out" | tail -n 3 | sed 's/^/out /'
        return 1
      fi
      sleep 1
    done
    index=$((index + 1))
  done
}`;

/** COMMAND_CHECKS's arguments for these checks. */
export function commandCheckArguments(checks: readonly CommandCheck[]): string[] {
    return checks.flatMap((check) => [String(Math.ceil(check.timeoutSeconds)), check.command]);
}

/** How long a session running these checks may take, with a margin for the connection. */
export function commandChecksMs(checks: readonly CommandCheck[]): number {
    return checks.reduce((sum, check) => sum + (Math.ceil(check.timeoutSeconds) + 5) * 1000, 0);
}

/** The check COMMAND_CHECKS's output says failed, as an error; undefined when all passed. */
export function commandCheckFailure(checks: readonly CommandCheck[], output: string): HealthCheckError | undefined {
    const lines = output.split("\n");
    const failed = lines.map((line) => /^failed (\d+) (\d+)$/.exec(line)).find((match) => match !== null);
    if (!failed) return undefined;
    const check = checks[Number(failed[1])];
    const code = Number(failed[2]);
    const out = lines.filter((line) => line.startsWith("out ")).map((line) => line.slice(4)).filter((line) => line.trim()).join(" / ");
    const detail = code === 124 || code === 137 ? "the command did not finish in time" : `exit code ${code}${out ? `: ${out}` : ""}`;
    return new HealthCheckError(check?.name ?? `#${failed[1]}`, `${detail} (still failing after ${check?.timeoutSeconds} s)`);
}

/** Says which command checks run now. */
export function logCommandChecks(checks: readonly CommandCheck[], log: (message: string) => void): void {
    for (const check of checks) log(`health check "${check.name}" on the host`);
}

/** The command checks that run with the confirmation: all of them when there are no HTTP checks to run between. */
export function checksWithConfirmation(checks: HealthChecks): CommandCheck[] {
    return checks.http.length === 0 ? checks.commands : [];
}

/** Retries `attempt` (which resolves with an error text, or undefined when healthy) until the deadline. */
async function retryUntil(timeoutSeconds: number, attempt: (remainingMs: number) => Promise<string | undefined>): Promise<string | undefined> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
        const remainingMs = Math.max(1, deadline - Date.now());
        const failure = await attempt(remainingMs);
        if (failure === undefined) return undefined;
        if (Date.now() + RETRY_INTERVAL_MS >= deadline) return `${failure} (still failing after ${timeoutSeconds} s)`;
        await new Promise((resolve) => setTimeout(resolve, RETRY_INTERVAL_MS));
    }
}

async function checkHttp(url: string, expectStatus: number, remainingMs: number): Promise<string | undefined> {
    try {
        const response = await fetch(url, { signal: AbortSignal.timeout(remainingMs), redirect: "manual" });
        await response.body?.cancel();
        return response.status === expectStatus ? undefined : `${url} answered ${response.status}, expected ${expectStatus}`;
    } catch (error) {
        const cause = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
        return `${url}: ${cause}`;
    }
}

/**
 * Runs every check but those `checksWithConfirmation` leaves to the confirmation (pass
 * `withConfirmation: false` where nothing confirms, after a reboot); throws a HealthCheckError for
 * the first that does not pass in time.
 */
export async function runHealthChecks(host: Host, checks: HealthChecks, log: (message: string) => void, { withConfirmation = true } = {}): Promise<void> {
    if (!withConfirmation || checksWithConfirmation(checks).length === 0) {
        logCommandChecks(checks.commands, log);
        if (checks.commands.length > 0) {
            const output = await host.check("running the health checks", ["sh", "-c", `${COMMAND_CHECKS}\nrun_checks "$@" || true`, "checks",
                ...commandCheckArguments(checks.commands)], { timeoutMs: commandChecksMs(checks.commands) });
            const failure = commandCheckFailure(checks.commands, output);
            if (failure) throw failure;
        }
    }
    for (const check of checks.http) {
        log(`health check "${check.name}": GET ${check.url}`);
        const failure = await retryUntil(check.timeoutSeconds, (remainingMs) => checkHttp(check.url, check.expectStatus, remainingMs));
        if (failure !== undefined) throw new HealthCheckError(check.name, failure);
    }
}
