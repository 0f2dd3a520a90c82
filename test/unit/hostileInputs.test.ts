// A catalogue of malformed and hostile inputs. Each is refused by the NixosSystem constructor
// (plain values) and by the provider's check (values that arrive later as outputs), before any
// evaluation or remote action, with a message that names the field and not the value.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { NixosSystem, NixosSystemArgs } from "../../components";
import { UNKNOWN } from "../../provider/properties";
import { system } from "../../provider/resources/system";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZVjbKFFju8WPwD5kP6G0EpwYW86fZQ4vj3A4Nn0q57";
const PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n";
const GOOD: NixosSystemArgs = { address: "10.0.0.5", hostPublicKey: KEY, privateKey: PRIVATE_KEY, flake: "path:/srv/infra", configuration: "web" };

interface HostileCase {
    what: string;
    args: Partial<Record<keyof NixosSystemArgs, unknown>>;
    field: RegExp;
}

const CATALOGUE: HostileCase[] = [
    { what: "shell metacharacters in the address", args: { address: "host; rm -rf /" }, field: /address/ },
    { what: "an ssh option smuggled as the address", args: { address: "-oProxyCommand=touch /tmp/pwned" }, field: /address/ },
    { what: "an empty address", args: { address: "" }, field: /address/ },
    { what: "a huge address", args: { address: "a".repeat(300) }, field: /address/ },
    { what: "port 0", args: { port: 0 }, field: /port/ },
    { what: "port out of range", args: { port: 65536 }, field: /port/ },
    { what: "a port of the wrong type", args: { port: "22" }, field: /port/ },
    { what: "a fractional port", args: { port: 22.5 }, field: /port/ },
    { what: "a command in the user", args: { user: "root;id" }, field: /user/ },
    { what: "an ssh option as the user", args: { user: "-oProxyCommand=x" }, field: /user/ },
    { what: "an empty host key", args: { hostPublicKey: "" }, field: /hostPublicKey/ },
    { what: "a second known_hosts line smuggled in the host key", args: { hostPublicKey: `${KEY}\n* ssh-ed25519 AAAAattacker` }, field: /hostPublicKey/ },
    { what: "a known_hosts marker in the host key", args: { hostPublicKey: `@cert-authority * ${KEY}` }, field: /hostPublicKey/ },
    { what: "a key file's path instead of the key", args: { privateKey: "/root/.ssh/id_ed25519" }, field: /privateKey/ },
    { what: "a huge private key", args: { privateKey: PRIVATE_KEY.replace("b3Bl", "A".repeat(20000)) }, field: /privateKey/ },
    { what: "a command after the flake", args: { flake: "./nix;touch /tmp/pwned" }, field: /flake/ },
    { what: "an attribute smuggled into the flake reference", args: { flake: "./nix#nixosConfigurations.evil" }, field: /flake/ },
    { what: "command substitution as the flake", args: { flake: "$(id)" }, field: /flake/ },
    { what: "a flake fetched over plaintext http", args: { flake: "http://attacker.example/flake.tar.gz" }, field: /flake/ },
    { what: "a flake scheme Nix would hand to another host", args: { flake: "ssh://other-host/etc" }, field: /flake/ },
    { what: "a huge flake reference", args: { flake: `./${"x".repeat(2000)}` }, field: /flake/ },
    { what: "Nix code injected through the configuration name", args: { configuration: 'web" + builtins.readFile "/etc/shadow" + "' }, field: /configuration/ },
    { what: "Nix interpolation in the configuration name", args: { configuration: "${builtins.getEnv \"HOME\"}" }, field: /configuration/ },
    { what: "an empty configuration name", args: { configuration: "" }, field: /configuration/ },
    { what: "a store path outside the store", args: { storePath: "/etc/passwd", flake: undefined, configuration: undefined }, field: /storePath/ },
    { what: "a store path that climbs out of the store", args: { storePath: "/nix/store/../../etc/passwd", flake: undefined, configuration: undefined }, field: /storePath/ },
    { what: "an unknown action", args: { action: "reboot" }, field: /action/ },
    { what: "an empty health check command", args: { healthChecks: { commands: [{ name: "x", command: "" }] } }, field: /healthChecks/ },
    { what: "a NUL byte in a health check", args: { healthChecks: { commands: [{ name: "x", command: "true\0rm -rf /" }] } }, field: /healthChecks/ },
    { what: "a health check with no time to run", args: { healthChecks: { commands: [{ name: "x", command: "true", timeoutSeconds: 0 }] } }, field: /healthChecks/ },
    { what: "a health check that may run forever", args: { healthChecks: { commands: [{ name: "x", command: "true", timeoutSeconds: 1e9 }] } }, field: /healthChecks/ },
    { what: "a file:// health check URL", args: { healthChecks: { http: [{ name: "x", url: "file:///etc/passwd" }] } }, field: /healthChecks/ },
    { what: "health checks of the wrong type", args: { healthChecks: "yes" }, field: /healthChecks/ },
    { what: "a negative connect timeout", args: { connectTimeoutSeconds: -1 }, field: /connectTimeoutSeconds/ },
    { what: "no time for the host to await confirmation", args: { confirmTimeoutSeconds: 0 }, field: /confirmTimeoutSeconds/ },
];

