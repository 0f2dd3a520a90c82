// State that travels: a stack made from one checkout of a project is previewed (no changes),
// refreshed, updated and destroyed from a copy of the project at another path, after the first
// one was removed, as a teammate or a CI runner would. The project carries its own copy of the
// library (as npm installs it) and a local flake given relative to the project.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, TestFleet, TestHost } from "../../testbed/testHosts";
import { createTestStack, REPO_ROOT, TestStack, useTestEngine } from "./engine";
import { FIXTURE_FLAKE, recordedClosures } from "./systemStack";

let fleet: TestFleet;
let host: TestHost;
let systems: Record<string, SystemEvaluation>;
let first: TestStack;
let moved: Stack;
let checkouts: string;

const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { NixosSystem } = require("pulumi-nixos");
const config = new pulumi.Config();
const target = config.requireObject("host");
const system = new NixosSystem("web", {
    address: target.address,
    hostPublicKey: target.hostPublicKey,
    privateKey: config.requireSecret("privateKey"),
    flake: "./nix",
    configuration: config.require("configuration"),
});
exports.closure = system.closure;
`;

/** A copy of the library as npm installs it into a project: package.json and the compiled code. */
function installLibrary(projectDir: string): void {
    const target = path.join(projectDir, "node_modules/pulumi-nixos");
    fs.mkdirSync(target, { recursive: true });
    fs.copyFileSync(path.join(REPO_ROOT, "package.json"), path.join(target, "package.json"));
    const packageFiles: string[] = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")).files;
    for (const folder of packageFiles.filter((file) => file.startsWith("dist/"))) fs.cpSync(path.join(REPO_ROOT, folder), path.join(target, folder), { recursive: true });
}

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2"]);
    fleet = await startTestHosts({ count: 1 });
    host = fleet.hosts[0];
    checkouts = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-checkouts-"));
    first = await createTestStack("travels", { source: PROGRAM }, {
        host: { value: JSON.stringify({ address: host.address, hostPublicKey: host.hostPublicKey }) },
        privateKey: { value: fleet.deployerPrivateKey, secret: true },
    });
    const projectDir = first.stack.workspace.workDir;
    fs.cpSync(path.join(REPO_ROOT, "nix/fixtures"), path.join(projectDir, "nix"), { recursive: true });
    installLibrary(projectDir);
});

after(async () => {
    await first?.remove();
    fleet?.stop();
    if (checkouts) fs.rmSync(checkouts, { recursive: true, force: true });
});

test("up from the first checkout; the state names no path of it and holds no code", async () => {
    await first.stack.setConfig("configuration", { value: "v1" });
    const result = await first.stack.up();
    assert.equal(result.outputs.closure.value, systems.v1.closure);
    assert.equal(host.currentSystem(), systems.v1.closure);
    // Pulumi's own record of where the program registered each resource (sourcePosition,
    // stackTrace) names the SDK's files relative to the project; here the SDK is outside it.
    const state = JSON.stringify((await first.stack.exportStack()).deployment.resources,
        (key, value) => (key === "sourcePosition" || key === "stackTrace" ? undefined : value));
    assert.ok(state.includes(systems.v1.closure), "the state records the system");
    for (const folder of [first.stack.workspace.workDir, REPO_ROOT]) {
        const at = state.indexOf(folder);
        assert.equal(at, -1, `the state names ${folder}: …${state.slice(Math.max(0, at - 200), at + 100)}…`);
    }
    assert.ok(!state.includes("__provider"), "the state holds a serialized provider");
    assert.equal(JSON.parse(state).find((r: { type: string }) => r.type === "nixos:index:System").inputs.flake, "./nix", "the flake stays relative");
});

test("from a copy of the project at another path, the first removed: preview shows no change", async () => {
    const firstDir = first.stack.workspace.workDir;
    const secondDir = path.join(checkouts, "second-checkout");
    fs.cpSync(firstDir, secondDir, { recursive: true });
    fs.rmSync(firstDir, { recursive: true, force: true });
    const { pulumiHome, envVars, pulumiCommand } = first.stack.workspace as LocalWorkspace;
    moved = await LocalWorkspace.selectStack({ stackName: "test", workDir: secondDir }, { pulumiHome, envVars, pulumiCommand });
    const preview = await moved.preview({ diff: true });
    assert.deepEqual(preview.changeSummary, { same: 2 });
});

test("refresh from the copy reads the host", async () => {
    const result = await moved.refresh();
    assert.equal(result.summary.result, "succeeded");
    assert.equal((await recordedClosures(moved)).web, systems.v1.closure);
});

test("up from the copy deploys version 2", async () => {
    await moved.setConfig("configuration", { value: "v2" });
    const result = await moved.up();
    assert.equal(result.outputs.closure.value, systems.v2.closure);
    assert.equal(host.currentSystem(), systems.v2.closure);
});

test("destroy from the copy removes every resource; the host keeps its system", async () => {
    const result = await moved.destroy();
    assert.equal(result.summary.result, "succeeded");
    assert.deepEqual((await moved.exportStack()).deployment.resources ?? [], []);
    assert.equal(host.currentSystem(), systems.v2.closure);
});
