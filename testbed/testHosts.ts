// Test hosts: NixOS-shaped machines on this computer. Each runs in its own network namespace (its
// own address), PID namespace (systemd 257 from a Debian 13 root is its init, sshd and the Nix
// daemon its units) and mount namespace: Debian 13's /usr (today's NixOS majors: systemd 257,
// OpenSSH 10.0, Nix 2.26, sudo 1.9.16; scripts/debian-13-root.sh makes it), its own /nix store and system profile, a tmpfs /run (emptied by a
// reboot), its own /etc/ssh, /etc/nix, /root and /home. A host boots the system profile's current
// generation: Debian's userland is hidden, and tools come from /run/current-system/sw/bin, as on
// NixOS. Without a system it boots Debian-like (a cloud image before nixos-infect). `reboot` on a
// host restarts it with a new boot id. README.md, "What a test host is not", lists what differs.
//
// Every process a host starts lives in its network namespace, under a supervisor that restarts it
// after a reboot; stopping a host kills them by PID and deletes the namespace. Hosts left behind by
// a run that was killed outright are swept by the next run (their owner PID is dead).
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { evaluateConfigurations } from "../deploy/evaluate";
import { nix, nixConfig, realiseDerivation } from "../deploy/transport/nix";
import { addressWithPort } from "../schema/inputs";
import { BOOT_SCRIPT } from "./boot";
import { openCpuAccount, removeCpuAccount } from "./cpuAccount";

const NAMESPACE_PREFIX = "pnx-";
const OWNERS_DIR = "/run/pulumi-nixos-test-hosts";
/** Prefix of a fleet's folder (its hosts and the deployer key) under the temporary directory. */
const FLEET_FOLDER_PREFIX = "pnx-hosts-";
const MAX_SLOTS = 250;
/**
 * The addresses of the test hosts: 10.237.SLOT.2 on a /24 link of its own, and fd37:237:0:SLOT::2
 * on its /64 (a unique local range), or that one alone for an IPv6-only host.
 */
const TEST_RANGE = "10.237.0.0/16";
const TEST_RANGE_6 = "fd37:237::/48";
const linkAddresses = (slot: number) => ({ host: `10.237.${slot}.2`, machine: `10.237.${slot}.1`, host6: `fd37:237:0:${slot}::2`, machine6: `fd37:237:0:${slot}::1` });

