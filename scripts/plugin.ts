// Builds provider plugin folders: an executable pulumi-resource-NAME and one bundled script with
// everything it runs (no node_modules needed), which is what
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

/** Bundles a compiled plugin into its folder and returns the folder. */
export function buildPlugin(plugin: Plugin = NIXOS_PLUGIN): string {
    const folder = path.join(ROOT, plugin.folder);
    buildSync({
        entryPoints: [path.join(ROOT, plugin.entry)],
        bundle: true,
        platform: "node",
        target: "node20",
        outfile: path.join(folder, `pulumi-resource-${plugin.name}.js`),
        logLevel: "warning",
    });
    fs.writeFileSync(path.join(folder, `pulumi-resource-${plugin.name}`), launcher(plugin.name), { mode: 0o755 });
    return folder;
}

if (require.main === module) for (const plugin of [NIXOS_PLUGIN, TESTBED_PLUGIN]) console.log(buildPlugin(plugin));
