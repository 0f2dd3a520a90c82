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
    { what: "an IPv4 address out of range", args: { address: "203.0.113.256" }, field: /address/ },
    { what: "an IPv6 address with a zone index (an interface name reaching ssh)", args: { address: "fe80::1%eth0" }, field: /address/ },
    { what: "brackets around a host name", args: { address: "[example.com]" }, field: /address/ },
    { what: "an ssh option after a bracketed IPv6 address", args: { address: "[fd00::2]-oProxyCommand=x" }, field: /address/ },
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
    { what: "an ssh option smuggled as a jump host's address", args: { jumpHosts: [{ address: "-oProxyCommand=touch /tmp/pwned", hostPublicKey: KEY }] }, field: /jumpHosts[\s\S]*0\.address/ },
    { what: "a jump host as an ssh destination string with options", args: { jumpHosts: ["guest@bastion -oProxyCommand=x"] }, field: /jumpHosts[\s\S]*0: / },
    { what: "a jump host without a pinned host key", args: { jumpHosts: [{ address: "bastion.example.org" }] }, field: /jumpHosts[\s\S]*0\.hostPublicKey/ },
    { what: "a known_hosts line smuggled in a jump host's key", args: { jumpHosts: [{ address: "bastion", hostPublicKey: `${KEY}\n* ssh-ed25519 AAAAx` }] }, field: /jumpHosts[\s\S]*0\.hostPublicKey/ },
    { what: "an ssh option as a jump host's user", args: { jumpHosts: [{ address: "bastion", user: "-oProxyCommand=x", hostPublicKey: KEY }] }, field: /jumpHosts[\s\S]*0\.user/ },
    { what: "a sudo password with a line break inside (sudo reads one line)", args: { sudoPassword: "first\nsecond" }, field: /sudoPassword[\s\S]*must be one line/ },
    { what: "an empty sudo password", args: { sudoPassword: "\n" }, field: /sudoPassword/ },
    ...fileCases(),
    ...buildCases(),
];

/** Where the system is built, the binary caches and the signing key: values that reach Nix on the deployer or the host. */
function buildCases(): HostileCase[] {
    const cacheKey = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
    const cache = (url: string, publicKey = cacheKey) => ({ binaryCaches: [{ url, publicKey }] });
    return [
        { what: "an unknown build place", args: { build: "somewhere" }, field: /build/ },
        { what: "a command in a binary cache URL", args: cache("https://cache.example.org/$(id)'; rm -rf /"), field: /binaryCaches[\s\S]*\b0\.url/ },
        { what: "a space in a binary cache URL, splitting Nix's substituter list", args: cache("https://a.example.org https://attacker.example"), field: /binaryCaches[\s\S]*\b0\.url/ },
        { what: "a binary cache on the host's own disk", args: cache("file:///etc"), field: /binaryCaches[\s\S]*\b0\.url/ },
        { what: "a second key smuggled into a cache's public key", args: cache("https://cache.example.org", `${cacheKey} attacker-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=`), field: /binaryCaches[\s\S]*\b0\.publicKey/ },
        { what: "a cache's public key that is not a Nix key", args: cache("https://cache.example.org", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), field: /binaryCaches[\s\S]*\b0\.publicKey/ },
        { what: "more caches than a deploy tries", args: { binaryCaches: Array.from({ length: 17 }, () => ({ url: "https://cache.example.org", publicKey: cacheKey })) }, field: /binaryCaches/ },
        { what: "a signing key's file path instead of the key", args: { signingKey: "/etc/nix/signing-key.sec" }, field: /signingKey/ },
        { what: "a public key given as the signing key", args: { signingKey: cacheKey }, field: /signingKey/ },
        { what: "checkSignatures of the wrong type", args: { checkSignatures: "yes" }, field: /checkSignatures/ },
    ];
}

