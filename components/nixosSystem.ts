import * as pulumi from "@pulumi/pulumi";
import { inputSchemas, PLUGIN_OPTIONS, SYSTEM } from "../schema/resources";
import { Action, hostFilesSchema, parseInput } from "../schema/inputs";

/** A command run on the host after activation; healthy when it exits 0 within the timeout. */
export interface CommandHealthCheck {
    name: string;
    /** Run by `sh -c` on the host. */
    command: string;
    /** Seconds to keep retrying (once a second) before the check fails; default 30. */
    timeoutSeconds?: number;
}

/** A URL fetched from the deployer after activation; healthy when it answers `expectStatus`. */
export interface HttpHealthCheck {
    name: string;
    url: string;
    /** Default 200. */
    expectStatus?: number;
    /** Seconds to keep retrying (once a second) before the check fails; default 30. */
    timeoutSeconds?: number;
}

export interface HealthChecksArgs {
    commands?: CommandHealthCheck[];
    http?: HttpHealthCheck[];
}

/**
 * A file written on the host from a Pulumi secret (a key, a password, a token): never through the
 * Nix store, in an argument list, in Pulumi's output or in the state in plaintext.
 */
export interface HostFileArgs {
    /** The file's content, always stored as a Pulumi secret. */
    content: pulumi.Input<string>;
    /** "utf8" (default) writes `content` as text; "base64" decodes it (binary files). */
    encoding?: "utf8" | "base64";
    /** Default "root". */
    owner?: string;
    /** Default "root". */
    group?: string;
    /** Octal permission bits, default "0400"; no setuid/setgid/sticky bit, never writable by every user. */
    mode?: string;
    /**
     * "before" (default): written before the new system activates, so its services find their keys
     * when they start. "after": written after its switch, for a user or group the new system creates.
     */
    activation?: "before" | "after";
}

/** A binary cache the host fetches store paths from. */
export interface BinaryCacheArgs {
    /** Where the host reaches the cache: an http://, https:// or s3:// URL. */
    url: string;
    /** The cache's Nix public key ("cache.example.org-1:AAAA…="), trusted for this deploy's fetches only. */
    publicKey: string;
}

export interface JumpHostArgs {
    /** Host name or IP address the deployer (or the hop before) reaches the jump host at. */
    address: pulumi.Input<string>;
    /** SSH port; default 22. */
    port?: pulumi.Input<number>;
    /** SSH user on the jump host; default "root". It needs no rights beyond forwarding a TCP connection. */
    user?: pulumi.Input<string>;
    /** The jump host's SSH public key, pinned: any other key is refused before anything is sent through it. */
    hostPublicKey: pulumi.Input<string>;
    /** Its own private key, as text; default the deploy's `privateKey`. */
    privateKey?: pulumi.Input<string>;
}

