// A deploy as a pipeline of stages: build → probe → copy → activate → verify, and on any failure
// after the host was touched, roll back to the generation recorded by the probe. Plain inputs,
// plain outputs: no Pulumi here, so the pipeline runs (and is tested) on its own.
import { Action, HealthChecks } from "../schema";
import { Activation, ActivationNotStartedError, activatesNow, HostSystemState, probeHost, setsProfile } from "./activate";
import { buildSystem, SystemSource } from "./build";
import { copyMissing, formatBytes, listClosure, planCopy } from "./copy";
import { Host } from "./host";
import { runHealthChecks } from "./verify";

export type Stage = "build" | "probe" | "copy" | "activate" | "verify" | "confirm";

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
    /** Seconds the host waits for the confirmation before it rolls itself back. */
    confirmTimeoutSeconds: number;
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
    await inStage(request, "build", untouched, () => buildSystem(request.source));
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
    const activation = new Activation(host, previous, request.confirmTimeoutSeconds);
    log(`switching ${host.name} to ${closure} (${action}); it returns to ` +
        `${previous.generation !== undefined ? `generation ${previous.generation}` : "its previous system"} by itself unless confirmed within ${request.confirmTimeoutSeconds} s`);
    let stage: Stage = "activate";
    const switchVerifyConfirm = async () => {
        await activation.start(closure, action);
        const switched = await activation.switched();
        if (switched.rebootRequired) log(`${host.name} needs a reboot to finish the switch`);
        stage = "verify";
        if (activatesNow(action)) await runHealthChecks(host, request.healthChecks, log);
        stage = "confirm";
        await activation.confirm();
        return switched;
    };
    const activationResult = await switchVerifyConfirm().catch(async (error) => {
        if (error instanceof ActivationNotStartedError) throw new DeployError(host.name, stage, closure, error, untouched);
        log(`${stage} failed on ${host.name}; rolling back`);
        const { outcome, returnedTo } = await activation.rollBack();
        throw new DeployError(host.name, stage, closure, asError(error), outcome, returnedTo);
    });
    log(`${host.name} runs ${closure}${activationResult.generation !== undefined ? ` as generation ${activationResult.generation}` : ""}`);
    return {
        closure,
        generation: activationResult.generation ?? before.generation,
        previousGeneration: before.generation,
        copiedPaths: plan.missing.length,
        copiedBytes: plan.missingBytes,
        unchanged: false,
        rebootRequired: activationResult.rebootRequired,
    };
}
