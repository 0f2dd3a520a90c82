// A second Pulumi language, really run: a Pulumi YAML program (runtime: yaml, no Node.js code of
// its own) deploys, previews with the closure diff, refreshes and destroys a nixos:index:System on
// a test host, through the real engine, the YAML language host built from Go modules and the
// installed provider plugin.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, switchByHand, TestFleet, TestHost } from "../../testbed/testHosts";
import { createTestStack, REPO_ROOT, TestStack, useTestEngine } from "../engine/engine";
import { FIXTURE_FLAKE, recordedClosures } from "../engine/systemStack";

const PROGRAM = `
config:
  address: { type: string }
  hostPublicKey: { type: string }
  privateKey: { type: string, secret: true }
  configuration: { type: string }
resources:
  web:
    type: nixos:index:System
    properties:
      address: \${address}
      hostPublicKey: \${hostPublicKey}
      privateKey: \${privateKey}
      flake: ./nix
      configuration: \${configuration}
      healthChecks:
        commands:
          - name: app is healthy
            command: 'test "$(cat /run/standin/health)" = ok'
            timeoutSeconds: 2
outputs:
  closure: \${web.closure}
  generation: \${web.generation}
`;

let fleet: TestFleet;
let host: TestHost;
let systems: Record<string, SystemEvaluation>;
let testStack: TestStack;

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2"]);
    fleet = await startTestHosts({ count: 1 });
    host = fleet.hosts[0];
    testStack = await createTestStack("yaml-system", { runtime: "yaml", source: PROGRAM }, {
        address: { value: host.address },
        hostPublicKey: { value: host.hostPublicKey },
        privateKey: { value: fleet.deployerPrivateKey, secret: true },
    });
    fs.cpSync(path.join(REPO_ROOT, "nix/fixtures"), path.join(testStack.stack.workspace.workDir, "nix"), { recursive: true });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

const setConfiguration = (configuration: string) => testStack.stack.setConfig("configuration", { value: configuration });

test("up of a YAML program deploys version 1", async () => {
    await setConfiguration("v1");
    const result = await testStack.stack.up();
    assert.equal(result.outputs.closure.value, systems.v1.closure);
    assert.equal(result.outputs.generation.value, 2);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.match(result.stdout, /copying \d+ of \d+ paths/);
});

test("preview of version 2 shows the detailed diff and the package changes, and touches nothing", async () => {
    await setConfiguration("v2");
    const summary = await testStack.stack.preview();
    assert.match(summary.stdout, /~ +nixos:index:System +web +update +\[diff: ~closure,configuration,kernel,packages\]/);
    const preview = await testStack.stack.preview({ diff: true });
    assert.deepEqual(preview.changeSummary, { same: 1, update: 1 });
    assert.ok(preview.stdout.includes(systems.v2.closure), "new closure shown");
    assert.match(preview.stdout, /app\s*: "1\.0" => "2\.0"/);
    assert.equal(host.currentSystem(), systems.v1.closure);
});

test("up deploys version 2; a host switched back by hand shows on refresh", async () => {
    const result = await testStack.stack.up();
    assert.equal(result.outputs.closure.value, systems.v2.closure);
    assert.equal(host.currentSystem(), systems.v2.closure);
    switchByHand(fleet, host, systems.v1.closure);
    await testStack.stack.refresh();
    assert.equal((await recordedClosures(testStack.stack)).web, systems.v1.closure);
});

test("destroy removes the resource; the host keeps running its system", async () => {
    const result = await testStack.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    assert.deepEqual((await testStack.stack.exportStack()).deployment.resources ?? [], []);
    assert.equal(host.currentSystem(), systems.v1.closure);
});

test("a project that names the plugin's folder in Pulumi.yaml (plugins.providers) uses it without installing it", async () => {
    const keys = await createTestStack("yaml-plugin-path", { runtime: "yaml", source: `
resources:
  key:
    type: nixos:index:SshKeyPair
    properties:
      comment: web
outputs:
  publicKey: \${key.publicKey}
` }, {}, { pluginFromProject: true });
    try {
        const result = await keys.stack.up();
        assert.match(result.outputs.publicKey.value, /^ssh-ed25519 AAAA/);
        const installed = path.join(keys.dir, "home/plugins");
        assert.deepEqual(fs.existsSync(installed) ? fs.readdirSync(installed).filter((entry) => entry.includes("nixos")) : [], [], "the plugin was installed");
        await keys.stack.destroy();
    } finally {
        await keys.remove();
    }
});
