// A deploy user whose sudo asks for a password (NixOS's default wheel rule), through the real
// engine: with `sudoPassword` it deploys, writes files and rolls back; the password reaches sudo
// unchanged (quotes, `$`, a backslash, a final newline) and never the output, the state in
// plaintext or the host's disk; a wrong one fails before anything runs as root, without showing it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import { SystemEvaluation } from "../../deploy/evaluate";
import { OPERATOR_PASSWORD, TestHost } from "../../testbed/testHosts";
import { createSingleHostStack, SingleHostStack, SystemStack } from "./systemStack";

let setUp: SingleHostStack;
let host: TestHost;
let testStack: SystemStack;
let systems: Record<string, SystemEvaluation>;

const TOKEN = "/run/keys/app-token";
const WRONG_PASSWORD = `wrong 'pw' "$x" \\`;

before(async () => {
    setUp = await createSingleHostStack("sudo-password", ["v1", "v2", "switch-fails"], (config) => ({
        user: "operator",
        sudoPassword: config.getSecret("sudoPassword"),
        files: { "app-token": { content: config.requireSecret("token"), owner: "deploy" } },
    }));
    ({ host, testStack, systems } = setUp);
});

after(() => setUp?.remove());

const up = (configuration: string, password: string | undefined, token = "token-1") => testStack.deploy(configuration, {
    config: {
        token: { value: token, secret: true },
        ...(password === undefined ? {} : { sudoPassword: { value: password, secret: true } }),
    },
});

/** The forms a password could be written in: as given, and inside a JSON string. */
const forms = (password: string) => [password, JSON.stringify(password).slice(1, -1)];

test("the test host's operator cannot use sudo without its password", () => {
    const refused = host.shell("setpriv --reuid=operator --regid=users --init-groups sudo -n true 2>&1 || echo refused").trim();
    assert.match(refused, /refused$/);
});

test("with sudoPassword (read from a file: a final newline), the user deploys and writes files as root", async () => {
    const result = await up("v1", `${OPERATOR_PASSWORD}\n`);
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.equal(host.readFile(TOKEN), "token-1");
    assert.match(host.shell(`stat -c "%U %a" ${TOKEN}`), /^deploy 400/);
    assert.equal(await testStack.recordedClosure(), systems.v1.closure);
    const state = JSON.stringify(await testStack.stack.exportStack());
    for (const form of forms(OPERATOR_PASSWORD)) {
        assert.ok(!(result.stdout + result.stderr).includes(form), "the output shows the password");
        assert.ok(!state.includes(form), "the state holds the password in plaintext");
    }
    // Not on the host's disk (its /run is a tmpfs of its own, outside its folder).
    const onDisk = spawnSync("grep", ["-rlF", "--devices=skip", "--", OPERATOR_PASSWORD, host.dir], { encoding: "utf8" });
    assert.equal(onDisk.status, 1, `the password is on the host's disk: ${onDisk.stdout}${onDisk.stderr}`);
});

test("a failing switch is rolled back through sudo with the password", async () => {
    const generations = host.generations();
    const message = await testStack.failedDeploy("switch-fails", { config: { token: { value: "token-2", secret: true } } });
    assert.match(message, /failed at activate/);
    assert.match(message, new RegExp(`back on generation \\d+ \\(${systems.v1.closure}\\), as read from the host`));
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.deepEqual(host.generations(), generations);
    assert.equal(host.readFile(TOKEN), "token-1", "the file written before the switch was not put back");
});

test("a wrong password fails before anything runs as root, and the message does not show it", async () => {
    const generations = host.generations();
    const message = await testStack.failedDeploy("v2", { config: { sudoPassword: { value: WRONG_PASSWORD, secret: true }, token: { value: "token-3", secret: true } } });
    assert.match(message, /failed at probe: .*sudo did not accept sudoPassword for user operator; nothing was run as root/);
    for (const form of forms(WRONG_PASSWORD)) assert.ok(!message.includes(form), "the message shows the password");
    assert.equal(host.currentSystem(), systems.v1.closure);
    assert.deepEqual(host.generations(), generations);
    assert.equal(host.readFile(TOKEN), "token-1");
});

test("without sudoPassword, the user is refused with what to do", async () => {
    await testStack.stack.removeConfig("sudoPassword");
    const message = await testStack.failedDeploy("v2", { config: { token: { value: "token-3", secret: true } } });
    assert.match(message, /the deploy user operator cannot activate a system: it must run sudo \(.*or give sudoPassword\)/);
    assert.equal(host.currentSystem(), systems.v1.closure);
});

test("refresh reads the files through sudo with the password, and up converges", async () => {
    await testStack.stack.setConfig("sudoPassword", { value: OPERATOR_PASSWORD, secret: true });
    host.shell(`echo tampered > ${TOKEN}`);
    await testStack.stack.refresh();
    assert.equal((await testStack.stack.preview()).changeSummary.update, 1, "refresh did not see the changed file");
    await up("v2", OPERATOR_PASSWORD, "token-1");
    assert.equal(host.currentSystem(), systems.v2.closure);
    assert.equal(host.readFile(TOKEN), "token-1");
});
