// A fleet's canary through the real engine, on four test hosts rolled out in batches of two after
// the canary: preview and the outputs name the canary; a system that fails on the canary stops the
// rollout before any other host is touched; a good one reaches every host, the canary first.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { NixosFleet } from "../../components";
import { TestHost } from "../../testbed/testHosts";
import { createFleetStack, FIXTURE_FLAKE, FleetStack, HEALTHY_CHECK, recordedClosures } from "./systemStack";

let fleet: FleetStack;

before(async () => {
    fleet = await createFleetStack("canary", 4, (hosts) => async () => {
        const config = new pulumi.Config();
        const configurations = config.requireObject<string[]>("configurations");
        const edge = new NixosFleet("edge", {
            flake: FIXTURE_FLAKE,
            sshPrivateKey: pulumi.secret(hosts.deployerPrivateKey),
            canary: config.requireObject<number | string[]>("canary"),
            batchSize: 2,
            deploy: { healthChecks: { commands: [HEALTHY_CHECK] } },
            hosts: Object.fromEntries(hosts.hosts.map((host, i) =>
                [host.name, { address: host.address, hostPublicKey: host.hostPublicKey, configuration: configurations[i] }])),
        });
        return { hosts: edge.hosts, canary: edge.canary };
    });
});

after(() => fleet?.remove());

async function setRollout(configurations: string[], canary: number | string[]): Promise<void> {
    await fleet.stack.setAllConfig({
        configurations: { value: JSON.stringify(configurations) },
        canary: { value: JSON.stringify(canary) },
    });
}

/** When the host's current system profile generation was made: the time its switch began. */
function switchedAt(host: TestHost): number {
    return fs.lstatSync(path.join(host.dir, `nix/var/nix/profiles/system-${host.currentGeneration()}-link`)).mtimeMs;
}

test("up: the outputs name the canary, as a list and per host", async () => {
    await setRollout(Array(4).fill("v1"), 1);
    const result = await fleet.stack.up();
    const [canary, ...others] = fleet.hosts;
    assert.deepEqual(result.outputs.canary.value, [canary.name]);
    assert.equal(result.outputs.hosts.value[canary.name].canary, true);
    for (const host of others) assert.equal(result.outputs.hosts.value[host.name].canary, false, host.name);
    for (const host of fleet.hosts) assert.equal(host.currentSystem(), fleet.systems.v1.closure, host.name);
});

test("preview shows the canary and the batches that follow it", async () => {
    await setRollout(Array(4).fill("v2"), 1);
    const { stdout } = await fleet.stack.preview();
    const [h0, h1, h2, h3] = fleet.hosts.map((host) => host.name);
    assert.ok(stdout.includes(`rollout: canary [${h0}], then [${h1}, ${h2}], then [${h3}]`), stdout);
    for (const host of fleet.hosts) assert.equal(host.currentSystem(), fleet.systems.v1.closure, `preview touched ${host.name}`);
});

test("a system that fails on the canary stops the rollout: no other host is touched", async () => {
    await setRollout(["switch-fails", "v2", "v2", "v2"], 1);
    const error = await fleet.stack.up().then(() => undefined, (e: Error) => e);
    assert.ok(error, "the rollout succeeded although the canary failed");
    assert.match(String(error), /deploying \S+switch-fails\S* to .* failed at activate/);
    const [canary, ...others] = fleet.hosts;
    assert.equal(canary.currentSystem(), fleet.systems.v1.closure, "the canary was not rolled back");
    assert.equal(canary.currentGeneration(), 2);
    for (const host of others) {
        assert.equal(host.currentSystem(), fleet.systems.v1.closure, `${host.name} left its old system`);
        assert.deepEqual(host.generations(), [1, 2], `${host.name} got a new generation`);
        assert.equal(host.currentGeneration(), 2, host.name);
        assert.equal(host.hasStorePath(fleet.systems.v2.closure), false, `the new system was copied to ${host.name}`);
    }
    const recorded = await recordedClosures(fleet.stack);
    for (const host of fleet.hosts) assert.equal(recorded[`edge-${host.name}`], fleet.systems.v1.closure, `the state of ${host.name}`);
});

test("a good system on a named canary reaches every host, the canary first", async () => {
    const canary = fleet.hosts[2];
    await setRollout(Array(4).fill("v2"), [canary.name]);
    const result = await fleet.stack.up();
    assert.deepEqual(result.outputs.canary.value, [canary.name]);
    for (const host of fleet.hosts) {
        assert.equal(host.currentSystem(), fleet.systems.v2.closure, host.name);
        assert.equal(result.outputs.hosts.value[host.name].closure, fleet.systems.v2.closure);
        assert.equal(result.outputs.hosts.value[host.name].canary, host === canary, host.name);
    }
    const firstOther = Math.min(...fleet.hosts.filter((host) => host !== canary).map(switchedAt));
    assert.ok(switchedAt(canary) < firstOther, "another host switched before the canary");
});
