// Cancellation through the real engine: Ctrl-C (SIGINT to the pulumi CLI) makes the engine call
// the provider's Cancel, and a wait for a machine that never comes up as NixOS ends at once with
// an error that says so, instead of waiting out its timeout.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { WaitForNixos } from "../../components";
import { startTestHosts, TestFleet } from "../../testbed/testHosts";
import { createTestStack, interruptEngine, TestStack, useTestEngine } from "./engine";

const TIMEOUT_SECONDS = 600;

let fleet: TestFleet;
let testStack: TestStack;

before(async () => {
    useTestEngine();
    // A reachable machine that does not run NixOS: the wait would go on for TIMEOUT_SECONDS.
    fleet = await startTestHosts({ count: 1, debianLike: true });
    const host = fleet.hosts[0];
    testStack = await createTestStack("cancel", async () => {
        const booted = new WaitForNixos("boot", {
            address: host.address,
            hostPublicKey: host.hostPublicKey,
            privateKey: pulumi.secret(fleet.deployerPrivateKey),
            timeoutSeconds: TIMEOUT_SECONDS,
            pollSeconds: 1,
        });
        return { initialSystem: booted.initialSystem };
    });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

test("Ctrl-C during a wait for NixOS: the provider is cancelled, the wait ends at once and says so", async () => {
    let interrupted = 0;
    const started = Date.now();
    const error = await testStack.stack.up({
        onOutput: (out) => {
            if (!interrupted && /WaitForNixos\s+boot\s+creating/.test(out)) setTimeout(() => (interrupted = interruptEngine()), 2000);
        },
    }).then(() => undefined, (e: Error) => e);
    assert.ok(interrupted > 0, "the engine was not interrupted");
    assert.ok(error, "up succeeded");
    assert.match(String(error), /waiting for \S+ to run NixOS was cancelled after \d+ s \(last seen: reachable, not NixOS yet\)/);
    assert.ok(Date.now() - started < 60_000, `up took ${Math.round((Date.now() - started) / 1000)} s after the interrupt`);
    const state = await testStack.stack.exportStack();
    assert.equal((state.deployment.resources ?? []).filter((r: { type: string }) => r.type === "nixos:index:WaitForNixos").length, 0);
});
