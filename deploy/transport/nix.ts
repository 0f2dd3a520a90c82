// The one place that runs the nix CLI on the deployer, and reads what it prints. Every call gets
// the same environment: the user's own settings (nix.conf and any NIX_CONFIG they set, e.g.
// `access-tokens` for private flakes) with flakes added to their experimental features (never in
// place of them), then whatever PULUMI_NIXOS_NIX_CONFIG adds (e.g. offline settings); and
// NIX_SSHOPTS pointing at the deploy's ssh config so that Nix's own ssh uses the pinned host key
// and the shared connection.
import * as fs from "node:fs";
import * as path from "node:path";
import { makeOwnedFolder } from "./ownedFolder";
import { runProcess } from "./process";

/** Appends (`extra-`) to the user's experimental features: `experimental-features =` would replace them. */
const FLAKES_CONFIG = "extra-experimental-features = nix-command flakes";

/** A nix command that failed, with the command and the end of what it printed. */
export class NixError extends Error {
    constructor(readonly command: string, readonly stderr: string, readonly exit: string) {
        super(`${command} failed (${exit}):\n  ${summarizeNixError(stderr)}`);
        this.name = "NixError";
    }
}

/**
 * Keeps the lines of a Nix error that say what went wrong, not the evaluation trace, nor the
 * errors Nix ignored (such as its evaluation cache being busy while another worker writes it).
 * Nix up to 2.13 prints the cause first ("error: attribute 'x' missing"); later ones print a bare
 * "error:", the trace ("… while calling …"), and the cause last as a nested "error: …".
 */
function summarizeNixError(stderr: string): string {
    const lines = stderr.split("\n").map((line) => line.trimEnd()).filter((line) => line && !/^\s*error \(ignored\)/.test(line));
    const errorAt = lines.findIndex((line) => /^error\b/.test(line.trim()));
    const causes = lines.map((line, i) => (/^error: \S/.test(line.trim()) ? i : -1)).filter((i) => i >= 0);
    const nested = errorAt >= 0 && lines[errorAt].trim() === "error:" && causes.length > 0;
    const from = nested ? causes[causes.length - 1] : errorAt;
    const relevant = from >= 0 ? lines.slice(from, from + 6) : lines.slice(-6);
    return relevant.map((line) => (nested ? line.trim() : line)).join("\n  ") || "(no output)";
}

/**
 * The Nix versions a deploy supports, on the deployer and on the host (README, "Supported Nix"):
 * from Debian 12's 2.8 to 2.31, and Lix 2.90 to 2.93; the tests run Nix 2.8 and 2.26. `nix
 * path-info --json` changed shape in 2.19 (parsePathInfo reads both).
 */
export const SUPPORTED_NIX = { Nix: ["2.8", "2.31"], Lix: ["2.90", "2.93"] } as const;
/** Lets a Nix newer than the newest tested one through (a newer Nix usually works; an older one lacks what the deploy uses). */
export const ALLOW_UNTESTED_NIX = "PULUMI_NIXOS_ALLOW_UNTESTED_NIX";

/**
 * `nix --version` or `nix-store --version` read: "nix (Nix) 2.26.3", "nix-store (Lix, like Nix)
 * 2.91.1", "nix (Determinate Nix 3.4.1) 2.28.2" (a Nix by its Nix version).
 */
export function parseNixVersion(text: string): { implementation: "Nix" | "Lix"; version: string } | undefined {
    const match = /\(([^)]*)\)\s+(\d+\.\d+(?:\.\d+)?)/.exec(text);
    if (!match || !/\b(Nix|Lix)\b/.test(match[1])) return undefined;
    return { implementation: /\bLix\b/.test(match[1]) ? "Lix" : "Nix", version: match[2] };
}

function compareVersions(a: string, b: string): number {
    const [x, y] = [a, b].map((version) => version.split(".").map(Number));
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
    return 0;
}

