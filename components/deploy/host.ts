// The few verbs a deploy needs from a host (after Colmena's Host): run a command, copy a closure.
// Stages take a Host, so they run the same against a remote machine or the deployer itself.
import { copyClosure, withExportedPaths } from "../transport/nix";
import { ProcessResult, runProcess } from "../transport/process";
import { RemoteCommandError, RemoteRunOptions, SshConnection } from "../transport/ssh";

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
    copyClosure(storePath: string, missing: readonly string[], options: CopyOptions): Promise<void>;
}

export interface CopyOptions {
    /** Let the host fetch what it can from its own substituters. */
    substituteOnDestination: boolean;
    /** Have the host check every path's signature (its Nix daemon refuses one no key it trusts signed). */
    checkSignatures: boolean;
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

    /**
     * A host that checks signatures or substitutes gets the closure through `nix copy` (its Nix
     * daemon checks, or its substituters serve, each path). Otherwise it takes the missing paths as
     * a trusted user's, as `nix copy` to `ssh://` would have it do: one export of them, shared by
     * the hosts copying the same paths at once, streamed to its `nix-store --import` on the shared
     * connection: the deployer starts no Nix process per host.
     */
    copyClosure(storePath: string, missing: readonly string[], { substituteOnDestination, checkSignatures }: CopyOptions): Promise<void> {
        if (checkSignatures || substituteOnDestination) {
            const storeUri = checkSignatures ? this.connection.daemonStoreUri : this.connection.storeUri;
            return copyClosure(storePath, storeUri, { sshOpts: this.connection.nixSshOpts, substituteOnDestination });
        }
        return withExportedPaths(missing, async (file) => {
            await this.connection.check(`importing ${missing.length} store paths`, ["nix-store", "--import"], { inputFile: file });
        });
    }
}

/** The deployer itself (nixos-rebuild on this machine): same store, so copying is a no-op. */
export class LocalHost implements Host {
    readonly name = "localhost";

    run(argv: readonly string[], options: RemoteRunOptions = {}): Promise<ProcessResult> {
        return runProcess(argv[0], argv.slice(1), { timeoutMs: options.timeoutMs, input: options.input, onStderrLine: options.onStderrLine });
    }

    async check(what: string, argv: readonly string[], options?: RemoteRunOptions): Promise<string> {
        const result = await this.run(argv, options);
        if (result.code !== 0) throw new RemoteCommandError(this.name, what, result);
        return result.stdout;
    }

    async copyClosure(): Promise<void> {
        // The closure was built into this machine's store.
    }
}
