import type * as pulumi from "@pulumi/pulumi";
import { SshTarget, withSsh } from "../../deploy/transport/ssh";

interface HostFileState {
    address: string;
    hostPublicKey: string;
    privateKey: string;
    path: string;
    content: string;
    providerPid?: number;
}

const target = (state: HostFileState): SshTarget => ({
    address: state.address, port: 22, user: "root", privateKey: state.privateKey, hostPublicKey: state.hostPublicKey,
});

const write = (state: HostFileState) =>
    withSsh(target(state), (ssh) => ssh.check("write file", ["sh", "-c", 'cat > "$1"', "write", state.path], { input: state.content }));

/** Compares the host's file as last seen (olds are outputs, refreshed by read) with the program's. */
export async function diff(_id: string, olds: HostFileState, news: HostFileState): Promise<pulumi.dynamic.DiffResult> {
    return { changes: olds.content !== news.content || olds.path !== news.path || olds.address !== news.address };
}

export async function create(inputs: HostFileState): Promise<pulumi.dynamic.CreateResult> {
    await write(inputs);
    return { id: `${inputs.address}:${inputs.path}`, outs: { ...inputs, providerPid: process.pid } };
}

export async function update(_id: string, _olds: HostFileState, news: HostFileState): Promise<pulumi.dynamic.UpdateResult> {
    await write(news);
    return { outs: { ...news, providerPid: process.pid } };
}

export async function read(id: string, props: HostFileState): Promise<pulumi.dynamic.ReadResult> {
    const content = await withSsh(target(props), (ssh) => ssh.check("read file", ["cat", props.path]));
    return { id, props: { ...props, content } };
}

export async function remove(_id: string, props: HostFileState): Promise<void> {
    await withSsh(target(props), (ssh) => ssh.check("remove file", ["rm", "-f", props.path]));
}
export { remove as delete };
