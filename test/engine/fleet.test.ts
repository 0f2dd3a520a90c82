// NixosFleet through the real engine: six hosts from one flake (one evaluation for all), rolled
// out in batches of two; a failure in the second batch stops the rollout there; destroy removes
// every resource and leaves the machines running their systems.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { NixosFleet } from "../../components";
import { createFleetStack, FIXTURE_FLAKE, FleetStack, HEALTHY_CHECK, recordedClosures } from "./systemStack";
import { NixInvocations } from "./nixInvocations";
import { evaluationLimits } from "../../deploy/evaluate";

let fleet: FleetStack;

before(async () => {
    fleet = await createFleetStack("fleet", 6, (hosts) => async () => {
        const configurations = new pulumi.Config().requireObject<string[]>("configurations");
        const edge = new NixosFleet("edge", {
            flake: FIXTURE_FLAKE,
            sshPrivateKey: pulumi.secret(hosts.deployerPrivateKey),
            batchSize: 2,
            deploy: { healthChecks: { commands: [HEALTHY_CHECK] } },
            hosts: Object.fromEntries(hosts.hosts.map((host, i) =>
                [host.name, { address: host.address, hostPublicKey: host.hostPublicKey, configuration: configurations[i] }])),
        });
        return { hosts: edge.hosts };
    });
});

after(() => fleet?.remove());

async function rollOut(configurations: string[]) {
    await fleet.stack.setConfig("configurations", { value: JSON.stringify(configurations) });
    return fleet.stack.up().then((result) => ({ result, error: undefined }), (error: Error) => ({ result: undefined, error }));
}

test("up: six hosts from one flake, evaluated once, by the evaluation workers (never a process per host)", async () => {
    const nixCalls = new NixInvocations();
    const { count, result: { result } } = await nixCalls.countDuring("eval", () => rollOut(Array(6).fill("v1"))).finally(() => nixCalls.remove());
    assert.ok(result, "up failed");
    assert.ok(count >= 1 && count <= evaluationLimits().workers, `${count} nix eval processes for six hosts`);
    for (const host of fleet.hosts) {
        assert.equal(host.currentSystem(), fleet.systems.v1.closure, host.name);
        assert.equal(result.outputs.hosts.value[host.name].closure, fleet.systems.v1.closure);
        assert.equal(result.outputs.hosts.value[host.name].generation, 2);
        assert.equal(result.outputs.hosts.value[host.name].address, host.address);
    }
});

test("a rolling update with a failure in the second batch stops there", async () => {
    const { error } = await rollOut(["v2", "v2", "switch-fails", "v2", "v2", "v2"]);
    assert.ok(error, "the rollout succeeded although host2 failed");
    assert.match(String(error), /deploying \S+switch-fails\S* to .* failed at activate/);
    const expected = ["v2", "v2", "v1", "v2", "v1", "v1"].map((version) => fleet.systems[version].closure);
    fleet.hosts.forEach((host, i) => assert.equal(host.currentSystem(), expected[i], `${host.name} after the failed rollout`));
    const recorded = await recordedClosures(fleet.stack);
    fleet.hosts.forEach((host, i) => assert.equal(recorded[`edge-${host.name}`], expected[i], `the state of ${host.name}`));

    const { result } = await rollOut(Array(6).fill("v2"));
    assert.ok(result, "the rollout did not converge after the fix");
    for (const host of fleet.hosts) assert.equal(host.currentSystem(), fleet.systems.v2.closure, host.name);
});

test("destroy removes every resource; the machines keep running their systems", async () => {
    await fleet.stack.destroy();
    const state = await fleet.stack.exportStack();
    assert.deepEqual(state.deployment.resources ?? [], []);
    for (const host of fleet.hosts) assert.equal(host.currentSystem(), fleet.systems.v2.closure);
});
