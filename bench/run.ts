// `npm run bench`: a NixosFleet of 1, 5 and 10 test hosts through the real engine, timed and
// measured against the project's goals, with a plain hand-written deploy loop on the same kind of
// hosts as the yardstick. Writes bench/results/<time>.json (and latest.json) and exits non-zero
// when a goal is missed. Not part of the tests: it needs a quiet machine.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { closurePaths, nix, realiseDerivation } from "../components/transport/nix";
import { evaluateConfigurations, evaluationLimits } from "../components/deploy/evaluate";
import { createTestStack, REPO_ROOT, TestStack, useTestEngine } from "../test/engine/engine";
import { FIXTURE_FLAKE, HEALTHY_CHECK } from "../test/engine/systemStack";
import { BinaryCacheHost, startBinaryCacheHost } from "../testbed/binaryCache";
import { startTestHosts, switchByHand, TestFleet } from "../testbed/testHosts";
import { NixInvocations } from "../test/engine/nixInvocations";
import { machineCpuSeconds, peakMemoryDuring, ProcessKind } from "./probes";

/** The fleet sizes measured; PNX_BENCH_SIZES=1 measures one size only (to compare commits quickly). */
const FLEET_SIZES = (process.env.PNX_BENCH_SIZES ?? "1,5,10").split(",").map(Number);
/** The system every host starts on, the change (a new package and 3 MiB of new paths), the broken change. */
const FIRST = "v1";
const CHANGE = "large";
const BROKEN = "switch-fails";
/** A change like CHANGE, with other new paths, which a binary cache holds. */
const CACHED_CHANGE = "large-2";
/** Each fleet size is measured this often, on fresh hosts each time; the report gives medians. */
const ROUNDS = 3;

