// Files from Pulumi secrets on a real test host, through the real engine: they land before
// activation with their owner, group and mode (the stand-in system's service, ordered after them by
// nix/modules/key-files.nix, records what it found when it started), are not sent again when
// unchanged, return to their previous versions with the previous system (also when the host rolls
// itself back, and after a reboot back into it), are seen as drift on refresh, and never appear in a process's arguments, the
// output, an error or the state.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { HostFileArgs } from "../../components";
import { SystemEvaluation } from "../../deploy/evaluate";
import { TestHost, waitFor } from "../../testbed/testHosts";
import { watchProcesses } from "./engine";
import { createSingleHostStack, HEALTHY_CHECK, KEYS_FIXTURE_FLAKE, SingleHostStack, SystemStack } from "./systemStack";

const TOKEN = "/run/keys/app-token";
/** How Pulumi's state marks a secret value. */
const [SECRET_SIGNATURE, SECRET_TYPE] = ["4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"];
const first = `first-${randomBytes(12).toString("hex")}`;
const second = `second-${randomBytes(12).toString("hex")}`;
const third = `third-${randomBytes(12).toString("hex")}`;

/** A file as the test program takes it from config: its content names a secret config key. */
type FileSpec = Omit<HostFileArgs, "content"> & { secret: string };

let setUp: SingleHostStack;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;

before(async () => {
    setUp = await createSingleHostStack("files", ["with-key", "switch-fails", "cuts-ssh", "v2", "unhealthy", "needs-reboot"], (config) => ({
        flake: KEYS_FIXTURE_FLAKE,
        confirmTimeoutSeconds: 5,
        connectTimeoutSeconds: 2,
        user: config.get("user") ?? "root",
        reboot: config.getBoolean("reboot") ?? false,
        rebootTimeoutSeconds: 60,
        healthChecks: { commands: [HEALTHY_CHECK, ...(config.get("mustExist") ? [{ name: "file is there", command: `test -e ${config.get("mustExist")}`, timeoutSeconds: 2 }] : [])] },
        files: Object.fromEntries(Object.entries(config.requireObject<Record<string, FileSpec>>("files"))
            .map(([path, { secret, ...file }]) => [path, { ...file, content: config.requireSecret(secret) }])),
    }), KEYS_FIXTURE_FLAKE);
    ({ host, testStack, systems } = setUp);
});

after(() => setUp?.remove());

const TOKEN_FILE: FileSpec = { secret: "token", owner: "deploy", group: "users", mode: "0440" };

/** Stack config for these files and token contents. */
function filesConfig(files: Record<string, FileSpec>, secrets: Record<string, string>) {
    return {
        files: { value: JSON.stringify(files) },
        ...Object.fromEntries(Object.entries(secrets).map(([key, value]) => [key, { value, secret: true }])),
    };
}

const up = (configuration: string, token: string, files: Record<string, FileSpec> = { "app-token": TOKEN_FILE }) =>
    testStack.deploy(configuration, { config: filesConfig(files, { token, other: third }) });
const failedUp = (configuration: string, token: string) =>
    testStack.failedDeploy(configuration, { config: filesConfig({ "app-token": TOKEN_FILE }, { token, other: third }) });

/** Owner, group, mode and inode of a file on the host. */
const statOf = (file: string) => host.shell(`stat -c '%U %G %a %i' ${file} 2> /dev/null || echo absent`).trim();
const activations = () => host.readFile("/run/standin/activations");
/** Leftovers of a write: temporary files beside the keys, and kept previous versions. */
const leftovers = () => host.shell("ls -A /run/keys; ls -d /run/pulumi-nixos/*/files 2> /dev/null || true").trim();

test("a file lands with its owner, group, mode and content before the new system activates", async () => {
    await up("with-key", first);
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(host.readFile(TOKEN), first);
    assert.match(statOf(TOKEN), /^deploy users 440 \d+$/);
    // app.service starts once the file is there (the module's units): the file came before the
    // switch, so it started during the switch and recorded what it found then.
    assert.equal(host.readFile("/run/standin/keys-seen")?.trim(), `${TOKEN} deploy users 440 ${first.length}`);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the agent deletes the kept versions after the confirmation
    assert.equal(leftovers(), "app-token");
});

