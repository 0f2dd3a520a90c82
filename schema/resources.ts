// The package schema of pulumi-resource-nixos, the one place where each resource's inputs and
// outputs are declared: every input carries the zod schema that validates it (in the provider's
// Check and in the TypeScript SDK's constructors), its documentation, and whether it is secret.
// GetSchema serves the Pulumi schema derived from it, and the SDK generators read that.
import { z } from "zod";
import {
    actionSchema, addressSchema, binaryCacheSchema, buildSchema, commandCheckSchema, configurationNameSchema, connectionSchema, flakeSchema, healthChecksSchema,
    hostFilesSchema, hostPublicKeySchema, httpCheckSchema, jumpHostSchema, portSchema, privateKeySchema, storePathSchema, sudoPasswordSchema,
    systemSettingsSchema, userSchema,
} from "./inputs";

export const PACKAGE_NAME = "nixos";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE_JSON: { version: string; pulumi: { server: string } } = require("../../package.json");
export const PACKAGE_VERSION = PACKAGE_JSON.version;
/**
 * Where the engine fetches the plugin when a program needs it and it is not installed:
 * `pulumi-resource-nixos-v<version>-<os>-<arch>.tar.gz` of the release (the engine fills in
 * `${VERSION}`). package.json's `pulumi` block, which Node.js language hosts read, holds it.
 */
export const PLUGIN_DOWNLOAD_URL = PACKAGE_JSON.pulumi.server;
/** The resource options every SDK gives the engine so that it finds, or fetches, this plugin. */
export const PLUGIN_OPTIONS = { version: PACKAGE_VERSION, pluginDownloadURL: PLUGIN_DOWNLOAD_URL } as const;

/** A Pulumi schema property or type reference (the subset this package uses). */
interface PropertySpec {
    type?: "string" | "integer" | "number" | "boolean" | "array" | "object";
    items?: PropertySpec;
    additionalProperties?: PropertySpec;
    $ref?: string;
    description?: string;
    default?: unknown;
    secret?: boolean;
}

interface InputDefinition {
    schema: z.ZodType;
    description: string;
    /** Must be given (no default). */
    required?: boolean;
    secret?: boolean;
    /** A named object type of the schema, for structured inputs. */
    type?: string;
    /** A map from names to a named object type of the schema. */
    mapOf?: string;
    /** A list of a named object type of the schema. */
    listOf?: string;
}

interface OutputDefinition {
    spec: PropertySpec;
    description: string;
    /** Always present once the resource exists. */
    required?: boolean;
    secret?: boolean;
}

export interface ResourceDefinition {
    token: string;
    description: string;
    inputs: Record<string, InputDefinition>;
    /** Outputs besides the inputs, which every resource of this package also returns (but its secret ones: inputOnlyProperties). */
    outputs: Record<string, OutputDefinition>;
}

/**
 * A schema that validates with `schema`'s messages but keeps the value as given: the provider's
 * state keeps the input as the program wrote it, and the deploy normalizes it.
 */
function validatedOnly(schema: z.ZodType): z.ZodType {
    return z.unknown().superRefine((value, context) => {
        const result = schema.safeParse(value);
        if (!result.success) for (const issue of result.error.issues) context.addIssue({ code: "custom", path: issue.path, message: issue.message });
    });
}

const typeRef = (name: string) => `#/types/${PACKAGE_NAME}:index:${name}`;

/** The Pulumi type of a zod schema of a plain value (string, number, boolean, list or map of those). */
function specOf(schema: z.ZodType): PropertySpec {
    const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
    const convert = (node: Record<string, unknown>): PropertySpec => {
        const type = node.type as PropertySpec["type"];
        if (type === "array") return { type, items: convert(node.items as Record<string, unknown>) };
        if (type === "object") return { type, additionalProperties: convert(node.additionalProperties as Record<string, unknown>) };
        return { type, ...(node.default !== undefined ? { default: node.default } : {}) };
    };
    return convert(json);
}

