// Stage 2, on the deployer: build the closure the program evaluated.
import { buildInstallable, realisePath } from "../transport/nix";
import { toplevelInstallable } from "./evaluate";

/** Where a system comes from: a flake configuration, or a store path built elsewhere. */
export type SystemSource = { flake: string; configuration: string } | { storePath: string };

export class ClosureMismatchError extends Error {
    constructor(expected: string, built: string) {
        super(`the flake now builds ${built}, not ${expected} as evaluated by the program ` +
            "(did the flake change during the deploy?); run `pulumi up` again to deploy what it builds now");
        this.name = "ClosureMismatchError";
    }
}

/** Builds (or realises) the closure and checks it is the one the program evaluated. */
export async function buildSystem(source: SystemSource, expectedClosure: string): Promise<void> {
    if ("storePath" in source) {
        await realisePath(source.storePath);
        return;
    }
    const built = await buildInstallable(toplevelInstallable(source.flake, source.configuration));
    if (built !== expectedClosure) throw new ClosureMismatchError(expectedClosure, built);
}
