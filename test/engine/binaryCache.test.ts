// Signatures and binary caches through the real engine, on a NixOS-shaped test host that requires
// signatures (Nix's default) and trusts one deploy key: paths the deployer signs with that key are
// accepted; unsigned or wrongly signed ones are refused before activation. A real signed binary
// cache served over HTTP from a test host of its own: the host fetches the new paths from it, and
// the deployer sends little more than the commands.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { closurePaths, nix, realiseDerivation } from "../../deploy/transport/nix";
import { BinaryCacheHost, startBinaryCacheHost } from "../../testbed/binaryCache";
import { startTestHosts, TestFleet, TestHost } from "../../testbed/testHosts";
import { useTestEngine } from "./engine";
import { createSystemStack, freshFixtureFlake, SystemStack } from "./systemStack";

let fleet: TestFleet;
let host: TestHost;
let cache: BinaryCacheHost;
let cacheFolder: string;
let testStack: SystemStack;
let fresh: ReturnType<typeof freshFixtureFlake>;
let systems: Record<string, SystemEvaluation>;
const keys: Record<"deploy" | "other", { secret: string; public: string }> = {} as never;

async function makeKey(name: string): Promise<{ secret: string; public: string }> {
    const secret = await nix(["key", "generate-secret", "--key-name", name]);
    return { secret, public: (await nix(["key", "convert-secret-to-public"], { input: secret })).trim() };
}

before(async () => {
    useTestEngine();
    keys.deploy = await makeKey("deploy-1");
    keys.other = await makeKey("other-1");
    fresh = freshFixtureFlake();
    systems = await evaluateConfigurations(fresh.flake, ["fresh", "fresh-2", "fresh-3", "fresh-large"]);
    cacheFolder = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-hosts-"));
    cache = await startBinaryCacheHost(cacheFolder);
    fleet = await startTestHosts({ count: 1, namePrefix: "signed", nixConfig: `require-sigs = true\ntrusted-public-keys = ${keys.deploy.public}` });
    host = fleet.hosts[0];
    testStack = await createSystemStack("signatures", fleet, host, (config) => ({
        flake: fresh.flake,
        signingKey: config.get("signingKey") || undefined,
        checkSignatures: config.get("checkSignatures") ? config.getBoolean("checkSignatures") : undefined,
        binaryCaches: config.getObject("binaryCaches"),
        build: (config.get("build") || "deployer") as "deployer" | "target",
    }));
});

after(async () => {
    await testStack?.remove();
    fleet?.stop();
    cache?.stop();
    fs.rmSync(cacheFolder, { recursive: true, force: true });
    fresh?.remove();
});

interface Settings { signingKey?: string; checkSignatures?: boolean; binaryCaches?: { url: string; publicKey: string }[]; build?: "target" }

function stackConfig(settings: Settings) {
    return {
        signingKey: { value: settings.signingKey ?? "" },
        // Empty: not given, so the default (check when signing) holds.
        checkSignatures: { value: settings.checkSignatures === undefined ? "" : String(settings.checkSignatures) },
        binaryCaches: { value: JSON.stringify(settings.binaryCaches ?? []) },
        build: { value: settings.build ?? "" },
    };
}

async function deploy(configuration: string, settings: Settings): Promise<string> {
    let output = "";
    await testStack.deploy(configuration, { config: stackConfig(settings), onOutput: (out) => (output += out) });
    return output;
}

/** What the host runs and has, to compare before and after a refused deploy. */
function hostState() {
    return { current: host.currentSystem(), generations: host.generations(), recorded: testStack.recordedClosure() };
}

async function assertUnchanged(before: ReturnType<typeof hostState>, refused: SystemEvaluation): Promise<void> {
    assert.equal(host.currentSystem(), before.current);
    assert.deepEqual(host.generations(), before.generations);
    assert.equal(await testStack.recordedClosure(), await before.recorded);
    assert.equal(host.hasStorePath(refused.closure), false, "the refused system is not in the host's store");
}

