// The Pulumi-free helpers behind `files`: digests (keyed, so a digest alone does not let anyone test
// guesses of a content), the preview's changes by path, and the plan against what the host holds.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import {
    changedFiles, desiredDigests, fileDigest, HostFile, hostFile, newDigestKey, observedDigests, planFiles,
} from "../../deploy/files";
import { hostFilesSchema } from "../../schema/inputs";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const files = (settings: Record<string, unknown>): HostFile[] => hostFilesSchema.parse(settings).map(hostFile);

test("the schema fills the defaults: root, 0400, before activation; a bare name lands in /run/keys; base64 is decoded", () => {
    const [b64, plain] = files({ "/etc/app/key.bin": { content: Buffer.from([0, 1, 255]).toString("base64"), encoding: "base64" }, "db-password": { content: "pw" } });
    assert.deepEqual(b64.content, Buffer.from([0, 1, 255]));
    assert.deepEqual({ ...plain, content: plain.content.toString() },
        { path: "/run/keys/db-password", content: "pw", owner: "root", group: "root", mode: 0o400, activation: "before" });
});

test("a digest depends on the key: the same short password gives unrelated digests, and none is its plain hash", () => {
    const state = { owner: "root", group: "root", mode: 0o400, sha256: sha256("1234") };
    const [a, b] = [newDigestKey(), newDigestKey()];
    assert.notEqual(a, b);
    assert.equal(fileDigest(a, "/run/keys/pin", state), fileDigest(a, "/run/keys/pin", state));
    assert.notEqual(fileDigest(a, "/run/keys/pin", state), fileDigest(b, "/run/keys/pin", state));
    assert.notEqual(fileDigest(a, "/run/keys/pin", state), sha256("1234"));
    for (const changed of [{ ...state, mode: 0o440 }, { ...state, owner: "app" }, { ...state, group: "app" }, { ...state, sha256: sha256("1235") }]) {
        assert.notEqual(fileDigest(a, "/run/keys/pin", changed), fileDigest(a, "/run/keys/pin", state));
    }
});

test("what the host holds digests like what is wanted, so an unchanged file is no change", () => {
    const key = newDigestKey();
    const wanted = files({ "/run/keys/a": { content: "secret-a", owner: "app", mode: "0440" } });
    const observed = observedDigests(key, { "/run/keys/a": { owner: "app", group: "root", mode: 0o440, sha256: sha256("secret-a") }, "/run/keys/gone": undefined });
    assert.deepEqual(observed, desiredDigests(key, wanted));
});

test("the changes name paths only: written when new or different, removed when no longer wanted", () => {
    const key = newDigestKey();
    const recorded = desiredDigests(key, files({ "/run/keys/a": { content: "1" }, "/run/keys/b": { content: "2" }, "/run/keys/c": { content: "3" } }));
    const wanted = desiredDigests(key, files({ "/run/keys/a": { content: "1" }, "/run/keys/b": { content: "changed" }, "/run/keys/d": { content: "4" } }));
    assert.deepEqual(changedFiles(recorded, wanted), { write: ["/run/keys/b", "/run/keys/d"], remove: ["/run/keys/c"] });
    assert.deepEqual(changedFiles(recorded, recorded), { write: [], remove: [] });
});

test("the plan sends only what the host lacks or holds differently, and removes only files it manages that are there", () => {
    const wanted = files({ "/run/keys/same": { content: "s" }, "/run/keys/mode": { content: "m" }, "/run/keys/new": { content: "n" } });
    const held = (content: string, mode = 0o400) => ({ owner: "root", group: "root", mode, sha256: sha256(content) });
    const plan = planFiles(wanted, {
        "/run/keys/same": held("s"), "/run/keys/mode": held("m", 0o444), "/run/keys/new": undefined,
        "/run/keys/old": held("o"), "/run/keys/deleted-by-hand": undefined,
    }, ["/run/keys/old", "/run/keys/deleted-by-hand", "/run/keys/same"]);
    assert.deepEqual(plan.write.map((file) => file.path), ["/run/keys/mode", "/run/keys/new"]);
    assert.deepEqual(plan.remove, ["/run/keys/old"]);
});
