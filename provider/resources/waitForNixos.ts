// nixos:index:WaitForNixos: connects again and again, with the pinned host key, until the host
// runs a NixOS system (/run/current-system with its switch-to-configuration), or the time is up.
import { addressWithPort, connectionSchema, parseInput } from "../../schema/inputs";
import { SshConnectionError, withSsh } from "../../deploy/transport/ssh";
import { WAIT_FOR_NIXOS } from "../../schema/resources";
import { ResourceHandler } from "../server";
import { diffProperties, validateInputs } from "./inputs";

const RUNS_NIXOS = "test -x /run/current-system/bin/switch-to-configuration && readlink -f /run/current-system";

export class BootTimeoutError extends Error {
    constructor(host: string, seconds: number, lastSeen: string, consoleHint: string) {
        super(`${host} did not come up as NixOS within ${seconds} s (last seen: ${lastSeen}). ` +
            `nixos-infect runs at first boot and reboots the machine; look at its console output: ${consoleHint}`);
        this.name = "BootTimeoutError";
    }
}

/** Resolves after `ms`, or at once when the deployment is cancelled. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
        }, { once: true });
    });
}

export const waitForNixos: ResourceHandler = {
    definition: WAIT_FOR_NIXOS,

    async check(_context, news) {
        return validateInputs(WAIT_FOR_NIXOS, news);
    },

    /** A new machine (another address or host key) is waited for again; other changes are not. */
    async diff(_context, olds, news) {
        const detailedDiff = diffProperties(olds, news, Object.keys(WAIT_FOR_NIXOS.inputs).filter((name) => name !== "privateKey"));
        return { detailedDiff, replaces: Object.keys(diffProperties(olds, news, ["address", "port", "hostPublicKey"])) };
    },

    async create(context, inputs) {
        const { address, port, user, privateKey, hostPublicKey, jumpHosts } = inputs;
        const [timeoutSeconds, pollSeconds] = [inputs.timeoutSeconds as number, inputs.pollSeconds as number];
        const connection = parseInput(connectionSchema, {
            address, port, user, privateKey, hostPublicKey, jumpHosts, connectTimeoutSeconds: Math.min(10, pollSeconds * 2),
        }, `WaitForNixos ${context.name}`);
        const host = addressWithPort(connection.address, connection.port);
        const started = Date.now();
        let lastSeen = "no answer yet";
        let lastReport = started;
        for (;;) {
            const system = await withSsh(connection, async (ssh) => {
                const result = await ssh.run(["sh", "-c", RUNS_NIXOS], { timeoutMs: 30_000 });
                lastSeen = result.code === 0 ? "NixOS" : "reachable, not NixOS yet";
                return result.code === 0 ? result.stdout.trim() : undefined;
            }, { carriesSecrets: false }).catch((error: Error) => {
                // While a machine boots, sshd may briefly serve a key of its own before the pinned
                // one is installed (the NixOS AMI does). ssh refuses such a host before sending
                // anything, so the wait goes on; if the key never matches, the timeout says so.
                if (!(error instanceof SshConnectionError)) throw error;
                lastSeen = error.reason;
                return undefined;
            });
            if (system) {
                context.log(`${host} runs NixOS (${system}) after ${Math.round((Date.now() - started) / 1000)} s`);
                return { id: host, outputs: { ...inputs, initialSystem: system } };
            }
            const elapsed = (Date.now() - started) / 1000;
            if (context.signal.aborted) throw new Error(`waiting for ${host} to run NixOS was cancelled after ${Math.round(elapsed)} s (last seen: ${lastSeen})`);
            if (elapsed >= timeoutSeconds) throw new BootTimeoutError(host, timeoutSeconds, lastSeen, inputs.consoleHint as string);
            if (Date.now() - lastReport >= 30_000) {
                context.log(`waiting for ${host} to boot NixOS (${Math.round(elapsed)} s; ${lastSeen})`);
                lastReport = Date.now();
            }
            await pause(pollSeconds * 1000, context.signal);
        }
    },
};
