// Test hosts: real OpenSSH servers, each in its own network namespace with its own address, its
// own /nix store and system profile, its own /run (so /run/current-system is per host) and its own
// generated host key. Everything else (/bin, /usr, /etc) is the machine's, shared by all hosts.
//
// Every process a host starts lives in its network namespace; stopping a host kills them by PID
// and deletes the namespace, which also ends its private mount namespace. Hosts left behind by a
// run that was killed outright are swept by the next run (their owner PID is dead).
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { openCpuAccount, removeCpuAccount } from "./cpuAccount";

const NAMESPACE_PREFIX = "pnx-";
const OWNERS_DIR = "/run/pulumi-nixos-test-hosts";
/** Prefix of a fleet's folder (its hosts and the deployer key) under the temporary directory. */
const FLEET_FOLDER_PREFIX = "pnx-hosts-";
const MAX_SLOTS = 250;

export interface TestHost {
    /** The host's name (also its hostname inside its namespace). */
    name: string;
    /** The address the host's sshd listens on, reachable from the deployer. */
    address: string;
    port: number;
    /** The host's pinned public key, "ssh-ed25519 AAAA…". */
    hostPublicKey: string;
    /** The host's root directory on this machine: nix/, run/, etc/nix/, ssh/. */
    dir: string;
    namespace: string;
    /** PID of the host's sshd. */
    pid: number;
    /** Limits the link towards the host (e.g. "2mbit"), or lifts the limit (undefined). */
    throttle(rate: string | undefined): void;
    /** Bytes the deployer has sent to the host over its link so far (the veth's counter). */
    bytesSent(): number;
    /** The store path /run/current-system points at, or undefined when there is none. */
    currentSystem(): string | undefined;
    /** The generation numbers of the system profile, ascending. */
    generations(): number[];
    /** The generation the system profile points at, or undefined. */
    currentGeneration(): number | undefined;
    /** Runs a shell command inside the host (its network and mount namespaces) and returns stdout. */
    shell(command: string): string;
    /** CPU seconds the host's processes have used; undefined where control groups cannot be written. */
    cpuSeconds(): number | undefined;
    /** Whether a store path exists in the host's own store. */
    hasStorePath(storePath: string): boolean;
    /** Stops the host's processes by PID and removes its namespace, link and folder. */
    stop(): void;
}

export interface TestHostOptions {
    /** The folder the host's own folder is made in. */
    baseDir: string;
    name: string;
    /** The public key authorized for root. */
    authorizedKey: string;
    /** The host's key pair; default a new one made by ssh-keygen. */
    hostKey?: { privateKey: string; publicKey: string };
    /** The process whose death makes the host abandoned (swept by the next run); default this one. */
    ownerPid?: number;
}

export interface TestFleet {
    hosts: TestHost[];
    /** The deployer's private key (OpenSSH format), authorized as root on every host. */
    deployerPrivateKey: string;
    deployerPrivateKeyPath: string;
    /** Stops every process of every host and removes namespaces and folders. Safe to call twice. */
    stop(): void;
}

export interface TestFleetOptions {
    count: number;
    /** Name prefix for the hosts; default "host". */
    namePrefix?: string;
}

function run(file: string, args: string[]): string {
    return execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function tryRun(file: string, args: string[]): void {
    try {
        run(file, args);
    } catch {
        // Cleanup is best effort: the thing may already be gone.
    }
}

function isAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

function namespacePids(namespace: string): number[] {
    try {
        return run("ip", ["netns", "pids", namespace]).split("\n").filter(Boolean).map(Number);
    } catch {
        return [];
    }
}

function killNamespace(namespace: string): void {
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        const pids = namespacePids(namespace);
        if (pids.length === 0) break;
        for (const pid of pids) tryRun("kill", [`-${signal.slice(3)}`, String(pid)]);
        const deadline = Date.now() + 2000;
        while (namespacePids(namespace).length > 0 && Date.now() < deadline) run("sleep", ["0.05"]);
    }
    tryRun("ip", ["netns", "del", namespace]);
}

