// Builds provider plugin folders: an executable pulumi-resource-NAME, one bundled script with
// everything it runs (no node_modules needed) and the entry that runs it with V8's code cache
// (provider/bundleLoader.ts), which is what
// `pulumi plugin install resource NAME VERSION --file FOLDER` installs. dist/plugin holds the
// nixos plugin users install; dist/testbed-plugin the one that serves the example's local machines.
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSync } from "esbuild";

const ROOT = path.resolve(__dirname, "../..");
export { PACKAGE_VERSION as PLUGIN_VERSION } from "../schema/resources";

export interface Plugin {
    name: string;
    /** The compiled entry point, relative to the checkout. */
    entry: string;
    /** The folder it is built into, relative to the checkout. */
    folder: string;
}

export const NIXOS_PLUGIN: Plugin = { name: "nixos", entry: "dist/provider/main.js", folder: "dist/plugin" };
export const TESTBED_PLUGIN: Plugin = { name: "testbed", entry: "dist/testbed/pluginMain.js", folder: "dist/testbed-plugin" };

/** The files of a plugin's folder; `standalone` only in a release's Linux tarballs (scripts/release.ts). */
export function pluginFiles(plugin: Plugin) {
    const launcher = `pulumi-resource-${plugin.name}`;
    return { launcher, loader: `${launcher}.js`, bundle: `${launcher}.bundle.js`, standalone: `${launcher}-standalone` };
}

/**
 * The executable the engine starts (shell built-ins only, as it is on every command's path). With
 * `standaloneLoader`, the ELF loader of a standalone executable beside it, it runs that executable
 * where the loader is there and real: on NixOS only with nix-ld (NIX_LD set), since NixOS's stub-ld
 * otherwise answers for the loader and refuses to run it. Else the Node.js on PATH runs the bundle.
 */
export function launcher(plugin: Plugin, standaloneLoader?: string): string {
    const files = pluginFiles(plugin);
    return `#!/bin/sh
# The ${plugin.name} resource provider for Pulumi.
self=$0
while [ -L "$self" ]; do
  link=$(readlink "$self")
  case $link in /*) self=$link ;; *) self=\${self%/*}/$link ;; esac
done
case $self in */*) here=\${self%/*} ;; *) here=. ;; esac
${standaloneLoader ? `if [ -e ${standaloneLoader} ] && { [ ! -e /etc/NIXOS ] || [ -n "\${NIX_LD:-}" ]; }; then
  exec "$here/${files.standalone}" "$@"
fi
` : ""}if command -v node >/dev/null 2>&1; then
  exec node "$here/${files.loader}" "$@"
fi
echo "${files.launcher}: needs Node.js 20 or later on PATH (on NixOS: nodejs in the deployer's packages or shell)" >&2
exit 1
`;
}

/** Writes the plugin's launcher into its folder, executable whatever the umask or an earlier file. */
export function writeLauncher(plugin: Plugin, folder: string, standaloneLoader?: string): void {
    const file = path.join(folder, pluginFiles(plugin).launcher);
    fs.writeFileSync(file, launcher(plugin, standaloneLoader));
    fs.chmodSync(file, 0o755);
}

/** The compiled entry every plugin starts in, which runs the plugin's bundle. */
const BUNDLE_LOADER = "dist/provider/bundleLoader.js";

/** Bundles a compiled plugin into its folder and returns the folder. */
export function buildPlugin(plugin: Plugin = NIXOS_PLUGIN): string {
    const folder = path.join(ROOT, plugin.folder);
    const bundle = (entry: string, outfile: string) => buildSync({
        entryPoints: [path.join(ROOT, entry)], bundle: true, platform: "node", target: "node20", outfile: path.join(folder, outfile), logLevel: "warning",
    });
    const files = pluginFiles(plugin);
    bundle(plugin.entry, files.bundle);
    bundle(BUNDLE_LOADER, files.loader);
    // Caches of an earlier build are never read again (they are named by the bundle's digest).
    for (const file of fs.readdirSync(folder)) if (file.endsWith(".v8cache")) fs.rmSync(path.join(folder, file));
    writeLauncher(plugin, folder);
    return folder;
}

if (require.main === module) for (const plugin of [NIXOS_PLUGIN, TESTBED_PLUGIN]) console.log(buildPlugin(plugin));
