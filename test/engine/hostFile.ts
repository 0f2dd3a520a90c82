// A test-only dynamic resource: a file on a test host, written over the project's SSH transport.
// The engine smoke test uses it to prove the engine, dynamic providers and SSH work together.
import * as pulumi from "@pulumi/pulumi";
import { moduleProvider } from "./moduleProvider";

export interface HostFileArgs {
    address: pulumi.Input<string>;
    hostPublicKey: pulumi.Input<string>;
    privateKey: pulumi.Input<string>;
    path: pulumi.Input<string>;
    content: pulumi.Input<string>;
}

export class HostFile extends pulumi.dynamic.Resource {
    declare readonly content: pulumi.Output<string>;
    declare readonly providerPid: pulumi.Output<number>;

    constructor(name: string, args: HostFileArgs, opts?: pulumi.CustomResourceOptions) {
        super(moduleProvider(require.resolve("./hostFileProvider")), name, { ...args, providerPid: undefined },
            { ...opts, additionalSecretOutputs: ["privateKey"] });
    }
}
