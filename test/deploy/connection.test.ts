// The shared SSH connection to a real test host: one master carries the commands, and closing the
// connection ends that master (through its control socket) and removes every file written for it.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { SshConnection } from "../../deploy/transport/ssh";
import { readEachProcess, useTestEngine } from "../engine/engine";
import { startTestHosts, TestFleet, waitFor } from "../../testbed/testHosts";

let fleet: TestFleet;

before(async () => {
    useTestEngine();
    fleet = await startTestHosts({ count: 1, namePrefix: "conn" });
});

after(() => fleet?.stop());

/** How the deployer reaches the fleet's one host. */
const target = () => {
    const host = fleet.hosts[0];
    return { address: host.address, port: host.port, user: "root", privateKey: fleet.deployerPrivateKey, hostPublicKey: host.hostPublicKey };
};

/** The connection's private folder, which holds its config and the master's control socket. */
const folderOf = (connection: SshConnection) => path.dirname(connection.nixSshOpts.replace(/^-F /, ""));

/** The master connections listening in the connection's folder: a detached master titles itself "ssh: <socket> [mux]". */
function mastersOf(connection: SshConnection): number[] {
    const title = `ssh: ${path.join(folderOf(connection), "master")} [mux]`;
    return [...readEachProcess("cmdline")].filter(([, cmdline]) => cmdline.startsWith(title)).map(([pid]) => pid);
}

test("commands share one master connection, and closing the connection ends it and removes its files", async () => {
    const connection = SshConnection.open(target(), { carriesSecrets: false });
    const folder = folderOf(connection);
    assert.equal((await connection.check("echo", ["echo", "one"])).trim(), "one");
    assert.equal((await connection.check("echo", ["echo", "two"])).trim(), "two");
    const masters = mastersOf(connection);
    assert.equal(masters.length, 1, `one master, not ${masters.length}`);
    assert.ok(fs.existsSync(path.join(folder, "master")), "the master listens on its control socket");
    await connection.close();
    await waitFor("the master exits", () => !fs.existsSync(`/proc/${masters[0]}`), 5);
    assert.equal(fs.existsSync(folder), false, "the key folder is removed");
});

test("closing a connection whose master is gone already (killed, or never started) succeeds", async () => {
    const unused = SshConnection.open(target());
    await unused.close();
    const killed = SshConnection.open(target());
    await killed.check("true", ["true"]);
    const [master] = mastersOf(killed);
    process.kill(master, "SIGKILL");
    await waitFor("the master is killed", () => !fs.existsSync(`/proc/${master}`), 5);
    await killed.close();
    assert.equal(fs.existsSync(folderOf(killed)), false);
});
