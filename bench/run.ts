// `npm run bench`: a NixosFleet of 1, 10 and 50 test hosts through the real engine, timed and
// measured against the project's goals, with a plain hand-written deploy loop on the same kind of
// hosts as the yardstick, and the deployer's CPU of an earlier revision measured in the same run.
// Writes bench/results/<time>.json (and latest.json) and exits non-zero when a goal is missed.
// Not part of the tests: it needs a quiet machine.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { closurePaths, nix, realiseDerivation } from "../deploy/transport/nix";
import { evaluateConfigurations, evaluationLimits } from "../deploy/evaluate";
import { createTestStack, LIBRARY, REPO_ROOT, TestStack, useTestEngine } from "../test/engine/engine";
import { FIXTURE_FLAKE } from "../test/engine/systemStack";
import { BinaryCacheHost, startBinaryCacheHost } from "../testbed/binaryCache";
import { startTestHosts, switchByHand, TestFleet } from "../testbed/testHosts";
import { NixInvocations, NixProcess } from "../test/engine/nixInvocations";
import { NIXOS_PLUGIN } from "../scripts/plugin";
import { Baseline, BaselineCheckout, DEFAULT_BASELINE, perAddedHost } from "./baseline";
import { FixedCost, measureFixedCost } from "./fixedCost";
import { measurePluginForms } from "./pluginForms";
import { BROKEN, CACHED_CHANGE, CHANGE, FIRST, FLEET_PROGRAM, fleetConfig, HEAVY_FLAKE, measureChange } from "./fleetChange";
import { DeployerCpu, joinDeployerCpuAccount, median, peakMemoryDuring, ProcessKind } from "./probes";

/** The fleet sizes measured; PNX_BENCH_SIZES=1 measures one size only (to compare commits quickly). */
const FLEET_SIZES = (process.env.PNX_BENCH_SIZES ?? "1,10,50").split(",").map(Number);
/** The revision whose deployer CPU the change is compared with; PNX_BENCH_BASELINE=none skips it. */
const BASELINE = process.env.PNX_BENCH_BASELINE ?? DEFAULT_BASELINE;
/** Each fleet size is measured this often (PNX_BENCH_ROUNDS, default 3), on fresh hosts each time; the report gives medians. */
const ROUNDS = Number(process.env.PNX_BENCH_ROUNDS ?? 3);

interface FleetResult {
    hosts: number;
    firstUpSeconds: number;
    /** A preview of the fleet's heavy configurations: all of it, and its `nix eval` processes from the first start to the last end. */
    previewSeconds: number;
    previewEvaluationSeconds: number;
    /** The largest `nix eval` process of the preview (the kernel's maximum RSS). */
    previewEvaluationPeakMiB: number;
    nixEvaluationsPerPreview: number;
    noOpUpSeconds: number;
    changeUpSeconds: number;
    rollbackUpSeconds: number;
    /** Bytes the deployer sent to all hosts during the change, on their links. */
    changeBytesSent: number;
    /** The NAR size of the change's paths the hosts lacked, times the hosts. */
    changeMissingBytes: number;
    /** CPU seconds the whole machine spent during the change, all CPUs together. */
    changeMachineCpuSeconds: number;
    /** Of those, the test hosts' own processes (sshd, nix-store, the switch). */
    changeHostCpuSeconds: number;
    /** The deployer's processes (the `up` and all it started, ssh's master connections too). */
    changeDeployerCpuSeconds: number;
    /** A change whose new paths a binary cache holds, after the rollback: the bytes the deployer sent (not the cache). */
    cachedChangeUpSeconds: number;
    cachedChangeBytesSent: number;
    /** The NAR size of that change's paths the hosts lacked, times the hosts. */
    cachedChangeMissingBytes: number;
    /** The same change by hand: `nix copy` and `ssh … switch-to-configuration`, host after host. */
    handLoopSeconds: number;
    peakMemoryMiB: Record<ProcessKind, number>;
}

const seconds = (startedAt: number) => (Date.now() - startedAt) / 1000;

async function timed(work: () => Promise<unknown>): Promise<number> {
    const startedAt = Date.now();
    await work();
    return seconds(startedAt);
}

/** The NAR bytes of `to`'s closure that a host running `from` lacks. */
async function missingBytes(from: string, to: string): Promise<number> {
    const present = new Set((await closurePaths(from)).map((info) => info.path));
    return (await closurePaths(to)).filter((info) => !present.has(info.path)).reduce((sum, info) => sum + info.narSize, 0);
}

