// One story every Pulumi language tells through the real engine against a test host: a program
// with an `SshKeyPair` and a `System` that writes a secret file deploys version 1, previews version
// 2 with the closure and package diff, has a failing switch rolled back by generation, deploys
// version 2, sees a switch by hand on refresh, and is destroyed. Each language's test file gives
// the same program in its language; the assertions are on the host and the stack's state.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { startTestHosts, switchByHand, TestFleet, TestHost } from "../../testbed/testHosts";
import { createTestStack, ProgramFile, REPO_ROOT, TestStack, useTestEngine } from "../engine/engine";
import { FIXTURE_FLAKE, recordedClosures } from "../engine/systemStack";

// What every language's program reads from its stack config: `address`, `hostPublicKey`,
// `privateKey` (secret), `configuration` and `token` (secret, written to the host as the file
// `app-token`); what it declares: an `SshKeyPair` "key" (comment "web") and a `System` "web" of the
// flake `./nix` with the health check "app is healthy" (`test "$(cat /run/standin/health)" = ok`,
// 2 s); what it exports: `closure`, `generation` and `publicKey` (the key pair's).

/** The file the program writes from the secret `token`. */
const TOKEN_FILE = "/run/keys/app-token";

export interface LanguageProgram {
    /** The language's name in test titles ("Python"). */
    language: string;
    /** Makes the program (and whatever its language needs, such as a virtual environment). */
    setUp(): ProgramFile | Promise<ProgramFile>;
    /** Removes what setUp made outside the stack's folder. */
    tearDown?(): void;
}

/** Registers the story's tests for one language's program. */
export function languageStory({ language, setUp, tearDown }: LanguageProgram): void {
    let fleet: TestFleet;
    let host: TestHost;
    let systems: Record<string, SystemEvaluation>;
    let testStack: TestStack;
    const token = `token-${randomBytes(12).toString("hex")}`;

    before(async () => {
        useTestEngine();
        systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "switch-fails"]);
        fleet = await startTestHosts({ count: 1, namePrefix: language.toLowerCase() });
        host = fleet.hosts[0];
        testStack = await createTestStack(`${language.toLowerCase()}-system`, await setUp(), {
            address: { value: host.address },
            hostPublicKey: { value: host.hostPublicKey },
            privateKey: { value: fleet.deployerPrivateKey, secret: true },
            token: { value: token, secret: true },
        });
        fs.cpSync(path.join(REPO_ROOT, "nix/fixtures"), path.join(testStack.stack.workspace.workDir, "nix"), { recursive: true });
    });

    after(async () => {
        await testStack?.remove();
        fleet?.stop();
        tearDown?.();
    });

    const setConfiguration = (configuration: string) => testStack.stack.setConfig("configuration", { value: configuration });
    const recordedClosure = async () => (await recordedClosures(testStack.stack)).web;

    test(`${language}: up deploys version 1, writes the secret file and makes a key pair; no secret is in the state`, async () => {
        await setConfiguration("v1");
        const result = await testStack.stack.up();
        assert.equal(result.outputs.closure.value, systems.v1.closure);
        assert.equal(result.outputs.generation.value, 2);
        assert.match(result.outputs.publicKey.value, /^ssh-ed25519 AAAA[0-9A-Za-z+/]+=*$/);
        assert.equal(host.currentSystem(), systems.v1.closure);
        assert.equal(host.readFile(TOKEN_FILE), token);
        assert.match(result.stdout, /copying \d+ of \d+ paths/);
        const state = testStack.stateText();
        assert.ok(!state.includes(token), "the file's content is in the state in plaintext");
        assert.ok(!state.includes("PRIVATE KEY"), "a private key is in the state in plaintext");
    });

    test(`${language}: preview --diff of version 2 shows both closures and the package changes, and touches nothing`, async () => {
        await setConfiguration("v2");
        const preview = await testStack.stack.preview({ diff: true });
        assert.deepEqual(preview.changeSummary, { same: 2, update: 1 });
        assert.ok(preview.stdout.includes(systems.v1.closure), "old closure shown");
        assert.ok(preview.stdout.includes(systems.v2.closure), "new closure shown");
        assert.match(preview.stdout, /app\s*: "1\.0" => "2\.0"/);
        assert.equal(host.currentSystem(), systems.v1.closure);
    });

    test(`${language}: a failing switch is rolled back to generation 2, named in the error with the host and the stage`, async () => {
        await setConfiguration("switch-fails");
        const error = await testStack.stack.up().then(() => undefined, (e: Error) => String(e));
        assert.ok(error, "up of a system whose switch fails succeeded");
        assert.match(error, new RegExp(`deploying ${systems["switch-fails"].closure} to ${host.address}:22 failed at activate`));
        assert.match(error, new RegExp(`back on generation 2 \\(${systems.v1.closure}\\), as read from the host`));
        assert.equal(host.currentSystem(), systems.v1.closure);
        assert.equal(host.currentGeneration(), 2);
        assert.equal(await recordedClosure(), systems.v1.closure);
    });

    test(`${language}: up deploys version 2; a host switched back by hand shows on refresh`, async () => {
        await setConfiguration("v2");
        const result = await testStack.stack.up();
        assert.equal(result.outputs.closure.value, systems.v2.closure);
        assert.equal(host.currentSystem(), systems.v2.closure);
        switchByHand(fleet, host, systems.v1.closure);
        await testStack.stack.refresh();
        assert.equal(await recordedClosure(), systems.v1.closure);
    });

    test(`${language}: destroy removes the resources; the host keeps running its system`, async () => {
        const result = await testStack.stack.destroy();
        assert.equal(result.summary.result, "succeeded");
        assert.deepEqual((await testStack.stack.exportStack()).deployment.resources ?? [], []);
        assert.equal(host.currentSystem(), systems.v1.closure);
    });
}
