// NixosSystem through the real engine against a real test host: deploy, preview with closure and
// package diff, failed switch and failed health check rolled back by generation number, drift seen
// by refresh and repaired by up, a no-op up.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, switchByHand, TestFleet, TestHost } from "../../testbed/testHosts";
import { useTestEngine } from "./engine";
import { createSystemStack, FIXTURE_FLAKE, SystemStack } from "./systemStack";

let fleet: TestFleet;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "v3", "switch-fails", "unhealthy", "inhibited"]);
    fleet = await startTestHosts({ count: 1 });
    host = fleet.hosts[0];
    // A private key given in config replaces the fleet's (a key rotation, previewed only).
    testStack = await createSystemStack("nixos-system", fleet, host, (config) => {
        const privateKey = config.getSecret("privateKey");
        return privateKey ? { privateKey } : {};
    });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

const activations = () => host.readFile("/run/standin/activations");

const deploy = (configuration: string) => testStack.deploy(configuration);
const failedUp = (configuration: string) => testStack.failedDeploy(configuration);
const recordedClosure = () => testStack.recordedClosure();

test("up deploys version 1: the host, booted into its first system (generation 1), runs it as generation 2", async () => {
    const result = await deploy("v1");
    assert.equal(result.outputs.closure.value, systems.v1.closure);
    assert.equal(result.outputs.generation.value, 2);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.deepEqual(host.generations(), [1, 2]);
    assert.match(result.stdout, /copying \d+ of \d+ paths/);
});

test("preview to version 2 shows one change, both closures and the package changes, and touches nothing", async () => {
    const before = activations();
    await testStack.stack.setConfig("configuration", { value: "v2" });
    // The provider's detailed diff: which properties change, then (with --diff) how.
    const summary = await testStack.stack.preview();
    assert.match(summary.stdout, /~ +nixos:index:System +web +update +\[diff: ~closure,configuration,kernel,packages\]/);
    const preview = await testStack.stack.preview({ diff: true });
    assert.deepEqual(preview.changeSummary, { same: 1, update: 1 });
    assert.ok(preview.stdout.includes(systems.v1.closure), "old closure shown");
    assert.ok(preview.stdout.includes(systems.v2.closure), "new closure shown");
    assert.match(preview.stdout, /app\s*: "1\.0" => "2\.0"/);
    assert.match(preview.stdout, /\+ extra\s*: "0\.3"/);
    assert.match(preview.stdout, /kernel\s*: "6\.6\.63" => "6\.6\.64"/);
    assert.equal(activations(), before, "preview ran switch-to-configuration");
    assert.equal(host.currentSystem(), systems.v1.closure);
});

test("up to version 2 makes generation 3", async () => {
    const result = await deploy("v2");
    assert.equal(result.outputs.closure.value, systems.v2.closure);
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.deepEqual(host.generations(), [1, 2, 3]);
    assert.equal(host.currentGeneration(), 3);
});

test("a no-op up copies nothing and changes nothing", async () => {
    const before = activations();
    const result = await deploy("v2");
    assert.deepEqual(result.summary.resourceChanges, { same: 2 });
    assert.equal(activations(), before);
    assert.deepEqual(host.generations(), [1, 2, 3]);
});

test("the state keeps each secret input once, in the inputs: the outputs do not repeat the private key, and hold no file records without files", async () => {
    const exported = await testStack.stack.exportStack();
    const system = exported.deployment.resources.find((r: { type: string }) => r.type === "nixos:index:System");
    // The Automation API exports with --show-secrets: a secret shows as its signature and its plaintext.
    assert.equal(system.inputs.privateKey?.plaintext, JSON.stringify(fleet.deployerPrivateKey), "the inputs hold the private key, as a secret");
    for (const output of ["privateKey", "files", "fileDigestKey", "fileDigests"]) assert.equal(system.outputs[output], undefined, `the outputs hold ${output}`);
    assert.equal(system.outputs.closure, systems.v2.closure);
});

test("a new private key is a change the preview names; the same key is none", async () => {
    const otherKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "sec1", format: "pem" }).toString();
    await testStack.stack.setConfig("privateKey", { value: otherKey, secret: true });
    const preview = await testStack.stack.preview({ diff: true });
    await testStack.stack.removeConfig("privateKey");
    assert.equal(preview.changeSummary.update, 1);
    assert.match(preview.stdout, /~ privateKey/);
    assert.deepEqual((await testStack.stack.preview()).changeSummary, { same: 2 });
});

test("a failing switch is rolled back to generation 3 and the stack keeps version 2", async () => {
    const message = await failedUp("switch-fails");
    assert.match(message, new RegExp(`deploying ${systems["switch-fails"].closure} to ${host.address}:22 failed at activate`));
    assert.match(message, /exit code 4: some units failed/);
    assert.match(message, new RegExp(`back on generation 3 \\(${systems.v2.closure}\\), as read from the host`));
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.equal(host.currentGeneration(), 3);
    assert.deepEqual(host.generations(), [1, 2, 3], "an unconfirmed system made a generation");
    assert.equal(await recordedClosure(), systems.v2.closure);
});

test("after a failure, up to a good version works", async () => {
    const result = await deploy("v3");
    assert.equal(result.outputs.closure.value, systems.v3.closure);
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.equal(host.currentGeneration(), 4, "the failed switch made no generation: 4 is version 3");
});

test("an unhealthy system is rolled back to the generation that ran before", async () => {
    const message = await failedUp("unhealthy");
    assert.match(message, /failed at verify: health check "app is healthy" failed/);
    assert.match(message, new RegExp(`back on generation 4 \\(${systems.v3.closure}\\), as read from the host`));
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.equal(host.currentGeneration(), 4);
    assert.equal(host.readFile("/run/standin/health")?.trim(), "ok");
    assert.equal(await recordedClosure(), systems.v3.closure);
});

// switch-to-configuration-ng's pre-switch checks exit 1 before anything changes; the deploy keeps
// them (it never sets NIXOS_NO_CHECK) and says what to do instead.
test("a system a pre-switch check refuses to switch to live is rolled back, with the way to deploy it", async () => {
    const message = await failedUp("inhibited");
    assert.match(message, /failed at activate: [\s\S]*switch-to-configuration failed \(exit code 1\)[\s\S]*Pre-switch checks failed/);
    assert.match(message, /deploy it with `action: "boot"` and `reboot: true`/);
    assert.match(message, new RegExp(`back on generation 4 \\(${systems.v3.closure}\\), as read from the host`));
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.equal(host.currentGeneration(), 4);
    assert.equal(await recordedClosure(), systems.v3.closure);
});

test("a host switched by hand shows as drift on refresh, and up puts it back", async () => {
    await testStack.stack.setConfig("configuration", { value: "v3" });
    switchByHand(fleet, host, systems.v1.closure);
    assert.equal(host.currentSystem(), systems.v1.closure);
    await testStack.stack.refresh();
    assert.equal(await recordedClosure(), systems.v1.closure);
    const preview = await testStack.stack.preview({ diff: true });
    assert.equal(preview.changeSummary.update, 1);
    const result = await testStack.stack.up();
    assert.equal(result.summary.resourceChanges?.update, 1);
    assert.equal(host.currentSystem(), systems.v3.closure);
});
