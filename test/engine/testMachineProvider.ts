import { spawn } from "node:child_process";
import type * as pulumi from "@pulumi/pulumi";
import { nix } from "../../components/transport/nix";
import { removeTestHost, startTestHost } from "../hosts/testHosts";

interface TestMachineState {
    name: string;
    hostPrivateKey: string;
    hostPublicKey: string;
    authorizedKey: string;
    firstSystem: string;
    infectAfterSeconds: number;
    baseDir: string;
    address?: string;
    namespace?: string;
    dir?: string;
}

// The stand-in for nixos-infect, run inside the machine: make the first system current.
const STAND_IN_INFECTION = 'sleep "$1" && nix-env -p /nix/var/nix/profiles/system --set "$2" && "$2/bin/switch-to-configuration" switch';

export async function create(inputs: TestMachineState): Promise<pulumi.dynamic.CreateResult> {
    const host = await startTestHost({
        baseDir: inputs.baseDir,
        name: inputs.name,
        authorizedKey: inputs.authorizedKey,
        hostKey: { privateKey: inputs.hostPrivateKey, publicKey: inputs.hostPublicKey },
        // The test process owns the machine: this provider process ends after each operation.
        ownerPid: Number(process.env.PNX_TEST_OWNER_PID ?? process.pid),
    });
    if (inputs.firstSystem) {
        // As if nixos-infect had downloaded it: the first system goes into the machine's own store.
        await nix(["copy", "--no-check-sigs", "--to", `local?root=${host.dir}`, inputs.firstSystem]);
        spawn("nsenter", ["-t", String(host.pid), "-n", "-m", "-u", "--", "sh", "-c", STAND_IN_INFECTION, "infect",
            String(inputs.infectAfterSeconds), inputs.firstSystem], { detached: true, stdio: "ignore" }).unref();
    }
    return { id: host.namespace, outs: { ...inputs, address: host.address, namespace: host.namespace, dir: host.dir } };
}

export async function remove(_id: string, props: TestMachineState): Promise<void> {
    if (props.namespace && props.dir) removeTestHost(props.namespace, props.dir);
}
export { remove as delete };
