// The plugin as users get it: nobody runs `pulumi plugin install`; a program in a fresh
// PULUMI_HOME, with the engine's automatic plugin acquisition on, makes the engine fetch the
// release tarball (scripts/release.ts) from the pluginDownloadURL its SDK carries. The release
// server is a loopback HTTP server; PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES, the engine's own setting
// for mirrors, points the schema's URL at it. A TypeScript project installs the library from the
// tarball `npm pack` makes, as from the npm registry.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { PLUGIN_DOWNLOAD_URL } from "../../schema/resources";
import { buildRelease, HOST_PLATFORM, Platform, RELEASE_PLATFORMS, releaseTarballName, SEA_FUSE } from "../../scripts/release";
import { NIXOS_PLUGIN, PLUGIN_VERSION, pluginFiles } from "../../scripts/plugin";
import { createTestStack, engineBinDir, ProgramFile, REPO_ROOT } from "../engine/engine";
import { PythonEnvironment, pythonEnvironment } from "./sdkEnvironments";

let scratch: string;
let server: http.Server;
const requested: string[] = [];
let python: PythonEnvironment;

/** The engine's setting that sends a download for the schema's URL to the loopback server. */
function downloadOverride(): Record<string, string> {
    // The release folder's parent: the engine fills in `${VERSION}` after the override applies.
    const releases = PLUGIN_DOWNLOAD_URL.slice(0, PLUGIN_DOWNLOAD_URL.lastIndexOf("/", PLUGIN_DOWNLOAD_URL.indexOf("${VERSION}")) + 1);
    const pattern = `^${releases.replace(/[.]/g, "\\.")}(.*)$`;
    return { PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES: `${pattern}=http://127.0.0.1:${(server.address() as AddressInfo).port}/$1` };
}

const EXPECTED_REQUEST = `/v${PLUGIN_VERSION}/${releaseTarballName(HOST_PLATFORM)}`;

before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-release-"));
    const release = path.join(scratch, "release");
    buildRelease(path.join(release, `v${PLUGIN_VERSION}`));
    server = http.createServer((request, response) => {
        requested.push(request.url ?? "");
        const file = path.join(release, path.normalize(decodeURIComponent(request.url ?? "/")));
        if (!file.startsWith(release) || !fs.existsSync(file) || !fs.statSync(file).isFile()) return void response.writeHead(404).end();
        response.writeHead(200, { "content-type": "application/gzip", "content-length": fs.statSync(file).size });
        fs.createReadStream(file).pipe(response);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    python = pythonEnvironment();
});

after(() => {
    server?.close();
    python?.remove();
    fs.rmSync(scratch, { recursive: true, force: true });
});

/** Runs up and destroy of a program that makes a key pair, with nothing installed; returns its public key. */
async function upWithAcquisition(name: string, program: ProgramFile, prepare?: (workDir: string) => void): Promise<string> {
    requested.length = 0;
    const stack = await createTestStack(name, { ...program, envVars: { ...program.envVars, ...downloadOverride() } }, {}, { plugins: "acquired" });
    try {
        prepare?.(stack.stack.workspace.workDir);
        const result = await stack.stack.up();
        assert.deepEqual(requested, [EXPECTED_REQUEST], "the engine asked the release server for the tarball once");
        const installed = path.join(stack.dir, `home/plugins/resource-nixos-v${PLUGIN_VERSION}`);
        assert.ok(fs.existsSync(path.join(installed, "pulumi-resource-nixos")), `the plugin was not unpacked into ${installed}`);
        await stack.stack.destroy();
        return result.outputs.publicKey.value;
    } finally {
        await stack.remove();
    }
}

/** ELF's e_machine of each Linux platform's standalone executable. */
const ELF_MACHINE: Partial<Record<Platform, number>> = { "linux-amd64": 62, "linux-arm64": 183 };

