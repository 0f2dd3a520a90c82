// Stage 1, in the provider's check: the closure of each configuration and its derivation, by
// evaluation only (a preview never builds), with the package set that a preview shows beside it.
// A flake is evaluated once, the only evaluation of a deploy: split over a few `nix eval` workers
// that run at once, each evaluating its share of the configurations in one process, with a memory
// budget per worker.
//
// nix-eval-jobs, made for this, is not packaged in Debian bookworm (`apt-cache policy
// nix-eval-jobs` knows no such package), so the workers are plain `nix eval` processes that report
// each configuration as they finish it, through a trace line.
import * as os from "node:os";
import * as path from "node:path";
import { NixError, nix } from "./transport/nix";

/** What a preview needs to know about one configuration. */
export interface SystemEvaluation {
    /** The store path of config.system.build.toplevel. */
    closure: string;
    /**
     * The toplevel's derivation (written to the deployer's store by the evaluation): a deploy
     * builds exactly this, so it deploys what the preview showed without evaluating again.
     */
    derivation: string;
    /** pname → version of config.environment.systemPackages (versions joined when a name repeats). */
    packages: Record<string, string>;
    /** config.boot.kernelPackages.kernel.version, when the configuration has one. */
    kernel?: string;
    /** config.system.nixos.release, when the configuration has one. */
    nixosRelease?: string;
}

export class ConfigurationNotFoundError extends Error {
    constructor(flake: string, configuration: string, available: string[]) {
        super(`flake ${flake} has no nixosConfigurations.${configuration}` +
            (available.length ? `; it has: ${available.join(", ")}` : "; it has no nixosConfigurations at all"));
        this.name = "ConfigurationNotFoundError";
    }
}

/**
 * Makes a local flake path absolute, so that the reference means the same thing in the provider
 * process and at refresh time. Other references (github:, git+https:, path:/abs) are kept as given.
 */
export function resolveFlakeReference(flake: string, baseDir = process.cwd()): string {
    if (flake.startsWith("path:") && !flake.startsWith("path:/")) return `path:${path.resolve(baseDir, flake.slice(5))}`;
    if (flake.startsWith(".") || (!flake.includes(":") && !flake.startsWith("/"))) return path.resolve(baseDir, flake);
    return flake;
}

/** A configuration whose evaluation failed: names it, with Nix's error. */
export class ConfigurationEvaluationError extends Error {
    constructor(flake: string, configuration: string, detail: string) {
        super(`evaluation of nixosConfigurations.${configuration} (flake ${flake}) failed: ${detail}`);
        this.name = "ConfigurationEvaluationError";
    }
}

/** How the evaluation of one flake is spread, from the environment. */
export interface EvaluationLimits {
    /** `nix eval` processes running at once. */
    workers: number;
    /** Memory budget of each worker (MiB): its Nix heap is bounded to fit in it. */
    memoryMiB: number;
}

/** nix-eval-jobs' default memory limit per worker; a NixOS configuration needs 0.5 to 1.5 GiB. */
const DEFAULT_MEMORY_MIB = 4096;
/**
 * The part of a worker's budget left outside Nix's garbage-collected heap, which is all that
 * GC_MAXIMUM_HEAP_SIZE bounds: the program, the symbol table, parsed files (80 to 100 MiB beside
 * heaps of 200 to 500 MiB, measured with Nix 2.8 here).
 */
const outsideHeapMiB = (memoryMiB: number) => Math.max(128, memoryMiB / 8);

function positiveInteger(variable: string, fallback: number): number {
    const text = process.env[variable];
    if (text === undefined || text === "") return fallback;
    if (!/^[1-9][0-9]*$/.test(text)) throw new Error(`${variable} must be a positive whole number, not ${JSON.stringify(text)}`);
    return Number(text);
}

/**
 * Workers and memory, as colmena and nix-eval-jobs size them: PULUMI_NIXOS_EVAL_WORKERS (default
 * the number of CPUs), at most as many as the available memory holds budgets of
 * PULUMI_NIXOS_EVAL_MEMORY_MB (default 4096), and at least one.
 */
export function evaluationLimits(): EvaluationLimits {
    const memoryMiB = positiveInteger("PULUMI_NIXOS_EVAL_MEMORY_MB", DEFAULT_MEMORY_MIB);
    const requested = positiveInteger("PULUMI_NIXOS_EVAL_WORKERS", os.availableParallelism());
    const fitInMemory = Math.floor(os.freemem() / (memoryMiB * 2 ** 20));
    return { workers: Math.max(1, Math.min(requested, fitInMemory)), memoryMiB };
}

/**
 * Nix starts its heap at 384 MiB, and the collector runs whenever a part of the heap has been
 * allocated since the last run, so a worker whose share keeps gigabytes alive collects often. A
 * heap that starts at half its bound collects less: one worker's 25 heavy configurations took
 * 18.9 s instead of 22.6 s here, one configuration the same.
 */
