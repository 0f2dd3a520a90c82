// The provider behind NixosSystem. It runs in the engine's dynamic-provider process; each
// operation maps the resource's state onto the deploy pipeline. A preview only calls check and
// diff, which never contact the host; refresh (read) and up (create, update) do.
import type * as pulumi from "@pulumi/pulumi";
import * as log from "@pulumi/pulumi/log";
import { unknownValue } from "@pulumi/pulumi/runtime/rpc";
import { probeHost } from "./deploy/activate";
import { SystemSource } from "./deploy/build";
import { describeChanges, diffFiles, hasFileChanges, hostFile, observedDigests, probeFiles, recordFiles } from "./deploy/files";
import { SshHost } from "./deploy/host";
import { deploySystem } from "./deploy/pipeline";
import { derivationSchema, fieldName, parseInput, storePathSchema, systemSettingsSchema, SystemSettings } from "./schema";
import { SshConnection } from "./transport/ssh";
import { z } from "zod";

/** The resource's inputs, and (with generation) its outputs. */
export interface NixosSystemState {
    /** The resource's name, for messages. */
    name: string;
    address: string;
    port: number;
    user: string;
    privateKey: string;
    hostPublicKey: string;
    connectTimeoutSeconds: number;
    flake?: string;
    configuration?: string;
    storePath?: string;
    /** The system's identity: the toplevel store path. */
    closure: string;
    /** The toplevel's derivation, when the system comes from a flake: what a deploy builds. */
    derivation?: string;
    packages: Record<string, string>;
    kernel?: string;
    nixosRelease?: string;
    action: SystemSettings["action"];
    healthChecks: SystemSettings["healthChecks"];
    substituteOnDestination: boolean;
    confirmTimeoutSeconds: number;
    reboot: boolean;
    rebootTimeoutSeconds: number;
    /** Files by path, each with its content (a secret), owner, group, mode and activation. */
    files?: Record<string, unknown>;
    /** Output: the system profile generation the host runs. */
    generation?: number;
    /** Output (secret): the key of the file digests, made when the resource is created (see deploy/files.ts). */
    fileDigestKey?: string;
    /** Output (secret): path → digest of each file as last written or read on the host. */
    fileDigests?: Record<string, string>;
}

/** The inputs that decide what the host runs, or which host: a change to one is a deploy. */
const DEPLOY_INPUTS = ["closure", "address", "port"] as const;
/** Inputs that change how the deploy is done; a change is recorded by a no-op deploy. */
const SETTING_INPUTS = ["user", "privateKey", "hostPublicKey", "connectTimeoutSeconds", "flake", "configuration", "storePath",
    "action", "healthChecks", "substituteOnDestination", "confirmTimeoutSeconds", "reboot", "rebootTimeoutSeconds"] as const;

/**
 * What check validates: the deploy settings, and what the provider passes to Nix (the evaluated
 * closure and derivation, or a given store path).
 */
const checkedInputsSchema = systemSettingsSchema.extend({
    source: z.object({
        closure: storePathSchema,
        derivation: derivationSchema.optional(),
        storePath: storePathSchema.optional(),
    }),
});

/** The deploy settings of a state, in the shape systemSettingsSchema validates. */
function settingsInput(state: NixosSystemState): Record<string, unknown> {
    return {
        connection: {
            address: state.address, port: state.port, user: state.user, privateKey: state.privateKey,
            hostPublicKey: state.hostPublicKey, connectTimeoutSeconds: state.connectTimeoutSeconds,
        },
        action: state.action,
        healthChecks: state.healthChecks,
        substituteOnDestination: state.substituteOnDestination,
        confirmTimeoutSeconds: state.confirmTimeoutSeconds,
        reboot: state.reboot,
        rebootTimeoutSeconds: state.rebootTimeoutSeconds,
        files: state.files,
    };
}

function settingsOf(state: NixosSystemState): SystemSettings {
    return parseInput(systemSettingsSchema, settingsInput(state), `NixosSystem ${state.name}`);
}

function sourceOf(state: NixosSystemState): SystemSource {
    return state.derivation ? { derivation: state.derivation } : { storePath: state.storePath ?? state.closure };
}