/** From the first `nix eval` process's start to the last one's end. */
function evaluationSpanSeconds(processes: readonly NixProcess[]): number {
    const evaluations = processes.filter((p) => p.subcommand === "eval");
    if (evaluations.length === 0) return 0;
    return (Math.max(...evaluations.map((p) => p.endedAt)) - Math.min(...evaluations.map((p) => p.startedAt))) / 1000;
}

function log(message: string): void {
    console.log(`[bench] ${message}`);
}

interface RoundResult extends FleetResult {
    /** With one host: the no-op up as users run it, and what it is made of. */
    fixedCost?: FixedCost;
}

/** One round on fresh hosts: every measurement of one fleet size. */
async function measureRound(size: number, closures: Record<string, string>, nixCalls: NixInvocations, cache: BinaryCacheHost, deployerCpu: DeployerCpu): Promise<RoundResult> {
    let hosts: TestFleet | undefined;
    let handHosts: TestFleet | undefined;
    let testStack: TestStack | undefined;
    let emptyStack: TestStack | undefined;
    try {
        hosts = await startTestHosts({ count: size, namePrefix: "bench" });
        testStack = await createTestStack(`bench-${size}`, { source: FLEET_PROGRAM }, fleetConfig(hosts));
        const { stack } = testStack;
        const setVersion = (version: string) => stack.setConfig("version", { value: version });
        /** Sets the version, then times `up` alone. */
        const timedUp = async (version: string) => {
            await setVersion(version);
            return timed(() => stack.up());
        };

        log(`${size} host(s): first up`);
        const { result: firstUpSeconds, peakMiB: firstUpPeak } = await peakMemoryDuring(() => timedUp(FIRST));

        log(`${size} host(s): preview of ${size} heavy configuration(s)`);
        await stack.setConfig("heavy", { value: "true" });
        const preview = await nixCalls.during(() => timed(() => stack.preview()));
        await stack.setConfig("heavy", { value: "false" });
        const evaluations = preview.processes.filter((p) => p.subcommand === "eval");

        log(`${size} host(s): no-op up`);
        const noOpUpSeconds = await timedUp(FIRST);
        let fixedCost: FixedCost | undefined;
        if (size === 1) {
            log("1 host: the no-op up through the CLI, and what it is made of");
            emptyStack = await createTestStack("bench-empty", { source: "exports.nothing = true;\n" });
            fixedCost = await measureFixedCost({
                stack: testStack, emptyStack, engineBin: useTestEngine(), library: LIBRARY,
                plugin: path.join(REPO_ROOT, NIXOS_PLUGIN.folder, `pulumi-resource-${NIXOS_PLUGIN.name}`), nixCalls,
                secretKey: "privateKey", plainKey: "version",
            });
        }

        log(`${size} host(s): the change`);
        const change = await measureChange(stack, hosts, CHANGE, deployerCpu);
        for (const host of hosts.hosts) if (host.currentSystem() !== closures[CHANGE]) throw new Error(`bench: ${host.name} does not run the change`);

        log(`${size} host(s): a broken change, rolled back`);
        const generations = hosts.hosts.map((host) => host.currentGeneration());
        await setVersion(BROKEN);
        let rollbackError = "";
        const rollbackUpSeconds = await timed(() => stack.up().then(
            () => Promise.reject(new Error("bench: the broken change was deployed")),
            (error: Error) => void (rollbackError = String(error))));
        if (!/failed at activate[\s\S]*back on generation/.test(rollbackError)) throw new Error(`bench: the broken change failed otherwise:\n${rollbackError}`);
        hosts.hosts.forEach((host, i) => {
            if (host.currentSystem() !== closures[CHANGE] || host.currentGeneration() !== generations[i]) throw new Error(`bench: ${host.name} was not rolled back`);
        });

        log(`${size} host(s): a change a binary cache holds`);
        await stack.setConfig("binaryCaches", { value: JSON.stringify([{ url: cache.url, publicKey: cache.publicKey }]) });
        const [cachedSentBefore, servedBefore] = [hosts.hosts.map((host) => host.bytesSent()), cache.bytesServed()];
        const cachedChangeUpSeconds = await timedUp(CACHED_CHANGE);
        // Each host's link carries the deployer's bytes and, forwarded through this machine, the cache's.
        const cachedChangeBytesSent = hosts.hosts.reduce((sum, host, i) => sum + host.bytesSent() - cachedSentBefore[i], 0) - (cache.bytesServed() - servedBefore);
        for (const host of hosts.hosts) if (host.currentSystem() !== closures[CACHED_CHANGE]) throw new Error(`bench: ${host.name} does not run the cached change`);

        // The fleet stops first: the hand loop runs on a machine as quiet as the deploy had.
        await testStack.remove();
        testStack = undefined;
        hosts.stop();
        log(`${size} host(s): the same change by hand, host after host`);
        handHosts = await startTestHosts({ count: size, namePrefix: "hand" });
        for (const host of handHosts.hosts) switchByHand(handHosts, host, closures[FIRST]);
        const handFleet = handHosts;
        const handLoopSeconds = await timed(async () => {
            for (const host of handFleet.hosts) switchByHand(handFleet, host, closures[CHANGE]);
        });

        return {
            hosts: size,
            firstUpSeconds,
            previewSeconds: preview.result,
            previewEvaluationSeconds: evaluationSpanSeconds(preview.processes),
            previewEvaluationPeakMiB: Math.max(0, ...evaluations.map((p) => p.peakMiB)),
            nixEvaluationsPerPreview: evaluations.length,
            noOpUpSeconds,
            changeUpSeconds: change.seconds,
            rollbackUpSeconds,
            changeBytesSent: change.bytesSent,
            changeMissingBytes: size * await missingBytes(closures[FIRST], closures[CHANGE]),
            changeMachineCpuSeconds: change.machineCpuSeconds,
            changeHostCpuSeconds: change.hostCpuSeconds,
            changeDeployerCpuSeconds: change.deployerCpuSeconds,
            cachedChangeUpSeconds,
            cachedChangeBytesSent,
            cachedChangeMissingBytes: size * await missingBytes(closures[CHANGE], closures[CACHED_CHANGE]),
            handLoopSeconds,
            peakMemoryMiB: {
                program: Math.max(firstUpPeak.program, change.peakMiB.program),
                provider: Math.max(firstUpPeak.provider, change.peakMiB.provider),
            },
            ...(fixedCost ? { fixedCost } : {}),
        };
    } finally {
        await testStack?.remove();
        await emptyStack?.remove();
        hosts?.stop();
        handHosts?.stop();
    }
}