test("a second up sends nothing and restarts nothing", async () => {
    const [stat, switches, invocation] = [statOf(TOKEN), activations(), host.shell("systemctl show -p InvocationID --value app.service")];
    const result = await up("with-key", first);
    assert.deepEqual(result.summary.resourceChanges, { same: 2 });
    assert.equal(statOf(TOKEN), stat, "the file was written again (a new inode)");
    assert.equal(activations(), switches);
    assert.equal(host.shell("systemctl show -p InvocationID --value app.service"), invocation, "app.service was restarted");
});

test("preview names the file that changes, never its content", async () => {
    await testStack.stack.setAllConfig(filesConfig({ "app-token": TOKEN_FILE }, { token: second, other: third }));
    const preview = await testStack.stack.preview({ diff: true });
    assert.equal(preview.changeSummary.update, 1);
    // `files` is a secret property, whose detailed diff names no file: the provider's log does.
    const shown = preview.stdout + preview.stderr;
    assert.match(shown, /files that change: \/run\/keys\/app-token$/m);
    assert.ok(!shown.includes(second) && !shown.includes(first), "the preview shows a file's content");
    assert.equal(host.readFile(TOKEN), first);
});

test("a changed file and a failing switch: the host is back on the old generation with the old file", async () => {
    const generation = host.currentGeneration();
    const stat = statOf(TOKEN);
    const message = await failedUp("switch-fails", second);
    assert.match(message, /failed at activate/);
    assert.ok(!message.includes(second) && !message.includes(first), "the error shows a file's content");
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(host.currentGeneration(), generation);
    assert.equal(host.readFile(TOKEN), first);
    assert.equal(statOf(TOKEN).split(" ").slice(0, 3).join(" "), stat.split(" ").slice(0, 3).join(" "));
    // The old system's own switch ran after the files were back: its service saw the old file.
    assert.equal(host.readFile("/run/standin/keys-seen")?.trim(), `${TOKEN} deploy users 440 ${first.length}`);
});

test("magic rollback: a host that rolls itself back puts the old file back too", async () => {
    const message = await failedUp("cuts-ssh", second);
    assert.match(message, /back on generation \d+ .*as read from the host/);
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(host.readFile(TOKEN), first);
    assert.equal(leftovers(), "app-token");
});

test("a file changed, re-permissioned or deleted by hand is drift on refresh, and up puts it back", async () => {
    await testStack.stack.setAllConfig({ configuration: { value: "with-key" }, ...filesConfig({ "app-token": TOKEN_FILE }, { token: first, other: third }) });
    for (const tamper of [`echo tampered > ${TOKEN}`, `chmod 0444 ${TOKEN}`, `rm ${TOKEN}`]) {
        host.shell(tamper);
        assert.equal((await testStack.stack.preview()).changeSummary.update, undefined, "preview alone cannot see the host");
        await testStack.stack.refresh();
        const preview = await testStack.stack.preview({ diff: true });
        assert.equal(preview.changeSummary.update, 1, `refresh did not see: ${tamper}`);
        assert.match(preview.stdout + preview.stderr, /files that change: \/run\/keys\/app-token$/m);
        const switches = activations();
        await testStack.stack.up();
        assert.equal(host.readFile(TOKEN), first, `up did not undo: ${tamper}`);
        assert.match(statOf(TOKEN), /^deploy users 440 /);
        assert.equal(activations(), switches, "a file alone made the system switch");
    }
});

test("a file added and then removed from the input is written, then removed from the host", async () => {
    const files = { "app-token": TOKEN_FILE, "/run/app/other.conf": { secret: "other", mode: "0600" } };
    await up("with-key", first, files);
    assert.equal(host.readFile("/run/app/other.conf"), third);
    assert.match(statOf("/run/app/other.conf"), /^root root 600 /);
    await up("with-key", first);
    assert.equal(statOf("/run/app/other.conf"), "absent");
    assert.equal(host.readFile(TOKEN), first);
});

