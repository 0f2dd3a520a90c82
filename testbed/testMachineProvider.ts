import type * as pulumi from "@pulumi/pulumi";
import { evaluateConfigurations } from "../components/deploy/evaluate";
import { storePathSchema } from "../components/schema";
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

// The stand-in for nixos-infect, run inside the Debian-like machine as a unit: make the first
// system the one that boots, and reboot into it (as nixos-infect ends).
const STAND_IN_INFECTION = (afterSeconds: number, system: string) =>
    `systemd-run --quiet --unit=nixos-infect sh -c 'sleep ${afterSeconds} && nix-env -p /nix/var/nix/profiles/system --set ${system} && systemctl reboot'`;

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
        host.shell(STAND_IN_INFECTION(inputs.infectAfterSeconds, storePathSchema.parse(firstSystem)));
    }
    return { id: host.namespace, outs: { ...inputs, address: host.address, namespace: host.namespace, dir: host.dir } };
}

export async function remove(_id: string, props: TestMachineState): Promise<void> {
    if (props.namespace && props.dir) removeTestHost(props.namespace, props.dir);
}
export { remove as delete };