type Measurement = Exclude<keyof FleetResult, "hosts" | "peakMemoryMiB">;

interface FleetSummary extends FleetResult {
    rounds: RoundResult[];
    fixedCost?: FixedCost;
}

/**
 * ROUNDS rounds of one fleet size: the median of each measurement, the peak of the memory.
 * `afterRound` runs after each (the baseline's round of the same size).
 */
async function measureFleet(
    size: number, closures: Record<string, string>, nixCalls: NixInvocations, cache: BinaryCacheHost, deployerCpu: DeployerCpu,
    afterRound: (round: number) => Promise<void>,
): Promise<FleetSummary> {
    const rounds: RoundResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
        log(`${size} host(s): round ${round} of ${ROUNDS}`);
        rounds.push(await measureRound(size, closures, nixCalls, cache, deployerCpu));
        await afterRound(round);
    }
    const measurements = Object.keys(rounds[0]).filter((key): key is Measurement => !["hosts", "peakMemoryMiB", "fixedCost"].includes(key));
    const fixedCosts = rounds.map((round) => round.fixedCost).filter((cost): cost is FixedCost => cost !== undefined);
    return {
        ...Object.fromEntries(measurements.map((key) => [key, median(rounds.map((round) => round[key]))])) as Record<Measurement, number>,
        hosts: size,
        peakMemoryMiB: {
            program: Math.max(...rounds.map((round) => round.peakMemoryMiB.program)),
            provider: Math.max(...rounds.map((round) => round.peakMemoryMiB.provider)),
        },
        ...(fixedCosts.length ? {
            fixedCost: Object.fromEntries(Object.keys(fixedCosts[0]).map((key) => [key, median(fixedCosts.map((cost) => cost[key as keyof FixedCost]))])) as unknown as FixedCost,
        } : {}),
        rounds,
    };
}

interface Goal {
    goal: string;
    value: number;
    limit: number;
    met: boolean;
}

function atMost(goal: string, value: number, limit: number): Goal {
    return { goal, value: Number(value.toFixed(3)), limit: Number(limit.toFixed(3)), met: value <= limit };
}

/** One heavy configuration's evaluation alone (its `nix eval` process), median of three. */
async function oneEvaluationSeconds(nixCalls: NixInvocations): Promise<number> {
    const times: number[] = [];
    for (const configuration of ["host61", "host62", "host63"]) {
        const { processes } = await nixCalls.during(() => evaluateConfigurations(HEAVY_FLAKE, [configuration]));
        times.push(evaluationSpanSeconds(processes));
    }
    return median(times);
}

