// Where a system is built, through the real engine on NixOS-shaped test hosts: on the target (a
// deployer whose Nix cannot build), on a remote builder (another test host, named by the
// deployer's `builders` setting), and what a failed build leaves behind in each place.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, afterEach, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, TestFleet, TestHost } from "../../testbed/testHosts";
import { OFFLINE_NIX_CONFIG, useTestEngine } from "./engine";
import { createSystemStack, freshFixtureFlake, SystemStack } from "./systemStack";

let fleet: TestFleet;
let target: TestHost;
let builder: TestHost;
let testStack: SystemStack;
let fresh: ReturnType<typeof freshFixtureFlake>;
let systems: Record<string, SystemEvaluation>;
let firstBoot: string;

/** The deployer's Nix settings for the engine and its provider (they inherit this process's environment). */
function deployerNix(...settings: string[]): void {
    process.env.PULUMI_NIXOS_NIX_CONFIG = [OFFLINE_NIX_CONFIG, ...settings].join("\n");
}
const CANNOT_BUILD = "max-jobs = 0";
const remoteBuilder = () => `builders = ssh://root@${builder.address} x86_64-linux ${fleet.deployerPrivateKeyPath} 1 1 - - ` +
    Buffer.from(builder.hostPublicKey).toString("base64");

before(async () => {
    useTestEngine();
    fresh = freshFixtureFlake();
    systems = await evaluateConfigurations(fresh.flake, ["fresh", "fresh-2", "build-fails"]);
    fleet = await startTestHosts({ count: 2, namePrefix: "build" });
    [target, builder] = fleet.hosts;
    firstBoot = target.currentSystem()!;
    testStack = await createSystemStack("build-places", fleet, target, (config) => ({
        flake: fresh.flake,
        build: config.require("build") as "deployer" | "target",
    }));
});

afterEach(() => deployerNix());

after(async () => {
    await testStack?.remove();
    fleet?.stop();
    fresh?.remove();
});

/** Deploys `configuration`, built where `build` says; returns the engine's output. */
async function deploy(configuration: string, build: "deployer" | "target"): Promise<string> {
    let output = "";
    await testStack.deploy(configuration, { config: { build: { value: build } }, onOutput: (out) => (output += out) });
    return output;
}

const failedDeploy = (configuration: string, build: "deployer" | "target") =>
    testStack.failedDeploy(configuration, { config: { build: { value: build } } });

test("a deployer whose Nix cannot build fails with build: deployer, and says to build on the target", async () => {
    deployerNix(CANNOT_BUILD);
    const message = await failedDeploy("fresh", "deployer");
    assert.match(message, /failed at build: building \S+ on the deployer failed/);
    assert.match(message, /The deployer's Nix cannot build .*set `build: "target"`/);
    assert.equal(target.currentSystem(), firstBoot);
    assert.deepEqual(target.generations(), [1]);
    assert.equal(fs.existsSync(systems.fresh.closure), false, "nothing was built on the deployer");
});

test("the same deployer deploys with build: target; the host builds, the deployer does not", async () => {
    deployerNix(CANNOT_BUILD);
    const output = await deploy("fresh", "target");
    assert.equal(target.currentSystem(), systems.fresh.closure);
    assert.deepEqual(target.generations(), [1, 2]);
    assert.equal(await testStack.recordedClosure(), systems.fresh.closure);
    assert.match(output, new RegExp(`build on ${target.address}:22: building '\\S+-nixos-system-fresh-\\S+\\.drv'`));
    assert.equal(fs.existsSync(systems.fresh.closure), false, "the system is not in the deployer's store");
});

test("a build that fails on the target leaves the host's running system and the stack as they were", async () => {
    deployerNix(CANNOT_BUILD);
    const message = await failedDeploy("build-fails", "target");
    assert.match(message, new RegExp(`failed at build: ${target.address}:22: building \\S+build-fails\\S+\\.drv on the host failed`));
    assert.match(message, /this package does not build/);
    assert.match(message, /The host's running system was not changed/);
    assert.equal(target.currentSystem(), systems.fresh.closure);
    assert.deepEqual(target.generations(), [1, 2]);
    assert.equal(await testStack.recordedClosure(), systems.fresh.closure);
});

test("with a remote builder, the deployer's Nix builds nothing itself: the builder does", async () => {
    deployerNix(CANNOT_BUILD, remoteBuilder());
    const output = await deploy("fresh-2", "deployer");
    assert.equal(builder.hasStorePath(systems["fresh-2"].closure), true, "the builder built the system");
    assert.match(output, new RegExp(`build: building '\\S+-nixos-system-fresh-2-\\S+\\.drv' on 'ssh://root@${builder.address.replace(/\./g, "\\.")}'`));
    assert.equal(target.currentSystem(), systems["fresh-2"].closure);
    assert.equal(await testStack.recordedClosure(), systems["fresh-2"].closure);
    assert.equal(builder.currentSystem(), firstBoot, "the builder only built");
});

test("a build that fails on the remote builder names it, and the host stays as it was", async () => {
    deployerNix(CANNOT_BUILD, remoteBuilder());
    const message = await failedDeploy("build-fails", "deployer");
    assert.match(message, new RegExp(`failed at build: building \\S+ on the remote builder ssh://root@${builder.address.replace(/\./g, "\\.")} failed`));
    assert.equal(target.currentSystem(), systems["fresh-2"].closure);
    assert.deepEqual(target.generations(), [1, 2, 3]);
});