export interface NixosSystemArgs {
    /** Host name or IP address the deployer reaches the host at. */
    address: pulumi.Input<string>;
    /** SSH port; default 22. */
    port?: pulumi.Input<number>;
    /**
     * SSH user; default "root". Another user must be able to run sudo (without a password, or with
     * `sudoPassword`) and be a trusted Nix user (to copy unsigned paths): the profile, the switch
     * and the rollback run as root through sudo.
     */
    user?: pulumi.Input<string>;
    /**
     * The deploy user's sudo password, for a host whose sudo asks for one (NixOS's default for
     * wheel): given to `sudo -S` on standard input only. Always stored as a Pulumi secret.
     */
    sudoPassword?: pulumi.Input<string>;
    /**
     * Hosts the deployer reaches this one through (a bastion), the first hop first, as OpenSSH's
     * ProxyJump does: every connection of a deploy goes through them. Stored as a Pulumi secret.
     */
    jumpHosts?: pulumi.Input<pulumi.Input<JumpHostArgs>[]>;
    /** The deployer's private key, as text. Always stored as a Pulumi secret. */
    privateKey: pulumi.Input<string>;
    /**
     * The host's SSH public key ("ssh-ed25519 AAAA…"), pinned: a host that presents any other key
     * is refused before anything is sent to it.
     */
    hostPublicKey: pulumi.Input<string>;
    /** Seconds to wait for the SSH connection; default 10. */
    connectTimeoutSeconds?: pulumi.Input<number>;
    /** The flake holding the configuration: a local path ("./nix") or a reference ("github:o/r/rev"). */
    flake?: pulumi.Input<string>;
    /** The name under the flake's nixosConfigurations. */
    configuration?: pulumi.Input<string>;
    /**
     * Other configurations of the same flake that this program deploys (NixosFleet sets its
     * hosts'): the first check of the flake evaluates them together with this one, over the
     * evaluation workers. Default: every configuration of the flake. A change of it is no change
     * of the resource.
     */
    evaluateWith?: pulumi.Input<pulumi.Input<string>[]>;
    /** Instead of flake and configuration: an already-built system's store path. */
    storePath?: pulumi.Input<string>;
    /** As in nixos-rebuild: "switch" (default), "boot" (next boot only) or "test" (now, no generation). */
    action?: pulumi.Input<Action>;
    /** Checks that must pass after activation, or the host is rolled back. */
    healthChecks?: pulumi.Input<HealthChecksArgs>;
    /** Let the host fetch paths from its own substituters instead of receiving them; default false. */
    substituteOnDestination?: pulumi.Input<boolean>;
    /** Seconds the host waits for the deployer's confirmation before it rolls itself back; default 60. */
    confirmTimeoutSeconds?: pulumi.Input<number>;
    /**
     * Reboot the host when activating the system needs it: after a `boot` deploy, or when
     * switch-to-configuration exits 100 (the init interface changed). The deploy waits until the
     * host is back, checks that it runs the new closure and runs the health checks; a failure
     * reboots it into the previous generation. Without it such a switch fails, and the host stays
     * on its previous generation. Default false.
     */
    reboot?: pulumi.Input<boolean>;
    /**
     * Reboot after a switch exactly when the new system's kernel, initrd or kernel modules differ
     * from the ones the host booted (`/run/booted-system` against `/run/current-system`), with the
     * wait, health checks and rollback of `reboot`; a change that keeps them does not reboot.
     * Default false.
     */
    rebootOnKernelChange?: pulumi.Input<boolean>;
    /** Seconds a rebooting host may take to answer again; default 600. */
    rebootTimeoutSeconds?: pulumi.Input<number>;
    /**
     * Files written on the host, by absolute path (or a bare name, which lands in /run/keys): only
     * the ones that differ from the host are sent; a file removed from here is removed from the host;
     * a failed deploy puts the previous versions back with the previous system.
     */
    files?: Record<string, HostFileArgs>;
    /**
     * Where the system is built: "deployer" (default; the deployer's Nix, which sends builds to the
     * remote builders its `builders` setting names) or "target" (the deployer evaluates and sends
     * the derivation; the host builds it, fetching what its substituters and `binaryCaches` have).
     * A failed build leaves the host's running system untouched.
     */
    build?: pulumi.Input<"deployer" | "target">;
    /**
     * Binary caches the host fetches the paths it lacks from, trusting their keys for this deploy
     * only; the deployer sends only what no cache has.
     */
    binaryCaches?: pulumi.Input<BinaryCacheArgs[]>;
    /**
     * A Nix secret key (`nix key generate-secret`) the deployer signs the closure it built with
     * before sending it, so that a host that requires signatures and trusts the key's public half
     * accepts it. Always stored as a Pulumi secret. Implies `checkSignatures`.
     */
    signingKey?: pulumi.Input<string>;
    /**
     * Send through the host's Nix daemon, which checks every path's signature against the keys the
     * host trusts and refuses the deploy before activation if one is unsigned or wrongly signed.
     * Default: true with a `signingKey`, false otherwise (the host takes the paths as from a trusted user).
     */
    checkSignatures?: pulumi.Input<boolean>;
}