/** Files: paths that leave their folder, reach the Nix store or another system folder, and unsafe modes or owners. */
function fileCases(): HostileCase[] {
    const file = (path: string, settings: Record<string, unknown> = {}) => ({ files: { [path]: { content: "s3cret", ...settings } } });
    return [
        { what: "a relative file path", args: file("keys/db-password"), field: /files[\s\S]*absolute path/ },
        { what: "a file path that climbs out of its folder", args: file("/run/keys/../../etc/shadow"), field: /files[\s\S]*plain names/ },
        { what: "a file path with a . segment", args: file("/run/keys/./db"), field: /files[\s\S]*plain names/ },
        { what: "a file path with an empty segment", args: file("/run//keys/db"), field: /files[\s\S]*plain names/ },
        { what: "a file path that names a folder", args: file("/run/keys/"), field: /files[\s\S]*plain names/ },
        { what: "the root folder as a file", args: file("/"), field: /files/ },
        { what: "a file in the Nix store", args: file("/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-keys/db"), field: /files[\s\S]*Nix store/ },
        { what: "a file in the system profiles", args: file("/nix/var/nix/profiles/system"), field: /files[\s\S]*\/nix/ },
        { what: "a file in /proc", args: file("/proc/sys/kernel/core_pattern"), field: /files[\s\S]*\/proc/ },
        { what: "a file among the deploy agents' own", args: file("/run/pulumi-nixos/1-abc/pending"), field: /files[\s\S]*\/run\/pulumi-nixos/ },
        { what: "command substitution in a file path", args: file("/run/keys/$(id)"), field: /files[\s\S]*plain names/ },
        { what: "a newline in a file path", args: file("/run/keys/a\nb"), field: /files[\s\S]*control characters/ },
        { what: "a file given twice (by name and by path)", args: { files: { db: { content: "a" }, "/run/keys/db": { content: "b" } } }, field: /files[\s\S]*same file/ },
        { what: "a setuid file mode", args: file("/run/keys/db", { mode: "4755" }), field: /files[\s\S]*mode/ },
        { what: "a file every user may write", args: file("/run/keys/db", { mode: "0666" }), field: /files[\s\S]*mode.*every user/ },
        { what: "a file mode that is not octal", args: file("/run/keys/db", { mode: "0999" }), field: /files[\s\S]*mode/ },
        { what: "a symbolic file mode", args: file("/run/keys/db", { mode: "u+rwx" }), field: /files[\s\S]*mode/ },
        { what: "a command in a file's owner", args: file("/run/keys/db", { owner: "root;id" }), field: /files[\s\S]*owner/ },
        { what: "an option as a file's group", args: file("/run/keys/db", { group: "-R" }), field: /files[\s\S]*group/ },
        { what: "owner and group smuggled in one field", args: file("/run/keys/db", { owner: "root:root" }), field: /files[\s\S]*owner/ },
        { what: "base64 content that is not base64", args: file("/run/keys/db", { encoding: "base64", content: "not base64!" }), field: /files[\s\S]*content.*base64/ },
        { what: "an unknown activation time", args: file("/run/keys/db", { activation: "during" }), field: /files[\s\S]*activation/ },
        { what: "a file's content that is not text", args: file("/run/keys/db", { content: 42 }), field: /files[\s\S]*content/ },
        { what: "a file over 1 MiB", args: file("/run/keys/db", { content: "x".repeat(2 * 1024 * 1024) }), field: /files[\s\S]*content.*1 MiB/ },
    ];
}

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

test("a sudo password with quotes, `$`, a backslash and a final newline (a file's) passes: it is deployed as given", async () => {
    const result = await check({ ...STATE, user: "operator", sudoPassword: `it's "op" $HOME \\ ;\n` });
    assert.deepEqual(result.failures, []);
});

test("build: \"target\" with a store path built already is refused, as there is nothing to build", async () => {
    const result = await check({ ...STATE, build: "target" });
    assert.match(result.failures.map((f) => f.reason).join("\n"), /build: "target" builds a flake's configuration on the host/);
});

test("a malformed signing key's message never repeats it", async () => {
    const almost = `deploy-1:${"A".repeat(85)}==`;
    assert.throws(() => new NixosSystem("target", { ...GOOD, signingKey: almost }), (error: Error) => /signingKey/.test(error.message) && !error.message.includes("AAAAAAAA"));
    const reasons = (await check({ ...STATE, signingKey: almost })).failures.map((f) => f.reason).join("\n");
    assert.match(reasons, /signingKey/);
    assert.ok(!reasons.includes("AAAAAAAA"), "check repeats the key");
});

test("a refused file's message names the file, never its content", async () => {
    const content = "hunter2-never-shown";
    const args = { ...GOOD, files: { "/run/keys/db": { content, mode: "0666" }, "/run/keys/b64": { content: `${content}!`, encoding: "base64" as const } } };
    assert.throws(() => new NixosSystem("target", args), (error: Error) => /\/run\/keys\/db/.test(error.message) && !error.message.includes(content));
    const result = await check({ ...STATE, files: args.files });
    const reasons = result.failures.map((f) => f.reason).join("\n");
    assert.match(reasons, /\/run\/keys\/b64/);
    assert.ok(!reasons.includes(content), "check repeats the content");
});

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