export interface TestHost {
    /** The host's name (also its hostname inside its namespace). */
    name: string;
    /** The address the host's sshd listens on, reachable from the deployer. */
    address: string;
    port: number;
    /** The host's pinned public key, "ssh-ed25519 AAAA…". */
    hostPublicKey: string;
    /** The host's folder on this machine: nix/, etc/, root/, home/. */
    dir: string;
    namespace: string;
    /** PID of the host's supervisor, which boots it again after a reboot. */
    pid: number;
    /** Limits the link towards the host (e.g. "2mbit"), or lifts the limit (undefined). */
    throttle(rate: string | undefined): void;
    /** Bytes this machine has sent to the host over its link so far (the veth's counter): the deployer's, and what other hosts sent it. */
    bytesSent(): number;
    /** Bytes the host has sent over its link so far. */
    bytesReceived(): number;
    /** The store path /run/current-system points at, or undefined when there is none. */
    currentSystem(): string | undefined;
    /** The generation numbers of the system profile, ascending. */
    generations(): number[];
    /** The generation the system profile points at, or undefined. */
    currentGeneration(): number | undefined;
    /** What the host boots next: the boot loader's one-time entry, else its default (testbed/boot.ts). */
    bootSystem(): string | undefined;
    /** A hard reset: the host restarts at once, without a shutdown, as after a power cut. */
    reset(): void;
    /** The host's boot id: a new one after every reboot. */
    bootId(): string;
    /** A file inside the host (e.g. "/run/standin/health"), or undefined when there is none. */
    readFile(file: string): string | undefined;
    /** Runs a shell command inside the host (its namespaces, its PATH) as root and returns stdout. */
    shell(command: string): string;
    /**
     * Makes the host unreachable from the deployer, as in a private subnet: it sends nothing back
     * to this machine's addresses on its link; other test hosts still reach it.
     */
    hideFromDeployer(): void;
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
    /** The public key authorized for root and for the users `deploy` and `guest`. */
    authorizedKey: string;
    /** The host's key pair; default a new one made by ssh-keygen. */
    hostKey?: { privateKey: string; publicKey: string };
    /**
     * The NixOS system the host boots, from this machine's store: installed into the host's store
     * as generation 1 of its system profile, as nixos-infect leaves a machine. Without it the host
     * boots Debian-like.
     */
    system?: string;
    /** The process whose death makes the host abandoned (swept by the next run); default this one. */
    ownerPid?: number;
    /** More lines for the host's /etc/nix/nix.conf (e.g. the trusted-public-keys a NixOS configuration sets). */
    nixConfig?: string;
    /** Give the host an IPv6 address only (its address is then that one); default both. */
    ipv6Only?: boolean;
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
    /** Boot the hosts Debian-like, with no NixOS system (a cloud image before nixos-infect). */
    debianLike?: boolean;
    /** More lines for every host's /etc/nix/nix.conf. */
    nixConfig?: string;
    /** Hosts with an IPv6 address only. */
    ipv6Only?: boolean;
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

function killNamespace(namespace: string, supervisor?: number): void {
    // The supervisor first, so that it does not boot the host again; then everything in the
    // namespace (SIGKILL: systemd as an init takes SIGTERM as "re-execute yourself").
    if (supervisor !== undefined && isAlive(supervisor)) tryRun("kill", ["-KILL", String(supervisor)]);
    const deadline = Date.now() + 5000;
    for (let pids = namespacePids(namespace); pids.length > 0 && Date.now() < deadline; pids = namespacePids(namespace)) {
        for (const pid of pids) tryRun("kill", ["-KILL", String(pid)]);
        run("sleep", ["0.05"]);
    }
    tryRun("ip", ["netns", "del", namespace]);
}

interface OwnerRecord {
    pid: number;
    dir: string;
    /** The host's supervisor, once it runs. */
    supervisor?: number;
}

function ownerRecord(namespace: string): OwnerRecord | undefined {
    try {
        return JSON.parse(fs.readFileSync(path.join(OWNERS_DIR, namespace), "utf8"));
    } catch {
        return undefined;
    }
}

/** The PID of a host's init; throws when the host is not running. */
function runningInit(namespace: string): number {
    const init = initPid(namespace);
    if (init === undefined) throw new Error(`test host ${namespace} is not running`);
    return init;
}

/** A path inside a host, seen from this machine through its init's root. */
function pathInside(namespace: string, file: string): string {
    return `/proc/${runningInit(namespace)}/root${file}`;
}

/** The store path a host's /run/current-system points at (by its namespace), or undefined. */
export function currentSystemOf(namespace: string): string | undefined {
    try {
        return fs.readlinkSync(pathInside(namespace, "/run/current-system"));
    } catch {
        return undefined;
    }
}

/**
 * The system a host's boot loader starts next (testbed/boot.ts reads it the same way): the entry
 * grubenv's next_entry names ("SUBMENU>TITLE"), else the first; undefined without a grub.cfg.
 */
function bootLoaderChoice(dir: string): string | undefined {
    const config = path.join(dir, "boot/grub/grub.cfg");
    if (!fs.existsSync(config)) return undefined;
    let environment = "";
    try {
        environment = fs.readFileSync(path.join(dir, "boot/grub/grubenv"), "utf8");
    } catch {
        // No grubenv: no one-time entry.
    }
    const next = /^next_entry=(.+)$/m.exec(environment)?.[1];
    let menu = "";
    let title: string | undefined;
    for (const line of fs.readFileSync(config, "utf8").split("\n")) {
        const submenu = /^\s*submenu "([^"]*)"/.exec(line);
        const entry = /^\s*menuentry "([^"]*)"/.exec(line);
        const system = /systemConfig=(\S+)/.exec(line);
        if (submenu) menu = `${submenu[1]}>`;
        else if (entry) title = menu + entry[1];
        else if (system && title !== undefined && (next === undefined || title === next)) return system[1];
        else if (/^\s*}/.test(line)) {
            if (title === undefined) menu = "";
            else title = undefined;
        }
    }
    return undefined;
}

