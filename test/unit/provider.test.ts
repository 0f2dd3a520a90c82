// The provider's parts that need no engine: property values on the wire (secrets, unknowns), the
// schema it serves, and System's detailed diff.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import { decodeProperties, encodeProperties, UNKNOWN } from "../../provider/properties";
import { parseImportId, system } from "../../provider/resources/system";
import { packageSchema, SYSTEM } from "../../schema/resources";

const SECRET = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value: "key text" };
const CONTEXT = { urn: "urn:pulumi:test::project::nixos:index:System::web", name: "web", log: () => undefined, signal: new AbortController().signal };

test("secrets arrive unwrapped and marked, and leave wrapped; unknowns pass as they are", () => {
    const wire = Struct.fromJavaScript({ privateKey: SECRET, address: UNKNOWN, healthChecks: { commands: [{ name: "x", command: SECRET }] } } as never);
    const decoded = decodeProperties(wire);
    assert.deepEqual(decoded.values, { privateKey: "key text", address: UNKNOWN, healthChecks: { commands: [{ name: "x", command: "key text" }] } });
    assert.deepEqual([...decoded.secrets].sort(), ["healthChecks", "privateKey"]);
    const encoded = encodeProperties({ ...decoded.values, gone: undefined }, decoded.secrets).toJavaScript();
    assert.deepEqual(encoded.privateKey, SECRET);
    assert.deepEqual(encoded.healthChecks, { ...SECRET, value: { commands: [{ name: "x", command: "key text" }] } });
    assert.equal(encoded.address, UNKNOWN);
    assert.ok(!("gone" in encoded));
});

test("assets, archives and resource references are refused, not misread", () => {
    const asset = Struct.fromJavaScript({ file: { "4dabf18193072939515e22adb298388d": "c44067f5952c0a294b673a41bacd8c17", text: "x" } } as never);
    assert.throws(() => decodeProperties(asset), /asset, archive or resource reference/);
});

test("the schema declares every System input with its type, default and secrecy", () => {
    const resource = (packageSchema().resources as Record<string, { inputProperties: Record<string, Record<string, unknown>>; requiredInputs: string[] }>)[SYSTEM.token];
    assert.deepEqual(Object.keys(resource.inputProperties).sort(), Object.keys(SYSTEM.inputs).sort());
    assert.deepEqual(resource.requiredInputs.sort(), ["address", "hostPublicKey", "privateKey"]);
    assert.deepEqual(resource.inputProperties.port, { type: "integer", default: 22, description: SYSTEM.inputs.port.description });
    assert.equal(resource.inputProperties.privateKey.secret, true);
    assert.equal(resource.inputProperties.healthChecks.$ref, "#/types/nixos:index:HealthChecks");
});

test("System's diff: a closure change names the packages, kernel and release that change with it", async () => {
    const olds = { address: "10.0.0.5", port: 22, closure: "/nix/store/a", packages: { app: "1.0", gone: "1" }, kernel: "6.6.63", nixosRelease: "24.11", generation: 3 };
    const news = { address: "10.0.0.5", port: 22, closure: "/nix/store/b", packages: { app: "2.0", extra: "0.3" }, kernel: "6.6.64", nixosRelease: "24.11" };
    const { detailedDiff, replaces } = await system.diff(CONTEXT, olds, news);
    assert.deepEqual(detailedDiff, { closure: "update", kernel: "update", "packages.app": "update", "packages.gone": "delete", "packages.extra": "add" });
    assert.equal(replaces, undefined, "a new system is an update of the host, never a replacement");
});

test("System's diff: a connection change says so; the same closure with other package labels is no change", async () => {
    const olds = { address: "10.0.0.5", port: 22, closure: "/nix/store/a", packages: { app: "1.0" } };
    assert.deepEqual((await system.diff(CONTEXT, olds, { ...olds, port: 2222 })).detailedDiff, { port: "update" });
    assert.deepEqual((await system.diff(CONTEXT, olds, { ...olds, packages: { app: "1.0 " } })).detailedDiff, {});
    // A host joining the fleet changes which configurations are evaluated together, not this system.
    assert.deepEqual((await system.diff(CONTEXT, { ...olds, evaluateWith: ["web"] }, { ...olds, evaluateWith: ["web", "db"] })).detailedDiff, {});
    // A state from before an input existed means its default: no change, until it is set otherwise.
    assert.deepEqual((await system.diff(CONTEXT, olds, { ...olds, build: "deployer", binaryCaches: [] })).detailedDiff, {});
    assert.deepEqual((await system.diff(CONTEXT, olds, { ...olds, build: "target" })).detailedDiff, { build: "update" });
});

test("System's diff: an adopted host given the closure it runs is no change, whatever else the program says; another closure is", async () => {
    const adopted = { address: "10.0.0.5", port: 22, user: "root", storePath: "/nix/store/a", closure: "/nix/store/a", packages: {}, adopted: true };
    const program = { address: "10.0.0.5", port: 22, flake: "./nix", configuration: "web", closure: "/nix/store/a", packages: { app: "1.0" }, confirmTimeoutSeconds: 90 };
    assert.deepEqual((await system.diff(CONTEXT, adopted, program)).detailedDiff, {});
    assert.equal((await system.diff(CONTEXT, adopted, { ...program, closure: "/nix/store/b" })).detailedDiff.closure, "update");
});

test("an import ID names the user, the address and the port, each validated as the inputs are", () => {
    assert.deepEqual(parseImportId("10.0.0.5"), { user: "root", address: "10.0.0.5", port: 22 });
    assert.deepEqual(parseImportId("deploy@web.example.org:2222"), { user: "deploy", address: "web.example.org", port: 2222 });
    assert.deepEqual(parseImportId("root@[fd00::2]:22"), { user: "root", address: "[fd00::2]", port: 22 });
    assert.deepEqual(parseImportId("fd00::2"), { user: "root", address: "fd00::2", port: 22 });
    for (const hostile of ["-oProxyCommand=x@host", "root@host;id", "root@host:0", "root@host:22x", "root@-oProxyCommand=x"]) {
        assert.throws(() => parseImportId(hostile), /System import ID .*\(\[user@\]address\[:port\]\)/, hostile);
    }
});
