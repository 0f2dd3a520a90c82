// `npm run demo`: the whole story on a local fleet, with real `pulumi` commands against this
// repository's Pulumi.yaml (index.ts): up, a change previewed with its closure and package diff,
// up, a broken change rolled back, a hand-made change seen by refresh and undone by up, destroy.
// It cleans up after itself, also when a step fails. Needs root (the machines are network
// namespaces running a real OpenSSH server).
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { engineBinDir, OFFLINE_NIX_CONFIG, REPO_ROOT } from "../test/engine/engine";
import { currentSystemOf, localMachinesFolder, removeTestHostsUnder, shellIn } from "../testbed/testHosts";
import { buildPlugin, NIXOS_PLUGIN, PLUGIN_VERSION, TESTBED_PLUGIN } from "./plugin";

const STACK = "demo";
const WORK = path.join(REPO_ROOT, ".work", "demo");
const MACHINES = localMachinesFolder("pulumi-nixos-example", STACK);
const HOSTS = ["web-1", "web-2", "web-3"];

function environment(): NodeJS.ProcessEnv {
    // A fresh backend and no machines: nothing from an earlier, interrupted demo is in the way.
    fs.rmSync(WORK, { recursive: true, force: true });
    removeTestHostsUnder(MACHINES);
    for (const dir of ["state", "home"]) fs.mkdirSync(path.join(WORK, dir), { recursive: true });
    return {
        ...process.env,
        PATH: `${engineBinDir()}:${process.env.PATH}`,
        PULUMI_BACKEND_URL: `file://${path.join(WORK, "state")}`,
        PULUMI_HOME: path.join(WORK, "home"),
        // A local demo stack: its secrets are encrypted with this fixed passphrase.
        PULUMI_CONFIG_PASSPHRASE: "pulumi-nixos demo",
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        // The stand-in systems build with /bin/sh outside the sandbox, and there is no cache here.
        PULUMI_NIXOS_NIX_CONFIG: process.env.PULUMI_NIXOS_NIX_CONFIG ?? OFFLINE_NIX_CONFIG,
    };
}

const env = environment();

function step(title: string): void {
    console.log(`\n\x1b[1m==> ${title}\x1b[0m`);
}

/** Runs `pulumi ARGS` in the repository, showing its output; returns whether it succeeded. */
function pulumi(...args: string[]): boolean {
    console.log(`$ pulumi ${args.join(" ")}`);
    return spawnSync("pulumi", args, { cwd: REPO_ROOT, env, stdio: "inherit" }).status === 0;
}

function mustSucceed(ok: boolean, what: string): void {
    if (ok) return;
    showConsoles();
    throw new Error(`demo: ${what} failed`);
}

/** The end of each machine's console (its supervisor's and init's output), before destroy removes it. */
function showConsoles(): void {
    for (const host of HOSTS) {
        const log = path.join(MACHINES, `${host}-machine`, "console.log");
        if (fs.existsSync(log)) console.log(`--- ${host}'s console:\n${fs.readFileSync(log, "utf8").split("\n").slice(-15).join("\n")}`);
    }
}

/** What each machine runs now, read from the machine itself. */
function showHosts(): void {
    for (const host of HOSTS) console.log(`   ${host} runs ${currentSystemOf(machineNamespace(host)) ?? "(none)"}`);
}

/** The network namespace of a host's machine, from the stack's state. */
function machineNamespace(host: string): string {
    const state = JSON.parse(execFileSync("pulumi", ["stack", "export", "--stack", STACK], { cwd: REPO_ROOT, env, encoding: "utf8" }));
    return state.deployment.resources.find((r: { urn: string }) => r.urn.endsWith(`::${host}-machine`)).outputs.namespace;
}

/** Switches a machine back to its first generation by hand, as an operator at its console would. */
function switchByHand(host: string): void {
    const command = "nix-env -p /nix/var/nix/profiles/system --switch-generation 1 && /nix/var/nix/profiles/system/bin/switch-to-configuration switch";
    console.log(`$ ${host}# ${command}`);
    process.stdout.write(shellIn(machineNamespace(host), command));
}

function main(): void {
    step("The nixos provider plugin, installed as users install it");
    for (const plugin of [NIXOS_PLUGIN, TESTBED_PLUGIN]) {
        mustSucceed(pulumi("plugin", "install", "resource", plugin.name, PLUGIN_VERSION, "--file", path.relative(REPO_ROOT, buildPlugin(plugin))), "plugin install");
    }

    step("A stack for the example program (Pulumi.yaml, index.ts: three local machines from one flake)");
    mustSucceed(pulumi("stack", "init", STACK), "stack init");
    try {
        step("1. pulumi up: three machines boot Debian-like, a stand-in nixos-infect makes them NixOS, and the flake's version 1 is deployed");
        mustSucceed(pulumi("config", "set", "version", "v1"), "config");
        mustSucceed(pulumi("up", "--yes"), "the first up");
        showHosts();

        step("2. A change to version 2: pulumi preview shows the old and new closure and the package versions, touching no host");
        mustSucceed(pulumi("config", "set", "version", "v2"), "config");
        mustSucceed(pulumi("preview", "--diff"), "preview");

        step("3. pulumi up: version 2, each host on a new generation");
        mustSucceed(pulumi("up", "--yes"), "up to version 2");
        showHosts();

        step("4. A broken change: version 3, but web-2's new system fails its switch; web-2 rolls back, the others move on");
        mustSucceed(pulumi("config", "set", "version", "v3"), "config");
        mustSucceed(pulumi("config", "set", "brokenHost", "web-2"), "config");
        if (pulumi("up", "--yes")) throw new Error("demo: the broken change was deployed");
        showHosts();

        step("5. The fix: web-2 gets version 3 too");
        mustSucceed(pulumi("config", "rm", "brokenHost"), "config");
        mustSucceed(pulumi("up", "--yes"), "up after the fix");
        showHosts();

        step("6. Someone switches web-1 back by hand: pulumi refresh sees the drift, pulumi up undoes it");
        switchByHand("web-1");
        showHosts();
        mustSucceed(pulumi("refresh", "--yes", "--diff"), "refresh");
        mustSucceed(pulumi("up", "--yes"), "up after the drift");
        showHosts();
    } finally {
        step("7. pulumi destroy: the machines and every resource are gone");
        const destroyed = pulumi("destroy", "--yes");
        pulumi("stack", "rm", "--yes", "--force", "--stack", STACK);
        fs.rmSync(WORK, { recursive: true, force: true });
        console.log(`   machines left: ${fs.existsSync(MACHINES) ? fs.readdirSync(MACHINES).length : 0}`);
        if (fs.existsSync(MACHINES) && fs.readdirSync(MACHINES).length === 0) fs.rmdirSync(MACHINES);
        if (!destroyed) process.exitCode = 1;
    }
}

try {
    main();
} catch (error) {
    console.error(String(error));
    process.exitCode = 1;
}
