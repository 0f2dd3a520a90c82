// A provider plugin's entry: runs the plugin's bundle (pulumi-resource-NAME.bundle.js beside it, or
// the asset of the single executable it is the main script of)
// with V8's code cache, which takes a third off the plugin's start (about 200 ms to 140 ms here:
// compiling the 2.6 MB bundle), and every `pulumi` command that uses the provider starts it. The cache is written beside
// the bundle, once, a second after a start without a usable one; it is named by a digest of the
// bundle and the Node.js version, so that no other bundle or V8 ever reads it. A folder that
// cannot be written only leaves the start uncached.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import Module from "node:module";
import * as path from "node:path";
import * as vm from "node:vm";

/** How long the plugin runs before the cache is made: its start has then compiled what a start needs. */
const CACHE_AFTER_MS = 1000;

/** The cache file of `source` for this Node.js, beside the bundle. */
export function codeCachePath(bundle: string, source: string): string {
    const digest = createHash("sha256").update(source).update(`\0${process.version}\0${process.arch}`).digest("hex").slice(0, 32);
    return path.join(path.dirname(bundle), `.${path.basename(bundle)}.${digest}.v8cache`);
}

function readCache(file: string): Buffer | undefined {
    try {
        return fs.readFileSync(file);
    } catch {
        return undefined;
    }
}

/** Whether the cache can be written beside the bundle (a plugin in the Nix store, say, cannot). */
function writableFolder(bundle: string): boolean {
    try {
        fs.accessSync(path.dirname(bundle), fs.constants.W_OK);
        return true;
    } catch {
        return false;
    }
}

/** Writes to a file of its own, then renames: plugins starting together never read half a cache. */
function writeCache(file: string, data: Buffer): void {
    const partial = `${file}.${process.pid}`;
    try {
        fs.writeFileSync(partial, data, { mode: 0o644 });
        fs.renameSync(partial, file);
    } catch {
        fs.rmSync(partial, { force: true });
    }
}

/**
 * Runs the bundle as CommonJS module code, with the code cache when there is a usable one. `bundle`
 * names the file it is read from (unless `source` is given) and the place of its cache.
 */
export function runBundle(bundle: string, source = fs.readFileSync(bundle, "utf8")): void {
    const cacheFile = codeCachePath(bundle, source);
    const cachedData = readCache(cacheFile);
    const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData });
    if ((!cachedData || script.cachedDataRejected) && writableFolder(bundle)) setTimeout(() => writeCache(cacheFile, script.createCachedData()), CACHE_AFTER_MS).unref();
    const bundleModule = new Module(bundle, module);
    bundleModule.filename = bundle;
    const moduleFunction = script.runInThisContext() as (...args: unknown[]) => void;
    moduleFunction.call(bundleModule.exports, bundleModule.exports, Module.createRequire(bundle), bundleModule, bundle, path.dirname(bundle));
}

/** The asset that holds the bundle in a single executable (scripts/release.ts). */
export const EMBEDDED_BUNDLE = "bundle.js";

/** The bundle, when this runs as the main script of a single executable (Node.js's SEA). */
function embeddedBundle(): string | undefined {
    try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const sea: typeof import("node:sea") = require("node:sea");
        return sea.isSea() ? sea.getAsset(EMBEDDED_BUNDLE, "utf8") : undefined;
    } catch {
        return undefined; // A Node.js older than node:sea runs no single executable.
    }
}

const embedded = embeddedBundle();
// The executable's cache is written beside it, as the bundle's is beside the bundle.
if (embedded !== undefined) runBundle(`${process.execPath}.bundle.js`, embedded);
else if (require.main === module) runBundle(__filename.replace(/\.js$/, ".bundle.js"));
