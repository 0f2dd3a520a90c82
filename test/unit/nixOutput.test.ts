// What the deploy reads from Nix and gives it, in the shape each supported Nix has: the two shapes
// of `nix path-info --json` (as Nix 2.8 and Nix 2.26 printed them on this machine, for the local
// store and a binary cache), the settings it adds to the user's, and the "cannot build" hint in
// both spellings. Every deploy from a Nix 2.19+ deployer failed at the build stage before the
// path-info change (`infos.map is not a function`), and a 2.19+ host never used a binary cache.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cannotBuildHint } from "../../deploy/build";
import { parseCachedPaths } from "../../deploy/fetch";
import { NixError, nixConfig, parseNixVersion, parsePathInfo, unsupportedNix } from "../../deploy/transport/nix";

const X = "/nix/store/mydivsscdmlnb3pjc4n1y3dlvzs0v3gd-x";
const NOPE = "/nix/store/00000000000000000000000000000000-nope";

// `nix path-info --json X NOPE` with Nix 2.8 (Debian 12), and with Nix 2.26 (Debian 13).
const NIX_2_8 = `[{"path":"${NOPE}","valid":false},{"path":"${X}","narHash":"sha256-MyEwKR7frLkJXyCTAYmhACAemt2h4EszAo04ltEu78o=","narSize":288,"references":[],"ca":"fixed:r:sha256:1jpg5v8rcf4d08rlpq51vnd1w800l64h34r0bw4vkb6z3qlk089k","registrationTime":1796283450}]`;
const NIX_2_26 = `{"${NOPE}":null,"${X}":{"ca":"fixed:r:sha256:1jpg5v8rcf4d08rlpq51vnd1w800l64h34r0bw4vkb6z3qlk089k","deriver":null,"narHash":"sha256-MyEwKR7frLkJXyCTAYmhACAemt2h4EszAo04ltEu78o=","narSize":288,"references":[],"registrationTime":1796283450,"signatures":[],"ultimate":false}}`;
// The same against a file:// binary cache with Nix 2.26.
const NIX_2_26_CACHE = `{"${NOPE}":null,"${X}":{"ca":"fixed:r:sha256:1jpg5v8rcf4d08rlpq51vnd1w800l64h34r0bw4vkb6z3qlk089k","compression":"xz","deriver":null,"downloadHash":"sha256-RvBKAAoXXF8wfhKqYZXHo6f5LxiQGPZjRdtiwGiTRXA=","downloadSize":168,"narHash":"sha256-MyEwKR7frLkJXyCTAYmhACAemt2h4EszAo04ltEu78o=","narSize":288,"references":["${NOPE}"],"registrationTime":null,"signatures":[],"ultimate":false,"url":"nar/0w25jdlc0qnv8mizc64h30pzk9x3qyan3ahjgqq5yp0p1804mw26.nar.xz"}}`;

test("nix path-info --json is read alike from Nix 2.18 and earlier (an array) and 2.19 and later (an object by path)", () => {
    const expected = [
        { path: NOPE, valid: false, narSize: 0, references: [] },
        { path: X, valid: true, narSize: 288, references: [] },
    ];
    assert.deepEqual(parsePathInfo(NIX_2_8), expected);
    assert.deepEqual(parsePathInfo(NIX_2_26), expected);
    // A later format's keys that are not store paths are passed over.
    assert.deepEqual(parsePathInfo(`{"storeDir":"/nix/store",${NIX_2_26.slice(1)}`), expected);
});

test("a host with Nix 2.19 or later lists what its binary caches hold (the object shape)", () => {
    const cached = parseCachedPaths(`cache file:///caches/one\n${NIX_2_26_CACHE}\n`);
    assert.deepEqual([...cached.keys()], [X]);
    assert.deepEqual(cached.get(X), { cache: "file:///caches/one", narSize: 288, references: [NOPE] });
});