function goals(results: FleetSummary[], oneEvaluation: number, baseline: Baseline | undefined): Goal[] {
    const one = results.find((r) => r.hosts === 1);
    const largest = results.reduce((a, b) => (b.hosts > a.hosts ? b : a));
    const { workers, memoryMiB } = evaluationLimits();
    const ours = results.length > 1 ? perAddedHost(results) : undefined;
    return [
        ...(one && largest !== one ? [
            atMost(`no-op up on ${largest.hosts} hosts / on 1 host`, largest.noOpUpSeconds / one.noOpUpSeconds, 1.5),
        ] : []),
        ...(largest.hosts >= 50 ? [
            atMost(`change on ${largest.hosts} hosts / the hand loop on them`, largest.changeUpSeconds / largest.handLoopSeconds, 0.6),
        ] : []),
        // Fewer configurations than workers keep only as many workers busy.
        atMost(`evaluation in the preview of ${largest.hosts} heavy configurations, s (1.25 × ${largest.hosts} × ${oneEvaluation.toFixed(2)} s alone ÷ ${Math.min(workers, largest.hosts)} workers)`,
            largest.previewEvaluationSeconds, 1.25 * largest.hosts * oneEvaluation / Math.min(workers, largest.hosts)),
        ...results.map((r) => atMost(`peak memory of an evaluation worker, ${r.hosts} heavy configuration(s), MiB (the budget)`, r.previewEvaluationPeakMiB, memoryMiB)),
        ...(one?.fixedCost ? [atMost("1-host no-op up through the CLI, s", one.fixedCost.noOpUpSeconds, 2)] : []),
        ...(ours !== undefined && baseline ? [
            atMost(`deployer CPU per added host of the change, s (half of ${baseline.revision.slice(0, 7)}'s ${baseline.deployerCpuPerAddedHostSeconds.toFixed(3)} s)`,
                ours, baseline.deployerCpuPerAddedHostSeconds / 2),
        ] : []),
        ...results.map((r) => atMost(`bytes sent / missing paths, ${r.hosts} host(s)`, r.changeBytesSent / r.changeMissingBytes, 1.1)),
        ...results.map((r) => atMost(`bytes the deployer sent / missing paths with a binary cache holding them, ${r.hosts} host(s)`,
            r.cachedChangeBytesSent / r.cachedChangeMissingBytes, 0.02)),
        ...results.map((r) => atMost(`nix evaluation processes per preview (one flake, over its workers), ${r.hosts} host(s)`, r.nixEvaluationsPerPreview, workers)),
    ];
}

/** systemd needs inotify instances per test host: the kernel's default 128 holds about 40 hosts. */
function allowInotifyInstances(hosts: number): void {
    const file = "/proc/sys/fs/inotify/max_user_instances";
    const wanted = 128 + 8 * hosts;
    if (Number(fs.readFileSync(file, "utf8")) < wanted) {
        log(`raising fs.inotify.max_user_instances to ${wanted} for ${hosts} test hosts`);
        fs.writeFileSync(file, String(wanted));
    }
}