/** Why a Nix (`--version`'s output) cannot serve as `where`'s ("the deployer's", "the host's"); undefined when it can. */
export function unsupportedNix(where: string, versionText: string, environment: NodeJS.ProcessEnv = process.env): string | undefined {
    const supported = `pulumi-nixos supports Nix ${SUPPORTED_NIX.Nix.join(" to ")} and Lix ${SUPPORTED_NIX.Lix.join(" to ")}`;
    const found = parseNixVersion(versionText);
    if (!found) return `${where} Nix did not say its version (${JSON.stringify(versionText.trim().slice(0, 80))}): ${supported}`;
    const [oldest, newest] = SUPPORTED_NIX[found.implementation];
    const named = `${where} ${found.implementation} is ${found.version}`;
    if (compareVersions(found.version, oldest) < 0) return `${named}, older than ${oldest}: ${supported}; upgrade it`;
    if (compareVersions(found.version, `${newest}.999`) > 0 && environment[ALLOW_UNTESTED_NIX] !== "1") {
        return `${named}, newer than the newest tested (${newest}): ${supported}; set ${ALLOW_UNTESTED_NIX}=1 to deploy with it anyway`;
    }
    return undefined;
}

let deployerNixChecked: Promise<void> | undefined;

/** Refuses, once per process and before the first nix command, a deployer Nix outside the supported range. */
function checkDeployerNix(): Promise<void> {
    deployerNixChecked ??= runProcess("nix", ["--version"], { env: nixEnvironment() }).then((result) => {
        const reason = result.code === 0 ? unsupportedNix("the deployer's", result.stdout) : `the deployer's nix did not run (${result.stderr.trim() || `exit code ${result.code}`}): is Nix installed and on PATH?`;
        if (reason) throw new Error(reason);
    }, (error: Error) => {
        throw new Error(`the deployer's nix could not be started (${error.message}): is Nix installed and on PATH?`);
    });
    return deployerNixChecked;
}

export interface NixRunOptions {
    /** NIX_SSHOPTS, from SshConnection.nixSshOpts. */
    sshOpts?: string;
    /** More environment variables for this call (e.g. the evaluator's GC_MAXIMUM_HEAP_SIZE). */
    environment?: Record<string, string>;
    timeoutMs?: number;
    /** Written to the command's standard input. */
    input?: string;
    /** Standard output goes to this file instead of being returned. */
    outputFile?: string;
    onStderrLine?: (line: string) => void;
}

/**
 * NIX_CONFIG for every nix call: the user's own NIX_CONFIG first, then flakes added to their
 * experimental features, then PULUMI_NIXOS_NIX_CONFIG. Later lines win, so the deploy's additions
 * stay additions, and PULUMI_NIXOS_NIX_CONFIG can still override a setting on purpose.
 */
export function nixConfig(environment: NodeJS.ProcessEnv = process.env): string {
    return [environment.NIX_CONFIG, FLAKES_CONFIG, environment.PULUMI_NIXOS_NIX_CONFIG].filter((part) => part?.trim()).join("\n");
}

function nixEnvironment(sshOpts?: string, environment: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, ...environment, NIX_CONFIG: nixConfig() };
    if (sshOpts) env.NIX_SSHOPTS = sshOpts;
    else delete env.NIX_SSHOPTS;
    return env;
}

/** Runs `nix ARGS…` and returns its standard output, or throws a NixError. */
export function nix(args: readonly string[], options: NixRunOptions = {}): Promise<string> {
    return runNix("nix", args, options);
}

/** Runs one of the nix programs (`nix`, `nix-store`) in the common environment. */
async function runNix(program: "nix" | "nix-store", args: readonly string[], options: NixRunOptions): Promise<string> {
    await checkDeployerNix();
    const result = await runProcess(program, args, {
        env: nixEnvironment(options.sshOpts, options.environment),
        timeoutMs: options.timeoutMs,
        input: options.input,
        outputFile: options.outputFile,
        onStderrLine: options.onStderrLine,
    });
    if (result.code !== 0) {
        const exit = result.timedOut ? "timed out" : result.signal ? `killed by ${result.signal}` : `exit code ${result.code}`;
        throw new NixError(`${program} ${args[0]}`, result.stderr, exit);
    }
    return result.stdout;
}

