// Reboots and deploy users through the real engine, on a NixOS-shaped test host: a switch that
// asks for a reboot (exit 100) is not a success unless the deploy may reboot, a `boot` deploy can
// reboot into its system, a system that fails after the reboot is rebooted out of, and a deploy
// user other than root works through sudo, or is refused before anything changes; with
// rebootOnKernelChange, a switch reboots exactly when the booted kernel differs from the new one.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, TestFleet, TestHost, waitFor } from "../../testbed/testHosts";
import { useTestEngine } from "./engine";
import { createSystemStack, FIXTURE_FLAKE, SystemStack } from "./systemStack";

let fleet: TestFleet;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "v3", "needs-reboot", "unhealthy", "breaks-sudo", "no-network"]);
    fleet = await startTestHosts({ count: 1, namePrefix: "reboot" });
    host = fleet.hosts[0];
    testStack = await createSystemStack("reboot", fleet, host, (config) => ({
        action: (config.get("action") ?? "switch") as "switch" | "boot",
        reboot: config.getBoolean("reboot") ?? false,
        rebootOnKernelChange: config.getBoolean("rebootOnKernelChange") ?? false,
        rebootTimeoutSeconds: config.getNumber("rebootTimeoutSeconds") ?? 60,
        user: config.get("user") ?? "root",
        confirmTimeoutSeconds: config.getNumber("confirmTimeoutSeconds") ?? 60,
    }));
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

const settings = (values: Record<string, string>) => ({ config: Object.fromEntries(Object.entries(values).map(([key, value]) => [key, { value }])) });
const defaults = { action: "switch", reboot: "false", rebootOnKernelChange: "false", user: "root" };

test("a first deploy of version 1", async () => {
    await testStack.deploy("v1", settings(defaults));
    assert.equal(host.currentSystem(), systems.v1.closure);
});

test("a switch that needs a reboot fails without `reboot`: nothing was activated, and the host is as it was", async () => {
    const bootId = host.bootId();
    const generation = host.currentGeneration();
    const message = await testStack.failedDeploy("needs-reboot", settings(defaults));
    assert.match(message, /switch-to-configuration exited 100: .*runs only after a reboot; nothing of it was activated\. Set `reboot: true`/);
    assert.match(message, /back on generation \d+ .*as read from the host/);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.currentGeneration(), generation);
    assert.equal(host.bootSystem(), systems.v1.closure, "the next boot would start the system that was refused");
    assert.equal(host.bootId(), bootId, "the host rebooted");
    assert.equal(await testStack.recordedClosure(), systems.v1.closure);
});

test("with `reboot`, the deploy reboots into the system that needs it, checks it runs, and runs the health checks", async () => {
    const bootId = host.bootId();
    const result = await testStack.deploy("needs-reboot", settings({ ...defaults, reboot: "true" }));
    assert.match(result.stdout, /rebooting/);
    assert.notEqual(host.bootId(), bootId, "the host did not reboot");
    assert.equal(host.currentSystem(), systems["needs-reboot"].closure);
    assert.equal(host.bootSystem(), systems["needs-reboot"].closure);
    assert.equal(result.outputs.generation.value, host.currentGeneration());
    assert.equal(await testStack.recordedClosure(), systems["needs-reboot"].closure);
});

test("a `boot` deploy with `reboot` runs the new system after the reboot", async () => {
    const bootId = host.bootId();
    await testStack.deploy("v2", settings({ ...defaults, action: "boot", reboot: "true" }));
    assert.notEqual(host.bootId(), bootId);
    assert.equal(host.currentSystem(), systems.v2.closure);
});

test("a system that fails its health check after the reboot is rebooted out of, into the previous generation", async () => {
    const generation = host.currentGeneration();
    const bootId = host.bootId();
    const message = await testStack.failedDeploy("unhealthy", settings({ ...defaults, action: "boot", reboot: "true" }));
    assert.match(message, /failed at verify: health check "app is healthy" failed/);
    assert.match(message, new RegExp(`rebooted back into generation ${generation} \\(${systems.v2.closure}\\), as read from the host`));
    assert.notEqual(host.bootId(), bootId);
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.equal(host.currentGeneration(), generation);
    assert.equal(await testStack.recordedClosure(), systems.v2.closure);
});

