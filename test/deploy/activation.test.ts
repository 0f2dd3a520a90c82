// The magic-rollback activation on its own, against a real test host, without Pulumi: who wins the
// claim on "pending" (the deployer's confirmation or abort, or the host's own timeout) decides
// which generation the host ends on, and a host that cannot start the agent is left as it was. The
// host is NixOS-shaped: the agent runs as a transient systemd unit whose PATH is systemd's bin/.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Activation, ActivationError, ActivationNotStartedError, AGENT_DIR, FILES_BACKUP } from "../../deploy/activate";
import { writeFiles } from "../../deploy/files";
import { evaluateConfigurations } from "../../deploy/evaluate";
import { SshHost } from "../../deploy/host";
import { closurePaths, realiseDerivation } from "../../deploy/transport/nix";
import { SshConnection } from "../../deploy/transport/ssh";
import { useTestEngine } from "../engine/engine";
import { FIXTURE_FLAKE } from "../engine/systemStack";
import { startTestHosts, switchByHand, TestFleet, TestHost, waitFor } from "../../testbed/testHosts";

let fleet: TestFleet;
let host: TestHost;
let connection: SshConnection;
let sshHost: SshHost;
let v1: string;
let v2: string;
let switchFails: string;
let slowSwitch: string;

before(async () => {
    useTestEngine();
    const systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2", "switch-fails", "slow-switch"]);
    for (const system of Object.values(systems)) await realiseDerivation(system.derivation);
    [v1, v2, switchFails, slowSwitch] = [systems.v1.closure, systems.v2.closure, systems["switch-fails"].closure, systems["slow-switch"].closure];
    fleet = await startTestHosts({ count: 1, namePrefix: "agent" });
    host = fleet.hosts[0];
    switchByHand(fleet, host, v1);
    connection = SshConnection.open({ address: host.address, port: host.port, user: "root", privateKey: fleet.deployerPrivateKey, hostPublicKey: host.hostPublicKey });
    sshHost = new SshHost(connection);
    for (const closure of [v2, switchFails, slowSwitch]) {
        const missing = (await closurePaths(closure)).filter((info) => !host.hasStorePath(info.path));
        await sshHost.copyClosure(closure, missing, { substituteOnDestination: false, checkSignatures: false });
    }
});

after(async () => {
    await connection?.close();
    fleet?.stop();
});

/** The newest agent's folder on the host. */
const agentDir = () => host.shell(`ls -d ${AGENT_DIR}/* | sort | tail -n 1`).trim();
/** What the newest agent on the host ended with (empty while it runs). */
const agentResult = () => host.shell(`cat "$(ls -d ${AGENT_DIR}/* | sort | tail -n 1)/result" 2> /dev/null || true`).trim();

// The host boots generation 1 (the first system); switchByHand made v1 generation 2.
test("a confirmation in time is settled at once; the agent, a systemd unit, then ends confirmed and the new generation stays", async () => {
    const activation = new Activation(sshHost, { generation: 2, closure: v1 }, { confirmTimeoutSeconds: 30 });
    await activation.start(v2, "switch");
    assert.deepEqual(await activation.switched(), { rebootRequired: false });
    assert.equal(host.currentGeneration(), 2, "the new system became the profile's generation before its confirmation");
    assert.deepEqual(await activation.confirm(), { generation: 3 });
    assert.match(agentResult(), /^confirmed \S*system-3-link$/);
    assert.equal(host.readFile(`${agentDir()}/agent.log`), undefined, "the agent ran detached by setsid, not as a systemd unit");
    assert.equal(host.currentSystem(), v2);
    assert.equal(host.currentGeneration(), 3);
});

test("a confirmation after the host's own timeout is refused, and the host is back on the generation it ran", async () => {
    const activation = new Activation(sshHost, { generation: 3, closure: v2 }, { confirmTimeoutSeconds: 1 });
    await activation.start(v1, "switch");
    await activation.switched();
    await waitFor("the host rolls itself back", () => agentResult() !== "", 10);
    await assert.rejects(activation.confirm(), (error: Error) =>
        error instanceof ActivationError && /the confirmation came too late: the host is back on generation 3/.test(error.message));
    assert.equal(host.currentSystem(), v2);
    assert.equal(host.currentGeneration(), 3);
});

test("an abort returns the host to the recorded generation at once, long before the timeout", async () => {
    const activation = new Activation(sshHost, { generation: 3, closure: v2 }, { confirmTimeoutSeconds: 600 });
    await activation.start(v1, "switch");
    await activation.switched();
    assert.equal(host.currentSystem(), v1);
    const startedAt = Date.now();
    const { outcome, returnedTo } = await activation.rollBack();
    assert.ok(Date.now() - startedAt < 60_000, "the abort was not taken; the host's timeout rolled it back");
    assert.equal(returnedTo, 3);
    assert.match(outcome, /back on generation 3 .*as read from the host/);
    assert.equal(host.currentSystem(), v2);
    assert.equal(host.currentGeneration(), 3);
});

