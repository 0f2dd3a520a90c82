// A deploy as a pipeline of stages: build → probe → copy → activate → verify, and on any failure
// after the host was touched, roll back to the generation recorded by the probe. Plain inputs,
// plain outputs: no Pulumi here, so the pipeline runs (and is tested) on its own.
import { Action, HealthChecks } from "../schema";
import { activate, activatesNow, HostSystemState, probeHost, rollBack, setsProfile } from "./activate";
import { buildSystem, SystemSource } from "./build";
import { copyMissing, formatBytes, listClosure, planCopy } from "./copy";
import { Host } from "./host";
import { runHealthChecks } from "./verify";

export type Stage = "build" | "probe" | "copy" | "activate" | "verify";

export interface DeployRequest {
    /** The resource's name, for messages. */
    name: string;
    host: Host;
    source: SystemSource;
    /** The closure the program evaluated (the resource's identity). */
    closure: string;
    action: Action;
    healthChecks: HealthChecks;
    substituteOnDestination: boolean;
    log: (message: string) => void;
}

export interface DeployResult {
    closure: string;
    /** The system profile's generation after the deploy (undefined for `test` on a host with none). */
    generation?: number;
    /** The generation the host was on before. */
    previousGeneration?: number;
    copiedPaths: number;
    copiedBytes: number;
    /** True when the host already ran the closure and nothing was done. */
    unchanged: boolean;
    rebootRequired: boolean;
}

/** A failed deploy: names the host, the stage, the closure and where the host is now. */
export class DeployError extends Error {
    constructor(
        readonly host: string,
        readonly stage: Stage,
        readonly closure: string,
        readonly cause: Error,
        /** Where the host is now, in words ("rolled back to generation 3 (…)"). */
        readonly outcome: string,
        /** The generation the host returned to, when it did. */
        readonly returnedToGeneration?: number,
    ) {
        super(`deploying ${closure} to ${host} failed at ${stage}: ${cause.message}\n${outcome}`);
        this.name = "DeployError";
    }
}

async function inStage<T>(request: DeployRequest, stage: Stage, outcome: string, work: () => Promise<T>): Promise<T> {
    try {
        return await work();
    } catch (error) {
        throw new DeployError(request.host.name, stage, request.closure, asError(error), outcome);
    }
}

function asError(error: unknown): Error {
    return error instanceof Error ? error : new Error(String(error));
}

/** Whether the host already runs (and, unless `test`, boots) the closure. */
export function alreadyDeployed(state: HostSystemState, closure: string, action: Action): boolean {
    const running = state.current === closure;
    const booting = state.generationClosure === closure;
    if (action === "test") return running;
    if (action === "boot") return booting;
    return running && booting;
}

export async function deploySystem(request: DeployRequest): Promise<DeployResult> {
    const { host, closure, action, log } = request;
    const untouched = "the host was not changed";

    log(`building ${closure}`);
    await inStage(request, "build", untouched, () => buildSystem(request.source, closure));
    const closureInfo = await inStage(request, "build", untouched, () => listClosure(closure));

    const before = await inStage(request, "probe", untouched, () => probeHost(host, closureInfo.map((info) => info.path)));
    if (alreadyDeployed(before, closure, action)) {
        log(`${host.name} already runs ${closure}`);
        return { closure, generation: before.generation, previousGeneration: before.generation, copiedPaths: 0, copiedBytes: 0, unchanged: true, rebootRequired: false };
    }

    const plan = planCopy(closureInfo, before.missing);
    log(`copying ${plan.missing.length} of ${plan.closure.length} paths (${formatBytes(plan.missingBytes)}) to ${host.name}`);
    await inStage(request, "copy", untouched, () => copyMissing(host, closure, plan, request.substituteOnDestination));

    const previous = { generation: before.generation, closure: setsProfile(action) ? before.generationClosure : before.current };
    const returnBack = async (stage: Stage, error: unknown): Promise<never> => {
        const cause = asError(error);
        log(`${stage} failed on ${host.name}; returning to ${previous.generation !== undefined ? `generation ${previous.generation}` : "the previous system"}`);
        let outcome: string;
        try {
            outcome = await rollBack(host, previous, action);
        } catch (rollbackError) {
            outcome = `the rollback failed too, the host may be on the new system: ${asError(rollbackError).message}`;
            throw new DeployError(host.name, stage, closure, cause, outcome);
        }
        throw new DeployError(host.name, stage, closure, cause, outcome, previous.generation);
    };

    log(`activating ${closure} on ${host.name} (${action})`);
    const activation = await activate(host, closure, action).catch((error) => returnBack("activate", error));
    if (activation.rebootRequired) log(`${host.name} needs a reboot to finish the switch`);
    if (activatesNow(action)) {
        await runHealthChecks(host, request.healthChecks, log).catch((error) => returnBack("verify", error));
    }
    log(`${host.name} runs ${closure}${activation.generation !== undefined ? ` as generation ${activation.generation}` : ""}`);
    return {
        closure,
        generation: activation.generation ?? before.generation,
        previousGeneration: before.generation,
        copiedPaths: plan.missing.length,
        copiedBytes: plan.missingBytes,
        unchanged: false,
        rebootRequired: activation.rebootRequired,
    };
}
