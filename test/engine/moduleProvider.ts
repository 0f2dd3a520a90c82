import * as pulumi from "@pulumi/pulumi";

const METHODS = ["check", "diff", "create", "read", "update", "delete"] as const;

/** One provider object per module: Pulumi caches a provider's serialized code by object. */
const providers = new Map<string, pulumi.dynamic.ResourceProvider>();

/**
 * A dynamic provider whose methods load `modulePath` when they run. Pulumi serializes a dynamic
 * provider's code into the state; serializing a thin shim that names the module (instead of the
 * module's whole code and everything it imports) keeps the state small and the code that runs in
 * the provider process the same code the tests exercise. The same object is returned for a module
 * every time, so a fleet's resources serialize it once, not once each.
 */
export function moduleProvider(modulePath: string): pulumi.dynamic.ResourceProvider {
    const known = providers.get(modulePath);
    if (known) return known;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const implementation = require(modulePath) as Record<string, unknown>;
    const methods: Record<string, (...args: unknown[]) => unknown> = {};
    for (const method of METHODS) {
        if (typeof implementation[method] !== "function") continue;
        methods[method] = (...args: unknown[]) => require(modulePath)[method](...args);
    }
    const provider = methods as unknown as pulumi.dynamic.ResourceProvider;
    providers.set(modulePath, provider);
    return provider;
}
