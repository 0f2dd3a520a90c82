import assert from "node:assert/strict";
import { test } from "node:test";
import { parseProbe, parseSwitchReport } from "../../deploy/activate";
import { planCopy } from "../../deploy/copy";
import { SHARED_EXPORT_MAX_BYTES, sharesExport } from "../../deploy/host";
import { alreadyDeployed } from "../../deploy/pipeline";

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a";
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-b";

test("the probe's output gives the running system, the generation and the missing paths", () => {
    const state = parseProbe(`current ${A}\nprofile system-12-link\nclosure ${B}\nmissing ${B}\nmissing /nix/store/x\n`);
    assert.deepEqual(state, { current: A, generation: 12, generationClosure: B, missing: [B, "/nix/store/x"] });
    assert.deepEqual(parseProbe("current \nprofile \nclosure \n"), { missing: [] });
});

test("the switch report gives the exit code, the agent's result when it ended already, and the end of the log; nothing while it runs", () => {
    assert.equal(parseSwitchReport(""), undefined);
    assert.deepEqual(parseSwitchReport("exit switch 4\nlog warning: app.service failed\n"),
        { step: "switch", exit: 4, log: ["warning: app.service failed"] });
    assert.deepEqual(parseSwitchReport("exit switch 0\nresult rolled-back\n"), { step: "switch", exit: 0, result: "rolled-back", log: [] });
    assert.deepEqual(parseSwitchReport("exit agent-gone\n"), { step: "agent", exit: -1, log: [] });
});

test("a host counts as deployed only when what the action changes already matches", () => {
    const onA = { current: A, generationClosure: A, missing: [] };
    const bootsB = { current: A, generationClosure: B, missing: [] };
    assert.equal(alreadyDeployed(onA, A, "switch"), true);
    assert.equal(alreadyDeployed(bootsB, B, "switch"), false);
    assert.equal(alreadyDeployed(bootsB, B, "boot"), true);
    assert.equal(alreadyDeployed(bootsB, A, "test"), true);
});

test("the copy plan counts only the paths the host lacks", () => {
    const plan = planCopy([{ path: A, narSize: 100 }, { path: B, narSize: 50 }], [B]);
    assert.deepEqual(plan.missing, [{ path: B, narSize: 50 }]);
    assert.equal(plan.missingBytes, 50);
});

test("paths go through a shared export only to a host that takes them as a trusted user's, and only up to the size kept on the deployer's disk", () => {
    const trusted = { substituteOnDestination: false, checkSignatures: false };
    const change = [{ path: A, narSize: 3 * 2 ** 20 }, { path: B, narSize: 1024 }];
    assert.equal(sharesExport(change, trusted), true);
    assert.equal(sharesExport(change, { ...trusted, checkSignatures: true }), false, "the daemon must check each path's signature");
    assert.equal(sharesExport(change, { ...trusted, substituteOnDestination: true }), false, "the host's substituters serve what they can");
    const firstDeploy = [{ path: A, narSize: SHARED_EXPORT_MAX_BYTES }, { path: B, narSize: 1 }];
    assert.equal(sharesExport(firstDeploy, trusted), false, "a whole system streams through nix copy instead of being written to the deployer's disk");
});
