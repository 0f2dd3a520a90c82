// Builds provider plugin folders: an executable pulumi-resource-NAME, one bundled script with
// everything it runs (no node_modules needed) and the entry that runs it with V8's code cache
// (provider/bundleLoader.ts), which is what
// `pulumi plugin install resource NAME VERSION --file FOLDER` installs. dist/plugin holds the
// nixos plugin users install; dist/testbed-plugin the one that serves the example's local machines.
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSync } from "esbuild";

const ROOT = path.resolve(__dirname, "../..");
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PLUGIN_VERSION: string = require(path.join(ROOT, "package.json")).version;

export interface Plugin {
    name: string;
    /** The compiled entry point, relative to the checkout. */
    entry: string;
    /** The folder it is built into, relative to the checkout. */
    folder: string;
}

export const NIXOS_PLUGIN: Plugin = { name: "nixos", entry: "dist/provider/main.js", folder: "dist/plugin" };
export const TESTBED_PLUGIN: Plugin = { name: "testbed", entry: "dist/testbed/pluginMain.js", folder: "dist/testbed-plugin" };

/** The plugin as one executable with its own Node.js, which a release's Linux tarball adds (scripts/release.ts). */
export const STANDALONE_EXECUTABLE = `pulumi-resource-${NIXOS_PLUGIN.name}-standalone`;

// The executable the engine starts. It runs the standalone executable where there is one and it can
// run (NixOS has no /lib64/ld-linux loader for it, unless nix-ld), else the Node.js on PATH; shell
// built-ins only, as it is on the path of every command's start.
const launcher = (name: string) => `#!/bin/sh
# The ${name} resource provider for Pulumi.
case $0 in */*) here=\${0%/*} ;; *) here=. ;; esac
if [ -x "$here/pulumi-resource-${name}-standalone" ] && [ ! -e /etc/NIXOS ]; then
  exec "$here/pulumi-resource-${name}-standalone" "$@"
fi
if command -v node >/dev/null 2>&1; then
  exec node "$here/pulumi-resource-${name}.js" "$@"
fi
echo "pulumi-resource-${name}: needs Node.js 20 or later on PATH (on NixOS: nodejs in the deployer's packages or shell)" >&2
exit 1
`;

/** The compiled entry every plugin starts in, which runs the plugin's bundle. */
const BUNDLE_LOADER = "dist/provider/bundleLoader.js";

/** Bundles a compiled plugin into its folder and returns the folder. */
export function buildPlugin(plugin: Plugin = NIXOS_PLUGIN): string {
    const folder = path.join(ROOT, plugin.folder);
    const bundle = (entry: string, outfile: string) => buildSync({
        entryPoints: [path.join(ROOT, entry)], bundle: true, platform: "node", target: "node20", outfile: path.join(folder, outfile), logLevel: "warning",
    });
    bundle(plugin.entry, `pulumi-resource-${plugin.name}.bundle.js`);
    bundle(BUNDLE_LOADER, `pulumi-resource-${plugin.name}.js`);
    // Caches of an earlier build are never read again (they are named by the bundle's digest).
    for (const file of fs.readdirSync(folder)) if (file.endsWith(".v8cache")) fs.rmSync(path.join(folder, file));
    fs.writeFileSync(path.join(folder, `pulumi-resource-${plugin.name}`), launcher(plugin.name), { mode: 0o755 });
    return folder;
}

if (require.main === module) for (const plugin of [NIXOS_PLUGIN, TESTBED_PLUGIN]) console.log(buildPlugin(plugin));
