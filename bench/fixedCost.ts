// What a 1-host no-op `pulumi up` costs as users run it (the CLI, `pulumi up --yes --skip-preview`),
// and what that time is made of: the engine with an empty program (and within it the CLI's start,
// the passphrase's key and the TypeScript compiler), loading @pulumi/pulumi, the library (and
// @pulumi/aws within it), starting the provider plugin, and the flake's evaluation.
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestStack } from "../test/engine/engine";
import { NixInvocations } from "../test/engine/nixInvocations";
import { median } from "./probes";

export interface FixedCost {
    /** `pulumi up --yes --skip-preview` of the 1-host stack when nothing changes. */
    noOpUpSeconds: number;
    /** The same for a program that declares no resource: the engine, the language host and its part of @pulumi/pulumi. */
    emptyProgramUpSeconds: number;
    /** Of that, `pulumi version`: starting the CLI (a Go program of over 100 MB) to do nothing. */
    cliStartSeconds: number;
    /**
     * Of that, deriving the key of the stack's passphrase secrets (PBKDF2, a million rounds), which
     * every command of a passphrase stack does: `pulumi config get` of a secret less of a plain value.
     */
    passphraseKeySeconds: number;
    /**
     * Of that, the language host's harness loading the TypeScript compiler and ts-node, which it does
     * for a JavaScript program too unless `runtime.options.typescript` is false, an option the
     * language host built here (v3.68) never receives from this engine.
     */
    typeScriptLoadSeconds: number;
    /** `require("@pulumi/pulumi")` in a fresh Node.js: what every program that declares a resource loads, the empty one not. */
    pulumiLoadSeconds: number;
    /** Loading the library in a fresh Node.js process, beyond @pulumi/pulumi. */
    libraryLoadSeconds: number;
    /** Of that, @pulumi/aws (loaded whether or not an AWS resource is declared). */
    awsLoadSeconds: number;
    /** From starting the provider plugin until it tells the engine its port (with its code cache, as after a first command). */
    providerStartSeconds: number;
    /** The flake's evaluation during the no-op (the `nix eval` processes, start to end). */
    evaluationSeconds: number;
}


/** The median of three runs of `measure`. */
function medianOfThree(measure: () => number): number {
    return median([1, 2, 3].map(measure));
}

/** Runs the CLI in the stack's project, with the stack's backend and secrets, and times it. */
function timedCli(stack: TestStack, engineBin: string, args: string[]): number {
    const startedAt = process.hrtime.bigint();
    execFileSync(path.join(engineBin, "pulumi"), args, {
        cwd: stack.stack.workspace.workDir,
        env: { ...process.env, ...stack.stack.workspace.envVars, PULUMI_HOME: stack.stack.workspace.pulumiHome },
        stdio: ["ignore", "ignore", "pipe"],
    });
    return Number(process.hrtime.bigint() - startedAt) / 1e9;
}

/** Seconds a fresh Node.js process takes to run `script` (less the same process doing nothing). */
function nodeSeconds(script: string, cwd: string): number {
    const run = (code: string) => {
        const startedAt = process.hrtime.bigint();
        execFileSync(process.execPath, ["-e", code], { cwd, stdio: "ignore" });
        return Number(process.hrtime.bigint() - startedAt) / 1e9;
    };
    return medianOfThree(() => run(script) - run(""));
}

/**
 * Spawns a provider plugin and waits for its port line, as the engine does: the seconds that took
 * and the process's peak memory then (of the process the launcher became). It is killed `lingerMs` after.
 */
function providerStart(plugin: string, env: NodeJS.ProcessEnv = process.env, lingerMs = 0): Promise<{ seconds: number; peakMiB: number }> {
    return new Promise((resolve, reject) => {
        const startedAt = process.hrtime.bigint();
        const child = spawn(plugin, [], { env, stdio: ["ignore", "pipe", "ignore"] });
        child.stdout.once("data", () => {
            const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
            const peakKiB = Number(/^VmHWM:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? NaN);
            setTimeout(() => {
                child.kill("SIGKILL");
                resolve({ seconds, peakMiB: Math.round(peakKiB / 1024) });
            }, lingerMs);
        });
        child.once("error", reject);
        child.once("exit", (code) => reject(new Error(`${plugin} exited (code ${code}) before it told its port`)));
    });
}

/**
 * The median start (and peak memory at the port line) of `runs` starts of a plugin, after a first
 * start that lives long enough to write its code cache, as a user's first command does.
 */
export async function warmProviderStart(plugin: string, runs: number, env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; peakMiB: number }> {
    await providerStart(plugin, env, 1500);
    const starts = [];
    for (let i = 0; i < runs; i++) starts.push(await providerStart(plugin, env));
    return { seconds: median(starts.map((start) => start.seconds)), peakMiB: median(starts.map((start) => start.peakMiB)) };
}

export async function measureFixedCost(options: {
    stack: TestStack; emptyStack: TestStack; engineBin: string; library: string; plugin: string; nixCalls: NixInvocations;
    /** A secret and a plain value of the stack's config. */
    secretKey: string; plainKey: string;
}): Promise<FixedCost> {
    const { stack, emptyStack, engineBin, library, plugin, nixCalls, secretKey, plainKey } = options;
    const onStack = (...args: string[]) => [...args, "--stack", "test", "--non-interactive"];
    const up = onStack("up", "--yes", "--skip-preview");
    const noOp = await nixCalls.during(async () => medianOfThree(() => timedCli(stack, engineBin, up)));
    const evaluations = noOp.processes.filter((p) => p.subcommand === "eval");
    const evaluationSeconds = evaluations.length ? median(evaluations.map((p) => (p.endedAt - p.startedAt) / 1000)) : 0;
    timedCli(emptyStack, engineBin, up);
    const cwd = stack.stack.workspace.workDir;
    const providerStartSeconds = (await warmProviderStart(plugin, 3)).seconds;
    const pulumiLoadSeconds = nodeSeconds(`require("@pulumi/pulumi")`, cwd);
    const typeScriptSupport = `require("@pulumi/pulumi/tsutils")`;
    return {
        noOpUpSeconds: noOp.result,
        emptyProgramUpSeconds: medianOfThree(() => timedCli(emptyStack, engineBin, up)),
        cliStartSeconds: medianOfThree(() => timedCli(stack, engineBin, ["version"])),
        passphraseKeySeconds: medianOfThree(() =>
            timedCli(stack, engineBin, onStack("config", "get", secretKey)) - timedCli(stack, engineBin, onStack("config", "get", plainKey))),
        // The harness's own lookup, which loads the compiler it finds (the program's, else its vendored one).
        typeScriptLoadSeconds: nodeSeconds(`${typeScriptSupport}.typeScriptRequireStrings()`, cwd) - nodeSeconds(typeScriptSupport, cwd),
        pulumiLoadSeconds,
        libraryLoadSeconds: nodeSeconds(`require("@pulumi/pulumi"); require(${JSON.stringify(library)})`, cwd) - pulumiLoadSeconds,
        awsLoadSeconds: nodeSeconds(`require("@pulumi/pulumi"); require("@pulumi/aws")`, cwd) - pulumiLoadSeconds,
        providerStartSeconds,
        evaluationSeconds,
    };
}
