// A stack that deploys one NixosSystem ("web") of the fixture flake to a test host, with the
// configuration chosen by stack config: the shape most engine tests share.
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { ConfigMap, PulumiFn, Stack, UpResult } from "@pulumi/pulumi/automation";
import { NixosSystem, NixosSystemArgs } from "../../components";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startTestHosts, TestFleet, TestFleetOptions, TestHost } from "../../testbed/testHosts";
import { createTestStack, REPO_ROOT, TestStack, useTestEngine } from "./engine";

export const FIXTURE_FLAKE = `path:${path.join(REPO_ROOT, "nix/fixtures")}`;

/**
 * The same flake addressed through git, so that it can import nix/modules (outside its folder,
 * which a `path:` flake cannot reach): only then does it have the `with-key` system, which uses the
 * NixOS module's unit. It sees what git tracks (a new file needs `git add -N`).
 */
export const KEYS_FIXTURE_FLAKE = `git+file://${REPO_ROOT}?dir=nix/fixtures`;

/**
 * A copy of the fixture flake whose `fresh`, `fresh-2`, `fresh-3`, `fresh-large` and `build-fails`
 * systems no store has built yet: a deploy of one must really build it. remove() deletes the copy.
 */
export function freshFixtureFlake(): { flake: string; remove(): void } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-fresh-"));
    fs.copyFileSync(path.join(REPO_ROOT, "nix/fixtures/flake.nix"), path.join(dir, "flake.nix"));
    fs.writeFileSync(path.join(dir, "settings.json"), JSON.stringify({ fresh: randomBytes(6).toString("hex") }));
    return { flake: `path:${dir}`, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Healthy when the stand-in system's service says so. */
export const HEALTHY_CHECK = { name: "app is healthy", command: 'test "$(cat /run/standin/health)" = ok', timeoutSeconds: 2 };

/** The closure each NixosSystem of a stack's state records, by resource name. */
export async function recordedClosures(stack: Stack): Promise<Record<string, string>> {
    const state = await stack.exportStack();
    return Object.fromEntries((state.deployment.resources ?? [])
        .filter((r: { type: string }) => r.type === "nixos:index:System")
        .map((r: { urn: string; outputs: { closure: string } }) => [r.urn.split("::").pop(), r.outputs.closure]));
}

export interface DeployOptions {
    /** More stack config for the program. */
    config?: ConfigMap;
    onOutput?: (out: string) => void;
}

export interface SystemStack extends TestStack {
    /** Sets the configuration (and any other config) and runs up. */
    deploy(configuration: string, options?: DeployOptions): Promise<UpResult>;
    /** Like deploy, but up must fail: returns its error text. */
    failedDeploy(configuration: string, options?: DeployOptions): Promise<string>;
    /** The closure the stack's state records for "web". */
    recordedClosure(): Promise<string>;
}

export async function createSystemStack(
    projectName: string,
    fleet: TestFleet,
    host: TestHost,
    moreArgs: (config: pulumi.Config) => Partial<NixosSystemArgs> = () => ({}),
): Promise<SystemStack> {
    const testStack = await createTestStack(projectName, async () => {
        const config = new pulumi.Config();
        const system = new NixosSystem("web", {
            address: host.address,
            hostPublicKey: host.hostPublicKey,
            privateKey: pulumi.secret(fleet.deployerPrivateKey),
            flake: FIXTURE_FLAKE,
            configuration: config.require("configuration"),
            healthChecks: { commands: [HEALTHY_CHECK] },
            ...moreArgs(config),
        });
        return { closure: system.closure, generation: system.generation, packages: system.packages };
    });
    const deploy = async (configuration: string, options: DeployOptions = {}) => {
        await testStack.stack.setAllConfig({ configuration: { value: configuration }, ...options.config });
        return testStack.stack.up({ onOutput: options.onOutput });
    };
    return {
        ...testStack,
        deploy,
        async failedDeploy(configuration, options) {
            const error = await deploy(configuration, options).then(() => undefined, (e: Error) => e);
            assert.ok(error, `up of ${configuration} succeeded; it should have failed`);
            return String(error);
        },
        async recordedClosure() {
            return (await recordedClosures(testStack.stack)).web;
        },
    };
}

export interface SingleHostStack {
    fleet: TestFleet;
    host: TestHost;
    testStack: SystemStack;
    /** The fixture's systems the test named, evaluated (not built). */
    systems: Record<string, SystemEvaluation>;
    /** Removes the stack and stops the host. */
    remove(): Promise<void>;
}

/** One fresh test host, the fixture's `configurations` evaluated, and a SystemStack deploying to it. */
export async function createSingleHostStack(
    projectName: string,
    configurations: string[],
    moreArgs?: (config: pulumi.Config) => Partial<NixosSystemArgs>,
    flake = FIXTURE_FLAKE,
    hostOptions: Pick<TestFleetOptions, "ipv6Only"> = {},
): Promise<SingleHostStack> {
    useTestEngine();
    const systems = await evaluateConfigurations(flake, configurations);
    const fleet = await startTestHosts({ count: 1, namePrefix: projectName, ...hostOptions });
    const host = fleet.hosts[0];
    const testStack = await createSystemStack(projectName, fleet, host, moreArgs).catch((error) => {
        fleet.stop();
        throw error;
    });
    return {
        fleet, host, testStack, systems,
        async remove() {
            await testStack.remove();
            fleet.stop();
        },
    };
}

export interface FleetStack extends TestStack {
    /** The test hosts the program deploys to. */
    hosts: TestHost[];
    /** The fixture's v1, v2 and switch-fails systems, evaluated (not built). */
    systems: Record<string, SystemEvaluation>;
}

/**
 * `count` fresh test hosts and a stack of the program `programFor` makes for them: the shape of
 * the tests of many hosts. remove() also stops the hosts.
 */
export async function createFleetStack(projectName: string, count: number, programFor: (hosts: TestFleet) => PulumiFn): Promise<FleetStack> {
    useTestEngine();
    const systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "switch-fails"]);
    const hosts = await startTestHosts({ count });
    const testStack = await createTestStack(projectName, programFor(hosts)).catch((error) => {
        hosts.stop();
        throw error;
    });
    return {
        ...testStack,
        hosts: hosts.hosts,
        systems,
        async remove() {
            await testStack.remove();
            hosts.stop();
        },
    };
}
