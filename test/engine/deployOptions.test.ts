// The deploy options through the real engine against a real test host: the `boot` and `test`
// actions, a store path built elsewhere instead of a flake, and an HTTP health check fetched from
// the deployer.
import assert from "node:assert/strict";
import * as http from "node:http";
import { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { realiseDerivation } from "../../deploy/transport/nix";
import { startTestHosts, TestFleet, TestHost } from "../../testbed/testHosts";
import { useTestEngine } from "./engine";
import { createSystemStack, FIXTURE_FLAKE, SystemStack } from "./systemStack";

let fleet: TestFleet;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;
let server: http.Server;
/** What the deployer-side health endpoint answers. */
let siteStatus = 200;

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "v3"]);
    server = http.createServer((_request, response) => response.writeHead(siteStatus).end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const siteUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    fleet = await startTestHosts({ count: 1 });
    host = fleet.hosts[0];
    testStack = await createSystemStack("deploy-options", fleet, host, (config) => {
        const storePath = config.get("storePath");
        return {
            action: (config.get("action") ?? "switch") as "switch" | "boot" | "test",
            healthChecks: { http: [{ name: "site", url: siteUrl, timeoutSeconds: 2 }] },
            ...(storePath ? { storePath, flake: undefined, configuration: undefined } : {}),
        };
    });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
    server?.close();
});

const deploy = (configuration: string, config: Record<string, string> = {}) =>
    testStack.deploy(configuration, { config: Object.fromEntries(Object.entries(config).map(([key, value]) => [key, { value }])) });

test("an HTTP health check that fails from the deployer rolls the host back", async () => {
    await deploy("v1");
    siteStatus = 503;
    const message = await testStack.failedDeploy("v2").finally(() => (siteStatus = 200));
    assert.match(message, /failed at verify: health check "site" failed: http:\/\/127\.0\.0\.1:\d+\/ answered 503, expected 200/);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.currentGeneration(), 2);
});

test("action boot: the new generation is what boots next; the running system stays", async () => {
    const result = await deploy("v2", { action: "boot" });
    assert.equal(result.outputs.closure.value, systems.v2.closure);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.bootSystem(), systems.v2.closure);
    // Nix reuses the newest generation when it holds the same system: generation 3 is the
    // rolled-back deploy of version 2, now what boots next.
    assert.equal(host.currentGeneration(), 3);
    await testStack.stack.refresh();
    assert.equal(await testStack.recordedClosure(), systems.v2.closure, "refresh of a boot deploy reads what boots next");
});

test("action test: the new system runs now, and no generation is made", async () => {
    const generations = host.generations();
    await deploy("v3", { action: "test" });
    assert.equal(host.currentSystem(), systems.v3.closure);
    assert.deepEqual(host.generations(), generations);
});

test("a store path built elsewhere is deployed as it is, without a flake", async () => {
    const [built] = await realiseDerivation(systems.v1.derivation);
    const result = await deploy("v1", { storePath: built, action: "switch" });
    assert.equal(result.outputs.closure.value, systems.v1.closure);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.deepEqual(result.outputs.packages.value, {}, "a bare store path has no package set to show");
});
