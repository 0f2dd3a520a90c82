// Bad inputs fail before any change on the host, each with a message a user can act on.
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { firstBootSystem, startTestHosts, TestFleet } from "../../testbed/testHosts";
import { createTestStack, REPO_ROOT, TestStack } from "./engine";

const FLAKE = `path:${path.join(REPO_ROOT, "nix/fixtures")}`;

let fleet: TestFleet;
let testStack: TestStack;

/** What a case changes from a good deploy of the first host. */
interface Case {
    flake?: string;
    configuration?: string;
    address?: string;
    port?: number;
    /** Which test host's public key to pin (default: the target's own). */
    keyOf?: number;
}

before(async () => {
    fleet = await startTestHosts({ count: 2 });
    const [target, other] = fleet.hosts;
    // A program file, as users run programs: a failing program is reported by the engine.
    testStack = await createTestStack("bad-inputs", { source: `
const pulumi = require("@pulumi/pulumi");
const { NixosSystem } = require(LIBRARY);
const config = new pulumi.Config();
const inputs = config.requireObject("case");
const hosts = config.requireObject("hosts");
new NixosSystem("target", {
    address: inputs.address ?? hosts[0].address,
    port: inputs.port,
    hostPublicKey: hosts[inputs.keyOf ?? 0].hostPublicKey,
    privateKey: config.requireSecret("privateKey"),
    flake: inputs.flake ?? config.require("flake"),
    configuration: inputs.configuration ?? "v1",
    connectTimeoutSeconds: 3,
});
` }, {
        hosts: { value: JSON.stringify([target, other].map(({ address, hostPublicKey }) => ({ address, hostPublicKey }))) },
        flake: { value: FLAKE },
        privateKey: { value: fleet.deployerPrivateKey, secret: true },
    });
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
});

async function upFails(inputs: Case): Promise<string> {
    await testStack.stack.setConfig("case", { value: JSON.stringify(inputs) });
    const error = await testStack.stack.up().then(() => undefined, (e: Error) => e);
    assert.ok(error, "up should have failed");
    const target = fleet.hosts[0];
    assert.equal(target.currentSystem(), await firstBootSystem(), "the host was switched");
    assert.deepEqual(target.generations(), [1], "the host got a generation");
    assert.equal(target.readFile("/run/standin/activations"), undefined, "something was activated");
    return String(error);
}

test("a configuration the flake does not have: says which ones it has", async () => {
    const message = await upFails({ configuration: "v9" });
    assert.match(message, /has no nixosConfigurations\.v9; it has: .*v1, v2, v3/);
});

test("a flake reference that does not exist: Nix's own error", async () => {
    const message = await upFails({ flake: "/nonexistent/flake" });
    assert.match(message, /nix eval failed .*\n.*error: .*\/nonexistent\/flake/);
});

test("a flake reference with shell characters is refused before Nix sees it", async () => {
    const message = await upFails({ flake: "./nix;touch /tmp/pwned" });
    assert.match(message, /flake: invalid input\n\s+- value: must be a flake reference/);
});

test("an unreachable host: fails at the probe and says why", async () => {
    const message = await upFails({ address: "127.0.0.1", port: 9 });
    assert.match(message, /failed at probe: 127\.0\.0\.1:9: the host cannot be reached from the deployer/);
    assert.match(message, /Connection refused/);
    assert.match(message, /the host was not changed/);
});

test("a host that presents another key is refused and nothing is sent to it", async () => {
    const message = await upFails({ keyOf: 1 });
    assert.match(message, /host key that is not the pinned one; nothing was sent to it/);
});

test("the private key never appears in any message", () => {
    const keyBody = fleet.deployerPrivateKey.split("\n")[1];
    assert.ok(!testStack.stateText().includes(keyBody));
});
