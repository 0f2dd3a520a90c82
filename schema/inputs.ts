// The zod schemas shared by the components. Every value that reaches a host or a Nix command
// passes through one of these first, so that a mistake gets one clear message before any remote
// action, and the command builders can rely on the shapes.
import { isIPv4, isIPv6 } from "node:net";
import { z } from "zod";

const noControlCharacters = (value: string) => !/[\u0000-\u001f\u007f]/.test(value);

const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** An address without the brackets an IPv6 address may be given in ("[fd00::2]" is "fd00::2"). */
export function bareAddress(address: string): string {
    return /^\[.*\]$/.test(address) ? address.slice(1, -1) : address;
}

/** "address:port" for messages and IDs, an IPv6 address in brackets ("[fd00::2]:22"). */
export function addressWithPort(address: string, port: number): string {
    const bare = bareAddress(address);
    return isIPv6(bare) ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/**
 * A host name, an IPv4 address or an IPv6 address (bare or in brackets): no shell,
 * ssh-option or whitespace characters.
 */
export const addressSchema = z.string().min(1, "must not be empty").max(253, "is longer than 253 characters")
    // No zone index ("fe80::1%eth0"): `%` starts a token in ssh's configuration.
    .refine((address) => HOST_NAME.test(address) ? !/^[0-9.]+$/.test(address) || isIPv4(address) : !address.includes("%") && isIPv6(bareAddress(address)),
        "must be a host name, an IPv4 address or an IPv6 address (such as 203.0.113.5, fd00::2 or [fd00::2])");

export const portSchema = z.number().int("must be a whole number").min(1, "must be from 1 to 65535").max(65535, "must be from 1 to 65535");

export const userSchema = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a plain user name such as root");

/** An OpenSSH public key line, "TYPE BASE64 [comment]"; the comment is dropped. */
export const hostPublicKeySchema = z.string().trim()
    .regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$/,
        "must be an OpenSSH public key line such as \"ssh-ed25519 AAAA…\" (the host's /etc/ssh/ssh_host_ed25519_key.pub)")
    .transform((line) => line.split(" ").slice(0, 2).join(" "));

export const privateKeySchema = z.string()
    .regex(/^-----BEGIN (OPENSSH|RSA|EC) PRIVATE KEY-----\n[\s\S]+\n-----END \1 PRIVATE KEY-----\n?$/,
        "must be an unencrypted private key in OpenSSH or PEM format (the text of the file, not its path)")
    .max(16384, "is longer than any SSH private key");

/** One hop on the way to a host (OpenSSH's ProxyJump), its host key pinned like the host's. */
export const jumpHostSchema = z.object({
    address: addressSchema,
    port: portSchema.default(22),
    user: userSchema.default("root"),
    hostPublicKey: hostPublicKeySchema,
    /** Its own private key; default the deploy's. */
    privateKey: privateKeySchema.optional(),
});

/**
 * A sudo password. sudo reads one line, so a line break inside cannot be given; a final one (a
 * password read from a file) is not part of it.
 */
export const sudoPasswordSchema = z.string({ error: "must be text (a Pulumi secret)" })
    .max(1024, "is longer than 1024 characters")
    .transform((password) => password.replace(/\r?\n$/, ""))
    .refine((password) => password.length > 0, "must not be empty")
    .refine((password) => !/[\n\r\0]/.test(password), "must be one line: sudo reads the password up to the first line break (a final one is dropped)");

/** Connection settings for one host. */
export const connectionSchema = z.object({
    address: addressSchema,
    port: portSchema.default(22),
    user: userSchema.default("root"),
    privateKey: privateKeySchema,
    hostPublicKey: hostPublicKeySchema,
    connectTimeoutSeconds: z.number().int().min(1).max(300).default(10),
    /** The hops from the deployer to the host, the first one first. */
    jumpHosts: z.array(jumpHostSchema).max(8, "lists more than 8 jump hosts").default([]),
    sudoPassword: sudoPasswordSchema.optional(),
});

/** Flake reference schemes Nix fetches over an authenticated or local channel. */
const FLAKE_SCHEMES = ["path", "git+file", "git+https", "git+ssh", "github", "gitlab", "sourcehut", "https", "tarball+https", "file+https", "file", "flake"];

