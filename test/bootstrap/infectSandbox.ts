// A Debian-like sandbox in which the project's real user data script and the real nixos-infect
// script run as far as they go offline, on a machine shaped like an EC2 instance.
//
// The sandbox is a private mount, network and UTS namespace (`unshare`), so the scripts cannot
// touch this machine's /etc, /root, /boot, /nix, disks or network:
//   - /etc is an overlay whose upper layer is the sandbox's folder: everything the scripts write
//     there (the generated configuration, NIXOS_LUSTRATE) lands in `etcWrites` for the test to read;
//   - /root, /boot, /nix are the sandbox's folders; /sys/firmware holds `efi/` on UEFI shapes only
//     (nixos-infect's test for UEFI);
//   - /dev is the sandbox's: the shape's disks as empty files and /dev/disk/by-uuid links, with
//     this machine's /dev/null, zero and urandom bound in;
//   - no network, so nothing can be downloaded or contacted.
// Commands that would report or change this machine's real disks are stand-ins earlier on PATH,
// inside the sandbox only: mount, umount, findmnt, df and swapon read and change the shape's mount
// table (a file); e2label and fatlabel record labels; curl serves only nixos-infect revisions
// vendored under ../shared/vendor (what the user data downloads from GitHub); reboot records the
// reboot; apt-get refuses. Everything else (bash, coreutils, sed, awk, hostname, sha256sum) is real.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";

const CHECKOUT = path.resolve(__dirname, "../../..");
/** The repository's root: this checkout, or the main work tree when this is a linked git worktree. */
const REPO_ROOT = fs.existsSync(path.join(CHECKOUT, ".git")) && fs.statSync(path.join(CHECKOUT, ".git")).isFile()
    ? path.dirname(execFileSync("git", ["-C", CHECKOUT, "rev-parse", "--path-format=absolute", "--git-common-dir"], { encoding: "utf8" }).trim())
    : CHECKOUT;
/** Unmodified nixos-infect scripts, one folder per revision, beside the repository (not in it). */
export const VENDORED_INFECT = path.resolve(REPO_ROOT, "../shared/vendor/nixos-infect");
export const vendoredScript = (revision: string) => path.join(VENDORED_INFECT, revision, "nixos-infect");

/** A partition of the shape: its device, file system, UUID, and where it is mounted (if it is). */
export interface Partition {
    device: string;
    fsType: "ext4" | "vfat";
    uuid: string;
    mountedAt?: string;
}

/** An EC2 machine as nixos-infect sees it. */
export interface MachineShape {
    uefi: boolean;
    /** Whole disks (nixos-infect looks for /dev/vda, sda, xvda, nvme0n1 in that order). */
    disks: string[];
    partitions: Partition[];
    /** The host name EC2 gives the machine. */
    hostName: string;
}

export interface SandboxRun {
    status: number | null;
    output: string;
    /** The folder holding what the scripts wrote under /etc (the overlay's upper layer). */
    etcWrites: string;
    /** The mount table at the end: "device target fstype" lines. */
    mounts: string[];
    /** "device label" lines, in the order the labels were set. */
    labels: string[];
    rebooted: boolean;
    /** Removes the sandbox's folder. */
    remove(): void;
}

