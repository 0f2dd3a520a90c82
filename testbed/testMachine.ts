// A local "cloud machine" for the tests and the example's local mode (testbed:index:Machine, served
// by the testbed's plugin: see machineResource.ts).
import * as pulumi from "@pulumi/pulumi";
import { PACKAGE_VERSION } from "../schema/resources";
import { MACHINE } from "./machineResource";

export interface TestMachineArgs {
    /** The host key the machine's sshd serves from its first boot (as cloud-init installs it). */
    hostPrivateKey: pulumi.Input<string>;
    hostPublicKey: pulumi.Input<string>;
    /** The deployer's public key, authorized for root. */
    authorizedKey: pulumi.Input<string>;
    /** The flake (relative to the project, or absolute) and configuration of the first NixOS system the stand-in infection installs. */
    firstSystemFlake: pulumi.Input<string>;
    /** "" for a machine that never becomes NixOS. */
    firstSystemConfiguration: pulumi.Input<string>;
    /** Seconds after boot at which the stand-in infection switches the machine to NixOS. */
    infectAfterSeconds: pulumi.Input<number>;
    /** Where the machine's folder is made; default one per project and stack under the temporary folder. */
    baseDir?: pulumi.Input<string>;
}

/**
 * A test host that boots Debian-like (sshd with the host key the program made, no NixOS system)
 * and becomes NixOS when a stand-in nixos-infect runs on it a few seconds later (the real one
 * cannot run without the internet). Deleting it stops the machine.
 */
export class TestMachine extends pulumi.CustomResource {
    declare readonly address: pulumi.Output<string>;
    declare readonly namespace: pulumi.Output<string>;

    constructor(name: string, args: TestMachineArgs, opts?: pulumi.CustomResourceOptions) {
        super(MACHINE.token, name, { ...args, hostPrivateKey: pulumi.secret(args.hostPrivateKey), address: undefined, namespace: undefined },
            { version: PACKAGE_VERSION, ...opts, additionalSecretOutputs: ["hostPrivateKey"] });
    }
}