/**
 * A flake reference: a local path or a URL-like reference. Whitespace, quotes and shell
 * metacharacters are refused; `#` is refused because the configuration is named separately; a
 * scheme must be one Nix fetches locally or over TLS/SSH (no plaintext http).
 */
export const flakeSchema = z.string().min(1, "must not be empty").max(1024, "is longer than 1024 characters")
    .refine(noControlCharacters, "must not contain control characters")
    .regex(/^[A-Za-z0-9_+\-./:~@=?&%,]+$/, "must be a flake reference such as \"./nix\", \"path:/abs/dir\" or \"github:owner/repo/rev\" (no spaces, quotes, # or shell characters)")
    .refine((flake) => {
        const scheme = /^([a-z][a-z0-9+]*):/.exec(flake)?.[1];
        return scheme === undefined || FLAKE_SCHEMES.includes(scheme);
    }, `must use one of the schemes ${FLAKE_SCHEMES.join(", ")} (or be a local path)`);

/** A nixosConfigurations attribute name, safe to write inside a Nix string literal. */
export const configurationNameSchema = z.string().min(1, "must not be empty").max(128, "is longer than 128 characters")
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, "must be a nixosConfigurations attribute name (letters, digits, _ . -)");

export const storePathSchema = z.string().max(512)
    .regex(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$/, "must be a Nix store path such as /nix/store/…-nixos-system-…");

/** A derivation in the store, such as a system's toplevel written by `nix eval`. */
export const derivationSchema = storePathSchema.refine((path) => path.endsWith(".drv"), "must be a derivation (a store path ending in .drv)");

/** What the switch does, as in nixos-rebuild: activate now and at boot, at boot only, or now only. */
export const actionSchema = z.enum(["switch", "boot", "test"]);

const timeoutSeconds = z.number().positive("must be positive").max(3600, "must be at most 3600 seconds");

export const commandCheckSchema = z.object({
    /** A name for messages. */
    name: z.string().min(1).max(100).refine(noControlCharacters, "must not contain control characters"),
    /** A shell command run on the host by `sh -c`; healthy when it exits 0. */
    command: z.string().min(1, "must not be empty").max(4096, "is longer than 4096 characters")
        .refine((value) => !value.includes("\0"), "must not contain a NUL byte"),
    timeoutSeconds: timeoutSeconds.default(30),
});

