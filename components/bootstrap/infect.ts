// User data that turns a fresh Ubuntu or Debian EC2 instance into NixOS with nixos-infect.
//
// It is a cloud-config that
//   - installs the program-generated SSH host key before sshd first starts (so the deployer pins
//     it from the first connection: no trust on first use), and keeps it through the switch to
//     NixOS (listed in /etc/NIXOS_LUSTRATE) at the path NixOS's sshd uses by default, so the
//     user's own configuration keeps serving the pinned key;
//   - writes a minimal first configuration that keeps SSH reachable (boot device by instance
//     family, DHCP networking, the deployer's key for root); nixos-infect uses an existing
//     /etc/nixos/configuration.nix instead of generating one;
//   - downloads nixos-infect at a pinned revision and runs it only if its SHA-256 matches.
// Every value is validated to a character set that needs no quoting in YAML, Nix or shell.
import { z } from "zod";
import { hostPublicKeySchema, parseInput } from "../schema";

/**
 * The nixos-infect revision used by default, and the SHA-256 of its `nixos-infect` script.
 * The checksum was computed from that revision's file as stored in the public source index; pin a
 * newer revision (and its checksum) through `infect` where you need one.
 */
export const DEFAULT_INFECT_PIN = {
    revision: "30441b1236a3f5e426b72ecf2ba2f4f91127ca0e",
    sha256: "fdbe8db3be4289c2559776059d0dbe785a0290f7b5a6dcf23a4c7629bb0bac3b",
};

/** Instance families on the Xen hypervisor: their root disk is /dev/xvda. Everything newer is Nitro (NVMe). */
const XEN_FAMILIES = new Set(["t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "cc2", "cr1", "r3", "r4", "i2", "i3", "d2", "g2", "g3",
    "h1", "hs1", "p2", "p3", "x1", "x1e", "f1"]);

export const instanceTypeSchema = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, "must be an EC2 instance type such as t3.micro");

/** The disk GRUB is installed on: /dev/xvda on Xen instance types, /dev/nvme0n1 on Nitro. */
export function bootDeviceFor(instanceType: string): "/dev/xvda" | "/dev/nvme0n1" {
    const [family, size] = parseInput(instanceTypeSchema, instanceType, "instanceType").split(".");
    return XEN_FAMILIES.has(family) && size !== "metal" ? "/dev/xvda" : "/dev/nvme0n1";
}

export const infectSettingsSchema = z.object({
    /** nixos-infect revision: a full git commit hash. */
    revision: z.string().regex(/^[0-9a-f]{40}$/, "must be a full 40-character git commit hash"),
    /** SHA-256 of the nixos-infect script at that revision. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be a SHA-256 in hex (64 characters)"),
    /** The NixOS channel the first system is built from, e.g. "nixos-24.11". */
    nixChannel: z.string().regex(/^nixos-(\d{2}\.\d{2}|unstable)$/, "must be a NixOS channel such as nixos-24.11"),
    instanceType: instanceTypeSchema,
    hostName: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "must be a host name of lowercase letters, digits and -"),
    hostPrivateKey: z.string().regex(/^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n$/,
        "must be an OpenSSH private key"),
    hostPublicKey: hostPublicKeySchema,
    /** Public keys allowed to log in as root (the deployer's). */
    authorizedKeys: z.array(hostPublicKeySchema).min(1, "must hold the deployer's public key"),
    /** Swap during the infection (small instances run out of memory building the first system). */
    swap: z.boolean(),
});

export type InfectSettings = z.input<typeof infectSettingsSchema>;

/** The stateVersion that matches a channel ("nixos-24.11" → "24.11"; unstable → the pinned default's). */
function stateVersion(channel: string): string {
    const release = /^nixos-(\d{2}\.\d{2})$/.exec(channel);
    return release ? release[1] : "24.11";
}