const STAND_INS: Record<string, string> = {
    mount: `[ $# -eq 0 ] && { while read -r dev dir fs; do echo "$dev on $dir type $fs (rw,relatime)"; done < "$SHAPE/mounts"; exit 0; }
[ $# -eq 2 ] || { echo "mount (sandbox): unsupported: $*" >&2; exit 2; }
dev=$(readlink -f "$1")
fs=$(awk -v d="$dev" '$1 == d { print $2 }' "$SHAPE/partitions")
[ -n "$fs" ] || { echo "mount: $1: special device does not exist" >&2; exit 32; }
[ -d "$2" ] || { echo "mount: $2: mount point does not exist" >&2; exit 32; }
echo "$dev $2 $fs" >> "$SHAPE/mounts"`,
    umount: `[ $# -eq 1 ] || { echo "umount (sandbox): unsupported: $*" >&2; exit 2; }
arg=$1; case $arg in /dev/*) arg=$(readlink -f "$arg");; esac
dir=$(awk -v a="$arg" '$1 == a || $2 == a { print $2 }' "$SHAPE/mounts")
[ -n "$dir" ] || { echo "umount: $1: not mounted." >&2; exit 32; }
awk -v d="$dir/" 'index($2, d) == 1 { busy = 1 } END { exit !busy }' "$SHAPE/mounts" && { echo "umount: $dir: target is busy." >&2; exit 32; }
awk -v d="$dir" '$2 != d' "$SHAPE/mounts" > "$SHAPE/mounts.new" && mv "$SHAPE/mounts.new" "$SHAPE/mounts"`,
    // findmnt [-n] [-o SOURCE|FSTYPE] [-no …] TARGET: the mount at exactly TARGET, else status 1.
    findmnt: `column=2; target=
while [ $# -gt 0 ]; do case $1 in -n) ;; -no|-on|-o) shift; case $1 in SOURCE) column=1;; FSTYPE) column=3;; *) echo "findmnt (sandbox): unsupported column $1" >&2; exit 2;; esac;; -*) echo "findmnt (sandbox): unsupported: $1" >&2; exit 2;; *) target=$1;; esac; shift; done
awk -v t="$target" -v c="$column" '$2 == t { print $c; found = 1 } END { exit !found }' "$SHAPE/mounts"`,
    // df PATH --output=COLUMN: the mount holding PATH (or the mounted device PATH), with a header line.
    df: `[ $# -eq 2 ] || { echo "df (sandbox): unsupported: $*" >&2; exit 2; }
case $2 in --output=source) c=1;; --output=target) c=2;; --output=fstype) c=3;; *) echo "df (sandbox): unsupported: $2" >&2; exit 2;; esac
[ -e "$1" ] || { echo "df: $1: No such file or directory" >&2; exit 1; }
p=$(readlink -f "$1")
echo HEADER
awk -v p="$p" -v c="$c" '$1 == p { print $c; exit } { if ((p == $2 || index(p, ($2 == "/" ? "/" : $2 "/")) == 1) && length($2) > best) { best = length($2); line = $c } } END { if (line != "") print line }' "$SHAPE/mounts" | head -1`,
    swapon: `[ "$1" = --show ] || { echo "swapon (sandbox): unsupported: $*" >&2; exit 2; }`,
    e2label: `echo "$1 $2" >> "$SHAPE/labels"`,
    fatlabel: `echo "$1 $2" >> "$SHAPE/labels"`,
    curl: `out=; url=
while [ $# -gt 0 ]; do case $1 in -o) shift; out=$1;; -*) ;; *) url=$1;; esac; shift; done
rev=\${url#https://raw.githubusercontent.com/elitak/nixos-infect/}; rev=\${rev%/nixos-infect}
case $rev in */*|"") echo "curl: (6) Could not resolve host (sandbox: $url)" >&2; exit 6;; esac
[ -f "$VENDORED/$rev/nixos-infect" ] || { echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; }
if [ -n "$out" ]; then cp "$VENDORED/$rev/nixos-infect" "$out"; else cat "$VENDORED/$rev/nixos-infect"; fi`,
    reboot: `echo reboot >> "$SHAPE/rebooted"`,
    "apt-get": `echo "apt-get (sandbox): no packages are installed here: $*" >&2; exit 100`,
};

// Runs inside the namespaces: makes the sandbox's mounts, then the user data as cloud-init would.
const SETUP = `set -euo pipefail
S=$SANDBOX
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/etc,workdir=$S/etc-work" /etc
for dir in root boot nix; do mount --bind "$S/$dir" "/$dir"; done
mount --bind "$S/firmware" /sys/firmware
for node in null zero urandom; do touch "$S/dev/$node"; mount --bind "/dev/$node" "$S/dev/$node"; done
mount --rbind "$S/dev" /dev
hostname "$HOST_NAME"
# cloud-init's ssh_deletekeys: the image's own host keys go; the pinned one is already in place.
find /etc/ssh -maxdepth 1 -name 'ssh_host_*' ! -name 'ssh_host_ed25519_key*' -delete
cd /
exec env -i PATH="$S/bin:/usr/sbin:/usr/bin:/sbin:/bin" SHAPE="$S/shape" VENDORED="$VENDORED" $EXTRA_ENV bash /root/pulumi-nixos-infect.sh
`;

interface CloudConfig {
    ssh_keys: { ed25519_private: string; ed25519_public: string };
    write_files: { path: string; permissions: string; content: string }[];
    runcmd: string[][];
}