/**
 * Runs a shell command inside a host (its namespaces, a NixOS session's PATH) as root, by the
 * host's namespace, and returns its output.
 */
export function shellIn(namespace: string, command: string): string {
    return run("nsenter", ["-t", String(runningInit(namespace)), "-a", "--", "env", `PATH=${NIXOS_PATH}:/usr/bin:/bin`, "sh", "-c", command]);
}

/** Removes the hosts for which `abandoned` says so, from their owner records. */
function sweepHosts(abandoned: (owner: OwnerRecord) => boolean): void {
    if (!fs.existsSync(OWNERS_DIR)) return;
    for (const namespace of fs.readdirSync(OWNERS_DIR)) {
        const owner = ownerRecord(namespace);
        if (!owner || !abandoned(owner)) continue;
        removeTestHost(namespace, owner.dir, owner.supervisor);
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

// NixOS's sshd reads authorized keys from /etc/ssh/authorized_keys.d/USER too. On a NixOS-shaped
// host, the boot gives sshd NixOS's PATH for sessions (a NixOS shell reads it from /etc/profile).
const SSHD_CONFIG = (addresses: string[]) => `${addresses.map((address) => `ListenAddress ${addressWithPort(address, 22)}\n`).join("")}HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
`;

/** An SSH session's PATH on NixOS (less the per-user profiles, which a test host has none of). */
const NIXOS_PATH = "/run/wrappers/bin:/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin";
const NIXOS_SHELL = "/run/current-system/sw/bin/bash";

/**
 * The users of a NixOS-shaped host besides root: `deploy` may use sudo without a password, is a
 * trusted Nix user (what a deploy user other than root needs) and is in group `keys`; `operator`
 * is a trusted Nix user whose sudo asks for its password (OPERATOR_PASSWORD), as NixOS's default
 * wheel rule does; `guest` is none of these.
 */
const USERS = [{ name: "deploy", uid: 1000 }, { name: "guest", uid: 1001 }, { name: "operator", uid: 1002 }];

/** `operator`'s password: quotes, `$`, a backslash and spaces, which must reach sudo unchanged. */
export const OPERATOR_PASSWORD = `it's "op" $HOME \\ ; 1`;

/** A SHA-512 crypt of OPERATOR_PASSWORD for the hosts' shadow file, made once. */
const operatorPasswordHash = (() => {
    let hash: string | undefined;
    return () => (hash ??= execFileSync("openssl", ["passwd", "-6", "-stdin"], { input: `${OPERATOR_PASSWORD}\n`, encoding: "utf8" }).trim());
})();

// The build hook (which every build asks first) by the system's path: Debian's Nix looks for it in
// /usr/libexec/nix, a link to the hidden /usr/bin/nix; NixOS's Nix finds it in its own store path.
const HOST_NIX_CONF = `experimental-features = nix-command flakes
sandbox = false
substituters =
build-hook = /run/current-system/sw/bin/build-remote
build-users-group =
trusted-users = root deploy operator
`;

// Supervises a host: boots it, and boots it again when its init ends by a reboot (a PID
// namespace's init that calls reboot(2) is ended by SIGHUP). $1 namespace, $2 folder, $3 host
// name, $4 the boot script, $5 a NixOS session's PATH, $6 the cgroup.procs of the host's CPU
// account (may be empty), which it joins first, so that every process of the host is counted,
// $7 the root whose /usr the host runs.
const SUPERVISOR = `if [ -n "$6" ]; then echo $$ > "$6" || true; fi
while :; do
  ip netns exec "$1" unshare --pid --fork --mount --uts --propagation private --mount-proc sh "$4" "$2" "$3" "$5" "$7"
  code=$?
  [ "$code" -eq 129 ] || exit "$code"
done`;


/**
 * The Debian 13 root file system whose /usr a host runs (scripts/debian-13-root.sh makes it); the
 * fixtures' userland packages hold its programs (nix/fixtures/flake.nix names the same folder).
 */
export const HOST_ROOT = "/var/cache/pulumi-nixos/debian-13";
const GENERATORS = `${HOST_ROOT}/usr/lib/systemd/system-generators`;
const SYSTEM_UNITS = `${HOST_ROOT}/usr/lib/systemd/system`;

/**
 * Units of the root's systemd that a test host must not start: they act on the machine itself
 * (kernel modules, sysctl, binfmt, users and files in the shared /etc and /var) or cost memory a
 * test host does not need.
 */
function maskedUnits(): string[] {
    const units = new Set(["systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket",
        "systemd-journald-audit.socket", "systemd-journal-flush.service", "systemd-update-utmp.service", "systemd-tmpfiles-clean.timer",
        "systemd-logind.service", "getty.target", "console-getty.service", "systemd-resolved.service", "systemd-networkd.service",
        "systemd-remount-fs.service"]);
    for (const wants of fs.readdirSync(SYSTEM_UNITS).filter((entry) => /\.(target|socket|service)\.wants$/.test(entry))) {
        for (const unit of fs.readdirSync(path.join(SYSTEM_UNITS, wants))) units.add(unit);
    }
    return [...units];
}

/** Lines of this machine's /etc file, for a NixOS-shaped host's own copy. */
function machineLines(file: string): string[] {
    return fs.readFileSync(file, "utf8").split("\n").filter(Boolean);
}

/**
 * Lets the hosts reach each other (a binary cache on one of them, as on a real network) through
 * this machine: each host routes the test range to its link, and this machine forwards only what
 * comes in on a host's link. A test address that no host has is unreachable here, so no packet of
 * a host leaves this machine.
 */
function routeBetweenHosts(namespace: string, slot: number, veth: string, ipv6Only: boolean): void {
    const link = linkAddresses(slot);
    if (!ipv6Only) {
        run("ip", ["route", "replace", "unreachable", TEST_RANGE]);
        run("ip", ["-n", namespace, "route", "add", TEST_RANGE, "via", link.machine]);
        fs.writeFileSync(`/proc/sys/net/ipv4/conf/${veth}/forwarding`, "1");
    }
    run("ip", ["-6", "route", "replace", "unreachable", TEST_RANGE_6]);
    run("ip", ["-n", namespace, "-6", "route", "add", TEST_RANGE_6, "via", link.machine6]);
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${veth}/forwarding`, "1");
}

/** Writes the host's own /etc/ssh, /etc/nix, unit set, users and homes. */
function prepareHostFolder(dir: string, options: TestHostOptions, addresses: string[]): void {
    for (const sub of ["nix/var/nix/profiles", "etc/nix", "etc/ssh/authorized_keys.d", "etc/systemd", "root", "boot"]) {
        fs.mkdirSync(path.join(dir, sub), { recursive: true });
    }
    fs.writeFileSync(path.join(dir, "etc/nix/nix.conf"), HOST_NIX_CONF + (options.nixConfig ? `${options.nixConfig}\n` : ""));
    const hostKeyFile = path.join(dir, "etc/ssh/ssh_host_ed25519_key");
    if (options.hostKey) {
        fs.writeFileSync(hostKeyFile, options.hostKey.privateKey, { mode: 0o600 });
        fs.writeFileSync(`${hostKeyFile}.pub`, `${options.hostKey.publicKey}\n`);
    } else {
        run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", options.name, "-f", hostKeyFile]);
    }
    for (const user of ["root", ...USERS.map((u) => u.name)]) {
        fs.writeFileSync(path.join(dir, "etc/ssh/authorized_keys.d", user), options.authorizedKey, { mode: 0o644 });
    }
    fs.writeFileSync(path.join(dir, "etc/ssh/sshd_config"), SSHD_CONFIG(addresses));
    for (const unit of maskedUnits()) fs.symlinkSync("/dev/null", path.join(dir, "etc/systemd", unit));
    // No generators either: they turn the machine's fstab, gettys and init scripts into units.
    fs.mkdirSync(path.join(dir, "etc/systemd-generators"));
    for (const generator of fs.readdirSync(GENERATORS)) fs.symlinkSync("/dev/null", path.join(dir, "etc/systemd-generators", generator));

    const passwd = machineLines("/etc/passwd").filter((line) => !USERS.some((u) => line.startsWith(`${u.name}:`) || line.split(":")[2] === String(u.uid)))
        .map((line) => (line.startsWith("root:") ? line.replace(/:[^:]*$/, `:${NIXOS_SHELL}`) : line));
    fs.writeFileSync(path.join(dir, "etc/nixos-passwd"), [...passwd, ...USERS.map((u) => `${u.name}:x:${u.uid}:100::/home/${u.name}:${NIXOS_SHELL}`), ""].join("\n"));
    // NixOS's group `keys` (gid 96) may read /run/keys; `deploy` is in it, as a service user given keys is.
    const groups = machineLines("/etc/group").filter((line) => line.split(":")[0] !== "keys" && line.split(":")[2] !== "96");
    fs.writeFileSync(path.join(dir, "etc/nixos-group"), [...groups, "keys:x:96:deploy", ""].join("\n"));
    const inPasswd = new Set(passwd.map((line) => line.split(":")[0]));
    const shadow = machineLines("/etc/shadow").filter((line) => inPasswd.has(line.split(":")[0]));
    const password = (user: string) => (user === "operator" ? operatorPasswordHash() : "*");
    fs.writeFileSync(path.join(dir, "etc/nixos-shadow"), [...shadow, ...USERS.map((u) => `${u.name}:${password(u.name)}:19000:0:99999:7:::`), ""].join("\n"), { mode: 0o640 });
    // NixOS's sudoers: no secure_path, so a command run by sudo keeps the session's PATH; its
    // wheel rule (wheelNeedsPassword's default) asks for the password.
    fs.writeFileSync(path.join(dir, "etc/nixos-sudoers"),
        "root ALL=(ALL:ALL) SETENV: ALL\ndeploy ALL=(ALL:ALL) NOPASSWD: SETENV: ALL\noperator ALL=(ALL:ALL) SETENV: ALL\n", { mode: 0o440 });
    for (const user of USERS) {
        const home = path.join(dir, "home", user.name);
        fs.mkdirSync(home, { recursive: true });
        fs.chownSync(home, user.uid, 100);
    }
}

/** Installs a system from this machine's store as the host's system profile, generation 1. */
async function installSystem(dir: string, system: string): Promise<void> {
    await nix(["copy", "--no-check-sigs", "--to", `local?root=${dir}`, system]);
    const profiles = path.join(dir, "nix/var/nix/profiles");
    fs.symlinkSync(system, path.join(profiles, "system-1-link"));
    fs.symlinkSync("system-1-link", path.join(profiles, "system"));
}

/** The PID (on this machine) of the host's init, the process that is PID 1 in its namespace. */
function initPid(namespace: string): number | undefined {
    for (const pid of namespacePids(namespace)) {
        try {
            if (/^NSpid:\s+\d+\s+1$/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"))) return pid;
        } catch {
            // It ended while we looked.
        }
    }
    return undefined;
}

/**
 * Stops a test host's processes by PID and removes its namespace, link, folder and owner record:
 * also from another process than the one that started it.
 */
export function removeTestHost(namespace: string, dir: string, supervisor = ownerRecord(namespace)?.supervisor): void {
    killNamespace(namespace, supervisor);
    removeCpuAccount(namespace);
    tryRun("ip", ["link", "del", `pnxv${namespace.slice(NAMESPACE_PREFIX.length)}`]);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(path.join(OWNERS_DIR, namespace), { force: true });
}

/** Starts one test host. It runs until stop() (or a later run's sweep, once its owner is gone). */
export async function startTestHost(options: TestHostOptions): Promise<TestHost> {
    const { name } = options;
    const dir = path.join(options.baseDir, name);
    const ownerPid = options.ownerPid ?? process.pid;
    const slot = claimSlot(dir, ownerPid);
    const namespace = NAMESPACE_PREFIX + slot;
    let supervisor: number | undefined;
    const stop = () => removeTestHost(namespace, dir, supervisor);
    try {
        return await launchHost(options, dir, slot, stop, (pid) => {
            supervisor = pid;
            fs.writeFileSync(path.join(OWNERS_DIR, namespace), JSON.stringify({ pid: ownerPid, dir, supervisor: pid } satisfies OwnerRecord));
        });
    } catch (error) {
        stop();
        throw error;
    }
}

async function launchHost(options: TestHostOptions, dir: string, slot: number, stop: () => void, supervised: (pid: number) => void): Promise<TestHost> {
    const { name } = options;
    const namespace = NAMESPACE_PREFIX + slot;
    // Mount points for the host's own /etc/nix and generator masks, which the machine may lack.
    for (const mountPoint of ["/etc/nix", "/etc/systemd/system-generators"]) fs.mkdirSync(mountPoint, { recursive: true });
    const veth = `pnxv${slot}`;
    const link = linkAddresses(slot);
    const address = options.ipv6Only ? link.host6 : link.host;
    prepareHostFolder(dir, options, options.ipv6Only ? [link.host6] : [link.host, link.host6]);
    fs.writeFileSync(path.join(dir, "boot.sh"), BOOT_SCRIPT);
    if (options.system) await installSystem(dir, options.system);

    run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace]);
    if (!options.ipv6Only) {
        run("ip", ["addr", "add", `${link.machine}/24`, "dev", veth]);
        run("ip", ["-n", namespace, "addr", "add", `${link.host}/24`, "dev", "eth0"]);
    }
    // nodad: usable at once (duplicate address detection would hold them a second or two).
    run("ip", ["addr", "add", `${link.machine6}/64`, "dev", veth, "nodad"]);
    run("ip", ["-n", namespace, "addr", "add", `${link.host6}/64`, "dev", "eth0", "nodad"]);
    run("ip", ["link", "set", veth, "up"]);
    run("ip", ["-n", namespace, "link", "set", "eth0", "up"]);
    run("ip", ["-n", namespace, "link", "set", "lo", "up"]);
    routeBetweenHosts(namespace, slot, veth, options.ipv6Only ?? false);

    const log = fs.openSync(path.join(dir, "console.log"), "a");
    const cpu = openCpuAccount(namespace);
    const child = spawn("sh", ["-c", SUPERVISOR, "supervisor", namespace, dir, name, path.join(dir, "boot.sh"), NIXOS_PATH, cpu?.procsFile ?? "", HOST_ROOT],
        { detached: true, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`test host ${name}: could not start`);
    supervised(pid);
    await waitForPort(address, 22, 20_000).catch((error: Error) => {
        throw new Error(`${error.message}\n${fs.readFileSync(path.join(dir, "console.log"), "utf8")}`);
    });

    const hostPublicKey = fs.readFileSync(path.join(dir, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    const profiles = path.join(dir, "nix/var/nix/profiles");
    const inside = (file: string) => pathInside(namespace, file);
    /** A counter of the host's link, as this machine's end of it sees it. */
    const linkCounter = (counter: "tx_bytes" | "rx_bytes") => Number(fs.readFileSync(`/sys/class/net/${veth}/statistics/${counter}`, "utf8"));
    return {
        name, address, port: 22, hostPublicKey, dir, namespace, pid,
        throttle(rate) {
            tryRun("tc", ["qdisc", "del", "dev", veth, "root"]);
            if (rate) run("tc", ["qdisc", "add", "dev", veth, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"]);
        },
        bytesSent: () => linkCounter("tx_bytes"),
        bytesReceived: () => linkCounter("rx_bytes"),
        currentSystem: () => currentSystemOf(namespace),
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
        bootSystem() {
            try {
                return bootLoaderChoice(dir) ?? fs.readlinkSync(path.join(profiles, fs.readlinkSync(path.join(profiles, "system"))));
            } catch {
                return undefined;
            }
        },
        hideFromDeployer() {
            if (!options.ipv6Only) run("ip", ["-n", namespace, "route", "add", "prohibit", `${link.machine}/32`]);
            run("ip", ["-n", namespace, "-6", "route", "add", "prohibit", `${link.machine6}/128`]);
        },
        reset() {
            tryRun("nsenter", ["-t", String(runningInit(namespace)), "-a", "--", "/run/current-system/sw/bin/systemctl", "reboot", "--force", "--force"]);
        },
        bootId: () => fs.readFileSync(inside("/run/boot_id"), "utf8").trim(),
        readFile(file) {
            try {
                return fs.readFileSync(inside(file), "utf8");
            } catch {
                return undefined;
            }
        },
        shell: (command) => shellIn(namespace, command),
        cpuSeconds: () => cpu?.seconds(),
        hasStorePath(storePath: string) {
            return fs.existsSync(path.join(dir, storePath));
        },
        stop,
    };
}

/** The folder a stack's local machines live in, by project and stack (no path of a checkout: the state travels). */
export function localMachinesFolder(project: string, stack: string): string {
    return path.join(os.tmpdir(), `pulumi-nixos-${project}-${stack}`);
}

/** Polls `condition` (host state, read from this machine) until it holds, or fails after `seconds`. */
export async function waitFor(what: string, condition: () => boolean, seconds: number): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    while (!condition()) {
        if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`);
        await new Promise((resolve) => setTimeout(resolve, 200));
    }
}

