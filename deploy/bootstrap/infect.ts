// User data that turns a fresh Ubuntu 24.04 or Debian 12 EC2 instance into NixOS with nixos-infect.
//
// It is a cloud-config that
//   - installs the program-generated SSH host key before sshd first starts (so the deployer pins
//     it from the first connection: no trust on first use), and keeps it through the switch to
//     NixOS (listed in /etc/NIXOS_LUSTRATE) at the path NixOS's sshd uses by default, so the
//     user's own configuration keeps serving the pinned key;
//   - writes the project's first-system settings as a NixOS module, /etc/nixos/pulumi-nixos.nix,
//     which nixos-infect imports (NIXOS_IMPORT) into the configuration it generates. It must not
//     write /etc/nixos/configuration.nix: nixos-infect then skips generating the boot loader
//     (BIOS or UEFI) and file system configuration altogether. /etc/nixos survives the switch;
//   - downloads nixos-infect at a pinned revision, checks its SHA-256, moves Ubuntu's separate /boot
//     out of the way (see infectScript), and runs it.
// Every value is validated to a character set that needs no quoting in YAML, Nix or shell.
import { z } from "zod";
import { hostPublicKeySchema, parseInput } from "../../schema/inputs";

/**
 * The nixos-infect revision used by default, and the SHA-256 of its `nixos-infect` script.
 * 7563801 (2026-01) generates an ESP at /boot/efi with /boot on the root file system, so the ESP
 * holds only GRUB's EFI binary; 69819871 (2024-03) mounts the ESP itself at /boot, where NixOS
 * would copy every generation's kernel and initrd onto EC2's 100 MB ESP. 7563801 breaks BIOS
 * machines, which the user data works around (see the `bootFs` line of the script). Pin another
 * revision (and its checksum) through `infect` where you need one.
 */
export const DEFAULT_INFECT_PIN = {
    revision: "7563801d3ae68c975e4027f4e31a3906dca95f30",
    sha256: "4cc3b5f8e4333ab4f02906d80a836c1b36e2887a51abf4eba4d9113b33934393",
};

/** The first-system module's path, and the path by which nixos-infect's configuration.nix (same folder) imports it. */
const FIRST_SYSTEM_MODULE = { path: "/etc/nixos/pulumi-nixos.nix", import: "./pulumi-nixos.nix" };

