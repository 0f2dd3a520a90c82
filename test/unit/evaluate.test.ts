import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { evaluateConfiguration, evaluateConfigurations, evaluationProcesses, resolveFlakeReference } from "../../deploy/evaluate";
import { REPO_ROOT, useTestEngine } from "../engine/engine";

const FLAKE = `path:${path.join(REPO_ROOT, "nix/fixtures")}`;

before(() => useTestEngine());

test("a configuration evaluates to its closure, derivation and package set without building", async () => {
    const { v2 } = await evaluateConfigurations(FLAKE, ["v2"]);
    assert.match(v2.closure, /^\/nix\/store\/[a-z0-9]{32}-nixos-system-v2-25\.05\.2$/);
    assert.match(v2.derivation, /^\/nix\/store\/[a-z0-9]{32}-nixos-system-v2-25\.05\.2\.drv$/);
    assert.ok(fs.existsSync(v2.derivation), "the evaluation wrote the derivation a deploy builds");
    assert.deepEqual(v2.packages, { app: "2.0", tool: "2.1", extra: "0.3" });
    assert.equal(v2.kernel, "6.6.64");
    assert.equal(v2.nixosRelease, "25.05");
});

test("requests for one flake, one after another, share the evaluation workers' processes", async () => {
    process.env.PULUMI_NIXOS_EVAL_WORKERS = "2";
    const before = evaluationProcesses();
    const results = [];
    for (const name of ["v1", "v2", "v3"]) results.push(await evaluateConfiguration(FLAKE, name));
    delete process.env.PULUMI_NIXOS_EVAL_WORKERS;
    assert.equal(evaluationProcesses() - before, 2);
    assert.equal(new Set(results.map((r) => r.closure)).size, 3);
    const { v2 } = await evaluateConfigurations(FLAKE, ["v2"]);
    assert.deepEqual(results[1], v2);
});

test("a missing configuration fails only its own request", async () => {
    const [good, bad] = await Promise.allSettled([evaluateConfiguration(FLAKE, "v1"), evaluateConfiguration(FLAKE, "nope")]);
    assert.equal(good.status, "fulfilled");
    assert.equal(bad.status, "rejected");
    assert.match(String((bad as PromiseRejectedResult).reason), /has no nixosConfigurations\.nope; it has: /);
});

test("a flake whose configurations cannot all be evaluated: only the broken one fails, the others still evaluate", async () => {
    const flake = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-flake-"));
    try {
        fs.writeFileSync(path.join(flake, "flake.nix"), `{ outputs = { self }: { nixosConfigurations = {
  good.config = { system.build.toplevel = derivation { name = "good"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }; };
  broken.config = throw "this configuration is broken";
}; }; }`);
        const good = await evaluateConfiguration(`path:${flake}`, "good");
        assert.match(good.closure, /-good$/);
        await assert.rejects(evaluateConfiguration(`path:${flake}`, "broken"), /this configuration is broken/);
    } finally {
        fs.rmSync(flake, { recursive: true, force: true });
    }
});

test("local flake paths become absolute; other references stay as given", () => {
    assert.equal(resolveFlakeReference("./nix", "/srv/infra"), "/srv/infra/nix");
    assert.equal(resolveFlakeReference("path:nix", "/srv/infra"), "path:/srv/infra/nix");
    assert.equal(resolveFlakeReference("github:owner/repo/abc", "/srv"), "github:owner/repo/abc");
    assert.equal(resolveFlakeReference("/abs/flake", "/srv"), "/abs/flake");
});
