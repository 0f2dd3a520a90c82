// The copy stage against real test hosts: the paths a host lacks reach it through one export of
// them, which the hosts copying the same paths at the same time share, and which is removed after.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import { after, before, test } from "node:test";
import { evaluateConfigurations } from "../../deploy/evaluate";
import { SshHost } from "../../deploy/host";
import { closurePaths, realiseDerivation } from "../../deploy/transport/nix";
import { SshConnection } from "../../deploy/transport/ssh";
import { useTestEngine } from "../engine/engine";
import { NixInvocations } from "../engine/nixInvocations";
import { FIXTURE_FLAKE } from "../engine/systemStack";
import { startTestHosts, switchByHand, TestFleet } from "../../testbed/testHosts";

let fleet: TestFleet;
let v2: string;

before(async () => {
    useTestEngine();
    const systems = await evaluateConfigurations(FIXTURE_FLAKE, ["v1", "v2"]);
    for (const system of Object.values(systems)) await realiseDerivation(system.derivation);
    v2 = systems.v2.closure;
    fleet = await startTestHosts({ count: 2, namePrefix: "copy" });
    for (const host of fleet.hosts) switchByHand(fleet, host, systems.v1.closure);
});

after(() => fleet?.stop());

const exportFolders = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith("pnx-export-"));

test("hosts that lack the same paths get them from one export, streamed to each host's nix-store --import", async () => {
    const closure = await closurePaths(v2);
    const missing = closure.filter((info) => !fleet.hosts[0].hasStorePath(info.path));
    assert.ok(missing.length > 0 && missing.length < closure.length, "the hosts lack some of v2's paths, not all");
    const connections = fleet.hosts.map((host) => SshConnection.open(
        { address: host.address, port: host.port, user: "root", privateKey: fleet.deployerPrivateKey, hostPublicKey: host.hostPublicKey },
        { carriesSecrets: false }));
    const nixCalls = new NixInvocations();
    try {
        const foldersBefore = exportFolders();
        const { processes } = await nixCalls.during(() => Promise.all(connections.map((connection) =>
            new SshHost(connection).copyClosure(v2, missing, { substituteOnDestination: false, checkSignatures: false }))));
        for (const host of fleet.hosts) {
            for (const { path } of closure) assert.ok(host.hasStorePath(path), `${host.name} holds ${path}`);
            assert.equal(host.shell(`nix-store --check-validity ${v2} && echo valid`).trim(), "valid", `${host.name}'s Nix knows v2 as valid`);
        }
        const ran = processes.map((p) => `${p.program} ${p.subcommand}`);
        assert.deepEqual(ran, ["nix-store --export"], "one export for both hosts, and no nix copy");
        assert.deepEqual(exportFolders(), foldersBefore, "the export is removed once both hosts have it");
    } finally {
        nixCalls.remove();
        await Promise.all(connections.map((connection) => connection.close()));
    }
});
