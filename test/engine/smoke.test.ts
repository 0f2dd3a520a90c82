// The real engine end to end: up, preview, refresh and destroy of a stack whose dynamic resource
// talks to a real test host over SSH. Asserts on the stack's outputs and on the host itself.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { startTestHosts, TestFleet } from "../../testbed/testHosts";
import { createTestStack, TestStack } from "./engine";
import { HostFile } from "./hostFile";

let fleet: TestFleet;
let testStack: TestStack;

before(async () => {
    fleet = await startTestHosts({ count: 1 });
    const host = fleet.hosts[0];
    testStack = await createTestStack("smoke", async () => {
        const file = new HostFile("motd", {
            address: host.address,
            hostPublicKey: host.hostPublicKey,
            privateKey: pulumi.secret(fleet.deployerPrivateKey),
            path: "/run/motd",
            content: new pulumi.Config().require("content"),
        });
        return { content: file.content, providerPid: file.providerPid };
    }, { content: { value: "hello from pulumi" } });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

const motd = () => fleet.hosts[0].readFile("/run/motd");

test("the engine is the real pulumi CLI", async (t) => {
    const version = testStack.stack.workspace.pulumiVersion;
    t.diagnostic(`pulumi ${version}`);
    console.log(`engine: pulumi ${version} (${process.env.PATH?.split(":")[0]})`);
    assert.match(version, /^3\.\d+\.\d+$/);
});

test("up creates the file on the host and exports it", async () => {
    const result = await testStack.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(result.outputs.content.value, "hello from pulumi");
    assert.notEqual(result.outputs.providerPid.value, process.pid, "the dynamic provider runs in the engine's plugin process");
    assert.equal(motd(), "hello from pulumi");
});

test("the private key is a secret: not in the state in plaintext", () => {
    const state = testStack.stateText();
    const keyBody = fleet.deployerPrivateKey.split("\n")[1];
    assert.ok(state.includes('"privateKey"'), "the state records the resource's inputs");
    assert.ok(!state.includes(keyBody), "the private key appears in plaintext in the state");
});

test("preview shows the change and touches nothing", async () => {
    await testStack.stack.setConfig("content", { value: "changed" });
    const preview = await testStack.stack.preview({ diff: true });
    assert.equal(preview.changeSummary.update, 1);
    assert.match(preview.stdout, /content/);
    assert.equal(motd(), "hello from pulumi");
    await testStack.stack.setConfig("content", { value: "hello from pulumi" });
});

test("refresh sees a change made on the host, and up puts it back", async () => {
    fleet.hosts[0].shell("printf 'edited by hand' > /run/motd");
    await testStack.stack.refresh();
    const state = await testStack.stack.exportStack();
    const file = state.deployment.resources.find((r: { urn: string }) => r.urn.endsWith("::motd"));
    assert.equal(file.outputs.content, "edited by hand");
    const up = await testStack.stack.up();
    assert.equal(up.summary.resourceChanges?.update, 1);
    assert.equal(motd(), "hello from pulumi");
});

test("destroy removes the file from the host", async () => {
    const result = await testStack.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(motd(), undefined);
});
