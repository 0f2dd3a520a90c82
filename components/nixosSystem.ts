import * as pulumi from "@pulumi/pulumi";
import { inputSchemas, PACKAGE_VERSION, SYSTEM } from "../provider/schema";
import { Action, parseInput } from "./schema";

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

export interface NixosSystemArgs {
    /** Host name or IP address the deployer reaches the host at. */
    address: pulumi.Input<string>;
    /** SSH port; default 22. */
    port?: pulumi.Input<number>;
    /**
     * SSH user; default "root". Another user must be able to run sudo without a password and be a
     * trusted Nix user (to copy unsigned paths): the profile, the switch and the rollback run as root through sudo.
     */
    user?: pulumi.Input<string>;
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
    /** Seconds a rebooting host may take to answer again; default 600. */
    rebootTimeoutSeconds?: pulumi.Input<number>;
}

/**
 * Validates the inputs that are plain values already, so that a mistake fails in the constructor,
 * at the user's line. Inputs that are outputs of other resources are checked when they resolve,
 * and all of them again by the provider's check before anything is deployed.
 */
function validateKnownInputs(name: string, args: NixosSystemArgs): void {
    for (const [field, schema] of Object.entries(inputSchemas(SYSTEM))) {
        const value = args[field as keyof NixosSystemArgs];
        if (value === undefined || pulumi.Output.isInstance(value) || value instanceof Promise) continue;
        parseInput(schema, value, `NixosSystem ${name}: ${field}`);
    }
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
        super(SYSTEM.token, name, {
            ...args,
            privateKey: pulumi.secret(args.privateKey),
            closure: undefined, derivation: undefined, packages: undefined, kernel: undefined, nixosRelease: undefined, generation: undefined,
        }, { version: PACKAGE_VERSION, ...opts, additionalSecretOutputs: ["privateKey"] });
    }
}