test("flakes are added to the user's Nix settings, never put in place of them", () => {
    const config = nixConfig({ NIX_CONFIG: "experimental-features = pipe-operators\naccess-tokens = github.com=SECRET", PULUMI_NIXOS_NIX_CONFIG: "substituters =" });
    assert.equal(config, "experimental-features = pipe-operators\naccess-tokens = github.com=SECRET\nextra-experimental-features = nix-command flakes\nsubstituters =");
    assert.equal(nixConfig({}), "extra-experimental-features = nix-command flakes");
    assert.doesNotMatch(nixConfig({}), /^experimental-features/m);
});

test("the deployer that cannot build gets the same hint from Nix 2.8 and from Nix 2.21 and later", () => {
    // As Nix 2.8 and Nix 2.26 print it with --max-jobs 0 and no builders.
    assert.match(cannotBuildHint("error: unable to start any build; either increase '--max-jobs' or enable remote builds."), /build: "target"/);
    assert.match(cannotBuildHint("error:\n                           Unable to start any build;\n                           either increase '--max-jobs' or enable remote builds."), /build: "target"/);
    assert.equal(cannotBuildHint("error: builder for '/nix/store/x.drv' failed with exit code 1"), "");
});

test("a Nix outside the supported range is refused, saying which versions are supported; a newer one can be let through", () => {
    // As Nix 2.8 and 2.26 print it here, and as Lix prints it.
    assert.equal(unsupportedNix("the deployer's", "nix (Nix) 2.8.0\n"), undefined);
    assert.equal(unsupportedNix("the host's", "nix-store (Nix) 2.26.3\n"), undefined);
    assert.equal(unsupportedNix("the host's", "nix-store (Lix, like Nix) 2.91.1\n"), undefined);
    assert.equal(unsupportedNix("the host's", "nix (Nix) 2.31.2"), undefined);
    assert.equal(unsupportedNix("the deployer's", "nix (Nix) 2.3.16"),
        "the deployer's Nix is 2.3.16, older than 2.8: pulumi-nixos supports Nix 2.8 to 2.31 and Lix 2.90 to 2.93; upgrade it");
    assert.match(unsupportedNix("the host's", "nix (Nix) 2.32.0") ?? "", /newer than the newest tested \(2\.31\).*PULUMI_NIXOS_ALLOW_UNTESTED_NIX=1/);
    assert.equal(unsupportedNix("the host's", "nix (Nix) 2.32.0", { PULUMI_NIXOS_ALLOW_UNTESTED_NIX: "1" }), undefined);
    assert.match(unsupportedNix("the host's", "") ?? "", /^the host's Nix did not say its version/);
});

test("a Nix error names its cause in both formats: first (Nix up to 2.13), or last after the trace (later Nix)", () => {
    const old = "error: attribute 'no-such-variant' missing\n\n       at /nix/store/x-source/flake.nix:20:4:\n";
    assert.match(new NixError("nix eval", old, "exit code 1").message, /^nix eval failed \(exit code 1\):\n  error: attribute 'no-such-variant' missing/);
    // As Nix 2.26 printed it for the same flake.
    const traced = ["error:", "       … while calling the 'trace' builtin", "         at «string»:20:4:", "             19|       x;", "",
        "       … while evaluating the attribute 'broken'", "", "       error: attribute 'no-such-variant' missing", "       at /nix/store/x-source/flake.nix:20:4:"].join("\n");
    assert.match(new NixError("nix eval", traced, "exit code 1").message, /^nix eval failed \(exit code 1\):\n  error: attribute 'no-such-variant' missing\n  at \/nix\/store/);
});

test("Determinate Nix is read by its Nix version; a path-info shape without store paths is refused, not read as empty", () => {
    assert.deepEqual(parseNixVersion("nix (Determinate Nix 3.4.1) 2.28.2\n"), { implementation: "Nix", version: "2.28.2" });
    assert.equal(unsupportedNix("the deployer's", "nix (Determinate Nix 3.4.1) 2.28.2\n"), undefined);
    assert.throws(() => parsePathInfo('{"version":3,"info":{"abc-x":{"narSize":1}}}'), /a shape this version of pulumi-nixos cannot read/);
    assert.deepEqual(parsePathInfo("{}"), []);
});