// switch-to-configuration-ng resets every failed unit in each switch (ResetFailed before its
// reload): the rollback's own switch clears the unit the new system failed, and exits 0.
test("a switch that exits 4 is rolled back; the previous generation's switch clears the unit that failed, as switch-to-configuration-ng does", async () => {
    const activation = new Activation(sshHost, { generation: 3, closure: v2 }, { confirmTimeoutSeconds: 600 });
    await activation.start(switchFails, "switch");
    await assert.rejects(activation.switched(), /exit code 4: some units failed to start\):\n[\s\S]*warning: the following units failed: broken.service/);
    const { outcome, returnedTo } = await activation.rollBack();
    assert.equal(returnedTo, 3);
    assert.match(outcome, /back on generation 3 \(\S+\), as read from the host$/);
    assert.equal(host.currentSystem(), v2);
    assert.equal(host.currentGeneration(), 3);
    assert.equal(host.shell("systemctl list-units --state=failed --plain --no-legend").trim(), "", "the failed unit was left failed");
});

// systemd-run expands $NAME and ${…} in its command line: unescaped, the agent's restore of a file
// (cp to "${p%/*}/.pulumi-nixos-restore.N") wrote the secret to the root disk as
// /.pulumi-nixos-restore.0, and where / is read-only, the old file was lost.
test("the agent's script reaches systemd unchanged: a rollback puts a secret back beside itself, also where / is read-only", async () => {
    host.shell("mkdir -p /run/keys && printf old > /run/keys/token && mount -o remount,bind,ro /");
    try {
        const activation = new Activation(sshHost, { generation: 3, closure: v2 }, { confirmTimeoutSeconds: 600 });
        await activation.start(v1, "switch");
        await activation.switched();
        const file = { path: "/run/keys/token", content: Buffer.from("new"), owner: "root", group: "root", mode: 0o400, activation: "after" as const };
        await writeFiles(sshHost, { write: [file], remove: [] }, { folder: `${activation.dir}/${FILES_BACKUP}`, agentFolder: activation.dir });
        assert.equal(host.readFile("/run/keys/token"), "new");
        assert.equal((await activation.rollBack()).returnedTo, 3);
    } finally {
        host.shell("mount -o remount,bind,rw /");
    }
    assert.equal(host.readFile("/run/keys/token"), "old", "the previous version of the file was not put back");
    assert.equal(host.shell("ls -a /run/keys").split("\n").filter((name) => name.startsWith(".pulumi-nixos")).length, 0);
    assert.equal(host.currentSystem(), v2);
});

// Before this change the deployer waited 30 minutes for a switch whose agent was gone.
test("an agent killed before its switch finished is noticed at once, and the deployer rolls the host back itself", async () => {
    const activation = new Activation(sshHost, { generation: 3, closure: v2 }, { confirmTimeoutSeconds: 600 });
    const startedAt = Date.now();
    const starting = activation.start(slowSwitch, "switch");
    await waitFor("the agent runs", () => host.readFile(`${activation.dir}/pid`) !== undefined, 5);
    host.shell("systemctl kill --signal=KILL 'pulumi-nixos-*.service'");
    await starting;
    const gaveUp = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("still waiting for the switch after 60 s")), 60_000).unref());
    await assert.rejects(Promise.race([activation.switched(), gaveUp]), /the activation agent ended before the switch did/);
    const { outcome, returnedTo } = await activation.rollBack();
    assert.ok(Date.now() - startedAt < 60_000);
    assert.equal(returnedTo, 3, outcome);
    assert.equal(host.currentSystem(), v2);
    assert.equal(host.currentGeneration(), 3);
});

test("a host that cannot start the agent says so, and is left as it was", async () => {
    host.shell(`rm -rf ${AGENT_DIR} && touch ${AGENT_DIR}`);
    try {
        const activation = new Activation(sshHost, { generation: 3, closure: v2 }, { confirmTimeoutSeconds: 30 });
        await assert.rejects(activation.start(v1, "switch"), (error: Error) =>
            error instanceof ActivationNotStartedError && /the activation agent did not start/.test(error.message));
    } finally {
        host.shell(`rm -f ${AGENT_DIR}`);
    }
    assert.equal(host.currentSystem(), v2);
    assert.equal(host.currentGeneration(), 3);
});
