// The pure parts of fetching from binary caches and of building elsewhere: which cached paths a
// host can fetch before the deployer sends the rest, the Nix options that name the caches, and
// which machine a failed build ran on.
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildPlace } from "../../deploy/build";
import { cacheOptions, fetchablePaths, parseCachedPaths } from "../../deploy/fetch";

const P = (name: string) => `/nix/store/${name.padEnd(32, "a")}-${name}`;

test("the host's listing of each cache: the paths a cache holds, the first cache that has one", () => {
    const output = [
        "cache https://one.example",
        JSON.stringify([{ path: P("app"), narSize: 10, references: [P("lib")] }, { path: P("lib"), valid: false }]),
        "cache https://two.example",
        JSON.stringify([{ path: P("app"), narSize: 11, references: [] }]),
        JSON.stringify([{ path: P("lib"), narSize: 20, references: [] }]),
        "",
    ].join("\n");
    const cached = parseCachedPaths(output);
    assert.deepEqual([...cached.keys()].sort(), [P("app"), P("lib")].sort());
    assert.deepEqual(cached.get(P("app")), { cache: "https://one.example", narSize: 10, references: [P("lib")] });
    assert.equal(cached.get(P("lib"))?.cache, "https://two.example");
});

test("a cached path is fetched only when every missing path it refers to can be fetched too", () => {
    const missing = [P("system"), P("app"), P("lib"), P("local")];
    const cached = new Map([
        [P("app"), { references: [P("lib"), P("glibc")] }], // glibc: the host has it
        [P("lib"), { references: [P("lib")] }], // refers to itself
        [P("system"), { references: [P("app"), P("local")] }], // local: built on the deployer, in no cache
        [P("elsewhere"), { references: [] }], // the host has it already
    ]);
    assert.deepEqual([...fetchablePaths(missing, cached)].sort(), [P("app"), P("lib")].sort());
});

test("no caches, no options; several caches, one substituter list and one key list", () => {
    assert.deepEqual(cacheOptions([]), []);
    assert.deepEqual(cacheOptions([{ url: "https://a.example", publicKey: "a-1:k" }, { url: "http://b.example:8080", publicKey: "b-1:l" }]), [
        "--option", "extra-substituters", "https://a.example http://b.example:8080",
        "--option", "extra-trusted-public-keys", "a-1:k b-1:l",
    ]);
});

test("a failed build names the remote builder it ran on, or the deployer", () => {
    const remote = "building '/nix/store/x.drv' on 'ssh://root@10.0.0.9'...\nerror: builder for '/nix/store/x.drv' failed with exit code 1";
    assert.equal(buildPlace(remote), "on the remote builder ssh://root@10.0.0.9");
    assert.equal(buildPlace("building '/nix/store/x.drv'...\nerror: builder for '/nix/store/x.drv' failed"), "on the deployer");
});
