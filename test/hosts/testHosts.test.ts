// The test-host harness cleans up after itself even when a test process is killed: the next run
// removes the dead process's hosts and its fleet folder, which holds the deployer key.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../engine/engine";
import { sweepAbandonedHosts } from "../../testbed/testHosts";

/** Whether a process runs (a zombie waiting for its reaper does not). */
function isRunning(pid: number): boolean {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
    } catch {
        return false;
    }
}

test("the hosts and the fleet folder of a killed test process are removed by the next run", () => {
    const script = `
        const { startTestHosts } = require(${JSON.stringify(path.join(REPO_ROOT, "dist/testbed/testHosts"))});
        startTestHosts({ count: 1, namePrefix: "killed" }).then((fleet) => {
            const [host] = fleet.hosts;
            require("node:fs").writeSync(1, JSON.stringify({ fleetDir: require("node:path").dirname(host.dir), namespace: host.namespace, sshd: host.pid }));
            process.kill(process.pid, "SIGKILL");
        });`;
    const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    assert.equal(child.signal, "SIGKILL", child.stderr);
    const { fleetDir, namespace, sshd } = JSON.parse(child.stdout) as { fleetDir: string; namespace: string; sshd: number };
    assert.ok(fs.existsSync(path.join(fleetDir, "deployer")));
    assert.ok(fs.existsSync(`/run/netns/${namespace}`));

    sweepAbandonedHosts();
    assert.equal(fs.existsSync(fleetDir), false);
    assert.equal(fs.existsSync(`/run/netns/${namespace}`), false);
    assert.equal(isRunning(sshd), false);
});