test("a symbolic link on the way is refused on the host: a file written before it is put back, and the system is not switched", async () => {
    host.shell("mkdir -p /run/elsewhere && ln -sfn /run/elsewhere /run/linked");
    const generation = host.currentGeneration();
    const error = await testStack.deploy("v2", { config: filesConfig({ "app-token": TOKEN_FILE, "/run/linked/token": { secret: "other" } }, { token: second, other: third }) })
        .then(() => undefined, (e: Error) => String(e));
    assert.ok(error, "up went through a symbolic link");
    assert.match(error, /failed at files: [\s\S]*\/run\/linked is a symbolic link: refusing to write \/run\/linked\/token through it/);
    assert.match(error, /the files written so far were put back/);
    assert.equal(host.shell("ls -A /run/elsewhere").trim(), "");
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(host.currentGeneration(), generation);
    assert.equal(host.readFile(TOKEN), first, "a file written before the refusal was not put back");
    host.shell("rm /run/linked");
});

// On main before this change, app-token-key.service waited for the file in the switch: the switch
// failed (the fixture's 5 s wait) or hung until the deployer gave up (the module's default).
test("a service's file written after the switch: the switch does not wait for it, and the service starts once it is there", async () => {
    await up("v2", first);
    host.shell(`rm -f ${TOKEN} /run/standin/keys-seen`);
    // Live switches only: the confirmation's `boot` activates nothing.
    const liveSwitches = () => (activations() ?? "").split("\n").filter((line) => /^(switch|test) /.test(line)).length;
    const switches = liveSwitches();
    await up("with-key", second, { "app-token": { ...TOKEN_FILE, activation: "after" } });
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(liveSwitches(), switches + 1, "one switch");
    await waitFor("app.service starts once its file is there", () => host.readFile("/run/standin/keys-seen") !== undefined, 10);
    assert.equal(host.readFile("/run/standin/keys-seen")?.trim(), `${TOKEN} deploy users 440 ${second.length}`);
    await up("with-key", first);
});