export const infectSettingsSchema = z.object({
    /** nixos-infect revision: a full git commit hash. */
    revision: z.string().regex(/^[0-9a-f]{40}$/, "must be a full 40-character git commit hash"),
    /** SHA-256 of the nixos-infect script at that revision. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be a SHA-256 in hex (64 characters)"),
    /** The NixOS channel the first system is built from, e.g. "nixos-25.05". */
    nixChannel: z.string().regex(/^nixos-(\d{2}\.\d{2}|unstable)$/, "must be a NixOS channel such as nixos-25.05"),
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

/**
 * The channel of the first system nixos-infect builds, unless set: a supported release (24.11 is
 * end of life), so that the first flake deploy is no release upgrade for most flakes.
 */
export const DEFAULT_NIX_CHANNEL = "nixos-25.05";

/** The stateVersion that matches a channel ("nixos-25.05" → "25.05"; unstable → the default channel's). */
function stateVersion(channel: string): string {
    const release = /^nixos-(\d{2}\.\d{2})$/.exec(channel);
    return release ? release[1] : DEFAULT_NIX_CHANNEL.slice("nixos-".length);
}

/**
 * The first system's settings, a module that nixos-infect's generated configuration imports beside
 * its hardware configuration (boot loader, ESP, root file system). Where both set an option,
 * mkForce picks the project's value: infect writes the machine's EC2 host name and its own
 * stateVersion.
 */
function firstSystemModule(settings: InfectSettings): string {
    const valid = parseInput(infectSettingsSchema, settings, "nixos-infect settings");
    return `# Written by pulumi-nixos: the first system's settings, imported by the configuration that
# nixos-infect generates (NIXOS_IMPORT), until the host's flake is deployed.
{ lib, ... }: {
  # The labels the user data gave the root file system and the ESP, as the host's flake names them.
  fileSystems."/".device = lib.mkForce "/dev/disk/by-label/nixos";
  # On BIOS machines nixos-infect leaves the ESP out; mounted, it lets a flake install GRUB for both
  # firmwares. On UEFI machines nixos-infect's own entry (by UUID) wins over this default.
  fileSystems."/boot/efi" = lib.mkDefault { device = "/dev/disk/by-label/ESP"; fsType = "vfat"; options = [ "nofail" ]; };
  boot.initrd.availableKernelModules = [ "nvme" "ena" "xen_blkfront" "xen_netfront" ];
  # The boot on the serial console, which \`aws ec2 get-console-output\` shows.
  boot.kernelParams = [ "console=ttyS0,115200n8" ];
  networking.hostName = lib.mkForce "${valid.hostName}";
  networking.useDHCP = lib.mkDefault true;
  networking.firewall.allowedTCPPorts = [ 22 ];
  services.openssh.enable = true;
  services.openssh.settings.PasswordAuthentication = false;
  # Only the pinned key, which the user data installed and NIXOS_LUSTRATE keeps.
  services.openssh.hostKeys = [ { path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; } ];
  users.users.root.openssh.authorizedKeys.keys = [
${valid.authorizedKeys.map((key) => `    "${key}"`).join("\n")}
  ];
  system.stateVersion = lib.mkForce "${stateVersion(valid.nixChannel)}";
}
`;
}

/**
 * The script cloud-init runs once: checks, checksum-verified nixos-infect, boot partitions, reboot.
 *
 * Boot partitions: nixos-infect (7563801) declares only the root file system and, on UEFI, the ESP
 * (at /boot/efi when it finds it there). Ubuntu 24.04 on EC2 has /boot on its own ext4 partition
 * (1 GB) with the ESP (vfat, about 100 MB) inside it at /boot/efi: GRUB would be installed into
 * that /boot partition, which NixOS then no longer mounts. So /boot moves onto the root file system
 * (GRUB reads ext4, so kernels stay in /nix/store and no generation copies anything onto a small
 * partition), and on UEFI the ESP goes back at /boot/efi, holding only GRUB's EFI binary. Debian 12
 * already has this layout. On BIOS, nixos-infect moves /boot away and would fall back to emptying
 * it when /boot is a mount point, which stops at the ESP mounted inside; with /boot a plain folder
 * the move works. The ESP is labelled while unmounted; on BIOS it stays so until NixOS mounts it by
 * that label. Nothing changes before the checks and the checksum passed.
 */
function infectScript(settings: z.output<typeof infectSettingsSchema>): string {
    return `#!/bin/bash
# Written by pulumi-nixos: converts this machine to NixOS with a pinned, verified nixos-infect.
set -euo pipefail
echo "pulumi-nixos: converting $(hostname) to NixOS (nixos-infect ${settings.revision})"
esp=$(findmnt -no SOURCE /boot/efi || true)
if [ -d /sys/firmware/efi ] && [ -z "$esp" ]; then
  echo "pulumi-nixos: this UEFI machine has no EFI system partition at /boot/efi, which nixos-infect needs; not converting it. Use image: \\"nixos\\" (the official NixOS AMI), which needs no conversion." >&2
  exit 1
fi
curl -fsSL --retry 5 -o /root/nixos-infect https://raw.githubusercontent.com/elitak/nixos-infect/${settings.revision}/nixos-infect
if ! echo "${settings.sha256}  /root/nixos-infect" | sha256sum -c -; then
  echo "pulumi-nixos: nixos-infect ${settings.revision} does not match its pinned SHA-256; not running it" >&2
  exit 1
fi
# The root filesystem is labelled "nixos" and the ESP "ESP", so that any configuration (a flake
# cannot read this machine's files) can name them: fileSystems."/".device = "/dev/disk/by-label/nixos".
e2label "$(findmnt -no SOURCE /)" nixos
# /boot moves onto the root file system (Ubuntu's /boot partition is left unused), where GRUB reads
# the kernels from /nix/store: the ~100 MB ESP holds only GRUB's EFI binary (UEFI) or nothing (BIOS).
if [ -n "$esp" ]; then
  umount /boot/efi
  command -v fatlabel > /dev/null || { apt-get update && apt-get install -y dosfstools; }
  fatlabel "$esp" ESP
fi
if findmnt /boot > /dev/null; then umount /boot; fi
if [ -d /sys/firmware/efi ]; then
  mkdir -p /boot/efi
  mount "$esp" /boot/efi
else
  # nixos-infect 7563801 sets bootFs (the ESP's mount point) only on UEFI machines but moves
  # "$bootFs" away on every machine; empty, that stops the script before the switch. On BIOS the
  # directory to move away is /boot, as in its earlier revisions.
  export bootFs=/boot
fi
export NIX_CHANNEL=${settings.nixChannel} NIXOS_IMPORT=${FIRST_SYSTEM_MODULE.import} SHELL=/bin/bash HOME=/root USER=root NO_REBOOT=1${settings.swap ? "" : " NO_SWAP=1"}
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
  - path: ${FIRST_SYSTEM_MODULE.path}
    permissions: "0644"
    content: |
${indent(firstSystemModule(settings), 6)}
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