const timeoutDescription = "Seconds to keep retrying (once a second) before the check fails; default 30.";
const nameDescription = "A name for messages.";

/** The Pulumi properties of a zod object's fields, each with its description. */
function documented<Shape extends Record<string, z.ZodType>>(shape: Shape, descriptions: Record<keyof Shape, string>): Record<string, PropertySpec> {
    return Object.fromEntries(Object.entries(shape).map(([name, schema]) => [name, { ...specOf(schema), description: descriptions[name] }]));
}

/** Named object types: the health checks. */
const TYPES: Record<string, { description: string; properties: Record<string, PropertySpec>; required: string[] }> = {
    CommandHealthCheck: {
        description: "A command run on the host after activation; healthy when it exits 0 within the timeout.",
        properties: documented(commandCheckSchema.shape, { name: nameDescription, command: "Run by `sh -c` on the host.", timeoutSeconds: timeoutDescription }),
        required: ["name", "command"],
    },
    HttpHealthCheck: {
        description: "A URL fetched from the deployer after activation; healthy when it answers `expectStatus`.",
        properties: documented(httpCheckSchema.shape, {
            name: nameDescription, url: "An http:// or https:// URL.", expectStatus: "The HTTP status that means healthy; default 200.", timeoutSeconds: timeoutDescription,
        }),
        required: ["name", "url"],
    },
    BinaryCache: {
        description: "A binary cache the host fetches store paths from, and the key its paths are signed with.",
        properties: documented(binaryCacheSchema.shape, {
            url: "Where the host reaches the cache: an http://, https:// or s3:// URL.",
            publicKey: "The cache's Nix public key (\"cache.example.org-1:AAAA…=\"), trusted for this deploy's fetches only.",
        }),
        required: ["url", "publicKey"],
    },
    JumpHost: {
        description: "A host the deployer reaches the target through (OpenSSH's ProxyJump), with its own pinned host key.",
        properties: {
            ...documented(jumpHostSchema.omit({ privateKey: true }).shape, {
                address: "Host name or IP address the deployer (or the hop before) reaches the jump host at.",
                port: "SSH port; default 22.",
                user: "SSH user on the jump host; default \"root\". It needs no rights beyond forwarding a TCP connection.",
                hostPublicKey: "The jump host's SSH public key, pinned: a jump host that presents any other key is refused before anything is sent through it.",
            }),
            privateKey: { type: "string", secret: true, description: "Its own private key, as text; default the deploy's `privateKey`." },
        },
        required: ["address", "hostPublicKey"],
    },
    HostFile: {
        description: "A file written on the host from a Pulumi secret: never through the Nix store, in an argument list, in Pulumi's output " +
            "or in the state in plaintext.",
        properties: {
            content: { type: "string", secret: true, description: "The file's content, always a secret." },
            encoding: { type: "string", default: "utf8", description: "\"utf8\" (default) writes `content` as text; \"base64\" decodes it (binary files)." },
            owner: { type: "string", default: "root", description: "Default \"root\"." },
            group: { type: "string", default: "root", description: "Default \"root\"." },
            mode: { type: "string", default: "0400", description: "Octal permission bits, default \"0400\"; no setuid, setgid or sticky bit, never writable by every user." },
            activation: {
                type: "string", default: "before",
                description: "\"before\" (default): written before the new system activates, so its services find their keys when they start. " +
                    "\"after\": written after its switch, for a user or group the new system creates.",
            },
        },
        required: ["content"],
    },
    HealthChecks: {
        description: "Checks that must pass after activation, or the host is rolled back.",
        properties: {
            commands: { type: "array", items: { $ref: typeRef("CommandHealthCheck") }, description: "Commands run on the host." },
            http: { type: "array", items: { $ref: typeRef("HttpHealthCheck") }, description: "URLs fetched from the deployer." },
        },
        required: [],
    },
};

