// The plugin in the two forms a release ships (scripts/release.ts): the JavaScript bundle run by
// the Node.js on PATH, and the standalone executable with its own Node.js. Every command that uses
// the provider starts it, so their start times, memory and sizes are measured side by side.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { NIXOS_PLUGIN, pluginFiles, writeLauncher } from "../scripts/plugin";
import { buildRelease, HOST_PLATFORM, STANDALONE_NODE_VERSION } from "../scripts/release";
import { warmProviderStart } from "./fixedCost";

export interface PluginForm {
    /** From spawning the launcher to the port line, its code cache written (as after a first command): median of 7. */
    startSeconds: number;
    /** The process's peak resident memory (VmHWM) when it tells its port. */
    peakMiB: number;
    /** The files of the plugin's folder that this form runs. */
    bytes: number;
}

export interface PluginForms {
    node: PluginForm & { nodeVersion: string };
    standalone: PluginForm & { nodeVersion: string };
    /** This platform's release tarball (both forms, the launcher choosing) and one without the standalone executable. */
    tarballBytes: number;
    tarballWithoutStandaloneBytes: number;
}

async function measureForm(launcher: string, env: NodeJS.ProcessEnv, files: string[]): Promise<PluginForm> {
    const { seconds, peakMiB } = await warmProviderStart(launcher, 7, env);
    return {
        startSeconds: seconds,
        peakMiB,
        bytes: files.reduce((sum, file) => sum + fs.statSync(path.join(path.dirname(launcher), file)).size, 0),
    };
}

export async function measurePluginForms(): Promise<PluginForms> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-bench-release-"));
    try {
        const [tarball] = buildRelease(path.join(dir, "release"), [HOST_PLATFORM]);
        const folder = path.join(dir, "plugin");
        fs.mkdirSync(folder);
        execFileSync("tar", ["--extract", "--gzip", "--file", tarball, "--directory", folder]);
        const files = pluginFiles(NIXOS_PLUGIN);
        const launcher = path.join(folder, files.launcher);
        const scripts = [files.launcher, files.loader, files.bundle];
        // No node on PATH: only the standalone executable can answer.
        const standalone = await measureForm(launcher, { ...process.env, PATH: "/nonexistent" }, [files.launcher, files.standalone]);
        // Then as a tarball without the executable has it (macOS's): its launcher runs the Node.js on PATH.
        fs.renameSync(path.join(folder, files.standalone), path.join(dir, files.standalone));
        writeLauncher(NIXOS_PLUGIN, folder);
        const node = await measureForm(launcher, process.env, scripts);
        const withoutStandalone = path.join(dir, "without.tar.gz");
        execFileSync("tar", ["--create", "--gzip", "--file", withoutStandalone, "--directory", folder, ...scripts]);
        return {
            node: { ...node, nodeVersion: execFileSync("node", ["--version"], { encoding: "utf8" }).trim() },
            standalone: { ...standalone, nodeVersion: `v${STANDALONE_NODE_VERSION}` },
            tarballBytes: fs.statSync(tarball).size,
            tarballWithoutStandaloneBytes: fs.statSync(withoutStandalone).size,
        };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
