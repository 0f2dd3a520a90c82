// Stage 5: health checks after activation. Host commands run on the host; HTTP checks are fetched
// from the deployer. Each check retries until it passes or its own timeout runs out.
import { HealthChecks } from "../schema";
import { Host } from "./host";

export class HealthCheckError extends Error {
    constructor(readonly check: string, detail: string) {
        super(`health check "${check}" failed: ${detail}`);
        this.name = "HealthCheckError";
    }
}

const RETRY_INTERVAL_MS = 1000;

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

async function checkCommand(host: Host, command: string, remainingMs: number): Promise<string | undefined> {
    // `timeout` on the host ends the command there too; the local timeout is the backstop for a
    // host that stops answering.
    const seconds = String(Math.max(1, Math.ceil(remainingMs / 1000)));
    const result = await host.run(["timeout", "-k", "2", seconds, "sh", "-c", command], { timeoutMs: remainingMs + 5000 });
    if (result.code === 124 || result.code === 137) return "the command did not finish in time";
    if (result.code === 0) return undefined;
    if (result.timedOut) return "the command did not finish in time";
    const output = (result.stderr || result.stdout).trim().split("\n").slice(-3).join(" / ");
    return `exit code ${result.code}${output ? `: ${output}` : ""}`;
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

/** Runs every check; throws a HealthCheckError for the first that does not pass in time. */
export async function runHealthChecks(host: Host, checks: HealthChecks, log: (message: string) => void): Promise<void> {
    for (const check of checks.commands) {
        log(`health check "${check.name}" on the host`);
        const failure = await retryUntil(check.timeoutSeconds, (remainingMs) => checkCommand(host, check.command, remainingMs));
        if (failure !== undefined) throw new HealthCheckError(check.name, failure);
    }
    for (const check of checks.http) {
        log(`health check "${check.name}": GET ${check.url}`);
        const failure = await retryUntil(check.timeoutSeconds, (remainingMs) => checkHttp(check.url, check.expectStatus, remainingMs));
        if (failure !== undefined) throw new HealthCheckError(check.name, failure);
    }
}