/** How the deployer reaches a host over SSH: shared by System and WaitForNixos. */
const connectionInputs = {
    address: { schema: addressSchema, required: true, description: "Host name or IP address the deployer reaches the host at." },
    port: { schema: portSchema.default(22), description: "SSH port; default 22." },
    user: {
        schema: userSchema.default("root"),
        description: "SSH user; default \"root\". Another user must be able to run sudo (without a password, or with `sudoPassword`) " +
            "and be a trusted Nix user (to copy unsigned paths): the profile, the switch and the rollback then run as root through sudo.",
    },
    privateKey: { schema: privateKeySchema, required: true, secret: true, description: "The deployer's private key, as text. Always stored as a secret." },
    hostPublicKey: {
        schema: hostPublicKeySchema, required: true,
        description: "The host's SSH public key (\"ssh-ed25519 AAAA…\"), pinned: a host that presents any other key is refused before anything is sent to it.",
    },
    jumpHosts: {
        schema: connectionSchema.shape.jumpHosts, listOf: "JumpHost", secret: true,
        description: "Hosts the deployer reaches this one through (a bastion in front of a private subnet), the first hop first, as " +
            "OpenSSH's ProxyJump does: every connection of a deploy goes through them, `nix copy`'s too. Each one's host key is pinned. " +
            "A secret, as it may hold private keys.",
    },
} satisfies Record<string, InputDefinition>;

