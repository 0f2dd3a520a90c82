// Stage 1, in the provider's check: the closure of each configuration and its derivation, by
// evaluation only (a preview never builds), with the package set that a preview shows beside it.
// All configurations of one flake are evaluated by a single `nix eval` process, the only
// evaluation of a deploy.
import * as path from "node:path";
import { evalJson } from "../transport/nix";

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

/** Every configuration of the flake, instead of a list of names. */
const ALL = "all";

// Names are validated by configurationNameSchema (no quotes, no `$`), so they can stand inside a
// Nix string literal as they are.
function evaluationFunction(configurations: readonly string[] | typeof ALL): string {
    const wanted = configurations === ALL ? "builtins.attrNames configurations" : `[ ${configurations.map((name) => `"${name}"`).join(" ")} ]`;
    return `configurations: let
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
  wanted = ${wanted};
in {
  available = builtins.attrNames configurations;
  systems = builtins.listToAttrs (map (name: { inherit name; value = describe configurations.\${name}; })
    (builtins.filter (name: configurations ? \${name}) wanted));
}`;
}

interface RawEvaluation {
    available: string[];
    systems: Record<string, { closure: string; derivation: string; packages: { pname: string; version: string }[]; kernel: string | null; nixosRelease: string | null }>;
}

let processCount = 0;

/** How many `nix eval` processes this program has started (the benchmark reports it). */
export function evaluationProcesses(): number {
    return processCount;
}

interface EvaluatedFlake {
    available: string[];
    systems: Record<string, SystemEvaluation>;
}

async function evaluateFlake(flake: string, configurations: readonly string[] | typeof ALL): Promise<EvaluatedFlake> {
    processCount++;
    const raw = await evalJson<RawEvaluation>(`${flake}#nixosConfigurations`, evaluationFunction(configurations === ALL ? ALL : [...new Set(configurations)]));
    const systems: Record<string, SystemEvaluation> = {};
    for (const [name, system] of Object.entries(raw.systems)) {
        const packages: Record<string, string> = {};
        for (const { pname, version } of system.packages) {
            const label = version || "(no version)";
            packages[pname] = packages[pname] && packages[pname] !== label ? `${packages[pname]}, ${label}` : label;
        }
        systems[name] = {
            closure: system.closure,
            derivation: system.derivation,
            packages,
            ...(system.kernel ? { kernel: system.kernel } : {}),
            ...(system.nixosRelease ? { nixosRelease: system.nixosRelease } : {}),
        };
    }
    return { available: raw.available, systems };
}

function pick(evaluated: EvaluatedFlake, flake: string, configuration: string): SystemEvaluation {
    const system = evaluated.systems[configuration];
    if (!system) throw new ConfigurationNotFoundError(flake, configuration, evaluated.available);
    return system;
}

/** Evaluates several configurations of one flake in one Nix process. */
export async function evaluateConfigurations(flake: string, configurations: readonly string[]): Promise<Record<string, SystemEvaluation>> {
    const evaluated = await evaluateFlake(flake, configurations);
    return Object.fromEntries(configurations.map((name) => [name, pick(evaluated, flake, name)]));
}

const wholeFlakes = new Map<string, Promise<EvaluatedFlake | undefined>>();

/**
 * Evaluates one configuration in a process that lives for a whole deployment (the provider).
 * The engine checks resources one after another, so the requests of a fleet never arrive
 * together: the first request for a flake evaluates every configuration of it in one `nix eval`,
 * and the others are answered from that. If that evaluation fails (say one configuration is
 * broken), each configuration is evaluated alone, so a failure is only its own resource's.
 */
export async function evaluateConfiguration(flake: string, configuration: string): Promise<SystemEvaluation> {
    let whole = wholeFlakes.get(flake);
    if (!whole) {
        whole = evaluateFlake(flake, ALL).catch(() => undefined);
        wholeFlakes.set(flake, whole);
    }
    const evaluated = (await whole) ?? await evaluateFlake(flake, [configuration]);
    return pick(evaluated, flake, configuration);
}