function initialHeapBytes(heapBytes: number): number {
    return Math.min(heapBytes, Math.max(384 * 2 ** 20, Math.floor(heapBytes / 2)));
}

/** Prefix of the trace lines by which a worker reports its progress. */
const REPORT = "pulumi-nixos-evaluation ";

/**
 * Which configurations a worker evaluates: named ones, or its share of all of the flake's (every
 * `of`-th name from the `worker`-th, in the flake's order), which needs no listing first.
 */
type Selection = readonly string[] | { worker: number; of: number };

// Names are validated by configurationNameSchema (no quotes, no `$`), so they can stand inside a
// Nix string literal as they are. The worker reports the flake's configurations first, then, for
// each configuration in turn, that it starts and what it found: a failure after a start is that
// configuration's, and what was reported before it stays valid.
function evaluationFunction(selection: Selection): string {
    const wanted = "worker" in selection
        ? `let names = builtins.attrNames configurations; in builtins.genList (i: builtins.elemAt names (i * ${selection.of} + ${selection.worker}))
      ((builtins.length names - ${selection.worker} + ${selection.of} - 1) / ${selection.of})`
        : `builtins.filter (name: configurations ? \${name}) [ ${selection.map((name) => `"${name}"`).join(" ")} ]`;
    return `configurations: let
  report = message: builtins.trace ("${REPORT}" + builtins.toJSON message);
  describe = c: let
      cfg = c.config;
      package = p: let parsed = builtins.parseDrvName (p.name or ""); in {
        pname = p.pname or parsed.name;
        version = p.version or parsed.version;
      };
    in {
      closure = cfg.system.build.toplevel.outPath;
      derivation = cfg.system.build.toplevel.drvPath;
      packages = map package (cfg.environment.systemPackages or [ ]);
      kernel = cfg.boot.kernelPackages.kernel.version or null;
      nixosRelease = cfg.system.nixos.release or null;
    };
  evaluate = name: report { started = name; }
    (report { evaluated = name; system = describe configurations.\${name}; } name);
  wanted = ${wanted};
in report { available = builtins.attrNames configurations; }
  (builtins.foldl' (count: name: builtins.seq (evaluate name) (count + 1)) 0 wanted)`;
}

interface RawSystem {
    closure: string;
    derivation: string;
    packages: { pname: string; version: string }[];
    kernel: string | null;
    nixosRelease: string | null;
}

type Report = { available: string[] } | { started: string } | { evaluated: string; system: RawSystem };

let processCount = 0;

/** How many `nix eval` processes this program has started (the benchmark reports it). */
export function evaluationProcesses(): number {
    return processCount;
}

/** Each configuration's evaluation or its error; `available` once any worker got that far. */
interface EvaluatedFlake {
    available?: string[];
    outcomes: Map<string, SystemEvaluation | Error>;
    /** A failure of the flake itself (or of Nix), which every configuration not evaluated shares. */
    failure?: Error;
}

function toEvaluation(system: RawSystem): SystemEvaluation {
    const packages: Record<string, string> = {};
    for (const { pname, version } of system.packages) {
        const label = version || "(no version)";
        packages[pname] = packages[pname] && packages[pname] !== label ? `${packages[pname]}, ${label}` : label;
    }
    return {
        closure: system.closure,
        derivation: system.derivation,
        packages,
        ...(system.kernel ? { kernel: system.kernel } : {}),
        ...(system.nixosRelease ? { nixosRelease: system.nixosRelease } : {}),
    };
}

/** A worker's report, or undefined for any other line (the flake's own traces among them). */
function parseReport(line: string): Report | undefined {
    if (!line.startsWith(`trace: ${REPORT}`)) return undefined;
    try {
        return JSON.parse(line.slice(`trace: ${REPORT}`.length)) as Report;
    } catch {
        return undefined;
    }
}

const OUT_OF_MEMORY = /^error: out of memory$/m;

/**
 * One worker: evaluates its share in one `nix eval` process whose heap is bounded by the budget.
 * When the process fails, what it reported stays; it goes on in a new process with the rest: after
 * running out of memory (as nix-eval-jobs restarts a worker that outgrew its limit), or after a
 * configuration's own error, which is recorded for that configuration only.
 */