export const SYSTEM: ResourceDefinition = {
    token: `${PACKAGE_NAME}:index:System`,
    description: "One host's NixOS system. Its identity is its closure: the store path of the configuration's `system.build.toplevel`, " +
        "evaluated (not built) in Check, so a preview shows the old and new closure and the package versions that change without " +
        "touching the host. An update builds the closure, copies the paths the host lacks, switches, runs the health checks and " +
        "returns the host to the generation it ran before (by number) if any of that fails. Refresh reads what the host runs. " +
        "Delete leaves the host running its system.",
    inputs: {
        ...connectionInputs,
        connectTimeoutSeconds: { schema: connectionSchema.shape.connectTimeoutSeconds, description: "Seconds to wait for the SSH connection; default 10." },
        sudoPassword: {
            schema: sudoPasswordSchema, secret: true,
            description: "The deploy user's sudo password, for a host whose sudo asks for one (NixOS's default for wheel): given to " +
                "`sudo -S` on standard input only, never in an argument list, a log, an error or a file. A wrong one fails before anything " +
                "runs as root. Always a secret.",
        },
        flake: {
            schema: flakeSchema,
            description: "The flake holding the configuration: a local path (\"./nix\", relative to the project) or a reference (\"github:owner/repo/rev\").",
        },
        configuration: { schema: configurationNameSchema, description: "The name under the flake's `nixosConfigurations`." },
        evaluateWith: {
            schema: z.array(configurationNameSchema).max(10000),
            description: "Other configurations of the same flake that this program deploys (NixosFleet sets its hosts'): the first " +
                "check of the flake evaluates them together with this one, over the evaluation workers. Default: every configuration " +
                "of the flake. It changes what is evaluated together, never the system: a change of it is no change of the resource.",
        },
        storePath: { schema: storePathSchema, description: "Instead of flake and configuration: an already-built system's store path." },
        action: { schema: actionSchema.default("switch"), description: "As in nixos-rebuild: \"switch\" (default), \"boot\" (next boot only) or \"test\" (now, no generation)." },
        healthChecks: { schema: healthChecksSchema, type: "HealthChecks", description: "Checks that must pass after activation, or the host is rolled back." },
        substituteOnDestination: {
            schema: systemSettingsSchema.shape.substituteOnDestination,
            description: "Let the host fetch paths from its own substituters instead of receiving them; default false.",
        },
        confirmTimeoutSeconds: {
            schema: systemSettingsSchema.shape.confirmTimeoutSeconds,
            description: "Seconds the host waits for the deployer's confirmation before it rolls itself back; default 60.",
        },
        reboot: {
            schema: systemSettingsSchema.shape.reboot,
            description: "Reboot the host when activating the system needs it: after a `boot` deploy, or when switch-to-configuration " +
                "exits 100 (the init interface changed). The deploy waits until the host is back, checks that it runs the new closure " +
                "and runs the health checks; a failure reboots it into the previous generation. Without it such a switch fails, and the " +
                "host stays on its previous generation. Default false.",
        },
        rebootOnKernelChange: {
            schema: systemSettingsSchema.shape.rebootOnKernelChange,
            description: "Reboot after a switch exactly when the new system's kernel, initrd or kernel modules differ from the ones the " +
                "host booted (`/run/booted-system` against `/run/current-system`), with the wait, health checks and rollback of `reboot`; " +
                "a change that keeps them does not reboot. Default false.",
        },
        rebootTimeoutSeconds: {
            schema: systemSettingsSchema.shape.rebootTimeoutSeconds,
            description: "Seconds a rebooting host may take to answer again; default 600.",
        },
        build: {
            schema: buildSchema.default("deployer"),
            description: "Where the system is built: \"deployer\" (default; the deployer's Nix, which sends builds to the remote builders its " +
                "`builders` setting names) or \"target\" (the deployer evaluates and sends the derivation; the host builds it, fetching what " +
                "its substituters and `binaryCaches` have). A failed build leaves the host's running system untouched.",
        },
        binaryCaches: {
            schema: systemSettingsSchema.shape.binaryCaches, listOf: "BinaryCache",
            description: "Binary caches the host fetches the paths it lacks from, trusting their keys for this deploy only; the deployer " +
                "sends only what no cache has.",
        },
        signingKey: {
            schema: systemSettingsSchema.shape.signingKey, secret: true,
            description: "A Nix secret key (`nix key generate-secret`) the deployer signs the closure it built with before sending it, so " +
                "that a host that requires signatures and trusts the key's public half accepts it. Implies `checkSignatures`.",
        },
        checkSignatures: {
            schema: systemSettingsSchema.shape.checkSignatures,
            description: "Send through the host's Nix daemon, which checks every path's signature against the keys the host trusts " +
                "(`nix.settings.trusted-public-keys`) and refuses the deploy before activation if one is unsigned or wrongly signed. " +
                "Default: true with a `signingKey`, false otherwise (the host takes the paths as from a trusted user).",
        },
        files: {
            schema: validatedOnly(hostFilesSchema), mapOf: "HostFile", secret: true,
            description: "Files written on the host from Pulumi secrets, by absolute path (or a bare name, which lands in /run/keys): only the " +
                "ones that differ from the host are sent; a file removed from here is removed from the host; a failed deploy puts the " +
                "previous versions back with the previous system.",
        },
    },
    outputs: {
        closure: { spec: { type: "string" }, required: true, description: "The store path of the system the host runs (as of the last up or refresh)." },
        derivation: { spec: { type: "string" }, description: "The derivation a deploy builds (for a flake's system)." },
        packages: { spec: { type: "object", additionalProperties: { type: "string" } }, required: true, description: "pname → version of the system's packages." },
        kernel: { spec: { type: "string" }, description: "The system's kernel version, when it has one." },
        nixosRelease: { spec: { type: "string" }, description: "The system's NixOS release, when it has one." },
        generation: { spec: { type: "integer" }, description: "The system profile generation the host runs." },
        adopted: {
            spec: { type: "boolean" },
            description: "True for a host brought under management by `pulumi import` (read as it runs, nothing deployed) until its first " +
                "deploy: while the program gives it the closure it runs, nothing is deployed to it.",
        },
        fileDigestKey: { spec: { type: "string" }, secret: true, description: "The key of the file digests, made when the resource is created." },
        fileDigests: {
            spec: { type: "object", additionalProperties: { type: "string" } }, secret: true,
            description: "Path → keyed digest of each file as last written or read on the host.",
        },
    },
};

