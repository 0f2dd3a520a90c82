// A fleet's rollout plan: the canary's batch first, the other hosts after it in batches; bad
// canary settings fail in the constructor with one message that names the mistake.
import assert from "node:assert/strict";
import { test } from "node:test";
import { NixosFleet, NixosFleetArgs } from "../../components";
import { planRollout } from "../../components/nixosFleet";

const HOSTS = Object.fromEntries(["a", "b", "c", "d", "e"].map((name) => [name, { address: "192.0.2.1" }]));

const plan = (settings: Pick<NixosFleetArgs, "canary" | "batchSize">) => planRollout("edge", { hosts: HOSTS, ...settings });

test("without a canary: batches of batchSize in the order of hosts, or all at once", () => {
    assert.deepEqual(plan({}), { batches: [["a", "b", "c", "d", "e"]], canary: [] });
    assert.deepEqual(plan({ batchSize: 2 }).batches, [["a", "b"], ["c", "d"], ["e"]]);
});

test("a canary count takes hosts from the front; the rest follow in one batch or in batches of batchSize", () => {
    assert.deepEqual(plan({ canary: 1 }), { batches: [["a"], ["b", "c", "d", "e"]], canary: ["a"] });
    assert.deepEqual(plan({ canary: 2, batchSize: 2 }), { batches: [["a", "b"], ["c", "d"], ["e"]], canary: ["a", "b"] });
});

test("named canary hosts go first, wherever they are in hosts", () => {
    assert.deepEqual(plan({ canary: ["d", "b"], batchSize: 2 }), { batches: [["d", "b"], ["a", "c"], ["e"]], canary: ["d", "b"] });
});

/** The message NixosFleet's constructor fails with (before it registers anything). */
function constructorError(settings: Pick<NixosFleetArgs, "canary" | "batchSize">): string {
    let message = "";
    assert.throws(() => new NixosFleet("edge", { flake: "./nix", sshPrivateKey: "unused", hosts: HOSTS, ...settings }), (error: Error) => {
        message = error.message;
        return true;
    });
    return message;
}

test("bad canary settings: one message each, naming the field and the mistake", () => {
    assert.equal(constructorError({ canary: ["b", "web-9", "x"] }),
        "NixosFleet edge: invalid input\n  - canary: names hosts the fleet does not have: web-9, x (its hosts: a, b, c, d, e)");
    assert.match(constructorError({ canary: 5 }), /canary: must leave at least one of the fleet's 5 hosts to follow the canary/);
    assert.match(constructorError({ canary: ["a", "b", "c", "d", "e"] }), /canary: must leave at least one of the fleet's 5 hosts/);
    assert.match(constructorError({ canary: 0 }), /canary: must be at least 1 host/);
    assert.match(constructorError({ canary: 1.5 }), /canary: must be a whole number of hosts \(1 to 4\) or a list of the fleet's host names/);
    assert.match(constructorError({ canary: [] }), /canary: must name at least one host/);
    assert.match(constructorError({ canary: ["a", "a"] }), /canary: names a more than once/);
    assert.match(constructorError({ canary: 1, batchSize: 0 }), /batchSize: must be at least 1/);
});