/** A fleet program as a user writes it, run by the language host in its own process. */
const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const { NixosFleet } = require(LIBRARY);
const config = new pulumi.Config();
const version = config.require("version");
const fleet = new NixosFleet("bench", {
    flake: config.require("flake"),
    sshPrivateKey: config.requireSecret("privateKey"),
    deploy: { healthChecks: { commands: [config.requireObject("healthCheck")] }, binaryCaches: config.getObject("binaryCaches") },
    hosts: Object.fromEntries(config.requireObject("hosts").map((host) =>
        [host.name, { address: host.address, hostPublicKey: host.hostPublicKey, configuration: version }])),
});
exports.hosts = fleet.hosts;
`;

interface FleetResult {
    hosts: number;
    firstUpSeconds: number;
    previewSeconds: number;
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
    /** Of those, the test hosts' own processes (sshd, nix-store, the switch); null without control groups. */
    changeHostCpuSeconds: number;
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
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

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

function log(message: string): void {
    console.log(`[bench] ${message}`);
}

/** One round on fresh hosts: every measurement of one fleet size. */
async function measureRound(size: number, closures: Record<string, string>, nixCalls: NixInvocations, cache: BinaryCacheHost): Promise<FleetResult> {
    let hosts: TestFleet | undefined;
    let handHosts: TestFleet | undefined;
    let testStack: TestStack | undefined;
    try {
        hosts = await startTestHosts({ count: size, namePrefix: "bench" });
        testStack = await createTestStack(`bench-${size}`, { source: PROGRAM }, {
            flake: { value: FIXTURE_FLAKE },
            privateKey: { value: hosts.deployerPrivateKey, secret: true },
            healthCheck: { value: JSON.stringify(HEALTHY_CHECK) },
            hosts: { value: JSON.stringify(hosts.hosts.map(({ name, address, hostPublicKey }) => ({ name, address, hostPublicKey }))) },
        });
        const { stack } = testStack;
        const setVersion = (version: string) => stack.setConfig("version", { value: version });
        /** Sets the version, then times `up` alone. */
        const timedUp = async (version: string) => {
            await setVersion(version);
            return timed(() => stack.up());
        };

        log(`${size} host(s): first up`);
        const { result: firstUpSeconds, peakMiB: firstUpPeak } = await peakMemoryDuring(() => timedUp(FIRST));

        log(`${size} host(s): preview of the change`);
        await setVersion(CHANGE);
        const preview = await nixCalls.countDuring("eval", () => timed(() => stack.preview()));

        log(`${size} host(s): no-op up`);
        const noOpUpSeconds = await timedUp(FIRST);

        log(`${size} host(s): the change`);
        const sentBefore = hosts.hosts.map((host) => host.bytesSent());
        const fleetHosts = hosts.hosts;
        const hostCpu = () => fleetHosts.reduce((sum, host) => sum + (host.cpuSeconds() ?? NaN), 0);
        const [hostCpuBefore, machineCpuBefore] = [hostCpu(), machineCpuSeconds()];
        const { result: changeUpSeconds, peakMiB: changePeak } = await peakMemoryDuring(() => timedUp(CHANGE));
        const [changeHostCpuSeconds, changeMachineCpuSeconds] = [hostCpu() - hostCpuBefore, machineCpuSeconds() - machineCpuBefore];
        const changeBytesSent = hosts.hosts.reduce((sum, host, i) => sum + host.bytesSent() - sentBefore[i], 0);
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
            nixEvaluationsPerPreview: preview.count,
            noOpUpSeconds,
            changeUpSeconds,
            rollbackUpSeconds,
            changeBytesSent,
            changeMissingBytes: size * await missingBytes(closures[FIRST], closures[CHANGE]),
            changeMachineCpuSeconds,
            changeHostCpuSeconds,
            cachedChangeUpSeconds,
            cachedChangeBytesSent,
            cachedChangeMissingBytes: size * await missingBytes(closures[CHANGE], closures[CACHED_CHANGE]),
            handLoopSeconds,
            peakMemoryMiB: {
                program: Math.max(firstUpPeak.program, changePeak.program),
                provider: Math.max(firstUpPeak.provider, changePeak.provider),
            },
        };
    } finally {
        await testStack?.remove();
        hosts?.stop();
        handHosts?.stop();
    }
}

type Measurement = Exclude<keyof FleetResult, "hosts" | "peakMemoryMiB">;

/** ROUNDS rounds of one fleet size: the median of each measurement, the peak of the memory. */
async function measureFleet(size: number, closures: Record<string, string>, nixCalls: NixInvocations, cache: BinaryCacheHost): Promise<FleetResult & { rounds: FleetResult[] }> {
    const rounds: FleetResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
        log(`${size} host(s): round ${round} of ${ROUNDS}`);
        rounds.push(await measureRound(size, closures, nixCalls, cache));
    }
    const measurements = Object.keys(rounds[0]).filter((key): key is Measurement => key !== "hosts" && key !== "peakMemoryMiB");
    return {
        ...Object.fromEntries(measurements.map((key) => [key, median(rounds.map((round) => round[key]))])) as Record<Measurement, number>,
        hosts: size,
        peakMemoryMiB: {
            program: Math.max(...rounds.map((round) => round.peakMemoryMiB.program)),
            provider: Math.max(...rounds.map((round) => round.peakMemoryMiB.provider)),
        },
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
    return { goal, value: Number(value.toFixed(3)), limit, met: value <= limit };
}

function goals(results: FleetResult[]): Goal[] {
    const one = results.find((r) => r.hosts === 1);
    const ten = results.find((r) => r.hosts === 10);
    return [
        ...(one && ten ? [
            atMost("no-op up on 10 hosts / on 1 host", ten.noOpUpSeconds / one.noOpUpSeconds, 1.5),
            atMost("change on 10 hosts / on 1 host", ten.changeUpSeconds / one.changeUpSeconds, 1.5),
        ] : []),
        ...results.map((r) => atMost(`bytes sent / missing paths, ${r.hosts} host(s)`, r.changeBytesSent / r.changeMissingBytes, 1.1)),
        ...results.map((r) => atMost(`bytes the deployer sent / missing paths with a binary cache holding them, ${r.hosts} host(s)`,
            r.cachedChangeBytesSent / r.cachedChangeMissingBytes, 0.02)),
        ...results.map((r) => atMost(`nix evaluation processes per preview (one flake, over its workers), ${r.hosts} host(s)`,
            r.nixEvaluationsPerPreview, evaluationLimits().workers)),
    ];
}

async function main(): Promise<void> {
    const engineBin = useTestEngine();
    const nixCalls = new NixInvocations();
    const cacheFolder = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-hosts-"));
    let cache: BinaryCacheHost | undefined;
    try {
        log("building the fixture systems once, so that every measurement deploys, not builds");
        const systems = await evaluateConfigurations(FIXTURE_FLAKE, [FIRST, CHANGE, BROKEN, CACHED_CHANGE]);
        const closures = Object.fromEntries(Object.entries(systems).map(([name, system]) => [name, system.closure]));
        for (const system of Object.values(systems)) await realiseDerivation(system.derivation);
        log("a binary cache on a test host of its own, holding the cached change");
        cache = await startBinaryCacheHost(cacheFolder);
        await cache.push(closures[CACHED_CHANGE]);

        const results: (FleetResult & { rounds: FleetResult[] })[] = [];
        for (const size of FLEET_SIZES) results.push(await measureFleet(size, closures, nixCalls, cache));
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
            fleets: results.map((r) => ({ ...r, handLoopRatio: Number((r.changeUpSeconds / r.handLoopSeconds).toFixed(3)) })),
            goals: goals(results),
        };
        const dir = path.join(REPO_ROOT, "bench/results");
        fs.mkdirSync(dir, { recursive: true });
        const file = path.join(dir, `${report.date.replace(/[:.]/g, "-")}.json`);
        fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
        fs.copyFileSync(file, path.join(dir, "latest.json"));

        console.table(report.fleets.map((r) => ({
            hosts: r.hosts, "first up s": r.firstUpSeconds, "preview s": r.previewSeconds, "no-op up s": r.noOpUpSeconds, "change s": r.changeUpSeconds, "rollback s": r.rollbackUpSeconds,
            "by hand s": r.handLoopSeconds, "change / by hand": r.handLoopRatio, "evals/preview": r.nixEvaluationsPerPreview,
            "sent/missing": Number((r.changeBytesSent / r.changeMissingBytes).toFixed(3)),
            "sent/missing, cache": Number((r.cachedChangeBytesSent / r.cachedChangeMissingBytes).toFixed(4)),
            "change CPU s: all, hosts'": `${r.changeMachineCpuSeconds.toFixed(1)}, ${Number.isNaN(r.changeHostCpuSeconds) ? "n/a" : r.changeHostCpuSeconds.toFixed(1)}`,
            "program MiB": Math.round(r.peakMemoryMiB.program), "provider MiB": Math.round(r.peakMemoryMiB.provider),
        })));
        for (const goal of report.goals) console.log(`${goal.met ? "met   " : "MISSED"} ${goal.goal}: ${goal.value} (at most ${goal.limit})`);
        console.log(`[bench] wrote ${path.relative(REPO_ROOT, file)}`);
        if (report.goals.some((goal) => !goal.met)) process.exitCode = 1;
    } finally {
        nixCalls.remove();
        cache?.stop();
        fs.rmSync(cacheFolder, { recursive: true, force: true });
    }
}

main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
});
