// Stage 2: build the closure the program evaluated, where the deploy says. A flake's system is
// built from the derivation that evaluation wrote, so a deploy neither evaluates the flake again
// (once per host, which costs a NixOS evaluation each) nor can build anything but what was previewed.
//
// On the deployer, Nix's own settings decide which machine runs each build: the deployer, or the
// remote builders its `builders` setting names (PULUMI_NIXOS_NIX_CONFIG). On the target, the
// deployer copies the derivation's closure (the .drv files and sources, no outputs) and the host
// realises it with its own Nix, fetching what its substituters and the deploy's caches have.
import { NixError, realiseDerivation, realisePath, StorePathInfo } from "./transport/nix";
import { RemoteCommandError } from "./transport/ssh";
import { BinaryCache, cacheOptions } from "./fetch";
import { CopyOptions, Host } from "./host";

/** Where a system comes from: an evaluated derivation, or a store path built elsewhere. */
export type SystemSource = { derivation: string } | { storePath: string };

/** Nix's lines that say what is being built and where (`building '…drv' on 'ssh://builder'...`), for the deploy's progress. */
const PROGRESS_LINE = /^building '/;

function progressTo(log: (message: string) => void, where: string): (line: string) => void {
    return (line) => {
        if (PROGRESS_LINE.test(line.trim())) log(`${where}: ${line.trim()}`);
    };
}

/** Nix up to 2.20 says "unable to start any build", 2.21 and later "Unable to start any build". */
const CANNOT_BUILD = /unable to start any build/i;

/** What to do when the deployer's Nix could not build at all, from what it printed; "" otherwise. */
export function cannotBuildHint(stderr: string): string {
    return CANNOT_BUILD.test(stderr)
        ? "\nThe deployer's Nix cannot build (max-jobs = 0 and no remote builders): set `build: \"target\"` to build the system on " +
            "the host, or give the deployer remote builders (`builders` in PULUMI_NIXOS_NIX_CONFIG)."
        : "";
}

/** Names the machine a failed build ran on, from what Nix printed: a remote builder, or the deployer. */
export function buildPlace(stderr: string): string {
    const remote = [...stderr.matchAll(/building '[^']+' on '([^']+)'/g)].pop();
    return remote ? `on the remote builder ${remote[1]}` : "on the deployer";
}

/** Builds (or realises) the system into the deployer's store, on the deployer or its remote builders. */
export async function buildOnDeployer(source: SystemSource, log: (message: string) => void): Promise<void> {
    try {
        if ("derivation" in source) await realiseDerivation(source.derivation, progressTo(log, "build"));
        else await realisePath(source.storePath);
    } catch (error) {
        if (!(error instanceof NixError)) throw error;
        throw new Error(`building ${describeSource(source)} ${buildPlace(error.stderr)} failed: ${error.message}${cannotBuildHint(error.stderr)}`);
    }
}

function describeSource(source: SystemSource): string {
    return "derivation" in source ? source.derivation : source.storePath;
}

/**
 * Builds the system on the host itself: copies the paths of the derivation's closure the host
 * lacks (`missing`), then realises it there. Only the store changes: the running system is not touched.
 */
export async function buildOnTarget(
    host: Host, derivation: string, missing: readonly StorePathInfo[], options: CopyOptions & { caches: BinaryCache[]; log: (message: string) => void },
): Promise<void> {
    const { caches, log } = options;
    if (missing.length > 0) await host.copyClosure(derivation, missing, options);
    try {
        await host.check(`building ${derivation} on the host`, ["nix-store", ...cacheOptions(caches), "--realise", derivation], {
            onStderrLine: progressTo(log, `build on ${host.name}`),
        });
    } catch (error) {
        if (error instanceof RemoteCommandError) throw new Error(`${error.message}\nThe host's running system was not changed.`);
        throw error;
    }
}
