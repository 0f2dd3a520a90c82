// nixos:index:System: maps the resource's operations onto the deploy pipeline. Check validates
// and evaluates (a preview builds nothing and contacts no host), diff compares closures, create
// and update deploy, read asks the host what it runs, delete leaves the host as it is.
import * as fs from "node:fs";
import * as path from "node:path";
import { probeHost } from "../../deploy/activate";
import { SystemSource } from "../../deploy/build";
import { evaluateConfiguration, resolveFlakeReference } from "../../deploy/evaluate";
import { describeChanges, diffFiles, hasFileChanges, HostFile, hostFile, observedDigests, probeFiles, RecordedFiles, recordFiles } from "../../deploy/files";
import { SshHost, UserSshHost } from "../../deploy/host";
import { deploySystem } from "../../deploy/pipeline";
import {
    addressSchema, addressWithPort, derivationSchema, hostFilesSchema, hostPublicKeySchema, parseInput, portSchema, storePathSchema, systemSettingsSchema,
    SystemSettings, userSchema,
} from "../../schema/inputs";
import { SshConnection, UserSshTarget } from "../../deploy/transport/ssh";
import { PropertyMap, UNKNOWN } from "../properties";
import { SYSTEM } from "../../schema/resources";
import { CheckFailure, DetailedDiff, OperationContext, ResourceHandler } from "../server";
import { diffProperties, validateInputs, withDefaults } from "./inputs";

/**
 * Inputs a diff does not compare as they are: files by their keyed digests, and which
 * configurations are evaluated together, which changes no system.
 */
const NOT_COMPARED = ["files", "evaluateWith"];

/** What check adds to the inputs: the evaluated system (or what is known of a given store path). */
const EVALUATED = ["closure", "derivation", "packages", "kernel", "nixosRelease"] as const;

/** The deploy settings of a resource's properties, in the shape systemSettingsSchema validates. */
function settingsOf(context: OperationContext, state: PropertyMap): SystemSettings {
    const {
        address, port, user, privateKey, hostPublicKey, connectTimeoutSeconds, jumpHosts, sudoPassword, action, healthChecks, substituteOnDestination,
        confirmTimeoutSeconds, reboot, rebootOnKernelChange, rebootTimeoutSeconds, files, build, binaryCaches, signingKey, checkSignatures,
    } = state;
    return parseInput(systemSettingsSchema, {
        connection: { address, port, user, privateKey, hostPublicKey, connectTimeoutSeconds, jumpHosts, sudoPassword },
        action, healthChecks, substituteOnDestination, confirmTimeoutSeconds, reboot, rebootOnKernelChange, rebootTimeoutSeconds, files, build,
        binaryCaches, signingKey, checkSignatures,
    }, `System ${context.name}`);
}

/** What a deploy builds: the evaluated derivation, or the given store path. Validated again: it reaches Nix. */
function sourceOf(context: OperationContext, state: PropertyMap): SystemSource {
    const what = `System ${context.name}`;
    if (typeof state.derivation === "string") return { derivation: parseInput(derivationSchema, state.derivation, `${what}: derivation`) };
    return { storePath: parseInput(storePathSchema, state.storePath ?? state.closure, `${what}: storePath`) };
}

/** Connects to the host for `work`; the connection carries secrets only when files may be written (the new ones, or the previous ones again). */
async function withHost<T>(settings: SystemSettings, work: (host: SshHost) => Promise<T>, previousFiles: readonly HostFile[] = []): Promise<T> {
    const connection = SshConnection.open(settings.connection, { carriesSecrets: settings.files.length + previousFiles.length > 0 });
    try {
        return await work(new SshHost(connection));
    } finally {
        await connection.close();
    }
}

/**
 * The project's folder (the one holding Pulumi.yaml): the engine starts the provider in the
 * program's folder, which is the project's or, with `main`, one inside it.
 */
export function projectFolder(start = process.cwd()): string {
    for (let dir = start; ; dir = path.dirname(dir)) {
        if (["Pulumi.yaml", "Pulumi.yml"].some((file) => fs.existsSync(path.join(dir, file)))) return dir;
        if (path.dirname(dir) === dir) return start;
    }
}

