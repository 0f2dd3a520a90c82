// The one place that talks OpenSSH and the one place that quotes a command line for a host.
//
// A connection writes a private folder (0700) holding the private keys (0600), a known_hosts file
// with only the pinned host keys (the host's and its jump hosts'), and an ssh config that every
// step of a deploy uses: plain ssh commands here (`nix-store --import` among them) and `nix copy`
// through NIX_SSHOPTS. Strict host key checking is always on and no option here can turn it off.
// One master connection is shared by all steps; a "fresh" command bypasses it, to prove that a new
// connection can still be made (magic rollback). Commands become root through sudo, with the
// user's sudo password on sudo's standard input when it asks for one.
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
import { addressWithPort, bareAddress, JumpHost } from "../../schema/inputs";
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
    /** The hops to the host (OpenSSH's ProxyJump), the first one first, each with its pinned key. */
    jumpHosts?: readonly JumpHost[];
    /**
     * The user's sudo password, for a host whose sudo asks for one: given to `sudo -S` as the first
     * line of standard input, never in an argument list, a file or a message.
     */
    sudoPassword?: string;
}

/**
 * How a command becomes root on the host: the user is root; sudo needs no password; or sudo takes
 * the password on standard input.
 */
export type RootAccess = "root" | "sudo" | "sudo-password";

/**
 * The words that run a command as root through sudo. `-k` ignores cached credentials, so sudo
 * asks for the password every time and reads exactly the one line sent for it; `-p ''` keeps its
 * prompt out of the command's error output.
 */
export const SUDO_WORDS: Record<Exclude<RootAccess, "root">, readonly string[]> = {
    "sudo": ["sudo", "-n", "--"],
    "sudo-password": ["sudo", "-k", "-S", "-p", "", "--"],
};

/** The alias the generated ssh config and known_hosts file use for the target. */
const HOST_ALIAS = "pulumi-nixos-target";
/** The alias of the jump host `index` (0 the first hop). */
const JUMP_ALIAS_PREFIX = "pulumi-nixos-jump-";
const jumpAlias = (index: number) => `${JUMP_ALIAS_PREFIX}${index}`;
/** Where the jump hosts' ssh commands write their errors, in the connection's folder. */
const JUMP_LOG = "jump-errors";

/** What the jump hosts' ssh commands printed since the last call (and nothing is kept of it). */
function takeJumpErrors(file: string): string {
    try {
        const errors = fs.readFileSync(file, "utf8");
        fs.truncateSync(file);
        return errors;
    } catch {
        return "";
    }
}

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

/** A command's standard output, or a RemoteCommandError saying `what` failed on `host`. */
export function outputOf(host: string, what: string, result: ProcessResult): string {
    if (result.code !== 0) throw new RemoteCommandError(host, what, result);
    return result.stdout;
}

/** Why OpenSSH could not run a command. */
export type SshFailure = "host-key-mismatch" | "key-refused" | "unreachable" | "connection-lost" | "other";

/** OpenSSH itself failed: refused key, unreachable host, host key mismatch. Nothing ran remotely. */
export class SshConnectionError extends Error {
    readonly reason: string;

    /** `jump`: the jump host that failed, when it was one ("10.0.0.1:22", its index in jumpHosts). */
    constructor(readonly host: string, readonly failure: SshFailure, stderr: string, jump?: { name: string; index: number }) {
        const reason = jump === undefined ? FAILURE_REASONS[failure]
            : FAILURE_REASONS[failure].replace(/the host/g, `the jump host ${jump.name}`).replace("update hostPublicKey", `update jumpHosts[${jump.index}].hostPublicKey`);
        super(`${host}: ${reason}${tail(stderr)}`);
        this.reason = reason;
        this.name = "SshConnectionError";
    }
}

