// A binary cache on a test host of its own: a real Nix binary cache (`nix copy --to file://…`,
// signed with a key made for it) served over plain HTTP from that host's address, as a team's
// cache server would serve its hosts. The other test hosts reach it through this machine (see
// routeBetweenHosts); nothing else is contacted.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { nix } from "../deploy/transport/nix";
import { startTestHost, TestHost } from "./testHosts";

const PORT = 8080;

export interface BinaryCacheHost {
    /** The cache's URL, for the hosts: http://ADDRESS:PORT. */
    url: string;
    /** The public key its paths are signed with ("name:base64"). */
    publicKey: string;
    /** The test host that serves it (its link's counters tell what it sent). */
    host: TestHost;
    /** Puts a closure into the cache, signed with the cache's key. */
    push(storePath: string): Promise<void>;
    /** Bytes the cache host has sent over its link so far. */
    bytesServed(): number;
    stop(): void;
}

/** The HTTP server: serves the cache folder's files, read-only. $1 folder, $2 address, $3 port. */
const SERVER = `
const http = require("node:http"), fs = require("node:fs"), path = require("node:path");
const [root, address, port] = process.argv.slice(1);
http.createServer((request, response) => {
    const file = path.join(root, path.normalize(decodeURIComponent(request.url.split("?")[0])));
    if (!file.startsWith(root + path.sep) || !fs.statSync(file, { throwIfNoEntry: false })?.isFile()) { response.writeHead(404).end(); return; }
    response.writeHead(200, { "content-length": fs.statSync(file).size });
    if (request.method === "HEAD") response.end(); else fs.createReadStream(file).pipe(response);
}).listen(Number(port), address, () => console.log("serving " + root));
`;

/** Starts a Debian-like test host serving a new, empty binary cache signed with a key of its own. */
export async function startBinaryCacheHost(baseDir: string, name = "cache"): Promise<BinaryCacheHost> {
    // No deployer logs in to it: it only serves HTTP.
    const host = await startTestHost({ baseDir, name, authorizedKey: "" });
    try {
        const folder = path.join(host.dir, "binary-cache");
        fs.mkdirSync(folder);
        const secretKeyFile = path.join(host.dir, "cache-key.sec");
        const secretKey = await nix(["key", "generate-secret", "--key-name", `${name}-1`]);
        fs.writeFileSync(secretKeyFile, secretKey, { mode: 0o600 });
        const publicKey = (await nix(["key", "convert-secret-to-public"], { input: secretKey })).trim();
        const log = fs.openSync(path.join(host.dir, "cache-server.log"), "a");
        // A process of the host's network namespace: stopping the host ends it.
        spawn("ip", ["netns", "exec", host.namespace, process.execPath, "-e", SERVER, folder, host.address, String(PORT)],
            { detached: true, stdio: ["ignore", log, log] }).unref();
        fs.closeSync(log);
        await waitForServer(path.join(host.dir, "cache-server.log"));
        return {
            url: `http://${host.address}:${PORT}`,
            publicKey,
            host,
            async push(storePath) {
                await nix(["copy", "--to", `file://${folder}?secret-key=${secretKeyFile}&compression=none`, storePath]);
            },
            bytesServed: () => host.bytesReceived(),
            stop: () => host.stop(),
        };
    } catch (error) {
        host.stop();
        throw error;
    }
}

async function waitForServer(logFile: string): Promise<void> {
    for (let waited = 0; waited < 10_000; waited += 100) {
        if (fs.readFileSync(logFile, "utf8").includes("serving ")) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`the binary cache server did not start:\n${fs.readFileSync(logFile, "utf8")}`);
}
