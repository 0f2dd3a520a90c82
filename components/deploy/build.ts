// Stage 2, on the deployer: build the closure the program evaluated. A flake's system is built
// from the derivation that evaluation wrote, so a deploy neither evaluates the flake again (once
// per host, which costs a NixOS evaluation each) nor can build anything but what was previewed.
import { realiseDerivation, realisePath } from "../transport/nix";

/** Where a system comes from: an evaluated derivation, or a store path built elsewhere. */
export type SystemSource = { derivation: string } | { storePath: string };

/** Builds (or realises) the system into the deployer's store. */
export async function buildSystem(source: SystemSource): Promise<void> {
    if ("derivation" in source) await realiseDerivation(source.derivation);
    else await realisePath(source.storePath);
}