/** `nix eval --json INSTALLABLE --apply FN`: evaluates without building. */
export async function evalJson<T>(installable: string, apply: string, options: NixRunOptions = {}): Promise<T> {
    return JSON.parse(await nix(["eval", "--json", installable, "--apply", apply], options)) as T;
}

/**
 * Shares one answer per store path among the callers of this process: what a store path is and
 * holds never changes, and the hosts of a fleet all ask about the same few paths at once. The
 * first caller's other arguments (where its progress goes) are the ones used.
 */
function oncePerStorePath<T, Rest extends unknown[] = []>(answer: (storePath: string, ...rest: Rest) => Promise<T>): (storePath: string, ...rest: Rest) => Promise<T> {
    const answers = new Map<string, Promise<T>>();
    return (storePath, ...rest) => {
        let pending = answers.get(storePath);
        if (!pending) {
            pending = answer(storePath, ...rest);
            answers.set(storePath, pending);
            pending.catch(() => answers.delete(storePath));
        }
        return pending;
    };
}

/** Prefix of the folders holding a deployer's GC roots, under the temporary directory. */
export const ROOTS_FOLDER_PREFIX = "pnx-gcroots-";

let rootsFolder: string | undefined;

/**
 * A garbage-collector root for what this process builds, until it exits: a collection on the
 * deployer (by hand, or Nix's automatic one when the disk fills) while a rollout still copies a
 * system must not delete it. The engine ends its provider processes with SIGKILL, so their roots
 * stay until the next deploy removes the folders of dead deployers: the systems last deployed
 * stay on the deployer until then, as nixos-rebuild's `result` link keeps its last build.
 */
function gcRoot(storePath: string): string {
    if (!rootsFolder) {
        const folder = makeOwnedFolder(ROOTS_FOLDER_PREFIX);
        process.once("exit", () => fs.rmSync(folder, { recursive: true, force: true }));
        rootsFolder = folder;
    }
    return path.join(rootsFolder, path.basename(storePath));
}

/**
 * Builds a derivation's outputs, roots them for this process's lifetime, and returns their paths.
 * `nix-store --realise` means the same in every Nix version (`nix build` of a .drv path changed
 * meaning in Nix 2.15); with --add-root it prints the roots, which point at the outputs.
 */
export const realiseDerivation = oncePerStorePath(async (derivation: string, onStderrLine?: (line: string) => void) => {
    const roots = await runNix("nix-store", ["--realise", derivation, "--add-root", gcRoot(derivation.replace(/\.drv$/, ""))], { onStderrLine });
    // A store that is not local prints the outputs themselves.
    return roots.split("\n").filter(Boolean).map((root) => (fs.lstatSync(root, { throwIfNoEntry: false })?.isSymbolicLink() ? fs.readlinkSync(root) : root));
});

/** Realises an existing store path locally (it must be valid, or buildable from its deriver), rooted like a build. */
export const realisePath = oncePerStorePath(async (storePath) => {
    await nix(["build", "--out-link", gcRoot(storePath), storePath]);
});

export interface StorePathInfo {
    path: string;
    narSize: number;
}

/** One path of `nix path-info --json` (narSize 0 and no references where the store lacks the path). */
export interface PathInfo extends StorePathInfo {
    /** Whether the store (the local one, or a binary cache) holds the path. */
    valid: boolean;
    references: string[];
}

interface PathInfoFields {
    narSize?: number;
    references?: string[];
    valid?: boolean;
}

/**
 * Reads `nix path-info --json` in every shape a supported Nix prints: Nix up to 2.18 and Lix print
 * an array of objects with a `path` (and `"valid": false` for a path the store lacks); Nix 2.19 and
 * later print an object keyed by store path, with `null` for a path the store lacks (NixOS/nix
 * #9242). Keys that are not store paths (a format's `storeDir`, `version`) are passed over.
 */
