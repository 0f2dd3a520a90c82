// A deploy as a pipeline of stages: build → probe → fetch → copy → activate → (reboot) → verify,
// and on any failure after the host was touched, roll back to the generation recorded by the
// probe. Built on the target, it goes probe → build (on the host) → activate → …. Plain inputs,
// plain outputs: no Pulumi here, so the pipeline runs (and is tested) on its own.
import { Action, HealthChecks } from "../schema/inputs";
import { signClosure, StorePathInfo, unsupportedNix } from "./transport/nix";
import {
    Activation, ActivationError, ActivationNotStartedError, activatesNow, FILES_BACKUP, HostSystemState, newAgentFolder, probeHost, RollbackTarget,
    setsProfile, SYSTEM_PROFILE,
} from "./activate";
import { buildOnDeployer, buildOnTarget, SystemSource } from "./build";
import { copyMissing, formatBytes, listClosure, planCopy } from "./copy";
import { BinaryCache, fetchFromCaches } from "./fetch";
import { describePlan, dropBackup, FileBackup, FilePlan, HostFile, planFiles, probeFiles, restoreFiles, writeFiles } from "./files";
import { Host } from "./host";
import { bootPartsChanged, RebootError, rebootHost } from "./reboot";
import { checksWithConfirmation, HealthCheckError, logCommandChecks, runHealthChecks } from "./verify";

export type Stage = "build" | "probe" | "fetch" | "copy" | "files" | "activate" | "reboot" | "verify" | "confirm";

/** Whether and how the deploy reboots the host to activate the new system. */
export interface RebootSettings {
    /**
     * Reboot after a `boot` deploy, or when the switch needs one (exit 100), then check that the
     * host runs the new system and run the health checks. Without it such a deploy fails.
     */
    enabled: boolean;
    /** Reboot after a switch that changes the kernel, initrd or kernel modules the host booted. */
    onKernelChange: boolean;
    /** How long the host may take to come back. */
    timeoutSeconds: number;
}

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
    reboot: RebootSettings;
    /** Files from secrets to have on the host (see files.ts). */
    files: HostFile[];
    /**
     * The files the previous deploy wrote: removed from the host when no longer in `files`, and
     * written again when a reboot returns the host to its previous generation (a reboot empties
     * /run/keys, and the kept versions with it).
     */
    previousFiles: HostFile[];
    /** Where the system is built: the deployer (or its remote builders), or the host (a flake's system only). */
    build: "deployer" | "target";
    /** Binary caches the host fetches what it lacks from before the deployer sends the rest. */
    binaryCaches: BinaryCache[];
    /** A Nix secret key the deployer signs what it built with, before sending it. */
    signingKey?: string;
    /** Have the host check the signature of every path the deployer sends. */
    checkSignatures: boolean;
    log: (message: string) => void;
}

