// The evaluation workers on the real Nix: a flake's configurations split over several `nix eval`
// processes that run at once give what one process gives; an error names its configuration and
// leaves the others evaluated; a worker's memory stays within its budget, going on in a new
// process when its share outgrows it. Each nix process is observed from outside, through a shim
// that runs it under GNU time (start, end, peak memory).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, afterEach, before, test } from "node:test";
import { ConfigurationEvaluationError, evaluateConfiguration, evaluateConfigurations, evaluationLimits } from "../../deploy/evaluate";
import { mostAtOnce, NixInvocations } from "../engine/nixInvocations";
import { OFFLINE_NIX_CONFIG, REPO_ROOT } from "../engine/engine";

const LIGHT = `path:${path.join(REPO_ROOT, "nix/fixtures")}`;
const HEAVY = `path:${path.join(REPO_ROOT, "nix/fixtures/heavy")}`;
const LIGHT_CONFIGURATIONS = ["first-boot", "v1", "v2", "v3", "switch-fails", "unhealthy", "cuts-ssh", "large"];

let nixProcesses: NixInvocations;
let flakeWithBrokenHost: string;

before(() => {
    process.env.PULUMI_NIXOS_NIX_CONFIG ??= OFFLINE_NIX_CONFIG;
    nixProcesses = new NixInvocations();
    // A copy of the light fixture whose host `broken` names a variant that does not exist: its
    // evaluation fails with Nix's "attribute … missing", the others evaluate.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-eval-"));
    fs.copyFileSync(path.join(REPO_ROOT, "nix/fixtures/flake.nix"), path.join(dir, "flake.nix"));
    fs.writeFileSync(path.join(dir, "settings.json"), JSON.stringify({ hosts: { broken: "no-such-variant", fine: "v2" } }));
    flakeWithBrokenHost = `path:${dir}`;
});

after(() => {
    nixProcesses.remove();
    fs.rmSync(flakeWithBrokenHost.slice("path:".length), { recursive: true, force: true });
});

afterEach(() => {
    delete process.env.PULUMI_NIXOS_EVAL_WORKERS;
    delete process.env.PULUMI_NIXOS_EVAL_MEMORY_MB;
});

function useLimits(workers: number, memoryMiB?: number): void {
    process.env.PULUMI_NIXOS_EVAL_WORKERS = String(workers);
    if (memoryMiB !== undefined) process.env.PULUMI_NIXOS_EVAL_MEMORY_MB = String(memoryMiB);
}

test("three workers give exactly what one process gives", async () => {
    useLimits(1);
    const alone = await nixProcesses.during(() => evaluateConfigurations(LIGHT, LIGHT_CONFIGURATIONS));
    useLimits(3);
    const split = await nixProcesses.during(() => evaluateConfigurations(LIGHT, LIGHT_CONFIGURATIONS));
    assert.deepEqual(split.result, alone.result);
    assert.equal(new Set(Object.values(split.result).map((system) => system.closure)).size, LIGHT_CONFIGURATIONS.length);
    assert.equal(alone.processes.filter((p) => p.subcommand === "eval").length, 1);
    assert.equal(split.processes.filter((p) => p.subcommand === "eval").length, 3);
});

test("the workers run at the same time, each evaluating its share in one process", async () => {
    useLimits(2);
    const hosts = ["host0", "host1", "host2", "host3"];
    const { result, processes } = await nixProcesses.during(() => Promise.all(hosts.map((host) => evaluateConfiguration(HEAVY, host))));
    const evaluations = processes.filter((p) => p.subcommand === "eval");
    assert.equal(evaluations.length, 2, "two workers, one process each, for four configurations");
    assert.equal(mostAtOnce(evaluations), 2, "both workers ran at once");
    assert.deepEqual(result.map((system) => system.packages.app), ["1.0", "1.1", "1.2", "1.3"]);
    assert.ok(result.every((system, i) => system.closure.endsWith(`-nixos-system-host${i}-24.11.heavy`)));
});