export const WAIT_FOR_NIXOS: ResourceDefinition = {
    token: `${PACKAGE_NAME}:index:WaitForNixos`,
    description: "Waits until a freshly provisioned machine runs NixOS: it checks over SSH, with the pinned host key, for " +
        "/run/current-system; it does not sleep a fixed time. A new address or host key is waited for again.",
    inputs: {
        ...connectionInputs,
        timeoutSeconds: { schema: z.number().int().min(1).max(86400).default(900), description: "Seconds to wait for NixOS; default 900 (nixos-infect builds a system and reboots)." },
        pollSeconds: { schema: z.number().int().min(1).max(300).default(5), description: "Seconds between attempts; default 5." },
        consoleHint: {
            schema: z.string().max(1024).default("the console of the machine"),
            description: "Where a user should look when the host does not come up, for the timeout message.",
        },
    },
    outputs: {
        initialSystem: { spec: { type: "string" }, required: true, description: "The system the host ran when it was first seen as NixOS." },
    },
};

export const SSH_KEY_PAIR: ResourceDefinition = {
    token: `${PACKAGE_NAME}:index:SshKeyPair`,
    description: "An ed25519 SSH key pair made by the provider and kept in the state, the private key a secret. As a host key it is " +
        "known (and pinned) before the host first boots: no trust on first use.",
    inputs: {
        comment: { schema: z.string().min(1).max(256).regex(/^[^\n\r]*$/, "must be one line"), required: true, description: "The key's comment, e.g. the host's name; changing it makes a new key." },
    },
    outputs: {
        privateKey: { spec: { type: "string" }, required: true, secret: true, description: "OpenSSH private key text." },
        publicKey: { spec: { type: "string" }, required: true, description: "\"ssh-ed25519 AAAA…\"" },
    },
};

export const RESOURCES = [SYSTEM, WAIT_FOR_NIXOS, SSH_KEY_PAIR];

/** The zod schema of each input, by name (optional unless required): what Check and the SDK validate. */
export function inputSchemas(resource: ResourceDefinition): Record<string, z.ZodType> {
    return Object.fromEntries(Object.entries(resource.inputs).map(([name, input]) => [name, input.required ? input.schema : input.schema.optional()]));
}

/**
 * Inputs the outputs do not repeat: the secret ones (keys, file contents). The state then holds
 * each secret once, with the inputs, where the provider finds it again for the old state.
 */
export function inputOnlyProperties(resource: ResourceDefinition): string[] {
    return Object.entries(resource.inputs).filter(([, input]) => input.secret).map(([name]) => name);
}

/** The properties whose values are always secrets. */
export function secretProperties(resource: ResourceDefinition): string[] {
    return [...Object.entries(resource.inputs), ...Object.entries(resource.outputs)].filter(([, property]) => property.secret).map(([name]) => name);
}

function inputSpec(input: InputDefinition): PropertySpec {
    const spec: PropertySpec = input.type ? { $ref: typeRef(input.type) }
        : input.mapOf ? { type: "object", additionalProperties: { $ref: typeRef(input.mapOf) } }
            : input.listOf ? { type: "array", items: { $ref: typeRef(input.listOf) } }
            : specOf(input.schema);
    return { ...spec, description: input.description, ...(input.secret ? { secret: true } : {}) };
}

/** The Pulumi schema of each resource, by token. */
export function resourceSchemas(resources: readonly ResourceDefinition[]): Record<string, unknown> {
    return Object.fromEntries(resources.map((resource) => {
        const inputProperties = Object.fromEntries(Object.entries(resource.inputs).map(([name, input]) => [name, inputSpec(input)]));
        const requiredInputs = Object.entries(resource.inputs).filter(([, input]) => input.required).map(([name]) => name);
        const inputOnly = new Set(inputOnlyProperties(resource));
        const echoed = (name: string) => !inputOnly.has(name);
        const outputs = Object.fromEntries(Object.entries(resource.outputs).map(([name, output]) =>
            [name, { ...output.spec, description: output.description, ...(output.secret ? { secret: true } : {}) }]));
        const requiredOutputs = Object.entries(resource.outputs).filter(([, output]) => output.required).map(([name]) => name);
        return [resource.token, {
            description: resource.description,
            inputProperties,
            requiredInputs,
            properties: { ...Object.fromEntries(Object.entries(inputProperties).filter(([name]) => echoed(name))), ...outputs },
            required: [...requiredInputs.filter(echoed), ...requiredOutputs],
        }];
    }));
}

