// The build stage on the deployer's real Nix store: what a deploy builds stays a garbage-collector
// root while the deployer runs (a collection mid-rollout must not delete a system not yet copied),
// and no longer once it has exited, also when it was killed.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { buildOnDeployer, SystemSource } from "../../deploy/build";
import { evaluateConfigurations, SystemEvaluation } from "../../deploy/evaluate";
import { ROOTS_FOLDER_PREFIX } from "../../deploy/transport/nix";
import { OFFLINE_NIX_CONFIG, REPO_ROOT } from "../engine/engine";
import { FIXTURE_FLAKE } from "../engine/systemStack";

let v1: SystemEvaluation;

before(async () => {
    process.env.PULUMI_NIXOS_NIX_CONFIG ??= OFFLINE_NIX_CONFIG;
    ({ v1 } = await evaluateConfigurations(FIXTURE_FLAKE, ["v1"]));
});

/** The deployer roots (folders of ours under the temporary directory) that keep `storePath` alive. */
function deployerRootsOf(storePath: string): string[] {
    const output = execFileSync("nix-store", ["--query", "--roots", storePath], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return output.split("\n").map((line) => line.split(" -> ")[0])
        .filter((root) => root.startsWith(path.join(os.tmpdir(), ROOTS_FOLDER_PREFIX)));
}

/**
 * Builds `source` in a deployer process of its own, which prints the deployer roots of `closure`
 * and then exits, or kills itself as a crash would.
 */
function buildInAnotherProcess(source: SystemSource, closure: string, end: "exit" | "SIGKILL"): string[] {
    const script = `
        const { buildOnDeployer } = require(${JSON.stringify(path.join(REPO_ROOT, "dist/deploy/build"))});
        const { execFileSync } = require("node:child_process");
        buildOnDeployer(${JSON.stringify(source)}, () => undefined).then(() => {
            process.stdout.write(execFileSync("nix-store", ["--query", "--roots", ${JSON.stringify(closure)}], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
            ${end === "exit" ? "process.exit(0)" : 'process.kill(process.pid, "SIGKILL")'};
        });`;
    const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    assert.equal(child.signal ?? "exit", end, child.stderr);
    return child.stdout.split("\n").map((line) => line.split(" -> ")[0])
        .filter((root) => root.startsWith(path.join(os.tmpdir(), ROOTS_FOLDER_PREFIX)));
}

test("a built system is a GC root of the deployer while it runs, and not after it exits", () => {
    const rootsWhileRunning = buildInAnotherProcess({ derivation: v1.derivation }, v1.closure, "exit");
    assert.equal(rootsWhileRunning.length, 1);
    assert.ok(!deployerRootsOf(v1.closure).includes(rootsWhileRunning[0]));
});

test("a store path built elsewhere is rooted the same way", () => {
    assert.equal(buildInAnotherProcess({ storePath: v1.closure }, v1.closure, "exit").length, 1);
});

test("the roots of a killed deployer are removed by the next deploy", async () => {
    const [abandoned] = buildInAnotherProcess({ derivation: v1.derivation }, v1.closure, "SIGKILL");
    assert.ok(deployerRootsOf(v1.closure).includes(abandoned));
    // This process's first build: that is when a deployer sweeps the folders of dead ones.
    await buildOnDeployer({ derivation: v1.derivation }, () => undefined);
    assert.ok(!deployerRootsOf(v1.closure).includes(abandoned));
});
