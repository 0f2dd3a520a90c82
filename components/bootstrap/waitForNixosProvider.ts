// Provider of WaitForNixos: connects again and again, with the pinned host key, until the host
// runs a NixOS system (/run/current-system with its switch-to-configuration), or the time is up.
import type * as pulumi from "@pulumi/pulumi";
import * as log from "@pulumi/pulumi/log";
import { connectionSchema, parseInput } from "../schema";
import { SshConnectionError, withSsh } from "../transport/ssh";

interface WaitForNixosState {
    name: string;
    address: string;
    port: number;
    user: string;
    privateKey: string;
    hostPublicKey: string;
    timeoutSeconds: number;
    pollSeconds: number;
    /** Where to look when the host does not come up (e.g. the cloud's console output command). */
    consoleHint: string;
    /** Output: the system the host ran when it was first seen as NixOS. */
    initialSystem?: string;
}

const RUNS_NIXOS = 'test -x /run/current-system/bin/switch-to-configuration && readlink -f /run/current-system';

export class BootTimeoutError extends Error {
    constructor(host: string, seconds: number, lastSeen: string, consoleHint: string) {
        super(`${host} did not come up as NixOS within ${seconds} s (last seen: ${lastSeen}). ` +
            `nixos-infect runs at first boot and reboots the machine; look at its console output: ${consoleHint}`);
        this.name = "BootTimeoutError";
    }
}

export async function create(inputs: WaitForNixosState): Promise<pulumi.dynamic.CreateResult> {
    const connection = parseInput(connectionSchema, {
        address: inputs.address, port: inputs.port, user: inputs.user, privateKey: inputs.privateKey,
        hostPublicKey: inputs.hostPublicKey, connectTimeoutSeconds: Math.min(10, inputs.pollSeconds * 2),
    }, `WaitForNixos ${inputs.name}`);
    const host = `${inputs.address}:${inputs.port}`;
    const started = Date.now();
    let lastSeen = "no answer yet";
    let lastReport = started;
    for (;;) {
        const system = await withSsh(connection, async (ssh) => {
            const result = await ssh.run(["sh", "-c", RUNS_NIXOS], { timeoutMs: 30_000 });
            lastSeen = result.code === 0 ? "NixOS" : "reachable, not NixOS yet";
            return result.code === 0 ? result.stdout.trim() : undefined;
        }).catch((error: Error) => {
            // While a machine boots, sshd may briefly serve a key of its own before the pinned one
            // is installed (the NixOS AMI does). ssh refuses such a host before sending anything,
            // so the wait goes on; if the key never matches, the timeout error says so.
            if (!(error instanceof SshConnectionError)) throw error;
            lastSeen = error.reason;
            return undefined;
        });
        if (system) {
            log.info(`[${inputs.name}] ${host} runs NixOS (${system}) after ${Math.round((Date.now() - started) / 1000)} s`);
            return { id: host, outs: { ...inputs, initialSystem: system } };
        }
        const elapsed = (Date.now() - started) / 1000;
        if (elapsed >= inputs.timeoutSeconds) throw new BootTimeoutError(host, inputs.timeoutSeconds, lastSeen, inputs.consoleHint);
        if (Date.now() - lastReport >= 30_000) {
            log.info(`[${inputs.name}] waiting for ${host} to boot NixOS (${Math.round(elapsed)} s; ${lastSeen})`);
            lastReport = Date.now();
        }
        await new Promise((resolve) => setTimeout(resolve, inputs.pollSeconds * 1000));
    }
}

/** A new machine (another address or host key) is waited for again; other changes are not. */
export async function diff(_id: string, olds: WaitForNixosState, news: WaitForNixosState): Promise<pulumi.dynamic.DiffResult> {
    const replaces = (["address", "port", "hostPublicKey"] as const).filter((key) => olds[key] !== news[key]);
    return { changes: replaces.length > 0, replaces };
}
