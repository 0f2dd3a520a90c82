// Provider of SshKeyPair: the key is generated once, when the resource is created, and kept in the
// state as a secret; it changes only when the resource is replaced.
import type * as pulumi from "@pulumi/pulumi";
import { generateEd25519KeyPair } from "./sshKeys";

interface SshKeyPairState {
    comment: string;
    privateKey?: string;
    publicKey?: string;
}

export async function create(inputs: SshKeyPairState): Promise<pulumi.dynamic.CreateResult> {
    const pair = generateEd25519KeyPair(inputs.comment);
    return { id: pair.publicKey.split(" ")[1].slice(-16), outs: { comment: inputs.comment, ...pair } };
}

export async function diff(_id: string, olds: SshKeyPairState, news: SshKeyPairState): Promise<pulumi.dynamic.DiffResult> {
    const changed = olds.comment !== news.comment;
    return { changes: changed, replaces: changed ? ["comment"] : [] };
}