function sameValue(a: unknown, b: unknown): boolean {
    return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

async function withHost<T>(settings: SystemSettings, work: (host: SshHost) => Promise<T>): Promise<T> {
    const connection = SshConnection.open(settings.connection);
    try {
        return await work(new SshHost(connection));
    } finally {
        await connection.close();
    }
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
    return path.reduce<unknown>((node, key) => (node !== null && typeof node === "object" ? (node as Record<PropertyKey, unknown>)[key] : undefined), value);
}

/**
 * Validates every input before anything else happens; failures name the field, never its value.
 * In a preview, inputs that come from resources not made yet are unknown: they are checked when
 * they are known.
 */
export async function check(_olds: NixosSystemState, news: NixosSystemState): Promise<pulumi.dynamic.CheckResult> {
    const input = { ...settingsInput(news), source: { closure: news.closure, derivation: news.derivation, storePath: news.storePath } };
    const result = checkedInputsSchema.safeParse(input);
    const failures = result.success ? [] : result.error.issues.filter((issue) => valueAt(input, issue.path) !== unknownValue);
    if (failures.length === 0) return { inputs: news };
    return {
        failures: failures.map((issue) => ({
            property: String(issue.path[issue.path.length - 1] ?? "inputs"),
            reason: `${fieldName(issue.path)}: ${issue.message}`,
        })),
    };
}

/**
 * A change exactly when what the host should run, or where, or how it is reached, changes, or a
 * file differs from what the state recorded on the host (compared by digest; named by path).
 */
export async function diff(_id: string, olds: NixosSystemState, news: NixosSystemState): Promise<pulumi.dynamic.DiffResult> {
    const changed: string[] = [...DEPLOY_INPUTS, ...SETTING_INPUTS].filter((key) => !sameValue(olds[key], news[key]));
    const files = diffFiles(olds, news.files);
    if (!files || hasFileChanges(files)) {
        changed.push("files");
        log.info(`[${news.name}] files that change: ${describeChanges(files)}`);
    }
    return { changes: changed.length > 0 };
}

async function deploy(state: NixosSystemState, olds?: NixosSystemState): Promise<NixosSystemState> {
    const settings = settingsOf(state);
    const files = settings.files.map(hostFile);
    const result = await withHost(settings, (host) => deploySystem({
        name: state.name,
        host,
        source: sourceOf(state),
        closure: state.closure,
        action: settings.action,
        healthChecks: settings.healthChecks,
        substituteOnDestination: settings.substituteOnDestination,
        confirmTimeoutSeconds: settings.confirmTimeoutSeconds,
        reboot: { enabled: settings.reboot, timeoutSeconds: settings.rebootTimeoutSeconds },
        files,
        previousFiles: Object.keys(olds?.fileDigests ?? {}),
        log: (message) => log.info(`[${state.name}] ${message}`),
    }));
    return { ...state, generation: result.generation, ...recordFiles(olds ?? {}, files) };
}

export async function create(inputs: NixosSystemState): Promise<pulumi.dynamic.CreateResult> {
    const outs = await deploy(inputs);
    return { id: `${inputs.address}:${inputs.port}`, outs };
}

export async function update(_id: string, olds: NixosSystemState, news: NixosSystemState): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: await deploy(news, olds) };
}

/**
 * Refresh: what the host runs now, or with the `boot` action what it boots next, and the digests
 * of the files it holds. A host switched by hand shows up as a different closure; a file changed,
 * re-permissioned or deleted by hand, as a file that changes in the next preview.
 */
export async function read(id: string, props: NixosSystemState): Promise<pulumi.dynamic.ReadResult> {
    const paths = Object.keys(props.fileDigests ?? {});
    const [host, files] = await withHost(settingsOf(props), async (connected) => [await probeHost(connected), await probeFiles(connected, paths)] as const);
    const closure = props.action === "boot" ? host.generationClosure : host.current;
    const fileDigests = props.fileDigestKey ? observedDigests(props.fileDigestKey, files) : props.fileDigests;
    return { id, props: { ...props, closure: closure ?? "", generation: host.generation, fileDigests } };
}

/**
 * Deleting the resource leaves the host running its system: the system is not removed from a
 * machine that keeps running. The machine itself, if Pulumi made it, is deleted by its own resource.
 */
export async function remove(_id: string, props: NixosSystemState): Promise<void> {
    log.info(`[${props.name}] no longer managed: ${props.address}:${props.port} keeps running ${props.closure}`);
}
export { remove as delete };