interface OwnerRecord {
    pid: number;
    dir: string;
}

/** Removes the hosts for which `abandoned` says so, from their owner records. */
function sweepHosts(abandoned: (owner: OwnerRecord) => boolean): void {
    if (!fs.existsSync(OWNERS_DIR)) return;
    for (const namespace of fs.readdirSync(OWNERS_DIR)) {
        let owner: OwnerRecord;
        try {
            owner = JSON.parse(fs.readFileSync(path.join(OWNERS_DIR, namespace), "utf8"));
        } catch {
            continue;
        }
        if (!abandoned(owner)) continue;
        removeTestHost(namespace, owner.dir);
        removeEmptyFleetFolder(path.dirname(owner.dir));
    }
}

/** Removes a fleet's folder (its deployer key) once none of its hosts is left in it. */
function removeEmptyFleetFolder(baseDir: string): void {
    if (!path.basename(baseDir).startsWith(FLEET_FOLDER_PREFIX)) return;
    try {
        if (fs.readdirSync(baseDir, { withFileTypes: true }).some((entry) => entry.isDirectory())) return;
    } catch {
        return;
    }
    fs.rmSync(baseDir, { recursive: true, force: true });
}

/** Removes hosts whose owning test process no longer exists (a run killed with SIGKILL). */
export function sweepAbandonedHosts(): void {
    sweepHosts((owner) => !isAlive(owner.pid));
}

/** Removes every host whose folder is under `baseDir` (the machines of an interrupted demo). */
export function removeTestHostsUnder(baseDir: string): void {
    sweepHosts((owner) => owner.dir.startsWith(`${baseDir}${path.sep}`));
}

/** Claims a free slot: `ip netns add` is atomic, so two test processes never share one. */
function claimSlot(dir: string, ownerPid: number): number {
    fs.mkdirSync(OWNERS_DIR, { recursive: true });
    for (let slot = 1; slot <= MAX_SLOTS; slot++) {
        const namespace = NAMESPACE_PREFIX + slot;
        if (fs.existsSync(`/run/netns/${namespace}`)) continue;
        try {
            run("ip", ["netns", "add", namespace]);
        } catch {
            continue;
        }
        const record: OwnerRecord = { pid: ownerPid, dir };
        fs.writeFileSync(path.join(OWNERS_DIR, namespace), JSON.stringify(record));
        return slot;
    }
    throw new Error(`test hosts: no free slot among ${MAX_SLOTS} network namespaces`);
}

function waitForPort(address: string, port: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
        const attempt = () => {
            const socket = net.connect({ host: address, port });
            socket.once("connect", () => {
                socket.destroy();
                resolve();
            });
            socket.once("error", () => {
                socket.destroy();
                if (Date.now() > deadline) reject(new Error(`test host ${address}:${port}: sshd did not listen within ${timeoutMs} ms`));
                else setTimeout(attempt, 50);
            });
        };
        attempt();
    });
}

const SSHD_CONFIG = (dir: string, address: string) => `ListenAddress ${address}:22
HostKey ${dir}/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile ${dir}/ssh/authorized_keys
PidFile ${dir}/run/sshd.pid
Subsystem sftp internal-sftp
`;

// Runs as the first process of the host: enters a private mount namespace, mounts the host's own
// /nix, /run, /etc/nix and /root over the machine's, and becomes sshd. Paths arrive as arguments.
// (Its own /root because root's shell reads ~/.bashrc for every ssh command, and the machine's
// may do slow things, such as a version manager's init, that no NixOS host does.)
const HOST_INIT = 'hostname "$1" && mount --bind "$2/nix" /nix && mount --bind "$2/run" /run && ' +
    'mount --bind "$2/etc/nix" /etc/nix && mount --bind "$2/root" /root && exec /usr/sbin/sshd -D -e -f "$2/sshd_config"';

const HOST_NIX_CONF = `experimental-features = nix-command flakes
sandbox = false
substituters =
build-users-group =
`;

