// The guarantees that keep a fleet from being stranded, each proved against a real test host
// through the real engine: magic rollback when a system cuts off SSH, a deployer killed during the
// copy or the switch, health checks that never return, and secrets kept out of process arguments,
// output, error messages and leftover files.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { AGENT_DIR } from "../../deploy/activate";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, TestFleet, TestHost, waitFor } from "../../testbed/testHosts";
import { killEngine, readEachProcess, useTestEngine, watchProcesses } from "./engine";
import { createSystemStack, FIXTURE_FLAKE, HEALTHY_CHECK, SystemStack } from "./systemStack";

const CONFIRM_TIMEOUT = 5;

let fleet: TestFleet;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;
let keyLines: string[];

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "cuts-ssh", "large", "slow-switch", "unhealthy", "refuses-ssh", "drops-ssh", "crashes", "ssh-socket", "ssh-socket-2"]);
    fleet = await startTestHosts({ count: 1 });
    host = fleet.hosts[0];
    keyLines = fleet.deployerPrivateKey.split("\n").filter((line) => line && !line.startsWith("-----"));
    testStack = await createSystemStack("safety", fleet, host, (config) => ({
        connectTimeoutSeconds: 2,
        confirmTimeoutSeconds: config.getNumber("confirmTimeoutSeconds") ?? CONFIRM_TIMEOUT,
        healthChecks: {
            commands: [
                HEALTHY_CHECK,
                ...(config.getBoolean("hangingCheck") ? [{ name: "never returns", command: "sleep 1000", timeoutSeconds: 2 }] : []),
                ...(config.getBoolean("slowCheck") ? [{ name: "takes a while", command: "sleep 5", timeoutSeconds: 30 }] : []),
            ],
        },
    }));
});

after(async () => {
    host?.throttle(undefined);
    await testStack?.remove();
    fleet?.stop();
});

interface UpOptions {
    hangingCheck?: boolean;
    slowCheck?: boolean;
    confirmTimeoutSeconds?: number;
}
const stackConfig = (options: UpOptions) => ({
    hangingCheck: { value: String(options.hangingCheck ?? false) },
    slowCheck: { value: String(options.slowCheck ?? false) },
    confirmTimeoutSeconds: { value: String(options.confirmTimeoutSeconds ?? CONFIRM_TIMEOUT) },
});
const up = (configuration: string, options: UpOptions & { onOutput?: (out: string) => void } = {}) =>
    testStack.deploy(configuration, { config: stackConfig(options), onOutput: options.onOutput });
const failedUp = (configuration: string, options: UpOptions = {}) => testStack.failedDeploy(configuration, { config: stackConfig(options) });
const recordedClosure = () => testStack.recordedClosure();

const linkIsUp = () => /state UP/.test(host.shell("ip link show dev eth0"));

test("a first deploy of version 1", async () => {
    await up("v1");
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.currentGeneration(), 2);
});

test("magic rollback: a system that cuts off SSH is rolled back by the host itself, and the deploy fails", async () => {
    const message = await failedUp("cuts-ssh");
    assert.match(message, new RegExp(`deploying ${systems["cuts-ssh"].closure} to ${host.address}:22 failed`));
    assert.match(message, /back on generation 2 .*as read from the host/);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.currentGeneration(), 2);
    assert.ok(linkIsUp(), "the host's network is back with the old system");
    assert.equal(await recordedClosure(), systems.v1.closure);
});

test("a health check that never returns is cut off by its timeout, and the host rolls back", async () => {
    const started = Date.now();
    const message = await failedUp("v2", { hangingCheck: true });
    assert.match(message, /failed at verify: health check "never returns" failed: the command did not finish in time/);
    assert.ok(Date.now() - started < 60_000, "the hanging check was not bounded by its timeout");
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.currentGeneration(), 2);
});

