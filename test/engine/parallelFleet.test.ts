// Ten hosts deployed in one up, one of them failing: the other nine succeed, the failing one is
// rolled back, and the stack's state is exact for all ten.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { NixosSystem } from "../../components";
import { createFleetStack, FIXTURE_FLAKE, FleetStack, HEALTHY_CHECK, recordedClosures } from "./systemStack";

const HOSTS = 10;
const FAILING = 7;

let fleet: FleetStack;

before(async () => {
    fleet = await createFleetStack("parallel-fleet", HOSTS, (hosts) => async () => {
        const configurations = new pulumi.Config().requireObject<string[]>("configurations");
        const closures: Record<string, pulumi.Output<string>> = {};
        hosts.hosts.forEach((host, i) => {
            closures[host.name] = new NixosSystem(host.name, {
                address: host.address,
                hostPublicKey: host.hostPublicKey,
                privateKey: pulumi.secret(hosts.deployerPrivateKey),
                flake: FIXTURE_FLAKE,
                configuration: configurations[i],
                healthChecks: { commands: [HEALTHY_CHECK] },
            }).closure;
        });
        return closures;
    });
});

after(() => fleet?.remove());

test("ten hosts are deployed in one up", async () => {
    await fleet.stack.setConfig("configurations", { value: JSON.stringify(Array(HOSTS).fill("v1")) });
    const result = await fleet.stack.up();
    assert.equal(result.summary.resourceChanges?.create, HOSTS + 1);
    for (const host of fleet.hosts) assert.equal(host.currentSystem(), fleet.systems.v1.closure, host.name);
});

test("one failing host of ten: nine on the new system, one rolled back, the state exact for all", async () => {
    const configurations = Array(HOSTS).fill("v2");
    configurations[FAILING] = "switch-fails";
    await fleet.stack.setConfig("configurations", { value: JSON.stringify(configurations) });
    const error = await fleet.stack.up({ continueOnError: true }).then(() => undefined, (e: Error) => e);
    assert.ok(error, "up succeeded although one host failed");
    assert.match(String(error), new RegExp(`host${FAILING}.*\\n?.*deploying ${fleet.systems["switch-fails"].closure}`));
    const recorded = await recordedClosures(fleet.stack);
    fleet.hosts.forEach((host, i) => {
        const expected = i === FAILING ? fleet.systems.v1.closure : fleet.systems.v2.closure;
        assert.equal(host.currentSystem(), expected, `${host.name} runs the wrong system; up said:\n${String(error)}`);
        assert.equal(host.currentGeneration(), i === FAILING ? 2 : 3, `${host.name} is on the wrong generation`);
        assert.equal(recorded[host.name], expected, `the state records the wrong closure for ${host.name}`);
    });
});
