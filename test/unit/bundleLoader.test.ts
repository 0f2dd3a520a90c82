// The plugin entry that runs a bundle with V8's code cache: the bundle runs as it would alone, the
// cache is written once and then read, a cache V8 refuses (damaged, or of another Node.js) is
// replaced rather than trusted, and a read-only plugin folder only goes without.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { codeCachePath } from "../../provider/bundleLoader";
import { NIXOS_PLUGIN, pluginFiles, writeLauncher } from "../../scripts/plugin";

/** A bundle that prints where it runs and what it requires, and lives long enough for the cache to be written. */
const BUNDLE = `
const path = require("node:path");
const helper = require("./helper.js");
process.stdout.write(JSON.stringify({ dirname: path.basename(__dirname), filename: path.basename(__filename), helper: helper(), args: process.argv.slice(2) }) + "\\n");
setTimeout(() => {}, 1500);
`;

function pluginFolder(): string {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-loader-"));
    fs.copyFileSync(path.join(__dirname, "../../provider/bundleLoader.js"), path.join(folder, "pulumi-resource-t.js"));
    fs.writeFileSync(path.join(folder, "pulumi-resource-t.bundle.js"), BUNDLE);
    fs.writeFileSync(path.join(folder, "helper.js"), "module.exports = () => 'helped';\n");
    return folder;
}

const start = (folder: string) => JSON.parse(execFileSync(process.execPath, [path.join(folder, "pulumi-resource-t.js"), "127.0.0.1:1"], { encoding: "utf8" }));
const cacheOf = (folder: string) => {
    const bundle = path.join(folder, "pulumi-resource-t.bundle.js");
    return codeCachePath(bundle, fs.readFileSync(bundle, "utf8"));
};

test("the bundle runs as a module beside the entry, and its code cache is written once, then read", () => {
    const folder = pluginFolder();
    try {
        const expected = { dirname: path.basename(folder), filename: "pulumi-resource-t.bundle.js", helper: "helped", args: ["127.0.0.1:1"] };
        assert.deepEqual(start(folder), expected);
        const cache = cacheOf(folder);
        assert.ok(fs.existsSync(cache), "the cache is written a second after a start without one");
        const written = fs.statSync(cache).mtimeMs;
        assert.deepEqual(start(folder), expected);
        assert.equal(fs.statSync(cache).mtimeMs, written, "a cache V8 accepts is not written again");
        assert.deepEqual(fs.readdirSync(folder).filter((file) => !file.endsWith(".v8cache")).sort(), ["helper.js", "pulumi-resource-t.bundle.js", "pulumi-resource-t.js"],
            "no partial cache file is left");
    } finally {
        fs.rmSync(folder, { recursive: true, force: true });
    }
});

test("a damaged cache is refused by V8 and replaced; a changed bundle gets a cache of its own", () => {
    const folder = pluginFolder();
    try {
        start(folder);
        const cache = cacheOf(folder);
        fs.writeFileSync(cache, Buffer.alloc(4096, 7));
        assert.equal(start(folder).helper, "helped");
        assert.notDeepEqual(fs.readFileSync(cache), Buffer.alloc(4096, 7), "the damaged cache is replaced");
        fs.appendFileSync(path.join(folder, "pulumi-resource-t.bundle.js"), "// changed\n");
        assert.notEqual(cacheOf(folder), cache);
        start(folder);
        assert.ok(fs.existsSync(cacheOf(folder)));
    } finally {
        fs.rmSync(folder, { recursive: true, force: true });
    }
});

test("a bundle in a folder that cannot be written runs uncached, and nothing is written", () => {
    const folder = pluginFolder();
    try {
        // A read-only bind mount in a mount namespace of its own, as a plugin in the Nix store is.
        const output = execFileSync("unshare", ["--mount", "--propagation", "private", "sh", "-c",
            `mount --bind -o ro "$1" "$1" && exec "$2" "$1/pulumi-resource-t.js"`, "sh", folder, process.execPath], { encoding: "utf8" });
        assert.equal(JSON.parse(output).helper, "helped");
        assert.deepEqual(fs.readdirSync(folder).sort(), ["helper.js", "pulumi-resource-t.bundle.js", "pulumi-resource-t.js"]);
    } finally {
        fs.rmSync(folder, { recursive: true, force: true });
    }
});

/** A plugin folder whose launcher has a standalone executable that needs `loader`; the executable and the loader script say which ran. */
function launcherFolder(loader?: string): string {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-launcher-"));
    const files = pluginFiles(NIXOS_PLUGIN);
    writeLauncher(NIXOS_PLUGIN, folder, loader);
    fs.writeFileSync(path.join(folder, files.standalone), "#!/bin/sh\necho standalone\n", { mode: 0o755 });
    fs.writeFileSync(path.join(folder, files.loader), "console.log('node')\n");
    return folder;
}

const runLauncher = (launcher: string, PATH: string) => spawnSync(launcher, [], { env: { PATH }, encoding: "utf8" });
const NODE_ONLY = path.dirname(process.execPath);

test("the launcher runs the standalone executable where its loader is, else the Node.js on PATH, else says what it needs", () => {
    const withLoader = launcherFolder("/bin/sh");
    const withoutLoader = launcherFolder("/nonexistent/ld-linux.so");
    try {
        assert.equal(runLauncher(path.join(withLoader, "pulumi-resource-nixos"), "/nonexistent").stdout, "standalone\n");
        assert.equal(runLauncher(path.join(withoutLoader, "pulumi-resource-nixos"), NODE_ONLY).stdout, "node\n");
        const neither = runLauncher(path.join(withoutLoader, "pulumi-resource-nixos"), "/nonexistent");
        assert.equal(neither.status, 1);
        assert.match(neither.stderr, /^pulumi-resource-nixos: needs Node\.js 20 or later on PATH/);
        // Started through a symbolic link elsewhere (as from a bin folder on PATH), it finds its files.
        const link = path.join(withoutLoader, "..", `pnx-launcher-link-${process.pid}`);
        fs.symlinkSync(path.join(withoutLoader, "pulumi-resource-nixos"), link);
        try {
            assert.equal(runLauncher(link, `${NODE_ONLY}:/usr/bin:/bin`).stdout, "node\n");
        } finally {
            fs.rmSync(link);
        }
    } finally {
        for (const folder of [withLoader, withoutLoader]) fs.rmSync(folder, { recursive: true, force: true });
    }
});
