// testbed:index:Machine: a local "cloud machine" for the tests and the example's local mode, served
// by the testbed's own small provider plugin (testbed/pluginMain.ts) so that a stack of local
// machines travels like any other: no code and no path of a checkout in its state. It starts a
// test host that boots Debian-like (sshd with the host key the program made, no NixOS system),
// and a stand-in nixos-infect that installs the first NixOS system and reboots into it (the real
// one cannot run without the internet). Deleting it stops the machine.
import * as path from "node:path";
import { z } from "zod";
import { evaluateConfigurations, resolveFlakeReference } from "../deploy/evaluate";
import { configurationNameSchema, flakeSchema, hostPublicKeySchema, storePathSchema } from "../schema/inputs";
import { nix, realiseDerivation } from "../deploy/transport/nix";
import { projectFolder } from "../provider/resources/system";
import { diffProperties, validateInputs } from "../provider/resources/inputs";
import { ResourceDefinition } from "../schema/resources";
import { OperationContext, ResourceHandler } from "../provider/server";
import { localMachinesFolder, removeTestHost, startTestHost } from "./testHosts";

export const MACHINE: ResourceDefinition = {
    token: "testbed:index:Machine",
    description: "A NixOS-shaped test host on this computer that boots Debian-like and becomes NixOS when a stand-in nixos-infect runs.",
    inputs: {
        hostPrivateKey: { schema: z.string().min(1), required: true, secret: true, description: "The host key the machine's sshd serves from its first boot." },
        hostPublicKey: { schema: hostPublicKeySchema, required: true, description: "Its public half." },
        authorizedKey: { schema: hostPublicKeySchema, required: true, description: "The deployer's public key, authorized for root." },
        firstSystemFlake: { schema: flakeSchema, required: true, description: "The flake of the first NixOS system (relative to the project, as in the state)." },
        firstSystemConfiguration: {
            schema: z.union([z.literal(""), configurationNameSchema]), required: true,
            description: "Its configuration; \"\" for a machine that never becomes NixOS.",
        },
        infectAfterSeconds: { schema: z.number().int().min(0).max(600), required: true, description: "Seconds after boot at which the stand-in infection runs." },
        baseDir: {
            schema: z.string().regex(/^\/[^\0\n]*$/, "must be an absolute folder"),
            description: "Where the machine's folder is made; default one per project and stack under the temporary folder.",
        },
    },
    outputs: {
        address: { spec: { type: "string" }, required: true, description: "The machine's address." },
        namespace: { spec: { type: "string" }, required: true, description: "Its network namespace on this computer." },
    },
};

// The stand-in for nixos-infect, run inside the Debian-like machine as a unit: make the first
// system the one that boots, and reboot into it (as nixos-infect ends).
const STAND_IN_INFECTION = (afterSeconds: number, system: string) =>
    `systemd-run --quiet --unit=nixos-infect sh -c 'sleep ${afterSeconds} && nix-env -p /nix/var/nix/profiles/system --set ${system} && ${system}/bin/switch-to-configuration boot && systemctl reboot'`;

/** The machine's folder: in baseDir, or in the stack's folder of local machines (from the URN). */
function machineFolder(context: OperationContext, baseDir: unknown): string {
    const [stack, project] = context.urn.replace(/^urn:pulumi:/, "").split("::");
    return path.join(typeof baseDir === "string" ? baseDir : localMachinesFolder(project, stack), context.name);
}

export const machine: ResourceHandler = {
    definition: MACHINE,

    async check(_context, news) {
        return validateInputs(MACHINE, news);
    },

    async diff(_context, olds, news) {
        const detailedDiff = diffProperties(olds, news, Object.keys(MACHINE.inputs));
        return { detailedDiff, replaces: Object.keys(detailedDiff) };
    },

    async create(context, inputs) {
        const name = context.name;
        const host = await startTestHost({
            baseDir: path.dirname(machineFolder(context, inputs.baseDir)),
            name,
            authorizedKey: inputs.authorizedKey as string,
            hostKey: { privateKey: inputs.hostPrivateKey as string, publicKey: inputs.hostPublicKey as string },
            // In the tests, the test process owns the machine (the plugin ends after each
            // operation); elsewhere (the example) it lives until the stack destroys it (PID 1 never dies).
            ownerPid: Number(process.env.PNX_TEST_OWNER_PID ?? 1),
        });
        const configuration = inputs.firstSystemConfiguration as string;
        if (configuration) {
            // As if nixos-infect had built it: the first system goes into the machine's own store.
            const flake = resolveFlakeReference(inputs.firstSystemFlake as string, projectFolder());
            const { [configuration]: first } = await evaluateConfigurations(flake, [configuration]);
            const [firstSystem] = await realiseDerivation(first.derivation);
            await nix(["copy", "--no-check-sigs", "--to", `local?root=${host.dir}`, firstSystem]);
            host.shell(STAND_IN_INFECTION(inputs.infectAfterSeconds as number, storePathSchema.parse(firstSystem)));
        }
        context.log(`machine ${name} boots Debian-like at ${host.address}${configuration ? `; nixos-infect (stand-in) runs in ${inputs.infectAfterSeconds} s` : ""}`);
        return { id: host.namespace, outputs: { ...inputs, address: host.address, namespace: host.namespace } };
    },

    async delete(context, _id, state) {
        removeTestHost(state.namespace as string, machineFolder(context, state.baseDir));
    },
};