/**
 * Runs the user data's script in a sandbox shaped like `shape`, as cloud-init would after writing
 * its files and keys; `authorizedKeysLine` is root's authorized_keys as cloud-init writes it. `env`
 * adds variables to the script's environment (NO_INFECT=1). Call `remove()` when done.
 */
export function runUserData(userData: string, shape: MachineShape, env: Record<string, string>, authorizedKeysLine: string): SandboxRun {
    const sandbox = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-infect-"));
    try {
        const dir = (...parts: string[]) => {
            const full = path.join(sandbox, ...parts);
            fs.mkdirSync(full, { recursive: true });
            return full;
        };
        for (const name of ["etc", "etc-work", "root", "nix", "shape", "bin", "dev/disk/by-uuid"]) dir(name);
        dir("firmware", ...(shape.uefi ? ["efi"] : []));
        for (const [name, body] of Object.entries(STAND_INS)) {
            fs.writeFileSync(path.join(sandbox, "bin", name), `#!/bin/sh\n# Sandbox stand-in (see infectSandbox.ts).\n${body}\n`, { mode: 0o755 });
        }
        // The shape: disks, partitions, mounts; the /boot folders its mounts need.
        for (const disk of [...shape.disks, ...shape.partitions.map((p) => p.device)]) fs.writeFileSync(path.join(sandbox, disk), "");
        for (const p of shape.partitions) fs.symlinkSync(`../../${path.basename(p.device)}`, path.join(sandbox, "dev/disk/by-uuid", p.uuid));
        fs.symlinkSync("/proc/self/fd", path.join(sandbox, "dev/fd"));
        fs.writeFileSync(path.join(sandbox, "shape/partitions"), shape.partitions.map((p) => `${p.device} ${p.fsType}\n`).join(""));
        fs.writeFileSync(path.join(sandbox, "shape/mounts"), shape.partitions.filter((p) => p.mountedAt)
            .map((p) => `${p.device} ${p.mountedAt} ${p.fsType}\n`).join(""));
        fs.writeFileSync(path.join(sandbox, "shape/labels"), "");
        dir("boot");
        for (const p of shape.partitions) if (p.mountedAt?.startsWith("/boot/")) dir(p.mountedAt.slice(1));

        // What cloud-init does before runcmd: host keys, write_files, the EC2 key for root.
        const config = yaml.load(userData) as CloudConfig;
        const place = (target: string, content: string, mode: number) => {
            const top = target.split("/")[1];
            if (!["etc", "root"].includes(top)) throw new Error(`the user data writes ${target}, outside the sandbox's /etc and /root`);
            const file = path.join(sandbox, target);
            fs.mkdirSync(path.dirname(file), { recursive: true });
            fs.writeFileSync(file, content, { mode });
        };
        place("/etc/ssh/ssh_host_ed25519_key", config.ssh_keys.ed25519_private, 0o600);
        place("/etc/ssh/ssh_host_ed25519_key.pub", `${config.ssh_keys.ed25519_public}\n`, 0o644);
        for (const file of config.write_files) place(file.path, file.content, parseInt(file.permissions, 8));
        place("/root/.ssh/authorized_keys", `${authorizedKeysLine}\n`, 0o600);
        if (JSON.stringify(config.runcmd) !== JSON.stringify([["/root/pulumi-nixos-infect.sh"]])) throw new Error("unexpected runcmd");

        const result = spawnSync("unshare", ["--mount", "--propagation", "private", "--net", "--uts", "--", "bash", "-c", SETUP], {
            env: {
                PATH: "/usr/sbin:/usr/bin:/sbin:/bin", SANDBOX: sandbox, VENDORED: VENDORED_INFECT, HOST_NAME: shape.hostName,
                EXTRA_ENV: Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" "),
            },
            encoding: "utf8",
            // Not a socket on stdin: bash would take itself for an rsh command and read root's ~/.bashrc.
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 60_000,
        });
        const read = (file: string) => fs.readFileSync(path.join(sandbox, "shape", file), "utf8").split("\n").filter(Boolean);
        return {
            status: result.status,
            output: `${result.stdout}${result.stderr}${result.error ? String(result.error) : ""}`,
            etcWrites: path.join(sandbox, "etc"),
            mounts: read("mounts"),
            labels: read("labels"),
            rebooted: fs.existsSync(path.join(sandbox, "shape/rebooted")),
            remove: () => fs.rmSync(sandbox, { recursive: true, force: true }),
        };
    } catch (error) {
        fs.rmSync(sandbox, { recursive: true, force: true });
        throw error;
    }
}