test("each platform's tarball holds the plugin's files at its top, root's and not writable by others; Linux's the standalone executable for its machine", () => {
    const { launcher, loader, bundle, standalone } = pluginFiles(NIXOS_PLUGIN);
    for (const platform of RELEASE_PLATFORMS) {
        const tarball = path.join(scratch, "release", `v${PLUGIN_VERSION}`, releaseTarballName(platform));
        // "-rwxr-xr-x 0/0 462 2026-12-04 08:10 pulumi-resource-nixos": mode, owner, name.
        const listing = execFileSync("tar", ["--list", "--verbose", "--numeric-owner", "--file", tarball], { encoding: "utf8" }).trim().split("\n")
            .map((line) => line.split(/\s+/)).map((fields) => `${fields[0]} ${fields[1]} ${fields[5]}`).sort();
        const machine = ELF_MACHINE[platform];
        const expected = [`-rwxr-xr-x 0/0 ${launcher}`, `-rw-r--r-- 0/0 ${loader}`, `-rw-r--r-- 0/0 ${bundle}`, ...(machine ? [`-rwxr-xr-x 0/0 ${standalone}`] : [])];
        assert.deepEqual(listing, expected.sort(), platform);
        if (!machine) continue;
        const executable = execFileSync("tar", ["--extract", "--to-stdout", "--file", tarball, standalone], { maxBuffer: 512 * 2 ** 20 });
        assert.equal(executable.subarray(0, 4).toString("latin1"), "\x7fELF", platform);
        assert.equal(executable.readUInt16LE(18), machine, `${platform}: e_machine`);
        // postject sets the fuse (":0" to ":1") when it injects the blob.
        assert.ok(executable.includes(`${SEA_FUSE}:1`), `${platform}: no blob injected`);
    }
});

test("a Python program in a fresh PULUMI_HOME, without Node.js on PATH, gets the plugin from the release server by itself", async () => {
    const pathWithoutNode = `${path.join(python.dir, "bin")}:${engineBinDir()}`;
    assert.deepEqual(pathWithoutNode.split(":").filter((dir) => fs.existsSync(path.join(dir, "node"))), [], "node is on that PATH");
    const publicKey = await upWithAcquisition("acquired-python", {
        runtime: "python",
        // Only the virtual environment and the engine: no node, so only the standalone executable can answer.
        envVars: { ...python.envVars, PATH: pathWithoutNode },
        source: `
import pulumi
import pulumi_nixos as nixos
key = nixos.SshKeyPair("key", comment="acquired")
pulumi.export("publicKey", key.public_key)
`,
    });
    assert.match(publicKey, /^ssh-ed25519 AAAA/);
});

test("a YAML program whose resources name the plugin's version and pluginDownloadURL gets it by itself", async () => {
    const publicKey = await upWithAcquisition("acquired-yaml", {
        runtime: "yaml",
        source: `
resources:
  key:
    type: nixos:index:SshKeyPair
    properties:
      comment: acquired
    options:
      version: ${PLUGIN_VERSION}
      pluginDownloadURL: ${PLUGIN_DOWNLOAD_URL.replace("${VERSION}", PLUGIN_VERSION)}
outputs:
  publicKey: \${key.publicKey}
`,
    });
    assert.match(publicKey, /^ssh-ed25519 AAAA/);
});

test("a TypeScript project that installed the npm pack tarball gets the plugin by itself", async () => {
    const pack = path.join(scratch, "pack");
    fs.mkdirSync(pack);
    execFileSync("npm", ["pack", "--silent", "--pack-destination", pack], { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "inherit"] });
    const [tarball] = fs.readdirSync(pack);
    const publicKey = await upWithAcquisition("acquired-typescript", {
        runtime: "nodejs",
        mainFile: "index.ts",
        // Only what the project installed: not this checkout's node_modules.
        envVars: { NODE_PATH: "" },
        files: { "package.json": JSON.stringify({ name: "acquired-typescript", main: "index.ts" }) },
        source: `import * as nixos from "pulumi-nixos";
const key = new nixos.SshKeyPair("key", { comment: "acquired" });
export const publicKey = key.publicKey;
`,
    }, (project) => {
        // Dependencies come from npm's cache, filled by this checkout's own install.
        const typescript = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "node_modules/typescript/package.json"), "utf8")).version;
        execFileSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--silent", path.join(pack, tarball), `typescript@${typescript}`],
            { cwd: project, stdio: ["ignore", "ignore", "inherit"] });
    });
    assert.match(publicKey, /^ssh-ed25519 AAAA/);
});
