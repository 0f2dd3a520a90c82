// The bootstrap path through the real engine: a machine that boots Debian-like with the host key
// the program made, is waited for (by checking) until a stand-in nixos-infect makes it NixOS, and
// is handed over to its NixosSystem; a machine that never becomes NixOS times out with a message
// that says where to look; destroy removes everything.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { NixosBootstrap, SshKeyPair } from "../../components";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { currentSystemOf, startTestHosts, TestFleet } from "../../testbed/testHosts";
import { createTestStack, TestStack, useTestEngine } from "./engine";
import { FIXTURE_FLAKE } from "./systemStack";
import { TestMachine } from "../../testbed/testMachine";

let keys: TestFleet;
let machines: string;
let systems: Record<string, SystemEvaluation>;
const stacks: TestStack[] = [];

before(async () => {
    useTestEngine();
    process.env.PNX_TEST_OWNER_PID = String(process.pid);
    systems = await evaluateConfigurations(FIXTURE_FLAKE, ["first-boot", "v1"]);
    // No hosts: only the deployer key the harness makes.
    keys = await startTestHosts({ count: 0 });
    machines = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-machines-"));
});

after(async () => {
    for (const stack of stacks) await stack.remove();
    keys?.stop();
    fs.rmSync(machines, { recursive: true, force: true });
});

async function bootstrapStack(project: string, firstSystemConfiguration: string, bootTimeoutSeconds: number): Promise<TestStack> {
    const deployerPublicKey = fs.readFileSync(`${keys.deployerPrivateKeyPath}.pub`, "utf8");
    const stack = await createTestStack(project, async () => {
        const hostKey = new SshKeyPair("web-host-key", { comment: "web" });
        const machine = new TestMachine("web-machine", {
            hostPrivateKey: hostKey.privateKey, hostPublicKey: hostKey.publicKey, authorizedKey: deployerPublicKey,
            firstSystemFlake: FIXTURE_FLAKE, firstSystemConfiguration, infectAfterSeconds: 3, baseDir: machines,
        });
        const nixos = new NixosBootstrap("web", {
            address: machine.address,
            privateKey: pulumi.secret(keys.deployerPrivateKey),
            hostPublicKey: hostKey.publicKey,
            bootTimeoutSeconds,
            bootPollSeconds: 1,
            consoleHint: pulumi.interpolate`the machine's log (${machine.namespace})`,
            system: { flake: FIXTURE_FLAKE, configuration: "v1" },
        });
        return { address: machine.address, hostPublicKey: hostKey.publicKey, initialSystem: nixos.initialSystem, closure: nixos.closure, namespace: machine.namespace };
    });
    stacks.push(stack);
    return stack;
}

const namespaces = () => fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns") : [];

test("a machine that boots Debian-like is waited for until it runs NixOS, then gets its flake system", async () => {
    const stack = await bootstrapStack("bootstrap", "first-boot", 120);
    const result = await stack.stack.up();
    const outputs = result.outputs;
    assert.match(result.stdout, /runs NixOS \(\/nix\/store\/\S+-first-boot\) after \d+ s/);
    assert.equal(outputs.initialSystem.value, systems["first-boot"].closure);
    assert.equal(outputs.closure.value, systems.v1.closure);
    const dir = path.join(machines, "web-machine");
    assert.equal(currentSystemOf(outputs.namespace.value), systems.v1.closure);
    assert.deepEqual(fs.readdirSync(path.join(dir, "nix/var/nix/profiles")).filter((f) => /^system-\d+-link$/.test(f)).sort(),
        ["system-1-link", "system-2-link"], "generation 1 is the first boot, 2 the flake's system");
    // The machine served the program's key from its first boot: the deploy pinned it.
    assert.equal(fs.readFileSync(path.join(dir, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim(), outputs.hostPublicKey.value);
    assert.ok(namespaces().includes(outputs.namespace.value));

    await stack.stack.destroy();
    assert.ok(!namespaces().includes(outputs.namespace.value), "destroy left the machine running");
    assert.equal(fs.existsSync(dir), false);
    const state = await stack.stack.exportStack();
    assert.deepEqual(state.deployment.resources ?? [], [], "destroy left resources in the state");
});

test("a machine that never becomes NixOS: the wait times out and says where to look", async () => {
    const stack = await bootstrapStack("bootstrap-timeout", "", 5);
    const error = await stack.stack.up().then(() => undefined, (e: Error) => e);
    assert.ok(error, "up succeeded");
    assert.match(String(error), /did not come up as NixOS within 5 s \(last seen: reachable, not NixOS yet\)\..*look at its console output: the machine's log \(pnx-\d+\)/);
    await stack.stack.destroy();
    assert.equal(fs.existsSync(path.join(machines, "web-machine")), false);
});
