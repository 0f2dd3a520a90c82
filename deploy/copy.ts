// Stage 3: copy only the store paths the host lacks.
import { closurePaths, NixError, StorePathInfo } from "./transport/nix";
import { CopyOptions, Host } from "./host";

export interface CopyPlan {
    /** Every path of the closure, with its size. */
    closure: StorePathInfo[];
    /** The paths the host does not have. */
    missing: StorePathInfo[];
    missingBytes: number;
}

/** Sizes every path of the closure (on the deployer, where it was built). */
export function listClosure(closure: string): Promise<StorePathInfo[]> {
    return closurePaths(closure);
}

/** Narrows the closure to the paths the host reported missing. */
export function planCopy(closure: StorePathInfo[], missingOnHost: readonly string[]): CopyPlan {
    const missingSet = new Set(missingOnHost);
    const missing = closure.filter((info) => missingSet.has(info.path));
    return { closure, missing, missingBytes: missing.reduce((sum, info) => sum + info.narSize, 0) };
}

/** Copies the paths of the closure the host lacks. */
export async function copyMissing(host: Host, closure: string, plan: CopyPlan, options: CopyOptions): Promise<void> {
    if (plan.missing.length === 0) return;
    await host.copyClosure(closure, plan.missing, options).catch((error: Error) => {
        if (!(error instanceof NixError && UNTRUSTED_SIGNATURE.test(error.stderr))) throw error;
        throw new Error(`${host.name} refused a path that no key it trusts has signed: ${error.message}\n` +
            "Sign the closure with `signingKey`, whose public key the host must trust (nix.settings.trusted-public-keys), or use " +
            "`binaryCaches` signed with a key it trusts.");
    });
}

/** What the host's Nix daemon says of a path without a signature by a key it trusts. */
const UNTRUSTED_SIGNATURE = /lacks a (valid )?signature/;

export function formatBytes(bytes: number): string {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