before(async () => {
    await pulumi.runtime.setMocks({
        newResource: (resource) => ({ id: `${resource.name}-id`, state: resource.inputs }),
        call: () => ({}),
    }, "project", "stack", true);
});

test(`the catalogue holds at least 20 cases (${CATALOGUE.length})`, () => {
    assert.ok(CATALOGUE.length >= 20);
});

for (const hostile of CATALOGUE) {
    test(`refused in the program: ${hostile.what}`, () => {
        const args = { ...GOOD, ...hostile.args } as NixosSystemArgs;
        assert.throws(() => new NixosSystem("target", args), (error: Error) => {
            assert.equal(error.name, "InvalidInputError");
            assert.match(error.message, /^NixosSystem target: /);
            assert.match(error.message, hostile.field);
            assert.ok(!error.message.includes(PRIVATE_KEY.split("\n")[1]), "the message repeats the private key");
            return true;
        });
    });
}

const STATE = {
    address: "10.0.0.5", port: 22, user: "root", privateKey: PRIVATE_KEY, hostPublicKey: KEY, connectTimeoutSeconds: 10,
    storePath: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system", action: "switch",
    healthChecks: { commands: [], http: [] }, substituteOnDestination: false, confirmTimeoutSeconds: 60,
};

const CONTEXT = { urn: "urn:pulumi:test::project::nixos:index:System::target", name: "target", log: () => undefined, signal: new AbortController().signal };
const check = (news: Record<string, unknown>) => system.check(CONTEXT, news, {});

// Every case is refused by the provider's check too, which is what every Pulumi language reaches.
for (const hostile of CATALOGUE) {
    test(`refused by the provider's check: ${hostile.what}`, async () => {
        const result = await check({ ...GOOD, ...hostile.args });
        assert.ok(result.failures.length > 0, "check accepted it");
        const reasons = result.failures.map((f) => f.reason).join("\n");
        assert.match(reasons, hostile.field);
        assert.ok(!reasons.includes(PRIVATE_KEY.split("\n")[1]), "the message repeats the private key");
    });
}

test("the good inputs pass the provider's check, with the defaults applied", async () => {
    const result = await check({ ...STATE, port: undefined, action: undefined, healthChecks: undefined });
    assert.deepEqual(result.failures, []);
    assert.equal(result.inputs.port, 22);
    assert.equal(result.inputs.action, "switch");
    assert.equal(result.inputs.closure, STATE.storePath);
});

test("a closure or derivation given as an input is not used: check computes them", async () => {
    const result = await check({ ...STATE, closure: "/etc", derivation: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x;id.drv" });
    assert.deepEqual(result.failures, []);
    assert.equal(result.inputs.closure, STATE.storePath);
    assert.equal(result.inputs.derivation, undefined);
});

test("inputs still unknown in a preview (outputs of resources not made yet) are checked later, not refused", async () => {
    const pending = { ...STATE, privateKey: UNKNOWN, hostPublicKey: UNKNOWN, address: UNKNOWN };
    assert.deepEqual((await check(pending)).failures, []);
    const stillWrong = { ...pending, port: 0 };
    assert.match((await check(stillWrong)).failures.map((f) => f.reason).join(), /port/);
});