export const httpCheckSchema = z.object({
    name: z.string().min(1).max(100).refine(noControlCharacters, "must not contain control characters"),
    /** Fetched from the deployer; healthy on the expected status. */
    url: z.string().max(2048).url("must be a URL").regex(/^https?:\/\//, "must be an http:// or https:// URL"),
    expectStatus: z.number().int().min(100).max(599).default(200),
    timeoutSeconds: timeoutSeconds.default(30),
});

export const healthChecksSchema = z.object({
    commands: z.array(commandCheckSchema).max(50).default([]),
    http: z.array(httpCheckSchema).max(50).default([]),
}).default({ commands: [], http: [] });

/** Where a file named without a folder lands on the host: a tmpfs on NixOS, so keys never reach a disk. */
export const DEFAULT_FILES_FOLDER = "/run/keys";

/** Folders no file may be written into: the Nix store and profiles, the kernel's, the deploy agents'. */
const FORBIDDEN_FOLDERS = ["/nix", "/proc", "/sys", "/dev", "/run/pulumi-nixos"];

const pathSegment = /^[A-Za-z0-9_@+=,-][A-Za-z0-9._@+=,-]*$/;

/**
 * Where a file goes on the host: an absolute path, or a bare file name (placed in /run/keys). Each
 * segment is a plain name: no `..`, no `.`, no empty segment, no spaces, quotes or shell characters.
 * Symbolic links on the way cannot be seen here; the host refuses them when it writes.
 */
export const hostFilePathSchema = z.string().min(1, "must not be empty").max(1024, "is longer than 1024 characters")
    .refine(noControlCharacters, "must not contain control characters")
    .refine((value) => value.startsWith("/") || !value.includes("/"), "must be an absolute path, or a file name alone (which lands in /run/keys)")
    .transform((value) => (value.startsWith("/") ? value : `${DEFAULT_FILES_FOLDER}/${value}`))
    .refine((value) => value.slice(1).split("/").every((segment) => pathSegment.test(segment)),
        "must be made of plain names separated by single slashes (letters, digits, . _ @ + = , -; no `..`, no `.`, no trailing slash)")
    .refine((value) => !FORBIDDEN_FOLDERS.some((folder) => value === folder || value.startsWith(`${folder}/`)),
        `must not be in ${FORBIDDEN_FOLDERS.join(", ")} (the Nix store is world-readable; the others are not files of yours)`);

/** A file mode in octal ("0400"): no setuid, setgid or sticky bit, and not writable by everyone. */
export const fileModeSchema = z.string().regex(/^0?[0-7]{3}$/, "must be an octal mode such as \"0400\" (no setuid, setgid or sticky bit)")
    .transform((value) => parseInt(value, 8))
    .refine((mode) => (mode & 0o002) === 0, "must not let every user write the file");

const base64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** One file written on the host from a Pulumi secret. Messages never quote the content. */
export const hostFileSchema = z.object({
    content: z.string({ error: "must be text (a Pulumi secret)" }).max(1_048_576 * 4 / 3 + 4, "is larger than 1 MiB"),
    /** How `content` is written: as UTF-8 text, or decoded from base64 (for binary files). */
    encoding: z.enum(["utf8", "base64"]).default("utf8"),
    owner: userSchema.default("root"),
    group: userSchema.default("root"),
    mode: fileModeSchema.default(0o400),
    /** Written before the new system activates (its services find their keys), or after (for a user it creates). */
    activation: z.enum(["before", "after"]).default("before"),
}).refine((file) => file.encoding !== "base64" || base64.test(file.content), { message: "is not valid base64", path: ["content"] });

/** Files by path (absolute, or a name in /run/keys); normalized to a list, each path once. */
export const hostFilesSchema = z.record(z.string(), hostFileSchema).superRefine((files, context) => {
    const seen = new Map<string, string>();
    for (const key of Object.keys(files)) {
        const result = hostFilePathSchema.safeParse(key);
        if (!result.success) {
            for (const issue of result.error.issues) context.addIssue({ code: "custom", path: [key], message: `path ${issue.message}` });
            continue;
        }
        const earlier = seen.get(result.data);
        if (earlier !== undefined) context.addIssue({ code: "custom", path: [key], message: `names the same file as ${earlier}` });
        seen.set(result.data, key);
    }
}).transform((files) => Object.entries(files)
    .map(([key, file]) => ({ path: hostFilePathSchema.parse(key), ...file }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)))
    .default([]);

/** Where a system is built: on the deployer (or its remote builders), or on the host it is for. */
export const buildSchema = z.enum(["deployer", "target"]);

/** A Nix signing key's name, as in `cache.example.org-1`: what `nix key generate-secret --key-name` takes. */
const nixKeyName = "[A-Za-z0-9][A-Za-z0-9._-]{0,99}";

/** A Nix public key, "name:base64" of 32 bytes (`nix key convert-secret-to-public`). */
export const nixPublicKeySchema = z.string().trim()
    .regex(new RegExp(`^${nixKeyName}:[A-Za-z0-9+/]{43}=$`), "must be a Nix public key such as \"cache.example.org-1:AAAA…=\" (nix key convert-secret-to-public)");

/** A Nix secret signing key, "name:base64" of 64 bytes (`nix key generate-secret`). Messages never quote it. */
export const nixSecretKeySchema = z.string().trim()
    .regex(new RegExp(`^${nixKeyName}:[A-Za-z0-9+/]{86}==$`), "must be a Nix secret key as `nix key generate-secret` prints it (name:base64)");

/** A binary cache a host fetches from, with the public key its paths are signed with. */
export const binaryCacheSchema = z.object({
    /** Where the host reaches it: http(s):// or s3://; plain characters only, as it reaches the host's command line. */
    url: z.string().max(1024)
        .regex(/^(https?|s3):\/\/[A-Za-z0-9._~:/?#@!$&*+,;=%-]+$/, "must be an http://, https:// or s3:// URL of a binary cache (no spaces or quotes)")
        .refine((url) => !url.includes("'"), "must not contain quotes"),
    publicKey: nixPublicKeySchema,
});

/** The inputs of one host's system, after the program has evaluated the flake. */
export const systemSettingsSchema = z.object({
    connection: connectionSchema,
    action: actionSchema.default("switch"),
    healthChecks: healthChecksSchema,
    substituteOnDestination: z.boolean().default(false),
    /** Seconds the host waits for the deployer's confirmation before it rolls itself back. */
    confirmTimeoutSeconds: z.number().int().min(5).max(3600).default(60),
    /** Reboot the host when activating the new system needs it (a `boot` deploy, a switch that exits 100). */
    reboot: z.boolean().default(false),
    /** Reboot after a switch that changes the kernel, initrd or kernel modules the host booted. */
    rebootOnKernelChange: z.boolean().default(false),
    /** Seconds a rebooting host may take to answer again. */
    rebootTimeoutSeconds: z.number().int().min(10).max(3600).default(600),
    /** Files written on the host from Pulumi secrets, rolled back with the system. */
    files: hostFilesSchema,
    /** Where the system is built. */
    build: buildSchema.default("deployer"),
    /** Binary caches the host fetches the paths it lacks from, before the deployer sends the rest. */
    binaryCaches: z.array(binaryCacheSchema).max(16, "lists more than 16 caches").default([]),
    /** Signs the paths the deployer built before they are sent (a secret). */
    signingKey: nixSecretKeySchema.optional(),
    /** Have the host check every received path's signature; default: when a signing key is given. */
    checkSignatures: z.boolean().optional(),
});

/**
 * A fleet's rollout settings, checked against its host names: the canary (a count of hosts from
 * the front of the fleet, or hosts by name) must leave at least one host to follow it.
 */
export function rolloutSchema(hostNames: string[]) {
    const fleetSize = hostNames.length;
    const leavesOne = `must leave at least one of the fleet's ${fleetSize} hosts to follow the canary`;
    const count = z.number().int().min(1, "must be at least 1 host").max(fleetSize - 1, leavesOne);
    const named = z.array(z.string()).min(1, "must name at least one host").superRefine((names, context) => {
        const unknown = names.filter((name) => !hostNames.includes(name));
        if (unknown.length) context.addIssue({ code: "custom", message: `names hosts the fleet does not have: ${unknown.join(", ")} (its hosts: ${hostNames.join(", ")})` });
        const repeated = names.filter((name, i) => names.indexOf(name) !== i);
        if (repeated.length) context.addIssue({ code: "custom", message: `names ${[...new Set(repeated)].join(", ")} more than once` });
        if (new Set(names).size >= fleetSize) context.addIssue({ code: "custom", message: leavesOne });
    });
    return z.object({
        canary: z.union([count, named], { error: `must be a whole number of hosts (1 to ${fleetSize - 1}) or a list of the fleet's host names` }).optional(),
        batchSize: z.number().int("must be a whole number").min(1, "must be at least 1").optional(),
    });
}

export type Connection = z.output<typeof connectionSchema>;
export type JumpHost = z.output<typeof jumpHostSchema>;
export type HealthChecks = z.output<typeof healthChecksSchema>;
export type CommandCheck = z.output<typeof commandCheckSchema>;
export type Action = z.output<typeof actionSchema>;
export type SystemSettings = z.output<typeof systemSettingsSchema>;
export type HostFileSetting = z.output<typeof hostFileSchema> & { path: string };

/** A field's path for messages; a key with control characters (a hostile file path) is quoted, so it cannot forge lines. */
export function fieldName(path: readonly PropertyKey[]): string {
    return path.map((key) => (typeof key === "string" && !noControlCharacters(key) ? JSON.stringify(key) : String(key))).join(".");
}

/** Validates `value` and throws one error that lists every mistake, each with its field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    const mistakes = result.error.issues.map((issue) => `  - ${issue.path.length ? fieldName(issue.path) : "value"}: ${issue.message}`);
    throw new InvalidInputError(`${what}: invalid input\n${mistakes.join("\n")}`);
}

export class InvalidInputError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "InvalidInputError";
    }
}