async function main(): Promise<void> {
    const engineBin = useTestEngine();
    const nixCalls = new NixInvocations();
    const cacheFolder = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-hosts-"));
    let cache: BinaryCacheHost | undefined;
    let baselineCheckout: BaselineCheckout | undefined;
    const deployerCpu = joinDeployerCpuAccount();
    if (!deployerCpu) throw new Error("bench: the deployer's CPU is counted by a control group, and none can be made here (run as root)");
    try {
        allowInotifyInstances(Math.max(...FLEET_SIZES));
        log("building the fixture systems once, so that every measurement deploys, not builds");
        const systems = await evaluateConfigurations(FIXTURE_FLAKE, [FIRST, CHANGE, BROKEN, CACHED_CHANGE]);
        const closures = Object.fromEntries(Object.entries(systems).map(([name, system]) => [name, system.closure]));
        for (const system of Object.values(systems)) await realiseDerivation(system.derivation);
        log("a binary cache on a test host of its own, holding the cached change");
        cache = await startBinaryCacheHost(cacheFolder);
        await cache.push(closures[CACHED_CHANGE]);
        log("one heavy configuration evaluated alone");
        const oneEvaluation = await oneEvaluationSeconds(nixCalls);

        // The baseline's rounds of the smallest and largest fleet each run beside one of ours.
        let baselineError: string | undefined;
        const dropBaseline = (error: unknown) => {
            // The measurements so far are still reported; the goal that needs it is missed.
            baselineError = String(error);
            log(`the baseline ${BASELINE} could not be measured: ${baselineError}`);
            baselineCheckout?.remove();
            baselineCheckout = undefined;
        };
        baselineCheckout = BASELINE === "none" ? undefined : await BaselineCheckout.build(BASELINE, log).catch((error) => void dropBaseline(error));
        const baselineSizes = [Math.min(...FLEET_SIZES), Math.max(...FLEET_SIZES)];
        const results: FleetSummary[] = [];
        for (const size of FLEET_SIZES) {
            results.push(await measureFleet(size, closures, nixCalls, cache, deployerCpu, async (round) => {
                if (!baselineCheckout || !baselineSizes.includes(size)) return;
                log(`baseline ${BASELINE}: the change on ${size} host(s), round ${round} of ${ROUNDS}`);
                await baselineCheckout.measureRound(size, deployerCpu).catch(dropBaseline);
            }));
        }
        cache.stop();
        cache = undefined;
        const baseline: Baseline | undefined = baselineCheckout?.result();
        log("the plugin's two forms: the bundle run by Node.js on PATH, and the standalone executable");
        const plugin = await measurePluginForms();

        const git = (...args: string[]) => execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
        const report = {
            date: new Date().toISOString(),
            commit: git("rev-parse", "HEAD"),
            uncommittedChanges: git("status", "--porcelain", "--untracked-files=no") !== "",
            machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
            engine: engineBin,
            nix: (await nix(["--version"])).trim(),
            change: `${FIRST} -> ${CHANGE}`,
            cachedChange: `${CHANGE} -> ${CACHED_CHANGE}, its new paths in a binary cache on a test host`,
            evaluation: { ...evaluationLimits(), oneHeavyConfigurationSeconds: oneEvaluation },
            plugin,
            deployerCpuPerAddedHostSeconds: results.length > 1 ? perAddedHost(results) : null,
            baseline: baseline ?? (baselineError ? { revision: BASELINE, error: baselineError } : null),
            fleets: results.map((r) => ({ ...r, handLoopRatio: Number((r.changeUpSeconds / r.handLoopSeconds).toFixed(3)) })),
            goals: [...goals(results, oneEvaluation, baseline),
                ...(baselineError ? [{ goal: `deployer CPU per added host of the change against ${BASELINE}: not measured`, value: NaN, limit: NaN, met: false }] : [])],
        };
        const dir = path.join(REPO_ROOT, "bench/results");
        fs.mkdirSync(dir, { recursive: true });
        const file = path.join(dir, `${report.date.replace(/[:.]/g, "-")}.json`);
        fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
        fs.copyFileSync(file, path.join(dir, "latest.json"));

        console.table(report.fleets.map((r) => ({
            hosts: r.hosts, "first up s": r.firstUpSeconds, "preview s (eval s)": `${r.previewSeconds.toFixed(1)} (${r.previewEvaluationSeconds.toFixed(1)})`,
            "eval MiB": Math.round(r.previewEvaluationPeakMiB), "no-op up s": r.noOpUpSeconds, "change s": r.changeUpSeconds, "rollback s": r.rollbackUpSeconds,
            "by hand s": r.handLoopSeconds, "change / by hand": r.handLoopRatio, "evals/preview": r.nixEvaluationsPerPreview,
            "sent/missing": Number((r.changeBytesSent / r.changeMissingBytes).toFixed(3)),
            "sent/missing, cache": Number((r.cachedChangeBytesSent / r.cachedChangeMissingBytes).toFixed(4)),
            "deployer CPU s/host": Number((r.changeDeployerCpuSeconds / r.hosts).toFixed(3)),
            "program MiB": Math.round(r.peakMemoryMiB.program), "provider MiB": Math.round(r.peakMemoryMiB.provider),
        })));
        const fixedCost = results.find((r) => r.fixedCost)?.fixedCost;
        if (fixedCost) console.log(`[bench] 1-host no-op up through the CLI: ${JSON.stringify(fixedCost)}`);
        console.log(`[bench] the plugin's forms: ${JSON.stringify(plugin)}`);
        for (const goal of report.goals) console.log(`${goal.met ? "met   " : "MISSED"} ${goal.goal}: ${goal.value} (at most ${goal.limit})`);
        console.log(`[bench] wrote ${path.relative(REPO_ROOT, file)}`);
        if (report.goals.some((goal) => !goal.met)) process.exitCode = 1;
    } finally {
        nixCalls.remove();
        cache?.stop();
        fs.rmSync(cacheFolder, { recursive: true, force: true });
        baselineCheckout?.remove();
        deployerCpu.leave();
    }
}

main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
});
