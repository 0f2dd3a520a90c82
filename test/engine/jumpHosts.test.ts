// A host in a "private subnet" (the deployer cannot reach it) deployed through jump hosts, through
// the real engine: WaitForNixos, the deploy, its fresh confirmation, a rollback and a refresh all go
// through them, `nix copy` too; two hops work when only the second may reach the host; a jump host answering with
// another key is refused before anything is sent through it; a fleet deploys through them too.
import assert from "node:assert/strict";
import * as net from "node:net";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { JumpHostArgs, NixosFleet, NixosSystem, WaitForNixos } from "../../components";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, TestFleet, TestHost } from "../../testbed/testHosts";
import { createTestStack, TestStack, useTestEngine } from "./engine";
import { FIXTURE_FLAKE, HEALTHY_CHECK, recordedClosures } from "./systemStack";

let fleet: TestFleet;
let first: TestHost;
let second: TestHost;
let target: TestHost;
let fourth: TestHost;
let testStack: TestStack;
let systems: Record<string, SystemEvaluation>;

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "v3", "switch-fails"]);
    fleet = await startTestHosts({ count: 4, namePrefix: "jump" });
    [first, second, target, fourth] = fleet.hosts;
    target.hideFromDeployer();
    fourth.hideFromDeployer();
    testStack = await createTestStack("jump-hosts", async () => {
        const config = new pulumi.Config();
        const jumpHosts = config.requireObject<JumpHostArgs[]>("jumpHosts");
        const connection = { address: target.address, hostPublicKey: target.hostPublicKey, privateKey: pulumi.secret(fleet.deployerPrivateKey), jumpHosts };
        const ready = new WaitForNixos("web-ready", { ...connection, timeoutSeconds: 30 });
        const system = new NixosSystem("web", {
            ...connection,
            flake: FIXTURE_FLAKE,
            configuration: config.require("configuration"),
            healthChecks: { commands: [HEALTHY_CHECK] },
            // The host substitutes: the paths go through `nix copy` (Nix's own ssh), not one export.
            substituteOnDestination: config.getBoolean("substituteOnDestination") ?? false,
        }, { dependsOn: ready });
        return { closure: system.closure, initialSystem: ready.initialSystem };
    });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

/** A jump host as the user `guest`, which has no rights beyond a login: forwarding needs none. */
const through = (host: TestHost, hostPublicKey = host.hostPublicKey) => ({ address: host.address, user: "guest", hostPublicKey });

async function deploy(configuration: string, jumpHosts: JumpHostArgs[]) {
    await testStack.stack.setAllConfig({ configuration: { value: configuration }, jumpHosts: { value: JSON.stringify(jumpHosts) } });
    return testStack.stack.up();
}

async function failedDeploy(configuration: string, jumpHosts: JumpHostArgs[]): Promise<string> {
    const error = await deploy(configuration, jumpHosts).then(() => undefined, (e: Error) => e);
    assert.ok(error, `up of ${configuration} succeeded; it should have failed`);
    return String(error);
}

const recordedClosure = async () => (await recordedClosures(testStack.stack)).web;

/** Whether a TCP connection to the host's sshd opens from this machine within two seconds. */
function reachableFromDeployer(host: TestHost): Promise<boolean> {
    return new Promise((resolve) => {
        const socket = net.connect({ host: host.address, port: host.port, timeout: 2000 });
        const end = (reached: boolean) => {
            socket.destroy();
            resolve(reached);
        };
        socket.once("connect", () => end(true)).once("timeout", () => end(false)).once("error", () => end(false));
    });
}

test("the deployer cannot reach the host; the jump hosts can", async () => {
    assert.equal(await reachableFromDeployer(target), false);
    assert.equal(await reachableFromDeployer(first), true);
});

test("up waits for NixOS and deploys through a jump host", async () => {
    const result = await deploy("v1", [through(first)]);
    assert.equal(target.currentSystem(), systems.v1.closure);
    assert.equal(await recordedClosure(), systems.v1.closure);
    assert.match(result.outputs.initialSystem.value, /^\/nix\/store\/\S+-nixos-system-first-boot/);
});

test("a failing switch is rolled back through the jump host (its fresh confirmation connection too)", async () => {
    const message = await failedDeploy("switch-fails", [through(first)]);
    assert.match(message, new RegExp(`back on generation \\d+ \\(${systems.v1.closure}\\), as read from the host`));
    assert.equal(target.currentSystem(), systems.v1.closure);
    assert.equal(await recordedClosure(), systems.v1.closure);
});

test("two hops, when only the second may reach the host, `nix copy` going through them too", async () => {
    target.shell(`ip route add prohibit ${first.address}/32`);
    await testStack.stack.setConfig("substituteOnDestination", { value: "true" });
    await deploy("v2", [through(first), through(second)]);
    await testStack.stack.removeConfig("substituteOnDestination");
    assert.equal(target.currentSystem(), systems.v2.closure);
    const direct = await failedDeploy("v3", [through(first)]);
    assert.match(direct, /failed at probe: .*the host cannot be reached|failed at probe: .*connection to the host was lost/);
    assert.equal(target.currentSystem(), systems.v2.closure);
});

test("a jump host that answers with another key is refused before anything is sent through it", async () => {
    const message = await failedDeploy("v3", [through(first, second.hostPublicKey), through(second)]);
    assert.ok(message.includes(`the jump host ${first.address}:22 answered with a host key that is not the pinned one; nothing was sent to it`), message);
    assert.match(message, /update jumpHosts\[0\]\.hostPublicKey/);
    assert.equal(target.currentSystem(), systems.v2.closure);
    assert.equal(await recordedClosure(), systems.v2.closure);
});

test("refresh reads the host through the jump hosts: a switch by hand is drift", async () => {
    await testStack.stack.setAllConfig({ configuration: { value: "v2" }, jumpHosts: { value: JSON.stringify([through(first), through(second)]) } });
    target.shell(`${systems.v1.closure}/bin/switch-to-configuration test`);
    await testStack.stack.refresh();
    assert.equal(await recordedClosure(), systems.v1.closure);
    await testStack.stack.up();
    assert.equal(target.currentSystem(), systems.v2.closure);
});

test("a fleet deployed only through the jump hosts", async () => {
    const jumpHosts = [through(first), through(second)];
    const fleetStack = await createTestStack("jump-fleet", async () => {
        const edge = new NixosFleet("edge", {
            flake: FIXTURE_FLAKE,
            sshPrivateKey: pulumi.secret(fleet.deployerPrivateKey),
            deploy: { jumpHosts, healthChecks: { commands: [HEALTHY_CHECK] } },
            hosts: Object.fromEntries([target, fourth].map((host) => [host.name, { address: host.address, hostPublicKey: host.hostPublicKey, configuration: "v3" }])),
        });
        return { hosts: edge.hosts };
    });
    try {
        assert.equal(await reachableFromDeployer(fourth), false);
        await fleetStack.stack.up();
        assert.equal(target.currentSystem(), systems.v3.closure);
        assert.equal(fourth.currentSystem(), systems.v3.closure);
    } finally {
        await fleetStack.remove();
    }
});