async function evaluateShare(flake: string, share: Selection, memoryMiB: number, result: EvaluatedFlake): Promise<void> {
    const heapBytes = Math.max(1, Math.floor((memoryMiB - outsideHeapMiB(memoryMiB)) * 2 ** 20));
    const environment = { GC_MAXIMUM_HEAP_SIZE: String(heapBytes), GC_INITIAL_HEAP_SIZE: String(initialHeapBytes(heapBytes)) };
    // A share of all configurations becomes their names once the flake has said which it has.
    const named = (): string[] => ("worker" in share
        ? (result.available ?? []).filter((_, i) => i % share.of === share.worker)
        : [...share]);
    const left = () => named().filter((name) => !result.outcomes.has(name) && (!result.available || result.available.includes(name)));
    for (let selection: Selection = share; ; selection = left()) {
        if (Array.isArray(selection) && selection.length === 0) return;
        let started: string | undefined;
        let evaluatedHere = 0;
        const onStderrLine = (line: string) => {
            const report = parseReport(line);
            if (!report) return;
            if ("available" in report) result.available ??= report.available;
            else if ("started" in report) started = report.started;
            else {
                result.outcomes.set(report.evaluated, toEvaluation(report.system));
                evaluatedHere++;
            }
        };
        processCount++;
        const failure = await nix(["eval", "--json", `${flake}#nixosConfigurations`, "--apply", evaluationFunction(selection)], { environment, onStderrLine })
            .then(() => undefined, (error: unknown) => error);
        if (failure === undefined) return;
        if (!(failure instanceof NixError) || started === undefined || result.outcomes.has(started)) {
            // Not any one configuration's failure (the flake itself, or Nix): every configuration left shares it.
            result.failure ??= failure as Error;
            for (const name of left()) result.outcomes.set(name, failure as Error);
            return;
        }
        // A worker that outgrew its budget after some progress goes on in a new process.
        if (OUT_OF_MEMORY.test(failure.stderr) && evaluatedHere > 0) continue;
        const detail = OUT_OF_MEMORY.test(failure.stderr)
            ? `it needs more memory than a worker's budget of ${memoryMiB} MiB (PULUMI_NIXOS_EVAL_MEMORY_MB)`
            : failure.message;
        result.outcomes.set(started, new ConfigurationEvaluationError(flake, started, detail));
    }
}

/** Evaluates configurations of one flake (all of them, by default), split over the workers that the limits allow. */
async function evaluateFlake(flake: string, configurations?: readonly string[]): Promise<EvaluatedFlake> {
    const { workers, memoryMiB } = evaluationLimits();
    const unique = configurations && [...new Set(configurations)];
    const shares: Selection[] = unique
        ? Array.from({ length: Math.min(workers, unique.length) }, (_, worker) => unique.filter((_, i) => i % workers === worker))
        : Array.from({ length: workers }, (_, worker) => ({ worker, of: workers }));
    const result: EvaluatedFlake = { outcomes: new Map() };
    await Promise.all(shares.map((share) => evaluateShare(flake, share, memoryMiB, result)));
    return result;
}

function pick(evaluated: EvaluatedFlake, flake: string, configuration: string): SystemEvaluation {
    const outcome = evaluated.outcomes.get(configuration);
    if (outcome instanceof Error) throw outcome;
    if (!outcome) throw evaluated.failure ?? new ConfigurationNotFoundError(flake, configuration, evaluated.available ?? []);
    return outcome;
}

/** Evaluates several configurations of one flake together; throws the first one's error, in their order. */
export async function evaluateConfigurations(flake: string, configurations: readonly string[]): Promise<Record<string, SystemEvaluation>> {
    const evaluated = await evaluateFlake(flake, configurations);
    return Object.fromEntries(configurations.map((name) => [name, pick(evaluated, flake, name)]));
}

/** A flake's evaluations in this process: of all its configurations, or of named batches. */
interface FlakeEvaluations {
    all?: Promise<EvaluatedFlake>;
    /** Each named configuration's batch. */
    named: Map<string, Promise<EvaluatedFlake>>;
}

const flakes = new Map<string, FlakeEvaluations>();

/**
 * Evaluates one configuration in a process that lives for a whole deployment (the provider).
 * The engine checks resources one after another, so the requests of a fleet never arrive
 * together: the first request for a flake evaluates, over the workers, the configurations it
 * names as deployed together with this one (a fleet's), or else every configuration of the flake,
 * and the other requests are answered from that. A configuration that fails fails only its own
 * resource; one that no earlier request named starts a batch of its own.
 */
export async function evaluateConfiguration(flake: string, configuration: string, together?: readonly string[]): Promise<SystemEvaluation> {
    let evaluations = flakes.get(flake);
    if (!evaluations) flakes.set(flake, (evaluations = { named: new Map() }));
    if (!evaluations.all && !together && !evaluations.named.has(configuration)) evaluations.all = evaluateFlake(flake);
    if (evaluations.all) return pick(await evaluations.all, flake, configuration);
    let batch = evaluations.named.get(configuration);
    if (!batch) {
        const names = [...new Set([configuration, ...(together ?? [])])].filter((name) => !evaluations.named.has(name));
        batch = evaluateFlake(flake, names);
        for (const name of names) evaluations.named.set(name, batch);
    }
    return pick(await batch, flake, configuration);
}
