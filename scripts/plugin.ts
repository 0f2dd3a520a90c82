// Builds the provider plugin folder, dist/plugin: the executable pulumi-resource-nixos and one
// bundled script with everything it runs (no node_modules needed), which is what
// `pulumi plugin install resource nixos VERSION --file dist/plugin` installs.
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSync } from "esbuild";

const ROOT = path.resolve(__dirname, "../..");
const PLUGIN_DIR = path.join(ROOT, "dist/plugin");
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PLUGIN_VERSION: string = require(path.join(ROOT, "package.json")).version;

const LAUNCHER = `#!/bin/sh
# The nixos resource provider for Pulumi (Node.js 20 or later on PATH).
exec node "$(dirname "$0")/pulumi-resource-nixos.js" "$@"
`;

/** Bundles the compiled provider (dist/provider) into the plugin folder and returns the folder. */
export function buildPlugin(): string {
    buildSync({
        entryPoints: [path.join(ROOT, "dist/provider/main.js")],
        bundle: true,
        platform: "node",
        target: "node20",
        outfile: path.join(PLUGIN_DIR, "pulumi-resource-nixos.js"),
        logLevel: "warning",
    });
    fs.writeFileSync(path.join(PLUGIN_DIR, "pulumi-resource-nixos"), LAUNCHER, { mode: 0o755 });
    return PLUGIN_DIR;
}

if (require.main === module) console.log(buildPlugin());
