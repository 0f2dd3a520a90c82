// Adopting a host that another tool deployed (here as nixos-rebuild does: a copy, then the system
// profile and the new system's switch-to-configuration), through the real engine's `pulumi import`:
// the state records what the host runs and its host key, read through the user's own ssh (which
// must already know the host's key), and nothing is deployed; the program's first `up` with the
// same closure changes nothing, and the next change deploys as usual.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import { NixosSystem } from "../../components";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { nix, realiseDerivation } from "../../deploy/transport/nix";
import { startTestHosts, TestFleet, TestHost } from "../../testbed/testHosts";
import { createTestStack, TestStack, useTestEngine } from "./engine";
import { FIXTURE_FLAKE, HEALTHY_CHECK } from "./systemStack";

let fleet: TestFleet;
let host: TestHost;
let testStack: TestStack;
let systems: Record<string, SystemEvaluation>;
/** The user's own ssh setup: a config naming their key and known_hosts, found first on PATH as `ssh`. */
let userSsh: string;

before(async () => {
    useTestEngine();
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2"]);
    fleet = await startTestHosts({ count: 1, namePrefix: "adopt" });
    host = fleet.hosts[0];
    userSsh = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-user-ssh-"));
    fs.writeFileSync(path.join(userSsh, "config"), `Host *\n  IdentityFile ${fleet.deployerPrivateKeyPath}\n  UserKnownHostsFile ${path.join(userSsh, "known_hosts")}\n`);
    fs.writeFileSync(path.join(userSsh, "known_hosts"), "");
    // As ~/.ssh/config is to a user's ssh (OpenSSH finds ~ by the passwd entry, not $HOME).
    fs.writeFileSync(path.join(userSsh, "ssh"), `#!/bin/sh\nexec /usr/bin/ssh -F ${path.join(userSsh, "config")} "$@"\n`, { mode: 0o755 });
    testStack = await createTestStack("adopt", async () => {
        const config = new pulumi.Config();
        const configuration = config.get("configuration");
        if (!configuration) return {};
        const system = new NixosSystem("web", {
            address: host.address, hostPublicKey: host.hostPublicKey, privateKey: pulumi.secret(fleet.deployerPrivateKey),
            flake: FIXTURE_FLAKE, configuration, healthChecks: { commands: [HEALTHY_CHECK] },
        }, { protect: false });
        return { closure: system.closure };
    });
    (testStack.stack.workspace as LocalWorkspace).envVars.PATH = `${userSsh}:${process.env.PATH}`;
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
    if (userSsh) fs.rmSync(userSsh, { recursive: true, force: true });
});

/** The System's record in the stack's state. */
async function recorded(): Promise<{ id: string; inputs: Record<string, unknown>; outputs: Record<string, unknown> } | undefined> {
    const state = await testStack.stack.exportStack();
    return state.deployment.resources?.find((resource: { type: string }) => resource.type === "nixos:index:System");
}

const importWeb = () => testStack.stack.import({
    resources: [{ type: "nixos:index:System", name: "web", id: `root@${host.address}:22` }], protect: false, generateCode: false,
});

test("a host deployed by nixos-rebuild", async () => {
    const [v1] = await realiseDerivation(systems.v1.derivation);
    await nix(["copy", "--no-check-sigs", "--to", `local?root=${host.dir}`, v1]);
    host.shell(`nix-env -p /nix/var/nix/profiles/system --set ${v1} && ${v1}/bin/switch-to-configuration switch`);
    assert.equal(host.currentSystem(), systems.v1.closure);
});

test("import refuses a host the user's known_hosts does not vouch for (no trust on first use)", async () => {
    const error = await importWeb().then(() => undefined, (e: Error) => String(e));
    assert.ok(error, "the import succeeded");
    assert.match(error, /your known_hosts does not vouch for this host's key, so ssh refused it/);
    assert.equal(await recorded(), undefined);
});

test("import records what the host runs, its generation and its host key; nothing is deployed", async () => {
    fs.writeFileSync(path.join(userSsh, "known_hosts"), `${host.address} ${host.hostPublicKey}\n`);
    const generations = host.generations();
    const activations = host.readFile("/run/standin/activations");
    await importWeb();
    const web = await recorded();
    assert.ok(web, "no System in the state");
    assert.equal(web.id, `${host.address}:22`);
    assert.equal(web.outputs.closure, systems.v1.closure);
    assert.equal(web.outputs.generation, host.currentGeneration());
    assert.equal(web.inputs.hostPublicKey, host.hostPublicKey);
    assert.equal(web.inputs.storePath, systems.v1.closure);
    assert.deepEqual(host.generations(), generations);
    assert.equal(host.readFile("/run/standin/activations"), activations, "the host was switched");
});

test("the program's first up with the same closure changes nothing; the next change deploys", async () => {
    const generations = host.generations();
    await testStack.stack.setConfig("configuration", { value: "v1" });
    const preview = await testStack.stack.preview();
    assert.equal(preview.changeSummary.update, undefined, `preview: ${JSON.stringify(preview.changeSummary)}`);
    const up = await testStack.stack.up();
    assert.equal(up.summary.resourceChanges?.update, undefined, `up: ${JSON.stringify(up.summary.resourceChanges)}`);
    assert.deepEqual(host.generations(), generations);

    await testStack.stack.setConfig("configuration", { value: "v2" });
    await testStack.stack.up();
    assert.equal(host.currentSystem(), systems.v2.closure);
    const web = await recorded();
    assert.equal(web?.outputs.closure, systems.v2.closure);
    assert.equal(web?.outputs.adopted, undefined);
});
