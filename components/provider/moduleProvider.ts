import * as pulumi from "@pulumi/pulumi";

const METHODS = ["check", "diff", "create", "read", "update", "delete"] as const;

/**
 * A dynamic provider whose methods load `modulePath` when they run. Pulumi serializes a dynamic
 * provider's code into the state; serializing a thin shim that names the module (instead of the
 * module's whole code and everything it imports) keeps the state small and the code that runs in
 * the provider process the same code the tests exercise.
 */
export function moduleProvider(modulePath: string): pulumi.dynamic.ResourceProvider {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const implementation = require(modulePath) as Record<string, unknown>;
    const provider: Record<string, (...args: unknown[]) => unknown> = {};
    for (const method of METHODS) {
        if (typeof implementation[method] !== "function") continue;
        provider[method] = (...args: unknown[]) => require(modulePath)[method](...args);
    }
    return provider as unknown as pulumi.dynamic.ResourceProvider;
}
