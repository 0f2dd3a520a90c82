// The command health checks as the host runs them: the script itself, run here by a real shell
// (LocalHost), with its retries and timeouts, and the errors its report becomes.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { LocalHost } from "../../deploy/host";
import { checksWithConfirmation, HealthCheckError, runHealthChecks } from "../../deploy/verify";

const checks = (commands: { name: string; command: string; timeoutSeconds: number }[]) => ({ commands, http: [] });

async function failure(commands: { name: string; command: string; timeoutSeconds: number }[]): Promise<HealthCheckError | undefined> {
    const logged: string[] = [];
    return runHealthChecks(new LocalHost(), checks(commands), (message) => logged.push(message), { withConfirmation: false })
        .then(() => undefined, (error: HealthCheckError) => error);
}

test("passing checks pass; the first failing one is named, with its exit code and the end of its output", async () => {
    assert.equal(await failure([{ name: "ok", command: "true", timeoutSeconds: 1 }, { name: "also ok", command: "test 1 = 1", timeoutSeconds: 1 }]), undefined);
    const error = await failure([
        { name: "ok", command: "true", timeoutSeconds: 1 },
        { name: "app", command: "echo one; echo two; echo three; echo 'not ready' >&2; exit 3", timeoutSeconds: 1 },
        { name: "never run", command: "touch /nonexistent/never", timeoutSeconds: 1 },
    ]);
    assert.ok(error instanceof HealthCheckError);
    assert.equal(error.check, "app");
    assert.equal(error.message, 'health check "app" failed: exit code 3: two / three / not ready (still failing after 1 s)');
});

test("a failing check is retried a second apart until it passes within its timeout", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-checks-"));
    try {
        const counter = path.join(dir, "attempts");
        // Passes on the third attempt: about two seconds in.
        const command = `echo x >> '${counter}'; [ "$(wc -l < '${counter}')" -ge 3 ]`;
        const started = Date.now();
        assert.equal(await failure([{ name: "comes up", command, timeoutSeconds: 10 }]), undefined);
        assert.equal(fs.readFileSync(counter, "utf8").split("\n").filter(Boolean).length, 3);
        assert.ok(Date.now() - started >= 1900, "the attempts were not a second apart");
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("a check that never returns is ended by its timeout on the host", async () => {
    const started = Date.now();
    const error = await failure([{ name: "hangs", command: "sleep 600", timeoutSeconds: 2 }]);
    assert.equal(error?.message, 'health check "hangs" failed: the command did not finish in time (still failing after 2 s)');
    assert.ok(Date.now() - started < 10_000);
});

test("command checks go with the confirmation only when no HTTP check has to run from the deployer between", () => {
    const command = { name: "app", command: "true", timeoutSeconds: 5 };
    assert.deepEqual(checksWithConfirmation({ commands: [command], http: [] }), [command]);
    assert.deepEqual(checksWithConfirmation({ commands: [command], http: [{ name: "site", url: "http://127.0.0.1/", expectStatus: 200, timeoutSeconds: 5 }] }), []);
});
