// Builds the plugin's release as every Pulumi provider publishes one: for each platform a
// `pulumi-resource-nixos-v<version>-<os>-<arch>.tar.gz` holding the plugin's files at its top, which
// the engine fetches from the schema's pluginDownloadURL (with `${VERSION}` filled in) and unpacks
// into PULUMI_HOME/plugins/resource-nixos-v<version>/ when a program needs the plugin.
// Usage: node dist/scripts/release.js [OUTDIR] (default dist/release).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildPlugin, NIXOS_PLUGIN, PLUGIN_VERSION } from "./plugin";

/**
 * The platforms a deployer runs on, in the engine's names. The plugin is JavaScript started by the
 * Node.js on PATH, so one build serves them all.
 */
export const RELEASE_PLATFORMS = ["linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"] as const;

/** The name the engine asks the release server for. */
export function releaseTarballName(platform: string, version = PLUGIN_VERSION): string {
    return `pulumi-resource-${NIXOS_PLUGIN.name}-v${version}-${platform}.tar.gz`;
}

/** Writes one tarball per platform into `outDir` and returns their paths. */
export function buildRelease(outDir: string): string[] {
    const folder = buildPlugin(NIXOS_PLUGIN);
    // The V8 cache is written on the deployer, by its own Node.js; a tarball never carries one.
    const files = fs.readdirSync(folder).filter((file) => !file.endsWith(".v8cache")).sort();
    fs.mkdirSync(outDir, { recursive: true });
    return RELEASE_PLATFORMS.map((platform) => {
        const tarball = path.join(outDir, releaseTarballName(platform));
        execFileSync("tar", ["--create", "--gzip", "--file", tarball, "--owner=0", "--group=0", "--directory", folder, ...files]);
        return tarball;
    });
}

if (require.main === module) for (const tarball of buildRelease(path.resolve(process.argv[2] ?? "dist/release"))) console.log(tarball);
