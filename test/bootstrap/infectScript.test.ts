// The real nixos-infect script of the pinned revision (vendored beside the project, checked against
// the pin), run by the project's real user data script in a sandbox shaped like EC2 machines:
// Ubuntu 24.04 and Debian 12, UEFI (Nitro) and BIOS (Xen). NO_INFECT=1 stops nixos-infect after it
// wrote the configuration (nothing is downloaded or installed); what it wrote is read by Nix. The
// other vendored revision runs too, to show why it is not the pin.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { DEFAULT_INFECT_PIN, infectUserData, InfectSettings } from "../../deploy/bootstrap/infect";
import { generateEd25519KeyPair } from "../../deploy/bootstrap/sshKeys";
import { MachineShape, runUserData, SandboxRun, VENDORED_INFECT, vendoredScript } from "./infectSandbox";

const HOST_KEY = generateEd25519KeyPair("web");
const DEPLOYER = generateEd25519KeyPair("deployer");
const SETTINGS: InfectSettings = {
    ...DEFAULT_INFECT_PIN, nixChannel: "nixos-24.11", hostName: "web", hostPrivateKey: HOST_KEY.privateKey, hostPublicKey: HOST_KEY.publicKey,
    authorizedKeys: [DEPLOYER.publicKey],
    // The swap file nixos-infect would make (1 GiB, swapon) belongs to the kernel, which a sandbox shares.
    swap: false,
};
/** Root's authorized_keys as cloud-init writes it on Ubuntu: the EC2 key pair's key behind a refusal. */
const CLOUD_INIT_ROOT_KEYS = `no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo 'Please login as the user \\"ubuntu\\" rather than the user \\"root\\".';echo;sleep 10;exit 142" ${DEPLOYER.publicKey}`;

const ESP_UUID = "A1B2-C3D4";
/** Ubuntu 24.04 on a Nitro type: UEFI, /boot its own ext4 partition, the ESP inside it at /boot/efi. */
const UBUNTU_NITRO_UEFI: MachineShape = {
    uefi: true, disks: ["/dev/nvme0n1"], hostName: "ip-172-31-5-10",
    partitions: [
        { device: "/dev/nvme0n1p1", fsType: "ext4", uuid: "0b7a2c8e-1d3f-4e5a-9b6c-7d8e9f0a1b2c", mountedAt: "/" },
        { device: "/dev/nvme0n1p16", fsType: "ext4", uuid: "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f", mountedAt: "/boot" },
        { device: "/dev/nvme0n1p15", fsType: "vfat", uuid: ESP_UUID, mountedAt: "/boot/efi" },
    ],
};
/** The same image on a Xen type, which boots it with BIOS. */
const UBUNTU_XEN_BIOS: MachineShape = {
    uefi: false, disks: ["/dev/xvda"], hostName: "ip-172-31-5-11",
    partitions: UBUNTU_NITRO_UEFI.partitions.map((p) => ({ ...p, device: p.device.replace("nvme0n1p", "xvda") })),
};
/** Debian 12: /boot on the root file system, the ESP at /boot/efi. */
const DEBIAN_NITRO_UEFI: MachineShape = {
    uefi: true, disks: ["/dev/nvme0n1"], hostName: "ip-172-31-5-12",
    partitions: UBUNTU_NITRO_UEFI.partitions.filter((p) => p.mountedAt !== "/boot"),
};
const DEBIAN_NITRO_BIOS: MachineShape = { ...DEBIAN_NITRO_UEFI, uefi: false, hostName: "ip-172-31-5-13" };

