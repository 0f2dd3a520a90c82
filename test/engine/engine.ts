// Drives the real Pulumi engine (built from Go modules by scripts/build-engine.sh) through the
// Automation API, with a file:// backend and passphrase-encrypted secrets in a temporary folder.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigMap, LocalWorkspace, LocalWorkspaceOptions, ProjectRuntime, ProjectSettings, PulumiCommand, PulumiFn, Stack } from "@pulumi/pulumi/automation";
import { buildPlugin, NIXOS_PLUGIN, Plugin, PLUGIN_VERSION, TESTBED_PLUGIN } from "../../scripts/plugin";

export const REPO_ROOT = path.resolve(__dirname, "../../..");
export const TEST_PASSPHRASE = "pulumi-nixos test passphrase";

/** Offline settings for this machine's Nix (no binary cache, no sandbox, no daemon). */
export const OFFLINE_NIX_CONFIG = ["flake-registry =", "substituters =", "builders =", "sandbox = false", "build-users-group ="].join("\n");

let engineBin: string | undefined;

/** The folder holding `pulumi`, the language host and the dynamic-provider shim. */
export function engineBinDir(): string {
    engineBin ??= execFileSync("bash", [path.join(REPO_ROOT, "scripts/build-engine.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
        .trim().split("\n").pop()!;
    return engineBin;
}

const pluginFolders = new Map<Plugin, string>();

/** A provider plugin's folder, built from this checkout once per test process. */
function pluginFolder(plugin: Plugin = NIXOS_PLUGIN): string {
    if (!pluginFolders.has(plugin)) pluginFolders.set(plugin, buildPlugin(plugin));
    return pluginFolders.get(plugin)!;
}

/**
 * Installs the nixos provider plugin, and the testbed's that serves the local machines, into a
 * PULUMI_HOME, as users install plugins: `pulumi plugin install resource NAME VERSION --file DIR`.
 */
export function installPlugins(pulumiHome: string, plugins: readonly Plugin[] = [NIXOS_PLUGIN, TESTBED_PLUGIN]): void {
    for (const plugin of plugins) {
        execFileSync(path.join(engineBinDir(), "pulumi"), ["plugin", "install", "resource", plugin.name, PLUGIN_VERSION, "--file", pluginFolder(plugin)], {
            env: { ...process.env, PULUMI_HOME: pulumiHome }, stdio: ["ignore", "ignore", "inherit"],
        });
    }
}

/** Puts the engine and the offline Nix settings into this process's environment (inherited by the CLI). */
export function useTestEngine(): string {
    const bin = engineBinDir();
    if (!process.env.PATH?.split(":").includes(bin)) process.env.PATH = `${bin}:${process.env.PATH}`;
    process.env.NODE_PATH = path.join(REPO_ROOT, "node_modules");
    process.env.PULUMI_NIXOS_NIX_CONFIG ??= OFFLINE_NIX_CONFIG;
    process.env.PULUMI_SKIP_UPDATE_CHECK = "true";
    process.env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION = "true";
    return bin;
}

export interface TestStack {
    stack: Stack;
    /** The folder holding the backend, PULUMI_HOME and the workspace. */
    dir: string;
    /** The stack's state file as text (for asserting that no secret is in plaintext). */
    stateText(): string;
    /** Removes the stack and its folders. */
    remove(): Promise<void>;
}

/** The languages a program file can be written in, and the file each runtime starts. */
const MAIN_FILE = { nodejs: "index.js", yaml: "Main.yaml", python: "__main__.py", go: "main.go" } as const;
export type ProgramRuntime = keyof typeof MAIN_FILE;

/** A program file run by its language host, as `pulumi up` runs a user's program. */
export interface ProgramFile {
    /**
     * "nodejs" (the default): the source is index.js, which can require the library as `LIBRARY`
     * (the compiled components). "yaml", "python", "go": the source is Main.yaml, __main__.py or main.go.
     */
    runtime?: ProgramRuntime;
    source: string;
    /** The compiled library `LIBRARY` names in a Node.js source; default this checkout's. */
    library?: string;
    /** Another file to write the source to, as it is (a TypeScript program's index.ts). */
    mainFile?: string;
    /** Other files of the project by name, such as a Go program's go.mod. */
    files?: Record<string, string>;
    /** Environment of the engine and the language host (a Python virtual environment's PATH). */
    envVars?: Record<string, string>;
}

/** `require(LIBRARY)` in a ProgramFile's source loads the compiled library. */
export const LIBRARY = path.join(REPO_ROOT, "dist/components");

/**
 * Creates a stack in a fresh file:// backend, of an inline program (run in this process) or of a
 * program file (run by the language host; a failing program is reported by the engine, not left
 * behind as unhandled rejections in this process).
 */
export interface TestStackOptions {
    /**
     * How the engine finds the plugins: "installed" (default) in PULUMI_HOME, `pulumi plugin install`;
     * "project": the nixos plugin's folder named in Pulumi.yaml (plugins.providers); "acquired":
     * none installed, the engine fetches what the program needs (automatic acquisition on).
     */
    plugins?: "installed" | "project" | "acquired";
}

export async function createTestStack(
    projectName: string, program: PulumiFn | ProgramFile, config: ConfigMap = {}, stackOptions: TestStackOptions = {},
): Promise<TestStack> {
    const bin = useTestEngine();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-stack-"));
    for (const sub of ["backend", "home", "work"]) fs.mkdirSync(path.join(dir, sub));
    const pulumiCommand = await PulumiCommand.get({ root: path.dirname(bin) });
    const workDir = path.join(dir, "work");
    const plugins = stackOptions.plugins ?? "installed";
    if (plugins === "installed") installPlugins(path.join(dir, "home"));
    const options: LocalWorkspaceOptions = {
        pulumiCommand,
        workDir,
        pulumiHome: path.join(dir, "home"),
        envVars: {
            ...(typeof program === "function" ? {} : program.envVars),
            ...(plugins === "acquired" ? { PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "false" } : {}),
            PULUMI_BACKEND_URL: `file://${path.join(dir, "backend")}`,
            PULUMI_CONFIG_PASSPHRASE: TEST_PASSPHRASE,
        },
        projectSettings: {
            name: projectName,
            // The Automation API's type lists no "yaml", but Pulumi.yaml takes any language's runtime.
            runtime: (typeof program === "function" ? "nodejs" : program.runtime ?? "nodejs") as ProjectRuntime,
            backend: { url: `file://${path.join(dir, "backend")}` },
            // Not in the Automation API's type, but written to Pulumi.yaml as it is.
            ...(plugins === "project" ? { plugins: { providers: [{ name: "nixos", path: pluginFolder() }] } } : {}),
        } as ProjectSettings,
    };
    let stack: Stack;
    if (typeof program === "function") {
        stack = await LocalWorkspace.createOrSelectStack({ stackName: "test", projectName, program }, options);
    } else {
        const runtime = program.runtime ?? "nodejs";
        const source = runtime === "nodejs" && !program.mainFile ? `const LIBRARY = ${JSON.stringify(program.library ?? LIBRARY)};\n${program.source}` : program.source;
        for (const [name, text] of Object.entries({ ...program.files, [program.mainFile ?? MAIN_FILE[runtime]]: source })) fs.writeFileSync(path.join(workDir, name), text);
        stack = await LocalWorkspace.createOrSelectStack({ stackName: "test", workDir }, options);
    }
    if (Object.keys(config).length) await stack.setAllConfig(config);
    return {
        stack,
        dir,
        stateText() {
            const stacksDir = path.join(dir, "backend/.pulumi/stacks", projectName);
            return fs.readdirSync(stacksDir).filter((f) => f.endsWith(".json"))
                .map((f) => fs.readFileSync(path.join(stacksDir, f), "utf8")).join("\n");
        },
        async remove() {
            await stack.workspace.removeStack("test", { force: true }).catch(() => undefined);
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}

/** One file of /proc/PID/ for every running process, by PID ("cmdline": its arguments, NUL-separated). */
export function readEachProcess(file: "cmdline" | "stat"): Map<number, string> {
    const contents = new Map<number, string>();
    for (const entry of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        try {
            contents.set(Number(entry), fs.readFileSync(`/proc/${entry}/${file}`, "utf8"));
        } catch {
            // The process ended while we looked.
        }
    }
    return contents;
}

function childrenOf(): Map<number, number[]> {
    const children = new Map<number, number[]>();
    for (const [pid, stat] of readEachProcess("stat")) {
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        children.set(parent, [...(children.get(parent) ?? []), pid]);
    }
    return children;
}

/** The pulumi CLI processes this process started. */
function engineProcesses(children: Map<number, number[]>): number[] {
    const commandLines = readEachProcess("cmdline");
    return (children.get(process.pid) ?? []).filter((pid) => path.basename((commandLines.get(pid) ?? "").split("\0")[0]) === "pulumi");
}

/** Sends SIGINT to the pulumi CLI this process started, as Ctrl-C does. Returns how many. */
export function interruptEngine(): number {
    const engine = engineProcesses(childrenOf());
    engine.forEach((pid) => process.kill(pid, "SIGINT"));
    return engine.length;
}

/**
 * Kills the pulumi CLI this process started and everything under it (language host, provider
 * plugins, their ssh and nix), as a crash or `kill -9` of the deployer would. Returns how many.
 */
export function killEngine(): number {
    const children = childrenOf();
    const doomed: number[] = [];
    const collect = (pid: number) => {
        doomed.push(pid);
        (children.get(pid) ?? []).forEach(collect);
    };
    engineProcesses(children).forEach(collect);
    for (const pid of doomed) {
        try {
            process.kill(pid, "SIGKILL");
        } catch {
            // Already gone.
        }
    }
    return doomed.length;
}

/** Samples every process's arguments and every key file the deploy writes while `work` runs. */
export async function watchProcesses<T>(work: () => Promise<T>) {
    const argumentLists = new Set<string>();
    const keyFiles = new Map<string, number>();
    let sampling = true;
    const sample = () => {
        for (const argv of readEachProcess("cmdline").values()) argumentLists.add(argv);
        for (const dir of fs.readdirSync(os.tmpdir()).filter((entry) => entry.startsWith("pnx-ssh-"))) {
            try {
                keyFiles.set(path.join(os.tmpdir(), dir, "id"), fs.statSync(path.join(os.tmpdir(), dir, "id")).mode & 0o777);
            } catch {
                // Not written yet, or already removed.
            }
        }
        if (sampling) setTimeout(sample, 5);
    };
    sample();
    const outcome = await work().then((value) => ({ value }), (error: Error) => ({ error }));
    sampling = false;
    return { outcome, argumentLists, keyFiles };
}