test("killing the deployer during the switch: the host returns to its old generation alone, and up converges", async () => {
    let killed = 0;
    let polling: NodeJS.Timeout | undefined;
    // Killed once the agent on the host has begun (its log exists): a kill before that, while the
    // deployer still starts it, is the interrupted copy's case, not this one.
    const agentBegan = () => host.shell(`ls ${AGENT_DIR}/*/switch.log 2> /dev/null || true`).trim() !== "";
    const error = await up("slow-switch", {
        onOutput: (out) => {
            if (polling || !/switching \S+ to/.test(out)) return;
            polling = setInterval(() => {
                if (killed || !agentBegan()) return;
                clearInterval(polling);
                killed = killEngine();
            }, 100);
        },
    }).then(() => undefined, (e: Error) => e).finally(() => clearInterval(polling));
    assert.ok(killed > 0 && error, "the engine was not killed during the switch");
    // The switch finishes without the deployer, then nobody confirms: the host rolls back.
    await waitFor("the new system becomes current", () => host.currentSystem() === systems["slow-switch"].closure, 30);
    await waitFor("the host rolls itself back", () => host.currentSystem() === systems.v1.closure, CONFIRM_TIMEOUT + 30);
    assert.equal(host.currentGeneration(), 2);

    // The killed CLI still holds the stack's lock: `pulumi cancel` releases it (see the README).
    await testStack.stack.cancel();
    const result = await up("slow-switch");
    assert.match(result.stdout, /pending operations?/i, "the engine reports the interrupted update");
    assert.equal(result.summary.result, "succeeded");
    assert.equal(host.currentSystem(), systems["slow-switch"].closure);
    assert.equal(await recordedClosure(), systems["slow-switch"].closure);
});

test("killing the deployer during the copy leaves the host as it was, and up converges", async () => {
    const generation = host.currentGeneration();
    host.throttle("4mbit");
    let killed = 0;
    const error = await up("large", {
        onOutput: (out) => {
            if (!killed && /copying \d+ of \d+ paths/.test(out)) setTimeout(() => (killed = killEngine()), 500);
        },
    }).then(() => undefined, (e: Error) => e);
    host.throttle(undefined);
    assert.ok(killed > 0 && error, "the engine was not killed during the copy");
    assert.equal(host.currentSystem(), systems["slow-switch"].closure);
    assert.equal(host.currentGeneration(), generation);
    assert.equal(host.hasStorePath(systems.large.closure), false, "the system path arrived although the copy was cut");

    await testStack.stack.cancel();
    const result = await up("large");
    assert.equal(result.summary.result, "succeeded");
    assert.equal(host.currentSystem(), systems.large.closure);
    assert.equal(await recordedClosure(), systems.large.closure);
});

/** Whether a process is this test process or runs under it; false when it has ended. */
function runsUnderThisTest(pid: number): boolean {
    const stats = readEachProcess("stat");
    for (let current = pid; current > 1;) {
        if (current === process.pid) return true;
        const stat = stats.get(current);
        if (!stat) return false;
        current = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    }
    return false;
}

/**
 * Key folders left behind by this test's deploys: other processes on the machine (other test
 * runs) keep folders of their own while they live, which are not this test's.
 */
const leftoverKeyFolders = () => fs.readdirSync(os.tmpdir()).filter((entry) => {
    if (!entry.startsWith("pnx-ssh-")) return false;
    let owner: number;
    try {
        owner = Number(fs.readFileSync(path.join(os.tmpdir(), entry, "owner"), "utf8"));
    } catch {
        return false; // Being made right now: every folder gets its owner file at once.
    }
    return runsUnderThisTest(owner) || !readEachProcess("stat").has(owner);
});

test("secrets: never in process arguments, output, errors or the state; key files 0600 and removed, also on failure", async () => {
    for (const [configuration, shouldFail] of [["v2", false], ["unhealthy", true]] as const) {
        const { outcome, argumentLists, keyFiles } = await watchProcesses(() => up(configuration));
        assert.equal("error" in outcome, shouldFail, `up of ${configuration}`);
        const text = "error" in outcome ? String(outcome.error) : outcome.value.stdout + outcome.value.stderr;
        assert.ok(keyFiles.size > 0, "no key file was seen during the deploy: the sampler proves nothing");
        for (const [file, mode] of keyFiles) assert.equal(mode, 0o600, `${file} has mode ${mode.toString(8)}`);
        assert.deepEqual(leftoverKeyFolders(), [], "a key folder was left behind");
        for (const line of keyLines) {
            assert.ok(!text.includes(line), `the private key appears in the ${shouldFail ? "error" : "output"} of up`);
            for (const argv of argumentLists) assert.ok(!argv.includes(line), `the private key appears in a process's arguments: ${argv.slice(0, 80)}`);
        }
    }
    const state = testStack.stateText();
    for (const line of keyLines) assert.ok(!state.includes(line), "the private key appears in the state");
});