/**
 * Validates the inputs that are plain values already, so that a mistake fails in the constructor,
 * at the user's line. Inputs that are outputs of other resources are checked when they resolve,
 * and all of them again by the provider's check before anything is deployed.
 */
function validateKnownInputs(name: string, args: NixosSystemArgs): void {
    for (const [field, schema] of Object.entries(inputSchemas(SYSTEM)).filter(([field]) => field !== "files")) {
        const value = args[field as keyof NixosSystemArgs];
        if (value === undefined || notKnownYet(value)) continue;
        parseInput(schema, value, `NixosSystem ${name}: ${field}`);
    }
    // Contents are secrets (usually outputs): the paths and settings are checked here, and the
    // contents too once known, by the provider's check.
    const files = Object.fromEntries(Object.entries(args.files ?? {}).map(([path, file]) =>
        [path, { ...file, content: notKnownYet(file?.content) ? "" : file?.content }]));
    parseInput(hostFilesSchema, files, `NixosSystem ${name}: files`);
}

/** Whether a value is, or holds, an output or promise: checked by the provider once known. */
function notKnownYet(value: unknown): boolean {
    if (pulumi.Output.isInstance(value) || value instanceof Promise) return true;
    return typeof value === "object" && value !== null && Object.values(value).some(notKnownYet);
}

/** The files input with every content a secret. */
function secretFiles(files: Record<string, HostFileArgs> = {}): Record<string, HostFileArgs> {
    return Object.fromEntries(Object.entries(files).map(([path, file]) => [path, { ...file, content: pulumi.secret(file.content) }]));
}

/**
 * One host's NixOS system (`nixos:index:System` of the nixos provider plugin). Its identity is
 * its closure: the store path of the configuration's system.build.toplevel, evaluated (not built)
 * by the provider's check, so `pulumi preview --diff` shows the old and new closure and the
 * package versions that change, without touching the host.
 *
 * An update builds the closure, copies the paths the host lacks, sets the system profile, runs
 * switch-to-configuration and the health checks, and returns the host to the generation it ran
 * before (by number) if any of that fails. Refresh reads what the host runs. Delete leaves the
 * host running its system.
 */
export class NixosSystem extends pulumi.CustomResource {
    /** The store path of the system the host runs (as of the last up or refresh). */
    declare readonly closure: pulumi.Output<string>;
    /** The system profile generation the host runs. */
    declare readonly generation: pulumi.Output<number | undefined>;
    /** pname → version of the system's packages. */
    declare readonly packages: pulumi.Output<Record<string, string>>;
    /** The system's kernel version and NixOS release, when it has them. */
    declare readonly kernel: pulumi.Output<string | undefined>;
    declare readonly nixosRelease: pulumi.Output<string | undefined>;
    declare readonly address: pulumi.Output<string>;

    constructor(name: string, args: NixosSystemArgs, opts?: pulumi.CustomResourceOptions) {
        validateKnownInputs(name, args);
        const inputs: Record<string, unknown> = {
            ...args,
            privateKey: pulumi.secret(args.privateKey),
            signingKey: args.signingKey === undefined ? undefined : pulumi.secret(args.signingKey),
            sudoPassword: args.sudoPassword === undefined ? undefined : pulumi.secret(args.sudoPassword),
            jumpHosts: args.jumpHosts === undefined ? undefined : pulumi.secret(args.jumpHosts),
            files: secretFiles(args.files),
        };
        // @pulumi/pulumi makes four promises for every property it is given, each capturing a stack
        // trace (through ts-node's source maps): 7 of the 17 ms a 50-host fleet program spent per
        // host. So only the inputs set and the outputs this class exposes are given.
        const given = Object.fromEntries(Object.entries(inputs).filter(([, value]) => value !== undefined));
        super(SYSTEM.token, name, {
            ...given, closure: undefined, packages: undefined, kernel: undefined, nixosRelease: undefined, generation: undefined,
        }, { ...PLUGIN_OPTIONS, ...opts, additionalSecretOutputs: ["fileDigestKey", "fileDigests"] });
    }
}