test("a host that requires signatures accepts the paths the deployer signed with a key it trusts", async () => {
    await deploy("fresh", { signingKey: keys.deploy.secret });
    assert.equal(host.currentSystem(), systems.fresh.closure);
    assert.deepEqual(host.generations(), [1, 2]);
    const sigs = await nix(["path-info", "--sigs", systems.fresh.closure]);
    assert.match(sigs, /deploy-1:/, "the deployer's store holds the signature");
    assert.ok(!testStack.stateText().includes(keys.deploy.secret.split(":")[1]), "the signing key is a secret in the state");
});

test("unsigned paths are refused before activation when the host checks signatures; the host is unchanged", async () => {
    const before = hostState();
    const message = await testStack.failedDeploy("fresh-2", { config: stackConfig({ checkSignatures: true }) });
    assert.match(message, /failed at copy: \S+ refused a path that no key it trusts has signed/);
    // Nix 2.8 says "lacks a valid signature", 2.26 "lacks a signature by a trusted key".
    assert.match(message, /lacks a (valid signature|signature by a trusted key)/);
    await assertUnchanged(before, systems["fresh-2"]);
});

test("paths signed with a key the host does not trust are refused; the host is unchanged", async () => {
    const before = hostState();
    const message = await testStack.failedDeploy("fresh-3", { config: stackConfig({ signingKey: keys.other.secret }) });
    assert.match(message, /failed at copy: \S+ refused a path that no key it trusts has signed/);
    await assertUnchanged(before, systems["fresh-3"]);
});

test("with a binary cache that holds the new paths, the host fetches them and the deployer sends almost nothing", async () => {
    const large = systems["fresh-large"];
    await realiseDerivation(large.derivation);
    await cache.push(large.closure);
    const missing = (await closurePaths(large.closure)).filter((info) => !host.hasStorePath(info.path));
    const missingBytes = missing.reduce((sum, info) => sum + info.narSize, 0);
    assert.ok(missingBytes > 3 * 1024 * 1024);
    const [sentBefore, servedBefore] = [host.bytesSent(), cache.bytesServed()];
    const output = await deploy("fresh-large", { binaryCaches: [{ url: cache.url, publicKey: cache.publicKey }] });
    const served = cache.bytesServed() - servedBefore;
    // What reaches the host over its link is the deployer's and, forwarded, the cache's.
    const sentByDeployer = host.bytesSent() - sentBefore - served;
    assert.equal(host.currentSystem(), large.closure);
    assert.match(output, new RegExp(`fetched ${missing.length} paths \\(\\S+ MiB\\) from the binary caches`));
    assert.match(output, /copying 0 of \d+ paths \(0 B\)/);
    assert.ok(served > missingBytes, `the cache served ${served} bytes, the host lacked ${missingBytes}`);
    assert.ok(sentByDeployer < 0.02 * missingBytes, `the deployer sent ${sentByDeployer} bytes for ${missingBytes} missing`);
});

test("a cache whose paths the given key did not sign fails at fetch, naming the cache; the host is unchanged", async () => {
    await realiseDerivation(systems["fresh-2"].derivation);
    await cache.push(systems["fresh-2"].closure);
    const before = hostState();
    const message = await testStack.failedDeploy("fresh-2", { config: stackConfig({ binaryCaches: [{ url: cache.url, publicKey: keys.other.public }] }) });
    assert.match(message, new RegExp(`failed at fetch: \\S+: fetching \\d+ paths from the binary caches ${cache.url.replace(/\./g, "\\.")} failed`));
    assert.match(message, /its system was not changed/);
    await assertUnchanged(before, systems["fresh-2"]);
});

test("built on the target, the host fetches from the cache what it holds instead of building it", async () => {
    const system = systems["fresh-3"];
    await realiseDerivation(system.derivation);
    await cache.push(system.closure);
    const servedBefore = cache.bytesServed();
    const output = await deploy("fresh-3", { build: "target", binaryCaches: [{ url: cache.url, publicKey: cache.publicKey }] });
    assert.equal(host.currentSystem(), system.closure);
    assert.doesNotMatch(output, /build on \S+: building '/, "the host built what the cache holds");
    assert.ok(cache.bytesServed() - servedBefore > 0, "the cache served nothing");
});
