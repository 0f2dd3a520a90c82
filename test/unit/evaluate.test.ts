import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { before, test } from "node:test";
import { evaluateConfiguration, evaluateConfigurations, evaluationProcesses, resolveFlakeReference } from "../../components/deploy/evaluate";
import { REPO_ROOT, useTestEngine } from "../engine/engine";

const FLAKE = `path:${path.join(REPO_ROOT, "nix/fixtures")}`;

before(() => useTestEngine());

test("a configuration evaluates to its closure, derivation and package set without building", async () => {
    const { v2 } = await evaluateConfigurations(FLAKE, ["v2"]);
    assert.match(v2.closure, /^\/nix\/store\/[a-z0-9]{32}-nixos-system-v2-24\.11\.2$/);
    assert.match(v2.derivation, /^\/nix\/store\/[a-z0-9]{32}-nixos-system-v2-24\.11\.2\.drv$/);
    assert.ok(fs.existsSync(v2.derivation), "the evaluation wrote the derivation a deploy builds");
    assert.deepEqual(v2.packages, { app: "2.0", tool: "2.1", extra: "0.3" });
    assert.equal(v2.kernel, "6.6.64");
    assert.equal(v2.nixosRelease, "24.11");
});

test("requests for one flake made together share one nix process", async () => {
    const before = evaluationProcesses();
    const results = await Promise.all(["v1", "v2", "v3"].map((name) => evaluateConfiguration(FLAKE, name)));
    assert.equal(evaluationProcesses() - before, 1);
    assert.equal(new Set(results.map((r) => r.closure)).size, 3);
});

test("a missing configuration fails only its own request", async () => {
    const [good, bad] = await Promise.allSettled([evaluateConfiguration(FLAKE, "v1"), evaluateConfiguration(FLAKE, "nope")]);
    assert.equal(good.status, "fulfilled");
    assert.equal(bad.status, "rejected");
    assert.match(String((bad as PromiseRejectedResult).reason), /has no nixosConfigurations\.nope; it has: /);
});

test("local flake paths become absolute; other references stay as given", () => {
    assert.equal(resolveFlakeReference("./nix", "/srv/infra"), "/srv/infra/nix");
    assert.equal(resolveFlakeReference("path:nix", "/srv/infra"), "path:/srv/infra/nix");
    assert.equal(resolveFlakeReference("github:owner/repo/abc", "/srv"), "github:owner/repo/abc");
    assert.equal(resolveFlakeReference("/abs/flake", "/srv"), "/abs/flake");
});