test("the configurations a fleet names are what its flake's first check evaluates, and no others", async () => {
    useLimits(2);
    // A copy of the heavy flake: a reference of its own, which no earlier request evaluated whole.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-eval-"));
    fs.copyFileSync(path.join(REPO_ROOT, "nix/fixtures/heavy/flake.nix"), path.join(dir, "flake.nix"));
    const flake = `path:${dir}`;
    try {
        const fleet = ["host0", "host1"];
        const first = await nixProcesses.during(async () => [
            await evaluateConfiguration(flake, "host0", fleet), await evaluateConfiguration(flake, "host1", fleet)]);
        const evaluations = first.processes.filter((p) => p.subcommand === "eval");
        assert.equal(evaluations.length, 2, "one worker per configuration, and no process for the second check");
        // A worker that evaluated its share of all 64 configurations keeps about 2 GB (the bench's
        // figure); one heavy configuration takes about 300 MB.
        assert.ok(evaluations.every((p) => p.peakMiB < 1000), `a worker evaluated more than its one configuration: ${evaluations.map((p) => p.peakMiB)}`);
        assert.deepEqual(first.result.map((system) => system.packages.app), ["1.0", "1.1"]);
        const other = await nixProcesses.during(() => evaluateConfiguration(flake, "host2", ["host2"]));
        assert.equal(other.processes.filter((p) => p.subcommand === "eval").length, 1, "a configuration no batch named has a batch of its own");
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("an evaluation error names its configuration, and the other configurations still evaluate", async () => {
    useLimits(2);
    // broken comes first in its worker's share: the worker goes on with the rest after it.
    const names = ["broken", "v1", "fine", "v3"];
    const outcomes = await Promise.allSettled(names.map((name) => evaluateConfiguration(flakeWithBrokenHost, name)));
    const [broken, ...others] = outcomes;
    assert.equal(broken.status, "rejected");
    const error = (broken as PromiseRejectedResult).reason as Error;
    assert.ok(error instanceof ConfigurationEvaluationError);
    assert.match(error.message, /^evaluation of nixosConfigurations\.broken \(flake path:.*\) failed: nix eval failed \(exit code 1\):\n\s+error: attribute 'no-such-variant' missing/);
    assert.deepEqual(others.map((outcome) => outcome.status), ["fulfilled", "fulfilled", "fulfilled"]);
    assert.equal((others[1] as PromiseFulfilledResult<{ packages: Record<string, string> }>).value.packages.app, "2.0");

    await assert.rejects(evaluateConfigurations(flakeWithBrokenHost, ["v1", "broken"]), /nixosConfigurations\.broken .* failed/);
});

test("a worker stays within its memory budget: it goes on in a new process when its share outgrows the budget", async () => {
    const hosts = ["host0", "host1", "host2", "host3", "host4"];
    useLimits(1, 400);
    const bounded = await nixProcesses.during(() => evaluateConfigurations(HEAVY, hosts));
    useLimits(1, 4096);
    const unbounded = await nixProcesses.during(() => evaluateConfigurations(HEAVY, hosts));
    assert.deepEqual(bounded.result, unbounded.result);
    const boundedPeaks = bounded.processes.filter((p) => p.subcommand === "eval").map((p) => p.peakMiB);
    const unboundedPeaks = unbounded.processes.filter((p) => p.subcommand === "eval").map((p) => p.peakMiB);
    assert.equal(unboundedPeaks.length, 1);
    assert.ok(unboundedPeaks[0] > 400, `one process for five configurations needs more than 400 MiB (it took ${unboundedPeaks[0].toFixed(0)} MiB)`);
    // Nix 2.8's collector cannot fit the five in 400 MiB, so the worker goes on in a new process;
    // Nix 2.26's collects enough to evaluate them all in one process within the budget.
    if (/\) 2\.8\./.test(execFileSync("nix", ["--version"], { encoding: "utf8" }))) assert.ok(boundedPeaks.length > 1, "the worker went on in a new process");
    assert.ok(boundedPeaks.length < hosts.length, "but not in one process per configuration");
    assert.ok(Math.max(...boundedPeaks) <= 400, `peaks ${boundedPeaks.map((p) => p.toFixed(0)).join(", ")} MiB within the budget of 400 MiB`);
});

test("a configuration that alone needs more than a worker's budget fails, naming it and the budget", async () => {
    useLimits(1, 200);
    await assert.rejects(evaluateConfigurations(HEAVY, ["host7"]),
        /^ConfigurationEvaluationError: evaluation of nixosConfigurations\.host7 .* it needs more memory than a worker's budget of 200 MiB \(PULUMI_NIXOS_EVAL_MEMORY_MB\)$/);
});

test("the limits come from the environment, workers capped by the memory available", () => {
    useLimits(3, 512);
    assert.deepEqual(evaluationLimits(), { workers: 3, memoryMiB: 512 });
    delete process.env.PULUMI_NIXOS_EVAL_WORKERS;
    assert.equal(evaluationLimits().workers, Math.min(os.availableParallelism(), Math.floor(os.freemem() / 2 ** 29)));
    useLimits(4, 1024 * 1024);
    assert.equal(evaluationLimits().workers, 1, "a budget larger than the free memory leaves one worker");
    process.env.PULUMI_NIXOS_EVAL_WORKERS = "two";
    assert.throws(() => evaluationLimits(), /PULUMI_NIXOS_EVAL_WORKERS must be a positive whole number, not "two"/);
});
