import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { test } from "node:test";
import { CLASSIC_KEY_EXCHANGE, quoteShellArgument, remoteCommandLine, SshConnection } from "../../deploy/transport/ssh";

const HOSTILE = ["plain", "with space", "it's", "$(touch /tmp/pwned)", "`id`", "a;b", "a && b", "new\nline", "*", "~root", "-rf", "\"quoted\"", "\\", "", "$HOME", "a'b'c"];

test("a quoted argument reaches the remote shell as exactly one word, unchanged", () => {
    for (const argument of HOSTILE) {
        const line = remoteCommandLine(["printf", "%s", argument]);
        assert.equal(execFileSync("sh", ["-c", line], { encoding: "utf8" }), argument, `argument ${JSON.stringify(argument)}`);
    }
});

test("plain words are not quoted, and NUL bytes are refused", () => {
    assert.equal(quoteShellArgument("/nix/store/abc-x"), "/nix/store/abc-x");
    assert.throws(() => quoteShellArgument("a\0b"), /NUL/);
    assert.throws(() => remoteCommandLine([]), /empty/);
});

test("a fresh connection puts curve25519 first and keeps OpenSSH's other key exchanges to fall back on", () => {
    const effective = execFileSync("ssh", ["-G", "-o", `KexAlgorithms=${CLASSIC_KEY_EXCHANGE}`, "host.invalid"], { encoding: "utf8" });
    const algorithms = /^kexalgorithms (.+)$/m.exec(effective)![1].split(",");
    assert.equal(algorithms[0], "curve25519-sha256");
    assert.ok(algorithms.length > 2, `only ${algorithms.join(",")}`);
    const defaults = /^kexalgorithms (.+)$/m.exec(execFileSync("ssh", ["-G", "host.invalid"], { encoding: "utf8" }))![1].split(",");
    assert.deepEqual([...algorithms].sort(), [...defaults].sort(), "the same algorithms as OpenSSH's default, in another order");
});

/** A connection to an address nothing answers at: what these tests check happens before ssh connects, or in its configuration. */
const UNREACHABLE = {
    address: "192.0.2.1", port: 22, user: "root", hostPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZVjbKFFju8WPwD5kP6G0EpwYW86fZQ4vj3A4Nn0q57",
    privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n",
};

test("a fresh connection refuses standard input: what it would carry belongs on the shared one", async () => {
    const connection = SshConnection.open(UNREACHABLE);
    try {
        await assert.rejects(connection.run(["cat"], { fresh: true, input: "secret" }), /a fresh connection carries no standard input/);
    } finally {
        await connection.close();
    }
});

/** The key exchanges ssh would offer, in order, on the connection's shared master. */
function sharedKeyExchanges(connection: SshConnection): string[] {
    const effective = execFileSync("ssh", [...connection.nixSshOpts.split(" "), "-G", "pulumi-nixos-target"], { encoding: "utf8" });
    return /^kexalgorithms (.+)$/m.exec(effective)![1].split(",");
}

test("a shared connection keeps OpenSSH's default key exchange when it carries secrets, and prefers curve25519 when not", async () => {
    const defaults = /^kexalgorithms (.+)$/m.exec(execFileSync("ssh", ["-G", "host.invalid"], { encoding: "utf8" }))![1].split(",");
    const withSecrets = SshConnection.open(UNREACHABLE);
    const withoutSecrets = SshConnection.open(UNREACHABLE, { carriesSecrets: false });
    try {
        assert.deepEqual(sharedKeyExchanges(withSecrets), defaults);
        const classic = sharedKeyExchanges(withoutSecrets);
        assert.equal(classic[0], "curve25519-sha256");
        assert.deepEqual([...classic].sort(), [...defaults].sort());
    } finally {
        await withSecrets.close();
        await withoutSecrets.close();
    }
});

test("a connection opened without secrets refuses a secret input before ssh runs", async () => {
    const connection = SshConnection.open(UNREACHABLE, { carriesSecrets: false });
    try {
        await assert.rejects(connection.run(["cat"], { input: "secret", secretInput: true }), /opened without secrets/);
    } finally {
        await connection.close();
    }
});

const JUMP_KEY = UNREACHABLE.privateKey.replace("b3Bl", "anVt");

test("jump hosts: each hop is reached through the one before, with its own pinned key and its own private key or the deploy's", async () => {
    const connection = SshConnection.open({
        ...UNREACHABLE,
        jumpHosts: [
            { address: "198.51.100.7", port: 2222, user: "guest", hostPublicKey: "ssh-ed25519 AAAAjump0" },
            { address: "fd00::7", port: 22, user: "root", hostPublicKey: "ssh-ed25519 AAAAjump1", privateKey: JUMP_KEY },
        ],
    });
    try {
        const options = connection.nixSshOpts.split(" ");
        const settings = (alias: string) => execFileSync("ssh", [...options, "-G", alias], { encoding: "utf8" });
        const first = settings("pulumi-nixos-jump-0");
        assert.match(first, /^hostname 198\.51\.100\.7$/m);
        assert.match(first, /^port 2222$/m);
        assert.match(first, /^user guest$/m);
        assert.doesNotMatch(first, /^proxycommand /m);
        const second = settings("pulumi-nixos-jump-1");
        assert.match(second, /^hostname fd00::7$/m);
        assert.match(second, /^proxycommand ssh -F \S+ -W '\[%h\]:%p' pulumi-nixos-jump-0 2>>\S+jump-errors$/m);
        const target = settings("pulumi-nixos-target");
        assert.match(target, /^proxycommand ssh -F \S+ -W '\[%h\]:%p' pulumi-nixos-jump-1 2>>\S+jump-errors$/m);
        assert.match(target, /^stricthostkeychecking true$/m);
        const identity = (text: string) => /^identityfile (\S+)$/m.exec(text)![1];
        assert.equal(identity(first), identity(target), "the first hop does not use the deploy key");
        assert.equal(fs.readFileSync(identity(second), "utf8"), JUMP_KEY);
        const knownHosts = /^userknownhostsfile (\S+)$/m.exec(target)![1];
        assert.deepEqual(fs.readFileSync(knownHosts, "utf8").trim().split("\n"), [
            "pulumi-nixos-jump-0 ssh-ed25519 AAAAjump0", "pulumi-nixos-jump-1 ssh-ed25519 AAAAjump1", `pulumi-nixos-target ${UNREACHABLE.hostPublicKey}`,
        ]);
    } finally {
        await connection.close();
    }
});

test("a connection with a sudo password always carries secrets: its key exchange stays OpenSSH's default", async () => {
    const defaults = /^kexalgorithms (.+)$/m.exec(execFileSync("ssh", ["-G", "host.invalid"], { encoding: "utf8" }))![1].split(",");
    const connection = SshConnection.open({ ...UNREACHABLE, user: "operator", sudoPassword: "pw" }, { carriesSecrets: false });
    try {
        assert.deepEqual(sharedKeyExchanges(connection), defaults);
    } finally {
        await connection.close();
    }
});
