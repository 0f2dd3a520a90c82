import type * as awsModule from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_INFECT_PIN, DEFAULT_NIX_CHANNEL, infectUserData, nixosImageUserData } from "../deploy/bootstrap/infect";
import { SshKeyPair } from "./sshKeyPair";
import { NixosBootstrap } from "./nixosBootstrap";
import { NixosSystemArgs } from "./nixosSystem";

/** Where the machine's first system comes from. */
export type NixosHostImage = "ubuntu" | "debian" | "nixos";

/** AMI lookups: the publisher's account and a name pattern, newest first (x86_64). */
export const IMAGES: Record<NixosHostImage, { owner: string; namePattern: string }> = {
    ubuntu: { owner: "099720109477", namePattern: "ubuntu/images/hvm-ssd*/ubuntu-noble-24.04-amd64-server-*" },
    debian: { owner: "136693071363", namePattern: "debian-12-amd64-*" },
    nixos: { owner: "427812963091", namePattern: "nixos/25.05*-x86_64-linux" },
};

export interface NixosHostArgs {
    /** The flake holding the host's configuration. */
    flake: pulumi.Input<string>;
    /** The name under the flake's nixosConfigurations. */
    configuration: pulumi.Input<string>;
    /** The deployer's private key (OpenSSH text). Stored as a Pulumi secret. */
    sshPrivateKey: pulumi.Input<string>;
    /** The deployer's public key, authorized for root on the host. */
    sshPublicKey: pulumi.Input<string>;
    /** Default "t3.small". Nitro types boot Ubuntu 24.04 with UEFI, Xen types (t2, m4, …) with BIOS: both are converted. */
    instanceType?: pulumi.Input<string>;
    /**
     * Ubuntu 24.04 or Debian 12 (converted by nixos-infect, the default "ubuntu"), or the official
     * NixOS AMI. A UEFI machine without an EFI system partition at /boot/efi is not converted: its
     * user data stops with a message naming `image: "nixos"`.
     */
    image?: NixosHostImage;
    /** An AMI to use instead of the lookup (it must match `image`). */
    amiId?: pulumi.Input<string>;
    /** Root disk size in GiB; default 20 (nixos-infect needs room for two systems). */
    diskSizeGb?: pulumi.Input<number>;
    /** The subnet to launch in; default the default VPC's. */
    subnetId?: pulumi.Input<string>;
    /** The VPC of the security group; default the default VPC. */
    vpcId?: pulumi.Input<string>;
    /** TCP ports to open besides SSH. */
    openPorts?: number[];
    /** Who may reach SSH; default anywhere ("0.0.0.0/0"). */
    sshCidrBlocks?: pulumi.Input<string>[];
    /** An existing EC2 key pair's name, instead of creating one from `sshPublicKey`. */
    keyPairName?: pulumi.Input<string>;
    /** Tags for every AWS resource of the host. */
    tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /**
     * Which of the instance's addresses the deployer reaches it at: "public" (IPv4), "private"
     * (from inside the VPC, or through a bastion: `deploy.jumpHosts`) or "ipv6" (the instance gets
     * one IPv6 address from its subnet, which needs an IPv6 range). Default "private" with
     * `deploy.jumpHosts`, else "public".
     */
    deployAddress?: "public" | "private" | "ipv6";
    /** nixos-infect's revision and the SHA-256 of its script; default DEFAULT_INFECT_PIN. */
    infect?: { revision: string; sha256: string };
    /** The channel of the first system nixos-infect builds; default "nixos-25.05" (a supported release). */
    nixChannel?: string;
    /** Swap while infecting (small instances need it); default true. */
    infectSwap?: boolean;
    /** Seconds to wait for the host to run NixOS; default 900. */
    bootTimeoutSeconds?: pulumi.Input<number>;
    /**
     * Deploy settings passed to the host's NixosSystem. With `jumpHosts` (a bastion of the same
     * stack, e.g. `[{ address: bastion.address, hostPublicKey: bastion.hostPublicKey }]`), the
     * instance can sit in a private subnet (`subnetId`): the wait for NixOS and every deploy go
     * through them.
     */
    deploy?: DeploySettings;
    /** Resources the deploy waits for (a fleet's previous batch); the machine itself is made at once. */
    deployAfter?: pulumi.Resource[];
}

/** The deploy settings a host or fleet passes through to NixosSystem. */
export type DeploySettings = Pick<NixosSystemArgs,
    "user" | "action" | "healthChecks" | "substituteOnDestination" | "confirmTimeoutSeconds" | "connectTimeoutSeconds" | "reboot" | "rebootOnKernelChange" | "rebootTimeoutSeconds" | "files" |
    "build" | "binaryCaches" | "signingKey" | "checkSignatures" | "evaluateWith" | "jumpHosts" | "sudoPassword">;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const loadAws = (): typeof awsModule => require("@pulumi/aws");

/**
 * An EC2 instance that becomes a NixOS host: a security group (SSH and the ports you open), a
 * key pair, the instance with user data that converts it with a pinned, checksum-verified
 * nixos-infect (or the official NixOS AMI), a host key made by the program and pinned from the
 * first connection, a wait until it runs NixOS, and its NixosSystem deploying the flake.
 */