const FIXTURE_FLAKE = `path:${path.resolve(__dirname, "../../nix/fixtures")}`;

let firstBoot: Promise<string> | undefined;

/** The stand-in fixtures' `first-boot` system, built in this machine's store: what a new host boots. */
export function firstBootSystem(flake = FIXTURE_FLAKE): Promise<string> {
    firstBoot ??= buildConfiguration(flake, "first-boot");
    return firstBoot;
}

/** Evaluates and builds one configuration of a flake into this machine's store. */
export async function buildConfiguration(flake: string, configuration: string): Promise<string> {
    const { [configuration]: evaluated } = await evaluateConfigurations(flake, [configuration]);
    const [system] = await realiseDerivation(evaluated.derivation);
    return system;
}

/** Starts `count` NixOS-shaped test hosts, each booted into the fixtures' first system, and a deployer key authorized on all of them. */
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
        const system = options.debianLike ? undefined : await firstBootSystem();
        for (let i = 0; i < options.count; i++) {
            hosts.push(await startTestHost({ baseDir, name: `${prefix}${i}`, authorizedKey: deployerPublicKey, system, nixConfig: options.nixConfig, ipv6Only: options.ipv6Only }));
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
        env: { ...process.env, NIX_SSHOPTS: sshOptions.join(" "), NIX_CONFIG: nixConfig() },
        stdio: ["ignore", "ignore", "pipe"],
    });
    execFileSync("ssh", [...sshOptions, `root@${host.address}`,
        `nix-env -p /nix/var/nix/profiles/system --set ${closure} && ${closure}/bin/switch-to-configuration switch`], { stdio: ["ignore", "ignore", "pipe"] });
}
