// The few verbs a deploy needs from a host (after Colmena's Host): run a command, copy a closure.
// Stages take a Host, so they run the same against a remote machine or the deployer itself.
import { addressWithPort } from "../schema/inputs";
import { copyClosure, StorePathInfo, withExportedPaths } from "./transport/nix";
import { ProcessResult, runProcess } from "./transport/process";
import { outputOf, RemoteRunOptions, RootAccess, runAsUser, SshConnection, UserSshTarget } from "./transport/ssh";

export interface Host {
    /** How messages name the host ("10.0.0.5:22", "localhost"). */
    readonly name: string;
    /** Runs an argument vector on the host; resolves whatever its exit code. */
    run(argv: readonly string[], options?: RemoteRunOptions): Promise<ProcessResult>;
    /** Runs an argument vector and returns its output, or throws an error that says `what` failed. */
    check(what: string, argv: readonly string[], options?: RemoteRunOptions): Promise<string>;
    /**
     * Copies the paths of a closure (of a .drv, the derivation's closure) the host does not have
     * yet: `missing`, every one of them the host lacks, as its probe found.
     */
    copyClosure(storePath: string, missing: readonly StorePathInfo[], options: CopyOptions): Promise<void>;
    /** How commands become root on the host; throws when sudo refuses the password it was given. */
    rootAccess(): Promise<RootAccess>;
}

export interface CopyOptions {
    /** Let the host fetch what it can from its own substituters. */
    substituteOnDestination: boolean;
    /** Have the host check every path's signature (its Nix daemon refuses one no key it trusts signed). */
    checkSignatures: boolean;
}

/**
 * The most missing bytes sent through a shared export, which is written to the deployer's
 * temporary directory (often memory) while hosts copy it; a larger copy (a first deploy, a
 * release upgrade) goes through `nix copy`, which streams.
 */
export const SHARED_EXPORT_MAX_BYTES = 256 * 2 ** 20;

/**
 * Whether the paths go through one shared export: when the host takes them as a trusted user's
 * and they are small enough to keep on the deployer's disk while they are copied. A host that
 * checks signatures or substitutes gets them through `nix copy`, whose daemon checks, or whose
 * substituters serve, each path.
 */
export function sharesExport(missing: readonly StorePathInfo[], { substituteOnDestination, checkSignatures }: CopyOptions): boolean {
    return !checkSignatures && !substituteOnDestination && missing.reduce((sum, info) => sum + info.narSize, 0) <= SHARED_EXPORT_MAX_BYTES;
}

/** A host reached over SSH: the deploy's one shared, host-key-pinned connection. */
export class SshHost implements Host {
    constructor(private readonly connection: SshConnection) {}

    get name(): string {
        return this.connection.host;
    }

    run(argv: readonly string[], options?: RemoteRunOptions): Promise<ProcessResult> {
        return this.connection.run(argv, options);
    }

    check(what: string, argv: readonly string[], options?: RemoteRunOptions): Promise<string> {
        return this.connection.check(what, argv, options);
    }

    rootAccess(): Promise<RootAccess> {
        return this.connection.rootAccess();
    }

    /**
     * Through a shared export (see sharesExport), the host takes the missing paths as a trusted
     * user's, as `nix copy` to `ssh://` would have it do: one export of them, shared by the hosts
     * copying the same paths at once, read by its `nix-store --import` on the shared connection, so
     * that the deployer starts no Nix process per host. Otherwise through `nix copy`.
     */
    copyClosure(storePath: string, missing: readonly StorePathInfo[], options: CopyOptions): Promise<void> {
        if (!sharesExport(missing, options)) {
            const storeUri = options.checkSignatures ? this.connection.daemonStoreUri : this.connection.storeUri;
            return copyClosure(storePath, storeUri, { sshOpts: this.connection.nixSshOpts, substituteOnDestination: options.substituteOnDestination });
        }
        return withExportedPaths(missing.map((info) => info.path), async (file) => {
            await this.connection.check(`importing ${missing.length} store paths`, ["nix-store", "--import"], { inputFile: file });
        });
    }
}

/**
 * A host as the user reaches it with their own OpenSSH (runAsUser), to read what it runs before
 * it is adopted: it runs unprivileged commands only and copies nothing.
 */
export class UserSshHost implements Host {
    readonly name: string;

    constructor(private readonly target: UserSshTarget) {
        this.name = addressWithPort(target.address, target.port);
    }

    run(argv: readonly string[], options: RemoteRunOptions = {}): Promise<ProcessResult> {
        if (options.privileged || options.input !== undefined || options.inputFile !== undefined) {
            throw new Error(`${this.name}: a host reached through the user's own ssh only answers questions (no root, no input)`);
        }
        return runAsUser(this.target, argv, options.timeoutMs);
    }

    async check(what: string, argv: readonly string[], options?: RemoteRunOptions): Promise<string> {
        return outputOf(this.name, what, await this.run(argv, options));
    }

    async copyClosure(): Promise<void> {
        throw new Error(`${this.name}: nothing is copied to a host before it is adopted`);
    }

    async rootAccess(): Promise<RootAccess> {
        throw new Error(`${this.name}: nothing runs as root on a host before it is adopted`);
    }
}

/** The deployer itself (nixos-rebuild on this machine): same store, so copying is a no-op. */
export class LocalHost implements Host {
    readonly name = "localhost";

    run(argv: readonly string[], options: RemoteRunOptions = {}): Promise<ProcessResult> {
        return runProcess(argv[0], argv.slice(1), { timeoutMs: options.timeoutMs, input: options.input, onStderrLine: options.onStderrLine });
    }

    async check(what: string, argv: readonly string[], options?: RemoteRunOptions): Promise<string> {
        return outputOf(this.name, what, await this.run(argv, options));
    }

    async copyClosure(): Promise<void> {
        // The closure was built into this machine's store.
    }

    async rootAccess(): Promise<RootAccess> {
        return "root"; // nixos-rebuild on this machine runs as its caller
    }
}