/**
 * The README of the generated SDKs (PyPI's page of the wheel, the Go module's): where a user of
 * another language than TypeScript first looks, so it says what they have and what they do not.
 */
const SDK_README = `# NixOS for Pulumi (\`nixos\`)

Deploys flake-pinned NixOS systems to hosts over SSH, keyed by their closure: \`pulumi preview\`
shows the closure and the packages that change, \`pulumi up\` copies what the host lacks,
switches, checks health and rolls back to the previous generation on any failure.

This SDK (Python, Go, .NET; YAML needs none) has the provider's resources:

- \`nixos:index:System\`: one host's NixOS system, from a flake's \`nixosConfigurations\`.
- \`nixos:index:WaitForNixos\`: waits until a new machine runs NixOS (after nixos-infect).
- \`nixos:index:SshKeyPair\`: an ed25519 key pair made by the provider, the private key a secret.

**The components \`NixosHost\`, \`NixosFleet\` and \`NixosBootstrap\` are TypeScript-only** (the npm
package \`pulumi-nixos\`): they are Node.js component classes, not yet packaged as a multi-language
component provider. From this SDK, make the instance with your cloud's own provider (its user data
can run nixos-infect), then declare a \`WaitForNixos\` and a \`System\` for it, one \`System\` per host
of a fleet.

The plugin \`pulumi-resource-nixos\` is fetched by the engine on first use (\`pluginDownloadURL\`), or
installed with \`pulumi plugin install resource nixos ${PACKAGE_VERSION}\`. On Linux it is one executable
with its own Node.js; on NixOS and macOS it needs Node.js 20 or later on the deployer's PATH. The
deployer needs Nix (2.8 to 2.31, or Lix 2.90 to 2.93) and OpenSSH.

Docs: https://github.com/pulumi-nixos/pulumi-nixos/tree/main/docs
`;

/** The Pulumi package schema (https://www.pulumi.com/docs/iac/extending-pulumi/schema/). */
export function packageSchema(): Record<string, unknown> {
    const resources = resourceSchemas(RESOURCES);
    const types = Object.fromEntries(Object.entries(TYPES).map(([name, type]) => [`${PACKAGE_NAME}:index:${name}`, { type: "object", ...type }]));
    return {
        name: PACKAGE_NAME,
        displayName: "NixOS",
        version: PACKAGE_VERSION,
        pluginDownloadURL: PLUGIN_DOWNLOAD_URL,
        description: "Deploys flake-pinned NixOS systems to hosts over SSH, keyed by their closure, with rollback by generation.",
        keywords: ["pulumi", "nixos", "nix", "category/infrastructure", "kind/native"],
        license: "Apache-2.0",
        publisher: "pulumi-nixos",
        meta: { moduleFormat: "(.*)" },
        language: {
            nodejs: { packageName: "@pulumi-nixos/nixos" },
            python: { packageName: "pulumi_nixos", respectSchemaVersion: true, readme: SDK_README },
            go: { importBasePath: "github.com/pulumi-nixos/pulumi-nixos/sdk/go/nixos", generateResourceContainerTypes: false, respectSchemaVersion: true },
            csharp: { rootNamespace: "PulumiNixos", packageReferences: { Pulumi: "3.*" } },
        },
        config: {},
        provider: { description: "The nixos provider: no configuration; each resource carries its own connection." },
        types,
        resources,
    };
}
