// The one place that talks OpenSSH and the one place that quotes a command line for a host.
//
// A connection writes a private folder (0700) holding the private key (0600), a known_hosts file
// with only the pinned host key, and an ssh config that every step of a deploy uses: plain ssh
// commands here (`nix-store --import` among them) and `nix copy` through NIX_SSHOPTS. Strict host
// key checking is always on and no option here can turn it off. One master connection is shared
// by all steps; a "fresh" command bypasses it, to prove that a new connection can still be made
// (magic rollback).
//
// Key exchange: OpenSSH 9's post-quantum default protects recorded traffic from decryption by a
// future quantum computer, and costs the client about 80 ms of CPU per connection on OpenSSH 9.2
// (sntrup761), against about 10 ms for curve25519. It is worth that where secrets travel. A
// connection opened without secrets (store paths, which every user of the host may read, commands
// and their output) prefers curve25519; one that must carry secrets (file contents) keeps the
// default, and a secret input is refused on any other. Host keys and client authentication are
// the same either way.
import * as fs from "node:fs";
import * as path from "node:path";
import { terminateMaster } from "./controlSocket";
import { addressWithPort, bareAddress } from "../schema";
import { makeOwnedFolder } from "./ownedFolder";
import { ProcessResult, runProcess } from "./process";

/** How to reach a host. Values are validated by the schema before they get here. */
export interface SshTarget {
    address: string;
    port: number;
    user: string;
    /** OpenSSH private key text. Written only to a 0600 file, never to an argument list. */
    privateKey: string;
    /** The host's public key, "ssh-ed25519 AAAA…", pinned: no other key is accepted. */
    hostPublicKey: string;
    /** Seconds to wait for a TCP connection; default 10. */
    connectTimeoutSeconds?: number;
}

/** The alias the generated ssh config and known_hosts file use for the target. */
const HOST_ALIAS = "pulumi-nixos-target";
/** Prefix of the private folders under the temporary directory. */
const FOLDER_PREFIX = "pnx-ssh-";

/** Put first in OpenSSH's own list (`^`, OpenSSH 8.0 and later), so a server without them still negotiates. */
export const CLASSIC_KEY_EXCHANGE = "^curve25519-sha256,curve25519-sha256@libssh.org";

