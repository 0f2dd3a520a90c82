import { spawn } from "node:child_process";
import type * as pulumi from "@pulumi/pulumi";
import { evaluateConfigurations } from "../components/deploy/evaluate";
import { nix, realiseDerivation } from "../components/transport/nix";
import { removeTestHost, startTestHost } from "./testHosts";

interface TestMachineState {
    name: string;
    hostPrivateKey: string;
    hostPublicKey: string;
    authorizedKey: string;
    firstSystemFlake: string;
    firstSystemConfiguration: string;
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
        // In the tests, the test process owns the machine (this provider process ends after each
        // operation); elsewhere (the example) it lives until the stack destroys it (PID 1 never dies).
        ownerPid: Number(process.env.PNX_TEST_OWNER_PID ?? 1),
    });
    if (inputs.firstSystemConfiguration) {
        // As if nixos-infect had built it: the first system goes into the machine's own store.
        const { [inputs.firstSystemConfiguration]: first } = await evaluateConfigurations(inputs.firstSystemFlake, [inputs.firstSystemConfiguration]);
        const [firstSystem] = await realiseDerivation(first.derivation);
        await nix(["copy", "--no-check-sigs", "--to", `local?root=${host.dir}`, firstSystem]);
        spawn("nsenter", ["-t", String(host.pid), "-n", "-m", "-u", "--", "sh", "-c", STAND_IN_INFECTION, "infect",
            String(inputs.infectAfterSeconds), firstSystem], { detached: true, stdio: "ignore" }).unref();
    }
    return { id: host.namespace, outs: { ...inputs, address: host.address, namespace: host.namespace, dir: host.dir } };
}

export async function remove(_id: string, props: TestMachineState): Promise<void> {
    if (props.namespace && props.dir) removeTestHost(props.namespace, props.dir);
}
export { remove as delete };