export interface DeployResult {
    closure: string;
    /** The system profile's generation after the deploy (undefined for `test` on a host with none). */
    generation?: number;
    /** The generation the host was on before. */
    previousGeneration?: number;
    /** What the deployer sent (on the target: of the derivation's closure). */
    copiedPaths: number;
    copiedBytes: number;
    /** What the host fetched from the binary caches. */
    fetchedPaths: number;
    /** True when the host already ran the closure and nothing was done. */
    unchanged: boolean;
    /** True when the deploy rebooted the host into the new system. */
    rebooted: boolean;
    /** How many files were written or removed (none when the host held them already). */
    filesChanged: number;
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

/**
 * A deploy user other than root must be able to use sudo (without a password, or with the
 * sudoPassword given, which this tries) and copy to the store (a trusted Nix user).
 */
async function checkUserRights(host: Host, state: HostSystemState): Promise<void> {
    const rights = state.userRights;
    if (!rights) return;
    const sudo = rights.sudo || (await host.rootAccess()) === "sudo-password";
    if (sudo && rights.trustedNixUser) return;
    const missing = [
        ...(sudo ? [] : ["run sudo (without a password: security.sudo.wheelNeedsPassword = false and the user in wheel; or give sudoPassword)"]),
        ...(rights.trustedNixUser ? [] : [`be a trusted Nix user (nix.settings.trusted-users = [ "${rights.user}" ])`]),
    ];
    throw new Error(`the deploy user ${rights.user} cannot activate a system: it must ${missing.join(" and ")}; or deploy as root`);
}

/** Refuses a host whose Nix is outside the supported range, before anything is copied. */
function checkHostNix(state: HostSystemState): void {
    const reason = unsupportedNix("the host's", state.nixVersion ?? "");
    if (reason) throw new Error(reason);
}

const NEEDS_REBOOT = "switch-to-configuration exited 100: the new system changes the init interface and runs only after a reboot; " +
    "nothing of it was activated. Set `reboot: true` to let the deploy reboot the host, or deploy with `action: \"boot\"` and reboot it yourself";

/** "generation 3 (/nix/store/…)", or the closure alone on a host without a system profile. */
function describeTarget(target: RollbackTarget): string {
    return target.generation !== undefined ? `generation ${target.generation} (${target.closure})` : `${target.closure ?? "its previous system"}`;
}

/** Makes a generation the system profile's current one and the boot loader's default. */
async function makeGenerationBoot(host: Host, what: string, generation: number): Promise<void> {
    await host.check(what,
        ["sh", "-c", 'nix-env -p "$1" --switch-generation "$2" && "$1/bin/switch-to-configuration" boot', "boot-generation", SYSTEM_PROFILE, String(generation)],
        { privileged: true, fresh: true, timeoutMs: 600_000 });
}

/** Makes a generation the deploy booted once (and that came back healthy) the boot default; returns its number. */
async function makeBootDefault(host: Host, generation: number | undefined): Promise<number | undefined> {
    if (generation !== undefined) await makeGenerationBoot(host, "making the new generation the boot default", generation);
    return generation;
}

/** Every path of `files` this deploy or the previous one manages. */
function managedPaths(request: DeployRequest): string[] {
    return [...new Set([...request.files, ...request.previousFiles].map((file) => file.path))];
}

/**
 * After a failure past the reboot, the agent is gone with the old boot: make the recorded
 * generation the one that boots (it still is, unless the new one was made the default), reboot
 * into it, put the previous deploy's files back, and say where the host is, read from the host.
 */
async function rollBackByReboot(request: DeployRequest, previous: RollbackTarget): Promise<{ outcome: string; returnedTo?: number }> {
    const { host, log } = request;
    if (previous.generation === undefined) return { outcome: "the host had no earlier generation to return to; it stays on the failed system" };
    log(`rolling ${host.name} back to generation ${previous.generation} by rebooting into it`);
    const bootId = (await probeHost(host)).bootId ?? "";
    await makeGenerationBoot(host, "making the previous generation the one that boots", previous.generation);
    await rebootHost(host, bootId, request.reboot.timeoutSeconds, log);
    const state = await probeHost(host);
    if (state.current !== previous.closure) return { outcome: `the host rebooted, but runs ${state.current ?? "no system"}, not ${describeTarget(previous)}` };
    const outcome = `the host rebooted back into ${describeTarget(previous)}, as read from the host`;
    return { outcome: `${outcome}${await restorePreviousFiles(request)}`, returnedTo: previous.generation };
}

/** Writes the previous deploy's files as they were and removes the ones it did not have; says how that went. */
async function restorePreviousFiles(request: DeployRequest): Promise<string> {
    const { host, log } = request;
    const paths = managedPaths(request);
    if (paths.length === 0) return "";
    const plan = planFiles(request.previousFiles, await probeFiles(host, paths), request.files.map((file) => file.path));
    if (plan.write.length === 0 && plan.remove.length === 0) return "";
    log(`files on ${host.name} as the previous deploy wrote them: ${describePlan(plan)}`);
    return writeFilesAlone(host, plan).then(() => ", with its previous files",
        (error: Error) => `, but putting its previous files back failed (${error.message})`);
}

/**
 * Writes the files due before activation, keeping the previous versions in the agent's folder;
 * when that fails (no agent runs yet to do it), puts the previous versions back and says so.
 */
async function writeBeforeActivation(request: DeployRequest, plan: FilePlan, backup: FileBackup): Promise<void> {
    const { host, log } = request;
    if (plan.write.length === 0 && plan.remove.length === 0) return;
    log(`files on ${host.name} before activation: ${describePlan(plan)}`);
    await writeFiles(host, plan, backup).catch(async (error: Error) => {
        const outcome = await restoreFiles(host, backup.folder).then(
            () => "the host was not changed (the files written so far were put back)",
            (restoreError: Error) => `putting back the previous files failed (${restoreError.message}); they are kept in ${backup.folder} on the host`);
        throw new DeployError(host.name, "files", request.closure, error, outcome);
    });
}

/** Writes files outside an activation (nothing switches): all of them or, on a failure, none. */
async function writeFilesAlone(host: Host, plan: FilePlan): Promise<void> {
    const folder = newAgentFolder();
    await writeFiles(host, plan, { folder }).catch(async (error: Error) => {
        await restoreFiles(host, folder).catch((restoreError: Error) => {
            throw new Error(`${error.message}\nputting back the previous files failed too (${restoreError.message}); they are kept in ${folder} on the host`);
        });
        throw error;
    });
    await dropBackup(host, folder);
}

/** Where a host is after a failure before anything on it changed. */
const UNTOUCHED = "the host was not changed";

/**
 * Builds the system on the deployer (or its remote builders), signs it when asked, and lists its
 * closure; built on the target, lists the derivation's closure, which the host then needs.
 */
async function prepareOnDeployer(request: DeployRequest): Promise<StorePathInfo[]> {
    const { closure, source, log } = request;
    const derivation = builtOnHost(request);
    if (derivation !== undefined) return inStage(request, "build", UNTOUCHED, () => listClosure(derivation));
    log(`building ${closure}`);
    await inStage(request, "build", UNTOUCHED, () => buildOnDeployer(source, log));
    if (request.signingKey !== undefined) {
        const key = request.signingKey;
        log(`signing the closure of ${closure}`);
        await inStage(request, "build", UNTOUCHED, () => signClosure(closure, key));
    }
    return inStage(request, "build", UNTOUCHED, () => listClosure(closure));
}

/** The derivation the host builds, when the system is built on the target (a store path is built already). */
function builtOnHost(request: DeployRequest): string | undefined {
    return request.build === "target" && "derivation" in request.source ? request.source.derivation : undefined;
}

/**
 * Gets the closure onto the host: built there from the derivation, or fetched from the caches
 * and copied from the deployer. Returns what the deployer sent and what the host fetched.
 */
async function deliver(request: DeployRequest, closureInfo: StorePathInfo[], missing: readonly string[]): Promise<{ copiedPaths: number; copiedBytes: number; fetchedPaths: number }> {
    const { host, closure, log } = request;
    const copyOptions = { substituteOnDestination: request.substituteOnDestination, checkSignatures: request.checkSignatures };
    const toSend = planCopy(closureInfo, missing);
    const derivation = builtOnHost(request);
    if (derivation !== undefined) {
        log(`${host.name} builds ${closure}; sending ${toSend.missing.length} paths of its derivation (${formatBytes(toSend.missingBytes)})`);
        await inStage(request, "build", UNTOUCHED, () => buildOnTarget(host, derivation, toSend.missing, { ...copyOptions, caches: request.binaryCaches, log }));
        return { copiedPaths: toSend.missing.length, copiedBytes: toSend.missingBytes, fetchedPaths: 0 };
    }
    const { fetched, fetchedBytes } = await inStage(request, "fetch", UNTOUCHED, () => fetchFromCaches(host, toSend.missing.map((info) => info.path), request.binaryCaches));
    if (fetched.length > 0) log(`${host.name} fetched ${fetched.length} paths (${formatBytes(fetchedBytes)}) from the binary caches`);
    const fetchedSet = new Set(fetched);
    const plan = planCopy(closureInfo, toSend.missing.map((info) => info.path).filter((storePath) => !fetchedSet.has(storePath)));
    log(`copying ${plan.missing.length} of ${plan.closure.length} paths (${formatBytes(plan.missingBytes)}) to ${host.name}`);
    await inStage(request, "copy", UNTOUCHED, () => copyMissing(host, closure, plan, copyOptions));
    return { copiedPaths: plan.missing.length, copiedBytes: plan.missingBytes, fetchedPaths: fetched.length };
}

export async function deploySystem(request: DeployRequest): Promise<DeployResult> {
    const { host, closure, action, log } = request;

    const closureInfo = await prepareOnDeployer(request);
    const before = await inStage(request, "probe", UNTOUCHED, async () => {
        const state = await probeHost(host, closureInfo.map((info) => info.path));
        await checkUserRights(host, state);
        checkHostNix(state);
        return state;
    });
    const filesOnHost = await inStage(request, "probe", UNTOUCHED,
        () => probeFiles(host, managedPaths(request)));
    const files = planFiles(request.files, filesOnHost, request.previousFiles.map((file) => file.path));
    const filesChanged = files.write.length + files.remove.length;
    if (alreadyDeployed(before, closure, action)) {
        log(`${host.name} already runs ${closure}`);
        if (filesChanged > 0) {
            // Nothing activates, so nothing restarts: the files change alone, all or none.
            log(`files on ${host.name} (the system is unchanged): ${describePlan(files)}`);
            await inStage(request, "files", "the host's files were not changed (the ones written were put back)", () => writeFilesAlone(host, files));
        }
        return {
            closure, generation: before.generation, previousGeneration: before.generation, copiedPaths: 0, copiedBytes: 0, fetchedPaths: 0,
            unchanged: filesChanged === 0, rebooted: false, filesChanged,
        };
    }

    const delivered = await deliver(request, closureInfo, before.missing);

    const previous = { generation: before.generation, closure: setsProfile(action) ? before.generationClosure : before.current };
    const activation = new Activation(host, previous, { confirmTimeoutSeconds: request.confirmTimeoutSeconds, bootId: before.bootId, log });
    const backup = `${activation.dir}/${FILES_BACKUP}`;
    await writeBeforeActivation(request, { write: files.write.filter((file) => file.activation === "before"), remove: files.remove }, { folder: backup });
    log(`switching ${host.name} to ${closure} (${action}); it returns to ` +
        `${previous.generation !== undefined ? `generation ${previous.generation}` : "its previous system"} by itself unless confirmed within ${request.confirmTimeoutSeconds} s`);
    let stage: Stage = "activate";
    // After a live switch, with rebootOnKernelChange: whether the host must boot the new kernel.
    const kernelChanged = async () => {
        if (!request.reboot.onKernelChange || action !== "switch") return false;
        stage = "reboot";
        const changed = await bootPartsChanged(host);
        log(changed.length > 0
            ? `the new system's ${changed.join(", ")} ${changed.length === 1 ? "differs" : "differ"} from what ${host.name} booted: it reboots into the new system`
            : `${host.name} booted the new system's kernel, initrd and kernel modules: no reboot`);
        return changed.length > 0;
    };
    const switchVerifyConfirm = async () => {
        await activation.start(closure, action);
        const switched = await activation.switched();
        if (switched.rebootRequired && !request.reboot.enabled) throw new ActivationError(host.name, NEEDS_REBOOT);
        const rebootNext = switched.rebootRequired || (action === "boot" && request.reboot.enabled) || await kernelChanged();
        stage = "files";
        const afterSwitch = { write: files.write.filter((file) => file.activation === "after"), remove: [] };
        if (afterSwitch.write.length > 0) {
            log(`files on ${host.name} after activation: ${describePlan(afterSwitch)}`);
            await writeFiles(host, afterSwitch, { folder: backup, agentFolder: activation.dir });
        }
        // Before a reboot there is nothing to verify yet, and the agent would not outlive it.
        const verifyNow = !rebootNext && activatesNow(action);
        stage = "verify";
        if (verifyNow) await runHealthChecks(host, request.healthChecks, log);
        const withConfirmation = verifyNow ? checksWithConfirmation(request.healthChecks) : [];
        logCommandChecks(withConfirmation, log);
        stage = "confirm";
        // Before a reboot, the confirmation makes the new generation boot once: it becomes the
        // default only once it came back healthy (makeBootDefault below).
        const { generation, bootLoader } = await activation.confirm(withConfirmation, { once: rebootNext }).catch((error) => {
            if (error instanceof HealthCheckError) stage = "verify";
            throw error;
        });
        if (bootLoader === "default") {
            log(`${host.name}'s boot loader is neither GRUB nor systemd-boot: the new generation is its boot default before the reboot, ` +
                "so a new system that never comes back is not left by the next boot");
        }
        return { generation, rebootNext, bootsOnce: rebootNext && bootLoader !== "default" };
    };
    const activationResult = await switchVerifyConfirm().catch(async (error) => {
        if (error instanceof ActivationNotStartedError) {
            const outcome = await restoreFiles(host, backup).then(() => UNTOUCHED,
                (restoreError: Error) => `the system was not changed, but putting back the previous files failed (${restoreError.message}); they are kept in ${backup} on the host`);
            throw new DeployError(host.name, stage, closure, error, outcome);
        }
        log(`${stage} failed on ${host.name}; rolling back`);
        const { outcome, returnedTo } = await activation.rollBack();
        throw new DeployError(host.name, stage, closure, asError(error), outcome, returnedTo);
    });
    let generation = activationResult.generation;
    if (activationResult.rebootNext) {
        stage = "reboot";
        const staged = generation;
        await (async () => {
            await rebootHost(host, before.bootId ?? "", request.reboot.timeoutSeconds, log);
            const after = await probeHost(host);
            if (after.current !== closure) throw new Error(`after the reboot the host runs ${after.current ?? "no system"}, not ${closure}`);
            // A reboot empties /run (and so /run/keys): the files go back before the health checks.
            stage = "files";
            const lost = planFiles(request.files, await probeFiles(host, request.files.map((file) => file.path)), []);
            if (lost.write.length > 0) {
                log(`files on ${host.name} after the reboot: ${describePlan(lost)}`);
                await writeFilesAlone(host, lost);
            }
            stage = "verify";
            await runHealthChecks(host, request.healthChecks, log, { withConfirmation: false });
            stage = "confirm";
            generation = await makeBootDefault(host, staged);
        })().catch(async (error) => {
            log(`${stage} failed on ${host.name}; rolling back`);
            const { outcome, returnedTo } = error instanceof RebootError
                // It booted the new generation once: the boot loader's default is still the previous one.
                ? {
                    outcome: activationResult.bootsOnce
                        ? `it was booted into the new generation once; its next boot (reset it if it hangs) returns to ${describeTarget(previous)}`
                        : `the new generation is its boot default; choose ${describeTarget(previous)} in its boot menu`,
                    returnedTo: undefined,
                }
                : await rollBackByReboot(request, previous).catch((rollbackError: Error) => ({ outcome: `the rollback failed: ${rollbackError.message}`, returnedTo: undefined }));
            throw new DeployError(host.name, stage, closure, asError(error), outcome, returnedTo);
        });
    }
    log(`${host.name} runs ${closure}${generation !== undefined ? ` as generation ${generation}` : ""}`);
    return {
        closure,
        generation: generation ?? before.generation,
        previousGeneration: before.generation,
        ...delivered,
        unchanged: false,
        rebooted: activationResult.rebootNext,
        filesChanged,
    };
}