test("a deploy user other than root deploys through sudo (the profile, the agent and the rollback run as root)", async () => {
    const result = await testStack.deploy("v3", settings({ ...defaults, user: "deploy" }));
    assert.equal(result.outputs.closure.value, systems.v3.closure);
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.equal(host.bootSystem(), systems.v3.closure);
});

// Before this change the rollback's own sudo failed too, and its raw error reached the user.
test("a system that breaks sudo for the deploy user is rolled back by the host itself, and the deploy says where the host is", async () => {
    const generation = host.currentGeneration();
    const message = await testStack.failedDeploy("breaks-sudo", settings({ ...defaults, user: "deploy", confirmTimeoutSeconds: "5" }));
    assert.match(message, new RegExp(`back on generation ${generation} \\(${systems.v3.closure}\\), as read from the host`));
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.equal(host.currentGeneration(), generation);
    assert.ok(host.readFile("/run/wrappers/bin/sudo") !== undefined, "the previous system's sudo is back");
});

test("a deploy user without sudo or Nix trust is refused before anything changes, saying what it lacks", async () => {
    const generation = host.currentGeneration();
    const message = await testStack.failedDeploy("v1", settings({ ...defaults, user: "guest" }));
    assert.match(message, /failed at probe: the deploy user guest cannot activate a system: it must run sudo \(without a password: .* or give sudoPassword\) and be a trusted Nix user/);
    assert.match(message, /the host was not changed/);
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.equal(host.currentGeneration(), generation);
    assert.equal(host.hasStorePath(systems.v1.closure), true, "v1 was there before");
});

test("a reboot deploy boots the new generation once: one that never answers is left at the next boot, for the previous generation", async () => {
    const [previous, generation, bootId] = [host.currentSystem(), host.currentGeneration(), host.bootId()];
    const message = await testStack.failedDeploy("no-network", settings({ ...defaults, action: "boot", reboot: "true", rebootTimeoutSeconds: "15" }));
    assert.match(message, new RegExp(`failed at reboot: .*booted into the new generation once; its next boot \\(reset it if it hangs\\) returns to generation ${generation} \\(${previous}\\)`, "s"));
    assert.notEqual(host.bootId(), bootId, "the host did not reboot");
    assert.equal(host.currentSystem(), systems["no-network"].closure, "the host does not run the new system once");
    assert.equal(host.currentGeneration(), generation, "the new generation became the profile's current one before it answered");
    assert.equal(host.bootSystem(), previous, "the new generation stays what the host boots");

    const unanswered = host.bootId();
    host.reset();
    await waitFor("the host comes back", () => { try { return host.bootId() !== unanswered && host.currentSystem() === previous; } catch { return false; } }, 60);
    assert.equal(host.currentGeneration(), generation);
    const result = await testStack.deploy("v3", settings({ ...defaults, user: "deploy" }));
    assert.equal(result.summary.result, "succeeded");
    assert.equal(host.currentSystem(), previous);
    assert.equal(await testStack.recordedClosure(), previous);
});

// v2 and v3 share their kernel (6.6.64); v1 has another (6.6.63).
test("with rebootOnKernelChange, a switch that keeps the booted kernel, initrd and modules does not reboot", async () => {
    const bootId = host.bootId();
    assert.equal(host.shell("readlink /run/booted-system").trim(), systems.v3.closure);
    const result = await testStack.deploy("v2", settings({ ...defaults, rebootOnKernelChange: "true" }));
    assert.match(result.stdout, /booted the new system's kernel, initrd and kernel modules: no reboot/);
    assert.equal(host.bootId(), bootId, "the host rebooted");
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.equal(host.bootSystem(), systems.v2.closure);
});

test("with rebootOnKernelChange, a switch to another kernel reboots into it, checks it and makes it the boot default", async () => {
    const bootId = host.bootId();
    const result = await testStack.deploy("v1", settings({ ...defaults, rebootOnKernelChange: "true" }));
    assert.match(result.stdout, /the new system's kernel, initrd, kernel-modules differ from what \S+ booted: it reboots into the new system/);
    assert.notEqual(host.bootId(), bootId, "the host did not reboot");
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.shell("readlink /run/booted-system").trim(), systems.v1.closure);
    assert.equal(host.bootSystem(), systems.v1.closure);
    assert.equal(result.outputs.generation.value, host.currentGeneration());
    assert.equal(await testStack.recordedClosure(), systems.v1.closure);
});