test("a switch during which the host refuses SSH for a few seconds is confirmed once it answers again, and the log says for how long", async () => {
    const generation = host.currentGeneration() ?? 0;
    const result = await up("refuses-ssh", { confirmTimeoutSeconds: 30 });
    assert.equal(result.summary.result, "succeeded");
    assert.match(result.stdout, /could not be reached for \d+ s during its activation; reached again/);
    assert.equal(host.currentSystem(), systems["refuses-ssh"].closure);
    assert.equal(host.currentGeneration(), generation + 1);
    assert.equal(host.bootSystem(), systems["refuses-ssh"].closure, "the confirmed system is not the boot default");
    assert.equal(await recordedClosure(), systems["refuses-ssh"].closure);
});

test("a switch that drops every SSH connection, the deploy's own, is confirmed over a new one", async () => {
    const generation = host.currentGeneration() ?? 0;
    const result = await up("drops-ssh", { confirmTimeoutSeconds: 30 });
    assert.equal(result.summary.result, "succeeded");
    assert.equal(host.currentSystem(), systems["drops-ssh"].closure);
    assert.equal(host.currentGeneration(), generation + 1);
    assert.equal(host.bootSystem(), systems["drops-ssh"].closure);
    assert.equal(await recordedClosure(), systems["drops-ssh"].closure);
});

test("a host that restarts between its switch and the confirmation comes back on its previous generation, the stack says so, and up converges", async () => {
    const [previous, generation, generations, bootId] = [host.currentSystem(), host.currentGeneration(), host.generations(), host.bootId()];
    const message = await failedUp("crashes", { slowCheck: true, confirmTimeoutSeconds: 30 });
    assert.notEqual(host.bootId(), bootId, "the host did not restart");
    assert.match(message, new RegExp(`restarted before the confirmation and came back on its previous generation ${generation} \\(${previous}\\)`));
    assert.equal(host.currentSystem(), previous);
    assert.equal(host.currentGeneration(), generation);
    assert.deepEqual(host.generations(), generations, "the unconfirmed system became a generation");
    assert.equal(host.bootSystem(), previous, "the unconfirmed system is what the host boots");
    assert.equal(await recordedClosure(), previous);
    // Converges: the stack and the host agree, so the same configuration as before is no change.
    const result = await up("drops-ssh");
    assert.equal(result.summary.result, "succeeded");
    assert.equal(host.currentSystem(), previous);
});

const unitState = (unit: string) => host.shell(`systemctl is-active ${unit} || true`).trim();

test("socket-activated sshd (startWhenNeeded): a switch that restarts every sshd@ instance, the deploy's own, is confirmed over a new one", async () => {
    await up("ssh-socket", { confirmTimeoutSeconds: 30 });
    assert.equal(unitState("sshd.socket"), "active");
    assert.equal(unitState("sshd.service"), "inactive", "the listening sshd still runs (or keeps restarting) beside the socket");
    const generation = host.currentGeneration() ?? 0;
    const result = await up("ssh-socket-2", { confirmTimeoutSeconds: 30 });
    assert.match(result.stdout, /dropped the connection during its switch|cannot be reached \(.*\); trying again/, "the deploy's connection was not restarted");
    assert.equal(host.currentSystem(), systems["ssh-socket-2"].closure);
    assert.equal(host.currentGeneration(), generation + 1);
    assert.equal(host.bootSystem(), systems["ssh-socket-2"].closure);
    assert.equal(await recordedClosure(), systems["ssh-socket-2"].closure);
    // And back to an sshd that listens itself: the socket is gone, sshd.service answers.
    await up("v2", { confirmTimeoutSeconds: 30 });
    assert.equal(unitState("sshd.socket"), "inactive");
    assert.equal(unitState("sshd.service"), "active");
    assert.equal(host.currentSystem(), systems.v2.closure);
});