export function parsePathInfo(json: string): PathInfo[] {
    const parsed = JSON.parse(json) as PathInfoFields[] | Record<string, unknown>;
    const entries: [string, PathInfoFields | null][] = Array.isArray(parsed)
        ? parsed.map((info) => [(info as { path: string }).path, info])
        : Object.entries(parsed).filter(([key]) => key.startsWith("/")).map(([key, info]) => [key, info as PathInfoFields | null]);
    // A shape whose keys are not store paths (a future format) must not read as "no paths".
    if (entries.length === 0 && (Array.isArray(parsed) ? parsed.length : Object.keys(parsed).length) > 0) {
        throw new Error(`nix path-info --json printed a shape this version of pulumi-nixos cannot read: ${json.slice(0, 200)}`);
    }
    return entries.map(([path, info]) => ({
        path,
        valid: info !== null && info.valid !== false,
        narSize: info?.narSize ?? 0,
        references: info?.references ?? [],
    }));
}

/** A derivation's own closure (the .drv files and sources that build it) rather than its outputs'. */
const asDerivation = (storePath: string) => (storePath.endsWith(".drv") ? ["--derivation"] : []);

/** Every path of a closure with its size (`nix path-info -r --json`); of a .drv, the derivation's closure. */
export const closurePaths = oncePerStorePath(async (storePath) => {
    const infos = parsePathInfo(await nix(["path-info", "-r", "--json", ...asDerivation(storePath), storePath]));
    return infos.map(({ path, narSize }) => ({ path, narSize }));
});

/** Copies a closure (of a .drv, the derivation's closure) to a store: only the paths it does not have. */
export async function copyClosure(storePath: string, storeUri: string, options: NixRunOptions & { substituteOnDestination?: boolean }): Promise<void> {
    // Over ssh-ng://, Nix before 2.20 takes the destination's substitution from
    // builders-use-substitutes and ignores --substitute-on-destination (nix#9600).
    const substitute = !options.substituteOnDestination ? []
        : storeUri.startsWith("ssh-ng://") ? ["--substitute-on-destination", "--builders-use-substitutes"] : ["--substitute-on-destination"];
    await nix(["copy", ...substitute, ...asDerivation(storePath), "--to", storeUri, storePath], options);
}

interface SharedExport {
    folder: string;
    file: Promise<string>;
    users: number;
}

const sharedExports = new Map<string, SharedExport>();

/**
 * Runs `work` with a file holding these store paths as `nix-store --export` writes them, for a
 * host's `nix-store --import`. Copies of the same paths that overlap share one export: a fleet's
 * hosts usually lack the same paths, and one export costs the deployer about what one `nix copy`
 * does. The file is removed when its last user is done.
 */
export async function withExportedPaths<T>(paths: readonly string[], work: (file: string) => Promise<T>): Promise<T> {
    const key = [...paths].sort().join("\n");
    let shared = sharedExports.get(key);
    if (!shared) {
        const folder = makeOwnedFolder("pnx-export-");
        const file = path.join(folder, "paths");
        shared = { folder, users: 0, file: runNix("nix-store", ["--export", ...paths], { outputFile: file }).then(() => file) };
        sharedExports.set(key, shared);
    }
    const current = shared;
    current.users++;
    try {
        return await work(await current.file);
    } finally {
        if (--current.users === 0) {
            sharedExports.delete(key);
            fs.rmSync(current.folder, { recursive: true, force: true });
        }
    }
}

/**
 * Signs every path of a closure in the deployer's store with a Nix secret key. The key is written
 * to a 0600 file in a private folder for the one command (never an argument) and removed after.
 */
export async function signClosure(storePath: string, secretKey: string): Promise<void> {
    const folder = makeOwnedFolder("pnx-sign-");
    try {
        const keyFile = path.join(folder, "key");
        fs.writeFileSync(keyFile, secretKey, { mode: 0o600 });
        await nix(["store", "sign", "--key-file", keyFile, "--recursive", storePath]);
    } finally {
        fs.rmSync(folder, { recursive: true, force: true });
    }
}
