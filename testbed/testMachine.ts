// A local "cloud machine" for the tests and the example's local mode: a test host that boots Debian-like (sshd with the host key the
// program made, no NixOS system) and becomes NixOS-like when a stand-in nixos-infect runs on it a
// few seconds later (the real one cannot run without the internet). Deleting it stops the host.
import * as pulumi from "@pulumi/pulumi";
import { moduleProvider } from "../components/provider/moduleProvider";

export interface TestMachineArgs {
    /** The host key the machine's sshd serves from its first boot (as cloud-init installs it). */
    hostPrivateKey: pulumi.Input<string>;
    hostPublicKey: pulumi.Input<string>;
    /** The deployer's public key, authorized for root. */
    authorizedKey: pulumi.Input<string>;
    /** The flake and configuration of the first NixOS system the stand-in infection installs. */
    firstSystemFlake: pulumi.Input<string>;
    /** "" for a machine that never becomes NixOS. */
    firstSystemConfiguration: pulumi.Input<string>;
    /** Seconds after boot at which the stand-in infection switches the machine to NixOS. */
    infectAfterSeconds: pulumi.Input<number>;
    /** Where the machine's folder is made. */
    baseDir: pulumi.Input<string>;
}

export class TestMachine extends pulumi.dynamic.Resource {
    declare readonly address: pulumi.Output<string>;
    declare readonly namespace: pulumi.Output<string>;

    constructor(name: string, args: TestMachineArgs, opts?: pulumi.CustomResourceOptions) {
        super(moduleProvider(require.resolve("./testMachineProvider")), name,
            { name, ...args, hostPrivateKey: pulumi.secret(args.hostPrivateKey), address: undefined, namespace: undefined, dir: undefined },
            { ...opts, additionalSecretOutputs: ["hostPrivateKey"] }, "test", "Machine");
    }
}