/** The first NixOS configuration: just enough to boot on EC2 and be reached over SSH. */
export function firstConfiguration(settings: InfectSettings): string {
    const valid = parseInput(infectSettingsSchema, settings, "nixos-infect settings");
    return `# Written by pulumi-nixos: the first system, until the host's flake is deployed.
{ lib, ... }: {
  imports = [ ./hardware-configuration.nix ];
  boot.loader.grub.device = "${bootDeviceFor(valid.instanceType)}";
  boot.initrd.availableKernelModules = [ "nvme" "ena" "xen_blkfront" "xen_netfront" "virtio_pci" "virtio_blk" ];
  networking.hostName = "${valid.hostName}";
  networking.useDHCP = lib.mkDefault true;
  networking.firewall.allowedTCPPorts = [ 22 ];
  services.openssh.enable = true;
  services.openssh.settings.PasswordAuthentication = false;
  users.users.root.openssh.authorizedKeys.keys = [
${valid.authorizedKeys.map((key) => `    "${key}"`).join("\n")}
  ];
  system.stateVersion = "${stateVersion(valid.nixChannel)}";
}
`;
}

/** The script cloud-init runs once: hardware configuration, checksum-verified nixos-infect. */
function infectScript(settings: z.output<typeof infectSettingsSchema>): string {
    return `#!/bin/bash
# Written by pulumi-nixos: converts this machine to NixOS with a pinned, verified nixos-infect.
set -euo pipefail
echo "pulumi-nixos: converting $(hostname) to NixOS (nixos-infect ${settings.revision})"
# The root filesystem is labelled "nixos", so that any configuration (a flake cannot read this
# machine's files) can name it: fileSystems."/".device = "/dev/disk/by-label/nixos".
e2label "$(findmnt -no SOURCE /)" nixos
cat > /etc/nixos/hardware-configuration.nix <<HARDWARE
{ ... }: {
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
}
HARDWARE
curl -fsSL --retry 5 -o /root/nixos-infect https://raw.githubusercontent.com/elitak/nixos-infect/${settings.revision}/nixos-infect
if ! echo "${settings.sha256}  /root/nixos-infect" | sha256sum -c -; then
  echo "pulumi-nixos: nixos-infect ${settings.revision} does not match its pinned SHA-256; not running it" >&2
  exit 1
fi
export NIX_CHANNEL=${settings.nixChannel} SHELL=/bin/bash HOME=/root USER=root NO_REBOOT=1${settings.swap ? "" : " NO_SWAP=1"}
bash /root/nixos-infect
# Keep the pinned host key through the switch, whatever the nixos-infect revision keeps.
printf '%s\\n' etc/ssh/ssh_host_ed25519_key etc/ssh/ssh_host_ed25519_key.pub >> /etc/NIXOS_LUSTRATE
echo "pulumi-nixos: rebooting into NixOS"
reboot
`;
}

function indent(text: string, spaces: number): string {
    const pad = " ".repeat(spaces);
    return text.replace(/\n$/, "").split("\n").map((line) => (line ? pad + line : line)).join("\n");
}

/** The instance's user data (cloud-config). It holds the host's private key: keep it secret. */
export function infectUserData(settings: InfectSettings): string {
    const valid = parseInput(infectSettingsSchema, settings, "nixos-infect settings");
    return `#cloud-config
# Written by pulumi-nixos.
ssh_deletekeys: true
ssh_genkeytypes: []
ssh_keys:
  ed25519_private: |
${indent(valid.hostPrivateKey, 4)}
  ed25519_public: ${valid.hostPublicKey}
write_files:
  - path: /etc/nixos/configuration.nix
    permissions: "0644"
    content: |
${indent(firstConfiguration(settings), 6)}
  - path: /root/pulumi-nixos-infect.sh
    permissions: "0700"
    content: |
${indent(infectScript(valid), 6)}
runcmd:
  - [ /root/pulumi-nixos-infect.sh ]
`;
}

/**
 * User data for the official NixOS AMI, which needs no infection: its amazon-init runs a user
 * data script at first boot, which installs the pinned host key and restarts sshd.
 */
export function nixosImageUserData(hostPrivateKey: string, hostPublicKey: string): string {
    const key = parseInput(infectSettingsSchema.shape.hostPrivateKey, hostPrivateKey, "hostPrivateKey");
    const publicKey = parseInput(hostPublicKeySchema, hostPublicKey, "hostPublicKey");
    return `#!/bin/sh
# Written by pulumi-nixos: install the program-generated host key, pinned by the deployer.
set -e
umask 077
cat > /etc/ssh/ssh_host_ed25519_key <<'KEY'
${key}KEY
echo '${publicKey}' > /etc/ssh/ssh_host_ed25519_key.pub
chmod 0644 /etc/ssh/ssh_host_ed25519_key.pub
systemctl restart sshd
`;
}
