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

const launcher = (name: string) => `#!/bin/sh
# The ${name} resource provider for Pulumi (Node.js 20 or later on PATH).
exec node "$(dirname "$0")/pulumi-resource-${name}.js" "$@"
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