/**
 * Stops a test host's processes by PID and removes its namespace, link, folder and owner record:
 * also from another process than the one that started it.
 */
export function removeTestHost(namespace: string, dir: string): void {
    killNamespace(namespace);
    removeCpuAccount(namespace);
    tryRun("ip", ["link", "del", `pnxv${namespace.slice(NAMESPACE_PREFIX.length)}`]);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(path.join(OWNERS_DIR, namespace), { force: true });
}

/** Starts one test host. It runs until stop() (or a later run's sweep, once its owner is gone). */
export async function startTestHost(options: TestHostOptions): Promise<TestHost> {
    const { name } = options;
    const dir = path.join(options.baseDir, name);
    const slot = claimSlot(dir, options.ownerPid ?? process.pid);
    const stop = () => removeTestHost(NAMESPACE_PREFIX + slot, dir);
    try {
        return await launchHost(options, dir, slot, stop);
    } catch (error) {
        stop();
        throw error;
    }
}

async function launchHost(options: TestHostOptions, dir: string, slot: number, stop: () => void): Promise<TestHost> {
    const { name } = options;
    const namespace = NAMESPACE_PREFIX + slot;
    // The host's own /etc/nix is bind-mounted over the machine's, which Debian's nix-bin does not create.
    fs.mkdirSync("/etc/nix", { recursive: true });
    const veth = `pnxv${slot}`;
    const address = `10.237.${slot}.2`;
    for (const sub of ["nix/var/nix/profiles", "run/sshd", "etc/nix", "ssh", "root"]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    fs.writeFileSync(path.join(dir, "etc/nix/nix.conf"), HOST_NIX_CONF);
    const hostKeyFile = path.join(dir, "ssh/ssh_host_ed25519_key");
    if (options.hostKey) {
        fs.writeFileSync(hostKeyFile, options.hostKey.privateKey, { mode: 0o600 });
        fs.writeFileSync(`${hostKeyFile}.pub`, `${options.hostKey.publicKey}\n`);
    } else {
        run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", hostKeyFile]);
    }
    fs.writeFileSync(path.join(dir, "ssh/authorized_keys"), options.authorizedKey, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, "sshd_config"), SSHD_CONFIG(dir, address));

    run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace]);
    run("ip", ["addr", "add", `10.237.${slot}.1/24`, "dev", veth]);
    run("ip", ["link", "set", veth, "up"]);
    run("ip", ["-n", namespace, "addr", "add", `${address}/24`, "dev", "eth0"]);
    run("ip", ["-n", namespace, "link", "set", "eth0", "up"]);
    run("ip", ["-n", namespace, "link", "set", "lo", "up"]);

    const log = fs.openSync(path.join(dir, "sshd.log"), "a");
    const child = spawn("ip", ["netns", "exec", namespace, "unshare", "--mount", "--uts", "--propagation", "private",
        "sh", "-c", HOST_INIT, "host-init", name, dir], { detached: true, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`test host ${name}: could not start sshd`);
    const cpu = openCpuAccount(namespace, pid);
    await waitForPort(address, 22, 10_000).catch((error: Error) => {
        throw new Error(`${error.message}\n${fs.readFileSync(path.join(dir, "sshd.log"), "utf8")}`);
    });

    const hostPublicKey = fs.readFileSync(path.join(dir, "ssh/ssh_host_ed25519_key.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    const profiles = path.join(dir, "nix/var/nix/profiles");
    const shell = (command: string) => run("nsenter", ["-t", String(pid), "-n", "-m", "-u", "--", "sh", "-c", command]);
    return {
        name, address, port: 22, hostPublicKey, dir, namespace, pid,
        throttle(rate) {
            tryRun("tc", ["qdisc", "del", "dev", veth, "root"]);
            if (rate) run("tc", ["qdisc", "add", "dev", veth, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"]);
        },
        bytesSent() {
            return Number(fs.readFileSync(`/sys/class/net/${veth}/statistics/tx_bytes`, "utf8"));
        },
        currentSystem() {
            try {
                return fs.readlinkSync(path.join(dir, "run/current-system"));
            } catch {
                return undefined;
            }
        },
        generations() {
            return fs.readdirSync(profiles)
                .map((entry) => /^system-(\d+)-link$/.exec(entry))
                .filter((match): match is RegExpExecArray => match !== null)
                .map((match) => Number(match[1]))
                .sort((a, b) => a - b);
        },
        currentGeneration() {
            try {
                const match = /^system-(\d+)-link$/.exec(fs.readlinkSync(path.join(profiles, "system")));
                return match ? Number(match[1]) : undefined;
            } catch {
                return undefined;
            }
        },
        shell,
        cpuSeconds: () => cpu?.seconds(),
        hasStorePath(storePath: string) {
            return fs.existsSync(path.join(dir, storePath));
        },
        stop,
    };
}

/** Polls `condition` (host state, read from this machine) until it holds, or fails after `seconds`. */
export async function waitFor(what: string, condition: () => boolean, seconds: number): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    while (!condition()) {
        if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`);
        await new Promise((resolve) => setTimeout(resolve, 200));
    }
}

/** Starts `count` test hosts and a deployer key authorized on all of them. */
export async function startTestHosts(options: TestFleetOptions): Promise<TestFleet> {
    if (process.getuid?.() !== 0) throw new Error("test hosts need root (network namespaces, bind mounts)");
    sweepAbandonedHosts();
    const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), FLEET_FOLDER_PREFIX));
    const hosts: TestHost[] = [];
    let stopped = false;
    const stop = () => {
        if (stopped) return;
        stopped = true;
        for (const host of hosts) host.stop();
        fs.rmSync(baseDir, { recursive: true, force: true });
        process.removeListener("exit", stop);
        process.removeListener("SIGINT", onSignal);
        process.removeListener("SIGTERM", onSignal);
    };
    const onSignal = (signal: NodeJS.Signals) => {
        stop();
        process.kill(process.pid, signal);
    };
    process.once("exit", stop);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);

    try {
        const deployerPrivateKeyPath = path.join(baseDir, "deployer");
        run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pulumi-nixos-deployer", "-f", deployerPrivateKeyPath]);
        const deployerPublicKey = fs.readFileSync(`${deployerPrivateKeyPath}.pub`, "utf8");
        const prefix = options.namePrefix ?? "host";
        for (let i = 0; i < options.count; i++) {
            hosts.push(await startTestHost({ baseDir, name: `${prefix}${i}`, authorizedKey: deployerPublicKey }));
        }
        return { hosts, deployerPrivateKey: fs.readFileSync(deployerPrivateKeyPath, "utf8"), deployerPrivateKeyPath, stop };
    } catch (error) {
        stop();
        throw error;
    }
}

/**
 * Switches a host to a system by hand, the way an operator would without Pulumi: nix copy, then
 * set the system profile and run switch-to-configuration over ssh.
 */
export function switchByHand(fleet: TestFleet, host: TestHost, closure: string): void {
    const knownHosts = path.join(path.dirname(fleet.deployerPrivateKeyPath), `known_hosts_${host.name}`);
    fs.writeFileSync(knownHosts, `${host.address} ${host.hostPublicKey}\n`);
    const sshOptions = ["-i", fleet.deployerPrivateKeyPath, "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"];
    execFileSync("nix", ["copy", "--to", `ssh://root@${host.address}`, closure], {
        env: { ...process.env, NIX_SSHOPTS: sshOptions.join(" "), NIX_CONFIG: "experimental-features = nix-command flakes" },
        stdio: ["ignore", "ignore", "pipe"],
    });
    execFileSync("ssh", [...sshOptions, `root@${host.address}`,
        `nix-env -p /nix/var/nix/profiles/system --set ${closure} && ${closure}/bin/switch-to-configuration switch`], { stdio: ["ignore", "ignore", "pipe"] });
}