/** Evaluates where the system comes from: a flake's configuration, or a given store path. */
async function evaluateSource(inputs: PropertyMap): Promise<PropertyMap | CheckFailure> {
    const { flake, configuration, storePath } = inputs;
    if (storePath !== undefined) {
        if (flake !== undefined || configuration !== undefined) return { reason: "storePath: give either flake and configuration, or storePath, not both" };
        if (inputs.build === "target") return { reason: "build: \"target\" builds a flake's configuration on the host; a storePath is built already (copy it from the deployer)" };
        return { closure: storePath, packages: {} };
    }
    if (flake === undefined || configuration === undefined) return { reason: "flake and configuration are required (or storePath)" };
    if (flake === UNKNOWN || configuration === UNKNOWN) return Object.fromEntries(EVALUATED.map((key) => [key, UNKNOWN]));
    try {
        // A local flake stays as given in the state; it is resolved against the project's folder
        // only to evaluate it.
        const together = Array.isArray(inputs.evaluateWith) ? inputs.evaluateWith.filter((name): name is string => typeof name === "string") : undefined;
        const evaluated = await evaluateConfiguration(resolveFlakeReference(flake as string, projectFolder()), configuration as string, together);
        // What the evaluation says is handed to Nix later: it must be a plain store path too.
        parseInput(storePathSchema, evaluated.closure, "the evaluated closure");
        parseInput(derivationSchema, evaluated.derivation, "the evaluated derivation");
        return { ...evaluated };
    } catch (error) {
        return { reason: (error as Error).message };
    }
}

/** Deploys the state's system and files; `olds` is what the state recorded before (its files and their digests). */
async function deploy(context: OperationContext, state: PropertyMap, olds: PropertyMap = {}): Promise<PropertyMap> {
    const settings = settingsOf(context, state);
    const files = settings.files.map(hostFile);
    const previousFiles = parseInput(hostFilesSchema, olds.files ?? {}, `System ${context.name}: the previous files`).map(hostFile);
    const result = await withHost(settings, (host) => deploySystem({
        name: context.name,
        host,
        source: sourceOf(context, state),
        closure: parseInput(storePathSchema, state.closure, `System ${context.name}: closure`),
        action: settings.action,
        healthChecks: settings.healthChecks,
        substituteOnDestination: settings.substituteOnDestination,
        confirmTimeoutSeconds: settings.confirmTimeoutSeconds,
        reboot: { enabled: settings.reboot, onKernelChange: settings.rebootOnKernelChange, timeoutSeconds: settings.rebootTimeoutSeconds },
        build: settings.build,
        binaryCaches: settings.binaryCaches,
        signingKey: settings.signingKey,
        checkSignatures: settings.checkSignatures ?? settings.signingKey !== undefined,
        files,
        previousFiles,
        log: context.log,
    }), previousFiles);
    return { ...state, generation: result.generation, ...recordFiles(olds as RecordedFiles, files) };
}

/**
 * A System's import ID, "[user@]address[:port]" (user root and port 22 by default; an IPv6
 * address in brackets when a port follows), validated as the inputs are.
 */
export function parseImportId(id: string): UserSshTarget {
    const at = id.lastIndexOf("@");
    const user = at < 0 ? "root" : id.slice(0, at);
    const rest = id.slice(at + 1);
    const bracketed = /^(\[[^\]]*\])(?::(\d+))?$/.exec(rest);
    const plain = rest.split(":").length === 2 ? rest.split(":") : [rest];
    const [address, port] = bracketed ? [bracketed[1], bracketed[2]] : [plain[0], plain[1]];
    const what = `System import ID "${id.replace(/[^\x20-\x7e]/g, "?")}" ([user@]address[:port])`;
    return {
        user: parseInput(userSchema, user, what),
        address: parseInput(addressSchema, address, what),
        port: parseInput(portSchema, port === undefined ? 22 : /^\d+$/.test(port) ? Number(port) : port, what),
    };
}

/**
 * What a running host runs, read through the user's own OpenSSH (runAsUser): the system, its
 * generation and the host's ed25519 key, which the state then pins. Nothing is changed on it.
 */