function nixEval(expression: string): unknown {
    return JSON.parse(execFileSync("nix-instantiate", ["--eval", "--strict", "--json", "-E", expression], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
}

function convert(shape: MachineShape, settings: InfectSettings = SETTINGS): SandboxRun {
    return runUserData(infectUserData(settings), shape, { NO_INFECT: "1" }, CLOUD_INIT_ROOT_KEYS);
}

/** What nixos-infect generated, read by Nix: the configuration with no arguments, the hardware file with modulesPath. */
function generated(run: SandboxRun) {
    const nixos = path.join(run.etcWrites, "nixos");
    for (const file of ["configuration.nix", "hardware-configuration.nix", "pulumi-nixos.nix"]) {
        execFileSync("nix-instantiate", ["--parse", path.join(nixos, file)], { stdio: ["ignore", "ignore", "pipe"] });
    }
    const configuration = nixEval(`let c = import ${nixos}/configuration.nix { }; in
        { imports = map toString c.imports; keys = c.users.users.root.openssh.authorizedKeys.keys; hostName = c.networking.hostName; }`) as
        { imports: string[]; keys: string[]; hostName: string };
    const hardware = nixEval(`let h = import ${nixos}/hardware-configuration.nix { modulesPath = "/modules"; }; in
        { loader = h.boot.loader; fileSystems = h.fileSystems; }`) as { loader: unknown; fileSystems: Record<string, unknown> };
    return { nixos, configuration, hardware };
}

function assertConverted(run: SandboxRun, shape: MachineShape) {
    assert.equal(run.status, 0, run.output);
    const { nixos, configuration } = generated(run);
    assert.deepEqual(configuration.imports, [`${nixos}/hardware-configuration.nix`, `${nixos}/pulumi-nixos.nix`], "imports the project's module");
    assert.deepEqual(configuration.keys, [DEPLOYER.publicKey], "the deployer's key, out of cloud-init's refusal line");
    assert.equal(configuration.hostName, shape.hostName, "infect's own host name, which the project's module overrides (mkForce)");
    const module = fs.readFileSync(path.join(nixos, "pulumi-nixos.nix"), "utf8");
    assert.match(module, /networking\.hostName = lib\.mkForce "web";/);
    assert.match(module, /services\.openssh\.hostKeys = \[ \{ path = "\/etc\/ssh\/ssh_host_ed25519_key"; type = "ed25519"; \} \];/);
    // The pinned key is where NixOS's sshd reads it, untouched but for nixos-infect's chmod 600, and kept by the lustrate.
    const key = path.join(run.etcWrites, "ssh/ssh_host_ed25519_key");
    assert.equal(fs.readFileSync(key, "utf8"), HOST_KEY.privateKey);
    assert.equal(fs.statSync(key).mode & 0o777, 0o600);
    const lustrate = fs.readFileSync(path.join(run.etcWrites, "NIXOS_LUSTRATE"), "utf8").split("\n");
    for (const kept of ["etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub"]) assert.ok(lustrate.includes(kept), kept);
    assert.ok(run.rebooted, "the user data reboots at the end");
}

const UEFI_LOADER = { efi: { efiSysMountPoint: "/boot/efi" }, grub: { efiSupport: true, efiInstallAsRemovable: true, device: "nodev" } };

test("the vendored nixos-infect of the pinned revision is byte for byte the pinned one", () => {
    const bytes = fs.readFileSync(vendoredScript(DEFAULT_INFECT_PIN.revision));
    assert.equal(createHash("sha256").update(bytes).digest("hex"), DEFAULT_INFECT_PIN.sha256);
    const sums = fs.readFileSync(path.join(VENDORED_INFECT, DEFAULT_INFECT_PIN.revision, "SHA256SUMS"), "utf8");
    assert.equal(sums, `${DEFAULT_INFECT_PIN.sha256}  nixos-infect\n`);
});

test("Ubuntu 24.04, Nitro (UEFI): /boot moves onto the root file system, the ESP at /boot/efi holds only GRUB", (t) => {
    const run = convert(UBUNTU_NITRO_UEFI);
    t.after(run.remove);
    assertConverted(run, UBUNTU_NITRO_UEFI);
    assert.deepEqual(run.mounts, ["/dev/nvme0n1p1 / ext4", "/dev/nvme0n1p15 /boot/efi vfat"], "the 1 GB /boot partition is no longer mounted");
    assert.deepEqual(run.labels, ["/dev/nvme0n1p1 nixos", "/dev/nvme0n1p15 ESP"]);
    const { hardware } = generated(run);
    assert.deepEqual(hardware.loader, UEFI_LOADER);
    assert.deepEqual(hardware.fileSystems, {
        "/": { device: "/dev/nvme0n1p1", fsType: "ext4" },
        "/boot/efi": { device: `/dev/disk/by-uuid/${ESP_UUID}`, fsType: "vfat" },
    }, "no /boot file system: kernels stay on the root file system, not on the 100 MB ESP");
});

test("Ubuntu 24.04, Xen (BIOS): GRUB on the disk, /boot on the root file system, the ESP unmounted", (t) => {
    const run = convert(UBUNTU_XEN_BIOS);
    t.after(run.remove);
    assertConverted(run, UBUNTU_XEN_BIOS);
    assert.deepEqual(run.mounts, ["/dev/xvda1 / ext4"]);
    const { hardware } = generated(run);
    assert.deepEqual(hardware.loader, { grub: { device: "/dev/xvda" } });
    assert.deepEqual(hardware.fileSystems, { "/": { device: "/dev/xvda1", fsType: "ext4" } });
});

test("Debian 12 on UEFI and on BIOS", (t) => {
    const uefi = convert(DEBIAN_NITRO_UEFI);
    t.after(uefi.remove);
    assertConverted(uefi, DEBIAN_NITRO_UEFI);
    assert.deepEqual(uefi.mounts, ["/dev/nvme0n1p1 / ext4", "/dev/nvme0n1p15 /boot/efi vfat"]);
    assert.deepEqual(generated(uefi).hardware.loader, UEFI_LOADER);

    const bios = convert(DEBIAN_NITRO_BIOS);
    t.after(bios.remove);
    assertConverted(bios, DEBIAN_NITRO_BIOS);
    assert.deepEqual(bios.mounts, ["/dev/nvme0n1p1 / ext4"]);
    assert.deepEqual(generated(bios).hardware.loader, { grub: { device: "/dev/nvme0n1" } });
});

test("why not the 2024 revision 69819871: on UEFI it mounts the 100 MB ESP at /boot, and it has no NO_INFECT", (t) => {
    const revision = "69819871dcced600959ab1c875702acbe6dccc29";
    const sha256 = fs.readFileSync(path.join(VENDORED_INFECT, revision, "SHA256SUMS"), "utf8").split(" ")[0];
    const run = convert(UBUNTU_NITRO_UEFI, { ...SETTINGS, revision, sha256 });
    t.after(run.remove);
    // It goes on past the configuration and stops only where the sandbox has no network.
    assert.notEqual(run.status, 0);
    assert.match(run.output, /Could not resolve host \(sandbox: https:\/\/nixos\.org\/nix\/install\)/);
    const { hardware } = generated(run);
    assert.deepEqual(hardware.loader, { grub: { efiSupport: true, efiInstallAsRemovable: true, device: "nodev" } });
    assert.deepEqual(hardware.fileSystems["/boot"], { device: `/dev/disk/by-uuid/${ESP_UUID}`, fsType: "vfat" },
        "the ESP is /boot: NixOS would copy each generation's kernel and initrd onto it");
});

test("a UEFI machine whose ESP is not at /boot/efi is refused before anything changes, naming image: \"nixos\"", (t) => {
    const shape: MachineShape = {
        ...DEBIAN_NITRO_UEFI,
        partitions: [DEBIAN_NITRO_UEFI.partitions[0], { ...DEBIAN_NITRO_UEFI.partitions[1], mountedAt: "/boot" }],
    };
    const run = convert(shape);
    t.after(run.remove);
    assert.equal(run.status, 1, run.output);
    assert.match(run.output, /no EFI system partition at \/boot\/efi.*Use image: "nixos" \(the official NixOS AMI\)/);
    assert.deepEqual(run.mounts, ["/dev/nvme0n1p1 / ext4", "/dev/nvme0n1p15 /boot vfat"]);
    assert.deepEqual(run.labels, []);
    assert.ok(!fs.existsSync(path.join(run.etcWrites, "nixos/configuration.nix")) && !run.rebooted);
});

test("a script that does not match the pinned SHA-256 is not run", (t) => {
    const run = convert(UBUNTU_NITRO_UEFI, { ...SETTINGS, sha256: "0".repeat(64) });
    t.after(run.remove);
    assert.equal(run.status, 1, run.output);
    assert.match(run.output, /does not match its pinned SHA-256; not running it/);
    assert.deepEqual([run.mounts, run.labels], [UBUNTU_NITRO_UEFI.partitions.map((p) => `${p.device} ${p.mountedAt} ${p.fsType}`), []], "nothing changed");
    assert.ok(!fs.existsSync(path.join(run.etcWrites, "nixos/configuration.nix")) && !run.rebooted);
});