test("a file in /run/keys (0750 root:keys on NixOS) for a user outside group keys is refused, saying what to do", async () => {
    const generation = host.currentGeneration();
    assert.equal(host.shell("stat -c '%U %G %a' /run/keys").trim(), "root keys 750");
    const error = await testStack.deploy("v2", { config: filesConfig({ "app-token": TOKEN_FILE, "/run/keys/guest-token": { secret: "other", owner: "guest" } }, { token: second, other: third }) })
        .then(() => undefined, (e: Error) => String(e));
    assert.ok(error, "up wrote a file its owner cannot open");
    assert.match(error, /failed at files: [\s\S]*guest could not open \/run\/keys\/guest-token: a folder on the way to it is closed to guest \(on NixOS \/run\/keys is 0750 root:keys: add guest to group keys/);
    assert.equal(host.readFile(TOKEN), first, "a file written before the refusal was not put back");
    assert.equal(statOf("/run/keys/guest-token"), "absent");
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(host.currentGeneration(), generation);
});

test("a file written after activation is there for the health checks, and put back when they fail", async () => {
    const files: Record<string, FileSpec> = { "app-token": TOKEN_FILE, "/run/keys/late": { secret: "late", owner: "deploy", activation: "after" } };
    await testStack.stack.setConfig("mustExist", { value: "/run/keys/late" });
    await testStack.deploy("v2", { config: filesConfig(files, { token: first, late: third }) });
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.equal(host.readFile("/run/keys/late"), third);
    assert.match(statOf("/run/keys/late"), /^deploy root 400 /);

    const message = await testStack.failedDeploy("unhealthy", { config: filesConfig(files, { token: first, late: second }) });
    assert.match(message, /failed at verify: health check "app is healthy" failed/);
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.equal(host.readFile("/run/keys/late"), third, "the file written after the switch was not put back");
    await testStack.stack.removeConfig("mustExist");
});

test("a deploy user other than root writes files through sudo", async () => {
    await testStack.stack.setConfig("user", { value: "deploy" });
    await up("v2", second);
    assert.equal(host.readFile(TOKEN), second);
    assert.match(statOf(TOKEN), /^deploy users 440 /);
    await up("with-key", first);
    assert.equal(host.readFile(TOKEN), first);
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    await testStack.stack.removeConfig("user");
});

test("a deploy that reboots writes the files again after the reboot (it empties /run), before the health checks", async () => {
    const bootId = host.bootId();
    await testStack.stack.setAllConfig({ reboot: { value: "true" }, mustExist: { value: TOKEN } });
    const result = await up("needs-reboot", first);
    assert.match(result.stdout, /files on \S+ after the reboot: \/run\/keys\/app-token/);
    assert.notEqual(host.bootId(), bootId, "the host did not reboot");
    assert.equal(host.currentSystem(), systems["needs-reboot"].closure);
    assert.equal(host.readFile(TOKEN), first);
    assert.match(statOf(TOKEN), /^deploy users 440 /);
    await testStack.stack.removeConfig("reboot");
    await testStack.stack.removeConfig("mustExist");
});

test("a deploy that reboots and fails its health checks reboots back into the previous generation with the previous files", async () => {
    await up("with-key", second);
    await testStack.stack.setAllConfig({ reboot: { value: "true" }, mustExist: { value: "/run/keys/never-written" } });
    const message = await failedUp("needs-reboot", first);
    assert.match(message, /failed at verify: health check "file is there" failed/);
    assert.match(message, /rebooted back into generation \d+ \(\S+\), as read from the host, with its previous files/);
    assert.equal(host.currentSystem(), systems["with-key"].closure);
    assert.equal(host.readFile(TOKEN), second, "the reboot emptied /run/keys: the previous deploy's file must be written again");
    assert.match(statOf(TOKEN), /^deploy users 440 /);
    await testStack.stack.removeConfig("reboot");
    await testStack.stack.removeConfig("mustExist");
});

test("contents never appear in process arguments, output, errors or the state (not even as a plain hash)", async () => {
    const sampled: string[] = [];
    for (const [configuration, token, shouldFail] of [["with-key", second, false], ["switch-fails", third, true], ["with-key", first, false]] as const) {
        // Only the deploy is sampled: the Automation API itself passes secret config to `pulumi config` as arguments.
        await testStack.stack.setAllConfig({ configuration: { value: configuration }, ...filesConfig({ "app-token": TOKEN_FILE }, { token, other: third }) });
        const { outcome, argumentLists } = await watchProcesses(() => testStack.stack.up());
        assert.equal("error" in outcome, shouldFail, `up of ${configuration}`);
        const text = "error" in outcome ? String(outcome.error) : outcome.value.stdout + outcome.value.stderr;
        sampled.push(...argumentLists);
        for (const secret of [first, second, third]) {
            assert.ok(!text.includes(secret), `a file's content appears in the ${shouldFail ? "error" : "output"} of up`);
            for (const argv of argumentLists) assert.ok(!argv.includes(secret), `a file's content appears in a process's arguments: ${argv.slice(0, 80)}`);
        }
    }
    assert.ok(sampled.some((argv) => argv.includes(TOKEN)), "no process that handles the file was sampled: the sampler proves nothing");
    assert.equal(host.readFile(TOKEN), first);
    const exported = await testStack.stack.exportStack();
    const system = exported.deployment.resources.find((r: { type: string }) => r.type === "nixos:index:System");
    // The Automation API exports with --show-secrets: a secret shows as its signature and its plaintext.
    assert.equal(system.inputs.files?.[SECRET_SIGNATURE], SECRET_TYPE, "the state's files input is not a secret");
    assert.equal(system.outputs.files, undefined, "the outputs repeat the files' contents");
    for (const output of ["fileDigestKey", "fileDigests"]) {
        assert.equal(system.outputs[output]?.[SECRET_SIGNATURE], SECRET_TYPE, `the state's ${output} is not a secret`);
    }
    const state = testStack.stateText();
    for (const secret of [first, second, third]) {
        assert.ok(!state.includes(secret), "a file's content appears in the state");
        assert.ok(!state.includes(createHash("sha256").update(secret).digest("hex")), "a plain hash of a file's content appears in the state");
    }
});