async function adopt(context: OperationContext, id: string): Promise<{ id: string; inputs: PropertyMap; outputs: PropertyMap }> {
    const target = parseImportId(id);
    const host = new UserSshHost(target);
    context.log(`reading what ${host.name} runs, through your own ssh (its configuration, agent and known_hosts)`);
    const state = await probeHost(host);
    if (!state.current) throw new Error(`${host.name} runs no NixOS system (/run/current-system is missing): nothing to adopt`);
    const hostPublicKey = parseInput(hostPublicKeySchema, (await host.check("reading the host's ed25519 key", ["cat", HOST_KEY_FILE])).trim(),
        `${host.name}: ${HOST_KEY_FILE}`);
    const inputs = { address: target.address, port: target.port, user: target.user, hostPublicKey, storePath: state.current };
    context.log(`${host.name} runs ${state.current}` + (state.generation === undefined ? "" : ` (generation ${state.generation})`));
    return {
        id: addressWithPort(target.address, target.port),
        inputs,
        outputs: { ...inputs, closure: state.current, generation: state.generation, packages: {}, adopted: true },
    };
}

/** The host key an adopted host is pinned to: NixOS makes it on first boot. */
const HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub";

export const system: ResourceHandler = {
    definition: SYSTEM,

    /**
     * Validates every input before anything else happens (failures name the field, never its
     * value), then evaluates the system. Inputs not known yet in a preview are checked when known.
     */
    async check(_context, news) {
        const validated = validateInputs(SYSTEM, news);
        if (validated.failures.length) return validated;
        const source = await evaluateSource(validated.inputs);
        if ("reason" in source) return { inputs: news, failures: [source as CheckFailure] };
        return { inputs: { ...validated.inputs, ...source }, failures: [] };
    },

    /**
     * A change exactly when what the host should run, or where, or how it is reached or deployed,
     * changes. The diff names the closure and the packages, kernel and release that change with it.
     */
    async diff(context, olds, news) {
        // An adopted host that the program gives the closure it runs is under management as it is:
        // how it is reached and where its system comes from are recorded without a deploy.
        const adoptedAsIs = olds.adopted === true && news.closure === olds.closure;
        // Files are compared by their keyed digests (the state's, refreshed from the host), not as inputs.
        const compared = adoptedAsIs ? [] : Object.keys(SYSTEM.inputs).filter((name) => !NOT_COMPARED.includes(name));
        const detailedDiff: DetailedDiff = diffProperties(withDefaults(SYSTEM, olds), withDefaults(SYSTEM, news), [...compared, "closure"]);
        const files = diffFiles(olds as RecordedFiles, news.files);
        if (!files || hasFileChanges(files)) {
            detailedDiff.files = "update";
            context.log(`files that change: ${describeChanges(files)}`);
        }
        if (detailedDiff.closure) {
            Object.assign(detailedDiff, diffProperties(olds, news, ["kernel", "nixosRelease"]));
            const oldPackages = (olds.packages ?? {}) as PropertyMap;
            const newPackages = (news.packages ?? {}) as PropertyMap;
            for (const [name, kind] of Object.entries(diffProperties(oldPackages, newPackages, [...new Set([...Object.keys(oldPackages), ...Object.keys(newPackages)])]))) {
                detailedDiff[`packages.${name}`] = kind;
            }
        }
        return { detailedDiff };
    },

    async create(context, inputs) {
        const outputs = await deploy(context, inputs);
        return { id: addressWithPort(inputs.address as string, inputs.port as number), outputs };
    },

    async update(context, _id, olds, news) {
        return deploy(context, news, olds);
    },

    /** Refresh: what the host runs now (with the `boot` action, what it boots next), and the digests of its files. */
    async read(context, id, state) {
        // Imported, not yet given a key by the program: read as it was adopted.
        if (state.adopted === true && state.privateKey === undefined) return { ...state, ...(await adopt(context, id)).outputs };
        const recorded = state as RecordedFiles;
        const [host, files] = await withHost(settingsOf(context, state),
            async (connected) => [await probeHost(connected), await probeFiles(connected, Object.keys(recorded.fileDigests ?? {}))] as const);
        const closure = state.action === "boot" ? host.generationClosure : host.current;
        const fileDigests = recorded.fileDigestKey ? observedDigests(recorded.fileDigestKey, files) : recorded.fileDigests;
        return { ...state, closure: closure ?? "", generation: host.generation, fileDigests };
    },

    /** `pulumi import nixos:index:System NAME [user@]address[:port]`: see adopt. */
    import: adopt,

    /**
     * Deleting the resource leaves the host running its system: a system is not removed from a
     * machine that keeps running. The machine itself, if Pulumi made it, is deleted by its own resource.
     */
    async delete(context, _id, state) {
        context.log(`no longer managed: ${addressWithPort(state.address as string, state.port as number)} keeps running ${state.closure}`);
    },
};
