// NixosHost on AWS, with Pulumi's mocks (AWS cannot be reached from the test machines): the exact
// resource graph, security rules, tags, secrets, and the exact user data. The parts of the user
// data that run on the host are checked by real tools: YAML structure, `bash -n`, and Nix's parser.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";
import { NixosFleet, NixosHost } from "../../components";
import { DEFAULT_INFECT_PIN } from "../../deploy/bootstrap/infect";
import { generateEd25519KeyPair } from "../../deploy/bootstrap/sshKeys";
import { OFFLINE_NIX_CONFIG } from "../engine/engine";
import { FIXTURE_FLAKE } from "../engine/systemStack";

const HOST_KEY = generateEd25519KeyPair("web");
const DEPLOYER = generateEd25519KeyPair("deployer");

interface Registered {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
}
const registered: Registered[] = [];
const amiLookups: Record<string, unknown>[] = [];

before(async () => {
    process.env.PULUMI_NIXOS_NIX_CONFIG ??= OFFLINE_NIX_CONFIG;
    await pulumi.runtime.setMocks({
        newResource(args) {
            registered.push({ type: args.type, name: args.name, inputs: args.inputs });
            const state: Record<string, unknown> = { ...args.inputs };
            if (args.type === "aws:ec2/instance:Instance") Object.assign(state, { publicIp: "203.0.113.10", privateIp: "10.0.0.10", ipv6Addresses: ["2001:db8::10"] });
            if (args.type === "aws:ec2/keyPair:KeyPair") state.keyName = `${args.name}-keyname`;
            if (args.type === "nixos:index:SshKeyPair") Object.assign(state, HOST_KEY);
            // The provider's check evaluates the closure; the mocks stand in for the provider.
            if (args.type === "nixos:index:System") Object.assign(state, { closure: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system", generation: 1 });
            return { id: `${args.name}-id`, state };
        },
        call(args) {
            if (args.token === "aws:ec2/getAmi:getAmi") {
                amiLookups.push(args.inputs);
                return { id: `ami-${String((args.inputs.owners as string[])[0]).slice(-4)}`, architecture: "x86_64" };
            }
            return {};
        },
    }, "fleet", "dev", true);
});

const value = <T>(output: pulumi.Output<T>) => new Promise<NonNullable<T>>((resolve) => output.apply((v) => resolve(v as NonNullable<T>)));
/** The custom resource (not the component) registered under a name. */
const byName = (name: string) => {
    const found = registered.find((r) => r.name === name && !r.type.startsWith("pulumi-nixos:"));
    assert.ok(found, `no resource named ${name}; registered: ${registered.map((r) => r.name).join(", ")}`);
    return found;
};

function makeHost(name: string, extra: Partial<ConstructorParameters<typeof NixosHost>[1]> = {}) {
    return new NixosHost(name, {
        flake: FIXTURE_FLAKE,
        configuration: "v1",
        sshPrivateKey: pulumi.secret(DEPLOYER.privateKey),
        sshPublicKey: DEPLOYER.publicKey,
        instanceType: "t3.small",
        openPorts: [80, 443],
        sshCidrBlocks: ["198.51.100.0/24"],
        tags: { team: "infra" },
        ...extra,
    });
}

test("the resource graph: one host key, security group, key pair, instance, wait and system, named after the host", async () => {
    const host = makeHost("web");
    const urns = await value(pulumi.all([host.urn, host.hostKey.urn, host.securityGroup.urn, host.instance.urn, host.bootstrap.urn,
        host.bootstrap.system.urn]));
    const [hostUrn, ...children] = urns;
    assert.match(hostUrn, /::pulumi-nixos:aws:NixosHost::web$/);
    assert.match(children[0], /NixosHost\$nixos:index:SshKeyPair::web-host-key$/);
    assert.match(children[1], /NixosHost\$aws:ec2\/securityGroup:SecurityGroup::web-sg$/);
    assert.match(children[2], /NixosHost\$aws:ec2\/instance:Instance::web$/);
    assert.match(children[3], /NixosHost\$pulumi-nixos:index:NixosBootstrap::web-nixos$/);
    assert.match(children[4], /NixosBootstrap\$nixos:index:System::web-nixos-system$/);
    const names = registered.filter((r) => r.name.startsWith("web")).map((r) => `${r.type} ${r.name}`).sort();
    assert.deepEqual(names, [
        "aws:ec2/instance:Instance web",
        "aws:ec2/keyPair:KeyPair web-key",
        "aws:ec2/securityGroup:SecurityGroup web-sg",
        "nixos:index:SshKeyPair web-host-key",
        "nixos:index:System web-nixos-system",
        "nixos:index:WaitForNixos web-nixos-boot",
        "pulumi-nixos:aws:NixosHost web",
        "pulumi-nixos:index:NixosBootstrap web-nixos",
    ]);
    assert.equal(await value(host.address), "203.0.113.10");
    assert.equal(await value(host.hostPublicKey), HOST_KEY.publicKey);
});

test("security rules: SSH from the given blocks only, the opened ports, all egress", () => {
    const group = byName("web-sg").inputs;
    assert.deepEqual(group.ingress, [
        { protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: ["198.51.100.0/24"], description: "SSH (deploys)" },
        { protocol: "tcp", fromPort: 80, toPort: 80, cidrBlocks: ["0.0.0.0/0"], description: "port 80" },
        { protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"], description: "port 443" },
    ]);
    assert.deepEqual(group.egress, [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], description: "all outbound" }]);
});

test("a host in a private subnet behind a bastion of the same stack: no public address, its private one reached through the bastion", async () => {
    const bastion = makeHost("bastion");
    const jumpHosts = [{ address: bastion.address, user: "guest", hostPublicKey: bastion.hostPublicKey }];
    const host = makeHost("private-web", { subnetId: "subnet-private", deploy: { jumpHosts } });
    assert.equal(await value(host.address), "10.0.0.10");
    const instance = byName("private-web").inputs;
    assert.equal(instance.subnetId, "subnet-private");
    assert.equal(instance.associatePublicIpAddress, false);
    await value(host.closure);
    const expected = [{ address: "203.0.113.10", user: "guest", hostPublicKey: HOST_KEY.publicKey }];
    for (const name of ["private-web-nixos-boot", "private-web-nixos-system"]) {
        const inputs = byName(name).inputs;
        assert.equal(inputs.address, "10.0.0.10");
        const secret = inputs.jumpHosts as Record<string, unknown>;
        assert.equal(secret[pulumi.runtime.specialSigKey], pulumi.runtime.specialSecretSig, `${name}: jumpHosts is not a secret`);
        assert.deepEqual(secret.value, expected, `${name} does not go through the bastion`);
    }
});

test("deployAddress \"ipv6\": the instance gets an IPv6 address, which the deployer uses, and its security group admits IPv6", async () => {
    const host = makeHost("v6-web", { deployAddress: "ipv6" });
    assert.equal(await value(host.address), "2001:db8::10");
    assert.equal(byName("v6-web").inputs.ipv6AddressCount, 1);
    const group = byName("v6-web-sg").inputs as { ingress: { ipv6CidrBlocks?: string[] }[] };
    assert.deepEqual(group.ingress[0].ipv6CidrBlocks, ["::/0"]);
    await value(host.closure);
    assert.equal(byName("v6-web-nixos-system").inputs.address, "2001:db8::10");
});

test("tags: the user's, Name and the host marker on every AWS resource", () => {
    for (const name of ["web-sg", "web-key", "web"]) {
        assert.deepEqual(byName(name).inputs.tags, { team: "infra", Name: "web", "pulumi-nixos:host": "web" }, name);
    }
});

test("the instance: looked-up Ubuntu AMI, encrypted gp3 root disk, IMDSv2 only, replaced when its user data changes", () => {
    const instance = byName("web").inputs;
    assert.deepEqual(amiLookups[0], {
        owners: ["099720109477"], mostRecent: true,
        filters: [{ name: "name", values: ["ubuntu/images/hvm-ssd*/ubuntu-noble-24.04-amd64-server-*"] }, { name: "architecture", values: ["x86_64"] }],
    });
    assert.equal(instance.ami, "ami-9477");
    assert.equal(instance.instanceType, "t3.small");
    assert.equal(instance.keyName, "web-key-keyname");
    assert.deepEqual(instance.rootBlockDevice, { volumeSize: 20, volumeType: "gp3", deleteOnTermination: true, encrypted: true });
    assert.deepEqual(instance.metadataOptions, { httpTokens: "required", httpEndpoint: "enabled" });
    assert.equal(instance.userDataReplaceOnChange, true);
});

test("secrets: the user data (it holds the host key) is a secret output", async () => {
    const host = registeredHost ?? makeHost("secret-check");
    assert.equal(await pulumi.isSecret(host.instance.userData), true);
});
let registeredHost: NixosHost | undefined;

function expectedUserData(hostName: string): string {
    const key = (indent: number) => HOST_KEY.privateKey.trimEnd().split("\n").map((line) => " ".repeat(indent) + line).join("\n");
    return `#cloud-config
# Written by pulumi-nixos.
ssh_deletekeys: true
ssh_genkeytypes: []
ssh_keys:
  ed25519_private: |
${key(4)}
  ed25519_public: ${HOST_KEY.publicKey}
write_files:
  - path: /etc/nixos/pulumi-nixos.nix
    permissions: "0644"
    content: |
      # Written by pulumi-nixos: the first system's settings, imported by the configuration that
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
        networking.hostName = lib.mkForce "${hostName}";
        networking.useDHCP = lib.mkDefault true;
        networking.firewall.allowedTCPPorts = [ 22 ];
        services.openssh.enable = true;
        services.openssh.settings.PasswordAuthentication = false;
        # Only the pinned key, which the user data installed and NIXOS_LUSTRATE keeps.
        services.openssh.hostKeys = [ { path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; } ];
        users.users.root.openssh.authorizedKeys.keys = [
          "${DEPLOYER.publicKey}"
        ];
        system.stateVersion = lib.mkForce "25.05";
      }
  - path: /root/pulumi-nixos-infect.sh
    permissions: "0700"
    content: |
      #!/bin/bash
      # Written by pulumi-nixos: converts this machine to NixOS with a pinned, verified nixos-infect.
      set -euo pipefail
      echo "pulumi-nixos: converting $(hostname) to NixOS (nixos-infect ${DEFAULT_INFECT_PIN.revision})"
      esp=$(findmnt -no SOURCE /boot/efi || true)
      if [ -d /sys/firmware/efi ] && [ -z "$esp" ]; then
        echo "pulumi-nixos: this UEFI machine has no EFI system partition at /boot/efi, which nixos-infect needs; not converting it. Use image: \\"nixos\\" (the official NixOS AMI), which needs no conversion." >&2
        exit 1
      fi
      curl -fsSL --retry 5 -o /root/nixos-infect https://raw.githubusercontent.com/elitak/nixos-infect/${DEFAULT_INFECT_PIN.revision}/nixos-infect
      if ! echo "${DEFAULT_INFECT_PIN.sha256}  /root/nixos-infect" | sha256sum -c -; then
        echo "pulumi-nixos: nixos-infect ${DEFAULT_INFECT_PIN.revision} does not match its pinned SHA-256; not running it" >&2
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
      export NIX_CHANNEL=nixos-25.05 NIXOS_IMPORT=./pulumi-nixos.nix SHELL=/bin/bash HOME=/root USER=root NO_REBOOT=1
      bash /root/nixos-infect
      # Keep the pinned host key through the switch, whatever the nixos-infect revision keeps.
      printf '%s\\n' etc/ssh/ssh_host_ed25519_key etc/ssh/ssh_host_ed25519_key.pub >> /etc/NIXOS_LUSTRATE
      echo "pulumi-nixos: rebooting into NixOS"
      reboot
runcmd:
  - [ /root/pulumi-nixos-infect.sh ]
`;
}

test("the exact user data: the first-system module for nixos-infect's NIXOS_IMPORT, pinned nixos-infect verified by checksum, host key", async () => {
    registeredHost = makeHost("web-nitro");
    assert.equal(await value(registeredHost.instance.userData), expectedUserData("web-nitro"));
});

test("the boot loader is left to nixos-infect, which finds the disk and BIOS or UEFI itself: a Xen type gets the same user data", async () => {
    const host = makeHost("web-xen", { instanceType: "t2.micro" });
    assert.equal(await value(host.instance.userData), expectedUserData("web-xen"));
    assert.equal(byName("web-xen").inputs.instanceType, "t2.micro");
});

test("the user data is valid: YAML with the pinned key, a script bash accepts, a module Nix parses, no configuration.nix", async () => {
    const data = yaml.load(await value(makeHost("web-parse").instance.userData)) as {
        ssh_keys: Record<string, string>; write_files: { path: string; content: string }[]; runcmd: string[][];
    };
    assert.equal(data.ssh_keys.ed25519_private, HOST_KEY.privateKey);
    assert.equal(data.ssh_keys.ed25519_public, HOST_KEY.publicKey);
    assert.deepEqual(data.runcmd, [["/root/pulumi-nixos-infect.sh"]]);
    // An existing configuration.nix would stop nixos-infect from generating the boot loader and file systems.
    assert.deepEqual(data.write_files.map((f) => f.path), ["/etc/nixos/pulumi-nixos.nix", "/root/pulumi-nixos-infect.sh"]);
    const file = (p: string) => data.write_files.find((f) => f.path === p)!.content;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-userdata-"));
    try {
        fs.writeFileSync(path.join(dir, "infect.sh"), file("/root/pulumi-nixos-infect.sh"));
        execFileSync("bash", ["-n", path.join(dir, "infect.sh")]);
        fs.writeFileSync(path.join(dir, "pulumi-nixos.nix"), file("/etc/nixos/pulumi-nixos.nix"));
        execFileSync("nix-instantiate", ["--parse", path.join(dir, "pulumi-nixos.nix")], { stdio: ["ignore", "ignore", "pipe"] });
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test("the official NixOS AMI skips the infection: its user data only installs the pinned host key", async () => {
    const host = makeHost("web-ami", { image: "nixos" });
    const userData = await value(host.instance.userData);
    assert.ok(amiLookups.some((lookup) => (lookup.owners as string[])[0] === "427812963091"));
    assert.doesNotMatch(userData, /nixos-infect/);
    assert.match(userData, /^#!\/bin\/sh\n/);
    assert.ok(userData.includes(HOST_KEY.privateKey) && userData.includes(`echo '${HOST_KEY.publicKey}' > /etc/ssh/ssh_host_ed25519_key.pub`));
});

test("a fleet makes a host per entry, named after the fleet, with one existing machine beside them", async () => {
    const fleet = new NixosFleet("edge", {
        flake: FIXTURE_FLAKE,
        sshPrivateKey: pulumi.secret(DEPLOYER.privateKey),
        sshPublicKey: DEPLOYER.publicKey,
        batchSize: 1,
        hosts: {
            a: { configuration: "v1", aws: { instanceType: "t3.micro" } },
            b: { configuration: "v2", aws: { instanceType: "t3.micro", image: "debian" } },
            c: { configuration: "v1", address: "192.0.2.7", hostPublicKey: HOST_KEY.publicKey },
        },
    });
    const hosts = await value(fleet.hosts);
    assert.deepEqual(Object.keys(hosts), ["a", "b", "c"]);
    assert.equal(hosts.c.address, "192.0.2.7");
    for (const name of ["edge-a", "edge-b"]) assert.equal(byName(name).type, "aws:ec2/instance:Instance");
    assert.equal(byName("edge-c").type, "nixos:index:System");
    assert.ok(amiLookups.some((lookup) => (lookup.owners as string[])[0] === "136693071363"), "debian AMI lookup");
    assert.throws(() => new NixosFleet("bad", { flake: FIXTURE_FLAKE, sshPrivateKey: "k", hosts: { x: {} } }), /needs either aws, or address and hostPublicKey/);
});

/** A secret reaches the mocks as { [signature]: …, value }. */
const secret = (value: unknown) => (value as Record<string, unknown> | undefined)?.["4dabf18193072939515e22adb298388d"] !== undefined;

test("a fleet's deploy files reach every host's system, their contents secrets", async () => {
    const fleet = new NixosFleet("keys", {
        flake: FIXTURE_FLAKE,
        sshPrivateKey: pulumi.secret(DEPLOYER.privateKey),
        sshPublicKey: DEPLOYER.publicKey,
        deploy: { files: { "db-password": { content: "pw", owner: "postgres" } } }, // not marked secret: the system makes it one
        hosts: {
            a: { configuration: "v1", aws: { instanceType: "t3.micro" } },
            b: { configuration: "v1", address: "192.0.2.8", hostPublicKey: HOST_KEY.publicKey },
        },
    });
    await value(fleet.hosts);
    // The whole files are a secret (through the bootstrap's outputs), or each content is.
    for (const name of ["keys-a-nixos-system", "keys-b"]) {
        const raw = byName(name).inputs.files as Record<string, unknown>;
        const files = (secret(raw) ? raw.value : raw) as Record<string, { owner: string; content: unknown }>;
        assert.deepEqual(Object.keys(files), ["db-password"], name);
        assert.equal(files["db-password"].owner, "postgres");
        assert.ok(secret(raw) || secret(files["db-password"].content), `${name}: the content is not a secret`);
    }
});

test("a fleet's build place, binary caches and signing key reach every host's system, the key a secret", async () => {
    const signingKey = `deploy-1:${"A".repeat(86)}==`;
    const binaryCaches = [{ url: "https://cache.example.org", publicKey: "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" }];
    const fleet = new NixosFleet("built", {
        flake: FIXTURE_FLAKE,
        sshPrivateKey: pulumi.secret(DEPLOYER.privateKey),
        sshPublicKey: DEPLOYER.publicKey,
        deploy: { build: "target", binaryCaches, signingKey }, // the key not marked secret: the system makes it one
        hosts: {
            a: { configuration: "v1", aws: { instanceType: "t3.micro" } },
            b: { configuration: "v1", address: "192.0.2.9", hostPublicKey: HOST_KEY.publicKey },
        },
    });
    await value(fleet.hosts);
    for (const name of ["built-a-nixos-system", "built-b"]) {
        const inputs = byName(name).inputs;
        assert.equal(inputs.build, "target", name);
        assert.deepEqual(inputs.binaryCaches, binaryCaches, name);
        assert.ok(secret(inputs.signingKey), `${name}: the signing key is not a secret`);
    }
});