export class NixosHost extends pulumi.ComponentResource {
    readonly instance: awsModule.ec2.Instance;
    readonly securityGroup: awsModule.ec2.SecurityGroup;
    readonly hostKey: SshKeyPair;
    readonly bootstrap: NixosBootstrap;
    /** The address the deployer uses (see deployAddress). */
    readonly address: pulumi.Output<string>;
    readonly hostPublicKey: pulumi.Output<string>;
    readonly closure: pulumi.Output<string>;
    readonly generation: pulumi.Output<number | undefined>;

    constructor(name: string, args: NixosHostArgs, opts?: pulumi.ComponentResourceOptions) {
        super("pulumi-nixos:aws:NixosHost", name, {}, opts);
        // Loaded here, not with the library: a program without AWS hosts does not pay for it.
        const aws = loadAws();
        const parent = { parent: this };
        const image = args.image ?? "ubuntu";
        const instanceType = args.instanceType ?? "t3.small";
        const behindJumpHosts = args.deploy?.jumpHosts !== undefined;
        const deployAddress = args.deployAddress ?? (behindJumpHosts ? "private" : "public");
        const ipv6 = deployAddress === "ipv6";
        const tags = pulumi.output(args.tags ?? {}).apply((user) => ({ ...user, Name: name, "pulumi-nixos:host": name }));

        this.hostKey = new SshKeyPair(`${name}-host-key`, { comment: name }, parent);

        this.securityGroup = new aws.ec2.SecurityGroup(`${name}-sg`, {
            description: `pulumi-nixos host ${name}: SSH and its services`,
            vpcId: args.vpcId,
            ingress: [22, ...(args.openPorts ?? [])].map((port) => ({
                protocol: "tcp", fromPort: port, toPort: port,
                cidrBlocks: port === 22 ? args.sshCidrBlocks ?? ["0.0.0.0/0"] : ["0.0.0.0/0"],
                ...(ipv6 ? { ipv6CidrBlocks: ["::/0"] } : {}),
                description: port === 22 ? "SSH (deploys)" : `port ${port}`,
            })),
            egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], ...(ipv6 ? { ipv6CidrBlocks: ["::/0"] } : {}), description: "all outbound" }],
            tags,
        }, parent);

        const keyName = args.keyPairName ?? new aws.ec2.KeyPair(`${name}-key`, { publicKey: args.sshPublicKey, tags }, parent).keyName;

        const ami = args.amiId ?? aws.ec2.getAmiOutput({
            owners: [IMAGES[image].owner],
            mostRecent: true,
            filters: [{ name: "name", values: [IMAGES[image].namePattern] }, { name: "architecture", values: ["x86_64"] }],
        }, parent).id;

        const pin = args.infect ?? DEFAULT_INFECT_PIN;
        const userData = pulumi.secret(pulumi.all([this.hostKey.privateKey, this.hostKey.publicKey, args.sshPublicKey])
            .apply(([hostPrivateKey, hostPublicKey, deployerKey]) => image === "nixos"
                ? nixosImageUserData(hostPrivateKey, hostPublicKey)
                : infectUserData({
                    revision: pin.revision, sha256: pin.sha256, nixChannel: args.nixChannel ?? DEFAULT_NIX_CHANNEL,
                    hostName: name, hostPrivateKey, hostPublicKey, authorizedKeys: [deployerKey], swap: args.infectSwap ?? true,
                })));

        this.instance = new aws.ec2.Instance(name, {
            ami,
            instanceType,
            subnetId: args.subnetId,
            ...(ipv6 ? { ipv6AddressCount: 1 } : {}),
            // Behind a bastion the instance needs no public address (a private subnet gives none anyway).
            ...(behindJumpHosts ? { associatePublicIpAddress: false } : {}),
            vpcSecurityGroupIds: [this.securityGroup.id],
            keyName,
            userData,
            userDataReplaceOnChange: true,
            rootBlockDevice: { volumeSize: args.diskSizeGb ?? 20, volumeType: "gp3", deleteOnTermination: true, encrypted: true },
            // User data holds the host key: only IMDSv2 (token) requests may read it.
            metadataOptions: { httpTokens: "required", httpEndpoint: "enabled" },
            tags,
        }, parent);

        this.address = deployAddress === "ipv6" ? this.instance.ipv6Addresses.apply((addresses) => addresses[0])
            : deployAddress === "private" ? this.instance.privateIp : this.instance.publicIp;
        this.hostPublicKey = this.hostKey.publicKey;
        this.bootstrap = new NixosBootstrap(`${name}-nixos`, {
            address: this.address,
            privateKey: args.sshPrivateKey,
            hostPublicKey: this.hostKey.publicKey,
            bootTimeoutSeconds: args.bootTimeoutSeconds,
            consoleHint: pulumi.interpolate`aws ec2 get-console-output --instance-id ${this.instance.id} --latest --output text`,
            system: { flake: args.flake, configuration: args.configuration, ...args.deploy },
            deployAfter: args.deployAfter,
        }, parent);
        this.closure = this.bootstrap.closure;
        this.generation = this.bootstrap.generation;
        this.registerOutputs({
            address: this.address, instanceId: this.instance.id, hostPublicKey: this.hostPublicKey, closure: this.closure, generation: this.generation,
        });
    }
}