/** Quotes one argument for a POSIX shell: the only quoting of remote commands in the project. */
export function quoteShellArgument(argument: string): string {
    if (argument.includes("\0")) throw new Error("a command argument contains a NUL byte");
    return /^[A-Za-z0-9_@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replace(/'/g, `'\\''`)}'`;
}

/** Joins an argument vector into the one command string ssh sends to the remote shell. */
export function remoteCommandLine(argv: readonly string[]): string {
    if (argv.length === 0) throw new Error("empty remote command");
    return argv.map(quoteShellArgument).join(" ");
}

/** A command that ended with a non-zero exit code on the host. */
export class RemoteCommandError extends Error {
    constructor(
        readonly host: string,
        readonly what: string,
        readonly result: ProcessResult,
    ) {
        super(`${host}: ${what} failed (${describeExit(result)})${tail(result.stderr)}`);
        this.name = "RemoteCommandError";
    }
}

/** Why OpenSSH could not run a command. */
export type SshFailure = "host-key-mismatch" | "key-refused" | "unreachable" | "connection-lost" | "other";

/** OpenSSH itself failed: refused key, unreachable host, host key mismatch. Nothing ran remotely. */
export class SshConnectionError extends Error {
    readonly reason: string;

    constructor(readonly host: string, readonly failure: SshFailure, stderr: string) {
        const reason = FAILURE_REASONS[failure];
        super(`${host}: ${reason}${tail(stderr)}`);
        this.reason = reason;
        this.name = "SshConnectionError";
    }
}

function describeExit(result: ProcessResult): string {
    if (result.timedOut) return "timed out";
    if (result.signal) return `killed by ${result.signal}`;
    return `exit code ${result.code}`;
}

function tail(stderr: string): string {
    const lines = stderr.trim().split("\n").filter(Boolean).slice(-8);
    return lines.length ? `:\n  ${lines.join("\n  ")}` : "";
}

const FAILURE_REASONS: Record<SshFailure, string> = {
    "host-key-mismatch": "the host answered with a host key that is not the pinned one; nothing was sent to it " +
        "(a different server at this address, or the host was reinstalled: check it, then update hostPublicKey)",
    "key-refused": "the host refused the deployer's private key (check privateKey and the host's authorized keys)",
    "unreachable": "the host cannot be reached from the deployer (address, port, firewall, or sshd not running?)",
    "connection-lost": "the connection to the host was lost",
    "other": "ssh could not run the command",
};

/** Classifies an ssh exit status 255 from what ssh printed. */
function classifyFailure(stderr: string): SshFailure {
    if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|host key for .* has changed/i.test(stderr)) return "host-key-mismatch";
    if (/Permission denied/i.test(stderr)) return "key-refused";
    if (/timed out|Connection refused|No route to host|Network is unreachable|Could not resolve/i.test(stderr)) return "unreachable";
    if (/Connection closed|Connection reset|Broken pipe|not responding/i.test(stderr)) return "connection-lost";
    return "other";
}

export interface RemoteRunOptions {
    timeoutMs?: number;
    input?: string | Buffer;
    /** Instead of `input`: a file streamed to the command's standard input (never a secret's). */
    inputFile?: string;
    /**
     * Open a new connection instead of reusing the shared one. It carries commands and what they
     * print, never standard input, so it prefers the classic key exchange.
     */
    fresh?: boolean;
    /** The input holds secrets: sent only on a shared connection opened to carry them. */
    secretInput?: boolean;
    /** Run as root: through `sudo -n` when the connection's user is not root. */
    privileged?: boolean;
    /** Called with each line of the command's standard error as it arrives (progress). */
    onStderrLine?: (line: string) => void;
}

export interface ConnectionOptions {
    /**
     * Whether secrets (file contents) will travel on the shared connection: it then keeps OpenSSH's
     * default (post-quantum) key exchange. Default true; a caller that sends no secrets says so.
     */
    carriesSecrets?: boolean;
}

/** A prepared ssh configuration for one host, with a shared master connection once used. */
export class SshConnection {
    /** "address:port", for messages. */
    readonly host: string;
    /** The store URI for `nix copy --to`: `nix-store --serve` on the host, which takes paths as a trusted user's. */
    readonly storeUri = `ssh://${HOST_ALIAS}`;
    /** The store URI through the host's Nix daemon (`nix-daemon --stdio`), which checks every path's signature. */
    readonly daemonStoreUri = `ssh-ng://${HOST_ALIAS}`;
    private readonly configFile: string;

    /** The user the connection logs in as. */
    readonly user: string;

    private constructor(private readonly dir: string, target: SshTarget, private readonly carriesSecrets: boolean) {
        this.host = addressWithPort(target.address, target.port);
        this.user = target.user;
        this.configFile = path.join(dir, "config");
    }

    /** Writes the key, the pinned known_hosts and the config; connects lazily on first use. */
    static open(target: SshTarget, { carriesSecrets = true }: ConnectionOptions = {}): SshConnection {
        const dir = makeOwnedFolder(FOLDER_PREFIX);
        const keyFile = path.join(dir, "id");
        const knownHosts = path.join(dir, "known_hosts");
        const privateKey = target.privateKey.endsWith("\n") ? target.privateKey : `${target.privateKey}\n`;
        fs.writeFileSync(keyFile, privateKey, { mode: 0o600 });
        fs.writeFileSync(knownHosts, `${HOST_ALIAS} ${target.hostPublicKey}\n`, { mode: 0o600 });
        fs.writeFileSync(path.join(dir, "config"), [
            `Host ${HOST_ALIAS}`,
            // ssh takes an IPv6 address bare; the alias keeps it out of Nix's store URLs, which
            // older Nix cannot parse with one.
            `  HostName ${bareAddress(target.address)}`,
            `  Port ${target.port}`,
            `  User ${target.user}`,
            `  IdentityFile ${keyFile}`,
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            `  HostKeyAlias ${HOST_ALIAS}`,
            `  UserKnownHostsFile ${knownHosts}`,
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",
            "  CheckHostIP no",
            "  BatchMode yes",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            `  ConnectTimeout ${target.connectTimeoutSeconds ?? 10}`,
            "  ServerAliveInterval 5",
            "  ServerAliveCountMax 3",
            "  ControlMaster auto",
            `  ControlPath ${path.join(dir, "master")}`,
            "  ControlPersist 60",
            "  LogLevel ERROR",
            ...(carriesSecrets ? [] : [`  KexAlgorithms ${CLASSIC_KEY_EXCHANGE}`]),
            "",
        ].join("\n"), { mode: 0o600 });
        return new SshConnection(dir, target, carriesSecrets);
    }

    /** Runs an argument vector on the host, quoted here; resolves with the result whatever the exit. */
    async run(argv: readonly string[], options: RemoteRunOptions = {}): Promise<ProcessResult> {
        if (options.fresh && (options.input !== undefined || options.inputFile !== undefined)) {
            throw new Error("a fresh connection carries no standard input: send it on the shared one");
        }
        if (options.secretInput && !this.carriesSecrets) throw new Error("this connection was opened without secrets and its key exchange is not post-quantum: open it with carriesSecrets");
        const connection = options.fresh ? ["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", `KexAlgorithms=${CLASSIC_KEY_EXCHANGE}`] : [];
        // NixOS's sudo keeps the session's PATH (it sets no secure_path), so tools resolve alike.
        const command = options.privileged && this.user !== "root" ? ["sudo", "-n", "--", ...argv] : argv;
        const result = await runProcess("ssh", ["-F", this.configFile, ...connection, HOST_ALIAS, "--", remoteCommandLine(command)], {
            timeoutMs: options.timeoutMs,
            input: options.input,
            inputFile: options.inputFile,
            onStderrLine: options.onStderrLine,
        });
        if (result.code === 255 && !result.timedOut) throw new SshConnectionError(this.host, classifyFailure(result.stderr), result.stderr);
        return result;
    }

    /** Runs an argument vector and returns its standard output, or throws a RemoteCommandError. */
    async check(what: string, argv: readonly string[], options: RemoteRunOptions = {}): Promise<string> {
        const result = await this.run(argv, options);
        if (result.code !== 0) throw new RemoteCommandError(this.host, what, result);
        return result.stdout;
    }

    /** NIX_SSHOPTS for Nix's own ssh: the same config, so the same pinned key and connection. */
    get nixSshOpts(): string {
        return `-F ${this.configFile}`;
    }

    /** Ends the master connection and removes the key and every file written for OpenSSH. */
    async close(): Promise<void> {
        const controlSocket = path.join(this.dir, "master");
        // A master that cannot be told still exits by itself, ControlPersist after its last session.
        if (fs.existsSync(controlSocket)) await terminateMaster(controlSocket, 5000).catch(() => undefined);
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

/** Opens a connection for the duration of `work` and always closes it, also on failure. */
export async function withSsh<T>(target: SshTarget, work: (connection: SshConnection) => Promise<T>, options: ConnectionOptions = {}): Promise<T> {
    const connection = SshConnection.open(target, options);
    try {
        return await work(connection);
    } finally {
        await connection.close();
    }
}