/** The host's sudo refused the password given for the deploy user. Never quotes it. */
export class SudoPasswordError extends Error {
    constructor(readonly host: string, readonly user: string) {
        super(`${host}: sudo did not accept sudoPassword for user ${user}; nothing was run as root (check the password, which is not shown, ` +
            "and that the user may use sudo)");
        this.name = "SudoPasswordError";
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
    /** Run as root: through sudo (SUDO_WORDS) when the connection's user is not root. */
    privileged?: boolean;
    /**
     * The command runs sudo itself, once, with SUDO_WORDS for the connection's rootAccess(): the
     * password (when sudo takes one) goes first on its standard input.
     */
    sudoWithin?: boolean;
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
    private readonly sudoPassword?: string;
    /** The jump hosts as messages name them, the first hop first. */
    private readonly jumpHosts: string[];
    private access?: Promise<RootAccess>;

    private constructor(private readonly dir: string, target: SshTarget, private readonly carriesSecrets: boolean) {
        this.host = addressWithPort(target.address, target.port);
        this.user = target.user;
        this.sudoPassword = target.sudoPassword;
        this.jumpHosts = (target.jumpHosts ?? []).map((jump) => addressWithPort(jump.address, jump.port));
        this.configFile = path.join(dir, "config");
    }

    /**
     * How commands become root. With a sudo password, asked once: sudo that needs none is used
     * so; otherwise the password is tried on a command that changes nothing, and a refused one
     * throws a SudoPasswordError before anything ran as root.
     */
    rootAccess(): Promise<RootAccess> {
        if (this.user === "root") return Promise.resolve("root");
        if (this.sudoPassword === undefined) return Promise.resolve("sudo");
        this.access ??= this.findRootAccess(this.sudoPassword);
        return this.access;
    }

    private async findRootAccess(password: string): Promise<RootAccess> {
        if ((await this.run(["sudo", "-k", "-n", "true"], { timeoutMs: 60_000 })).code === 0) return "sudo";
        const tried = await this.run([...SUDO_WORDS["sudo-password"], "true"], { input: `${password}\n`, secretInput: true, timeoutMs: 60_000 });
        if (tried.code !== 0) throw new SudoPasswordError(this.host, this.user);
        return "sudo-password";
    }

    /**
     * Writes the keys, the pinned known_hosts and the config; connects lazily on first use. Jump
     * hosts are hosts of the same config, each reached through the one before (ProxyJump, which
     * gives its ssh this config), each with its own pinned key: every connection of the deploy,
     * Nix's included, goes through them.
     */
    static open(target: SshTarget, options: ConnectionOptions = {}): SshConnection {
        // A sudo password travels on every connection that runs a command as root.
        const carriesSecrets = (options.carriesSecrets ?? true) || target.sudoPassword !== undefined;
        const dir = makeOwnedFolder(FOLDER_PREFIX);
        const writeKey = (name: string, key: string) => {
            fs.writeFileSync(path.join(dir, name), key.endsWith("\n") ? key : `${key}\n`, { mode: 0o600 });
            return path.join(dir, name);
        };
        const deployKey = writeKey("id", target.privateKey);
        const knownHosts = path.join(dir, "known_hosts");
        const configFile = path.join(dir, "config");
        const jumpLog = path.join(dir, JUMP_LOG);
        const jumps = (target.jumpHosts ?? []).map((jump, index) => ({
            ...jump, alias: jumpAlias(index), keyFile: jump.privateKey === undefined ? deployKey : writeKey(`id-jump-${index}`, jump.privateKey),
        }));
        const hops = [...jumps, { ...target, alias: HOST_ALIAS, keyFile: deployKey }];
        fs.writeFileSync(knownHosts, hops.map((hop) => `${hop.alias} ${hop.hostPublicKey}\n`).join(""), { mode: 0o600 });
        const hostBlock = (hop: typeof hops[number], index: number) => [
            `Host ${hop.alias}`,
            // ssh takes an IPv6 address bare; the alias keeps it out of Nix's store URLs, which
            // older Nix cannot parse with one.
            `  HostName ${bareAddress(hop.address)}`,
            `  Port ${hop.port}`,
            `  User ${hop.user}`,
            `  IdentityFile ${hop.keyFile}`,
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            `  HostKeyAlias ${hop.alias}`,
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
            "  LogLevel ERROR",
            // ProxyJump's own command, with its errors kept: the shared master (ControlPersist)
            // sends its proxy's to /dev/null, and a jump host's refusal would read as a lost connection.
            ...(index > 0 ? [`  ProxyCommand ssh -F ${quoteShellArgument(configFile)} -W '[%h]:%p' ${hops[index - 1].alias} 2>>${quoteShellArgument(jumpLog)}`] : []),
            ...(carriesSecrets ? [] : [`  KexAlgorithms ${CLASSIC_KEY_EXCHANGE}`]),
        ];
        fs.writeFileSync(configFile, [
            ...hops.flatMap((hop, index) => [
                ...hostBlock(hop, index),
                ...(hop.alias === HOST_ALIAS ? ["  ControlMaster auto", `  ControlPath ${path.join(dir, "master")}`, "  ControlPersist 60"] : []),
            ]),
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
        const access = options.privileged || options.sudoWithin ? await this.rootAccess() : "root";
        // NixOS's sudo keeps the session's PATH (it sets no secure_path), so tools resolve alike.
        const command = options.privileged && access !== "root" ? [...SUDO_WORDS[access], ...argv] : argv;
        const password = access === "sudo-password" ? `${this.sudoPassword}\n` : undefined;
        if (password !== undefined && options.inputFile !== undefined) throw new Error("a command given a file as its input cannot take the sudo password before it");
        const input = password === undefined ? options.input : Buffer.concat([Buffer.from(password), Buffer.from(options.input ?? "")]);
        // A fresh connection that carries the password keeps the post-quantum key exchange.
        const connection = options.fresh ? ["-o", "ControlMaster=no", "-o", "ControlPath=none", ...(password === undefined ? ["-o", `KexAlgorithms=${CLASSIC_KEY_EXCHANGE}`] : [])] : [];
        const result = await runProcess("ssh", ["-F", this.configFile, ...connection, HOST_ALIAS, "--", remoteCommandLine(command)], {
            timeoutMs: options.timeoutMs,
            input,
            inputFile: options.inputFile,
            onStderrLine: options.onStderrLine,
        });
        if (result.code === 255 && !result.timedOut) throw this.connectionError(result.stderr);
        return result;
    }

    /** What ssh's exit 255 means, naming the jump host that failed when it was one. */
    private connectionError(sshErrors: string): SshConnectionError {
        const stderr = `${takeJumpErrors(path.join(this.dir, JUMP_LOG))}${sshErrors}`;
        const named = this.jumpHosts.reduce((text, name, index) => text.replaceAll(jumpAlias(index), `jump host ${name}`), stderr);
        const jumpIndex = Number(new RegExp(`${JUMP_ALIAS_PREFIX}(\\d+)`).exec(stderr)?.[1] ?? NaN);
        const jump = Number.isInteger(jumpIndex) && jumpIndex < this.jumpHosts.length ? { name: this.jumpHosts[jumpIndex], index: jumpIndex } : undefined;
        return new SshConnectionError(this.host, classifyFailure(stderr), named, jump);
    }

    /** Runs an argument vector and returns its standard output, or throws a RemoteCommandError. */
    async check(what: string, argv: readonly string[], options: RemoteRunOptions = {}): Promise<string> {
        return outputOf(this.host, what, await this.run(argv, options));
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

/** A host as a user reaches it with their own OpenSSH, before any deploy key does. */
export interface UserSshTarget {
    address: string;
    port: number;
    user: string;
}

/**
 * Runs an argument vector on a host the way the user reaches it today (with colmena, deploy-rs
 * or nixos-rebuild): their own ssh configuration, agent and known_hosts, with strict host key
 * checking and no prompts, so a host their known_hosts does not vouch for is refused. For adopting
 * a running host, which no key of the program reaches yet.
 */
export async function runAsUser(target: UserSshTarget, argv: readonly string[], timeoutMs = 60_000): Promise<ProcessResult> {
    const host = addressWithPort(target.address, target.port);
    const result = await runProcess("ssh", [
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
        "-p", String(target.port), "-l", target.user, "--", bareAddress(target.address), remoteCommandLine(argv),
    ], { timeoutMs });
    if (result.code !== 255 || result.timedOut) return result;
    const failure = classifyFailure(result.stderr);
    if (failure === "host-key-mismatch") {
        throw new SshConnectionError(host, failure, "your known_hosts does not vouch for this host's key, so ssh refused it; " +
            "check the host's key and add it to ~/.ssh/known_hosts (as for any first connection), then try again");
    }
    throw new SshConnectionError(host, failure, result.stderr);
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
