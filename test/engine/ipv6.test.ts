// An IPv6-only test host through the real engine: its address reaches ssh (and Nix, through the
// connection's host alias) as given, messages and the resource's ID write it in brackets, and a
// rollback and a refresh work as on any host.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SystemEvaluation } from "../../deploy/evaluate";
import { TestHost } from "../../testbed/testHosts";
import { createSingleHostStack, FIXTURE_FLAKE, SingleHostStack, SystemStack } from "./systemStack";

let setUp: SingleHostStack;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;

before(async () => {
    setUp = await createSingleHostStack("ipv6", ["v1", "v2", "switch-fails"], undefined, FIXTURE_FLAKE, { ipv6Only: true });
    ({ host, testStack, systems } = setUp);
});

after(() => setUp?.remove());

test("the host has an IPv6 address only", () => {
    assert.match(host.address, /^fd37:237:/);
    assert.equal(host.shell("ip -o -4 addr show dev eth0").trim(), "", "the host has an IPv4 address");
});

test("up deploys to the IPv6 address; the resource's ID writes it in brackets", async () => {
    const result = await testStack.deploy("v1");
    assert.equal(result.summary.result, "succeeded");
    assert.equal(host.currentSystem(), systems.v1.closure);
    const exported = await testStack.stack.exportStack();
    const system = exported.deployment.resources.find((resource: { type: string }) => resource.type === "nixos:index:System");
    assert.equal(system.id, `[${host.address}]:22`);
});

test("a failing switch is rolled back, the message naming the host by its bracketed address", async () => {
    const message = await testStack.failedDeploy("switch-fails");
    assert.ok(message.includes(`to [${host.address}]:22 failed at activate`), message);
    assert.match(message, new RegExp(`back on generation \\d+ \\(${systems.v1.closure}\\), as read from the host`));
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(await testStack.recordedClosure(), systems.v1.closure);
});

test("refresh reads the host over IPv6: a switch by hand is drift, and up puts the pinned system back", async () => {
    await testStack.deploy("v2");
    host.shell(`${systems.v1.closure}/bin/switch-to-configuration test`);
    await testStack.stack.refresh();
    assert.equal(await testStack.recordedClosure(), systems.v1.closure);
    await testStack.stack.up();
    assert.equal(host.currentSystem(), systems.v2.closure);
});
