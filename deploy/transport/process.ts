import { ChildProcessByStdio, spawn } from "node:child_process";
import * as fs from "node:fs";
import type { Readable, Writable } from "node:stream";

/** What a finished child process left behind. */
export interface ProcessResult {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
    /** True when the process was killed because it ran past its timeout. */
    timedOut: boolean;
}

export interface ProcessOptions {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    /** Written to standard input, which is then closed. */
    input?: string | Buffer;
    /** Instead of `input`: a file the process reads as its standard input, itself (not through this process). */
    inputFile?: string;
    /** Standard output goes to this file (created, or truncated) instead of into `stdout`. */
    outputFile?: string;
    /** Killed (SIGTERM, then SIGKILL two seconds later) after this long. */
    timeoutMs?: number;
    /** Called with each complete line of standard error as it arrives (progress reporting). */
    onStderrLine?: (line: string) => void;
}

/**
 * Runs a program with an argument vector (never through a local shell) and collects its output.
 * It does not throw on a non-zero exit: callers turn a result into an error that names their stage.
 */
export function runProcess(file: string, args: readonly string[], options: ProcessOptions = {}): Promise<ProcessResult> {
    if (options.input !== undefined && options.inputFile !== undefined) throw new Error("a process takes input or inputFile, not both");
    return new Promise((resolve, reject) => {
        const input = options.inputFile === undefined ? "pipe" : fs.openSync(options.inputFile, "r");
        const output = options.outputFile === undefined ? "pipe" : fs.openSync(options.outputFile, "w", 0o600);
        const child = spawn(file, args, {
            cwd: options.cwd,
            env: options.env ?? process.env,
            stdio: [input, output, "pipe"],
        }) as ChildProcessByStdio<Writable | null, Readable | null, Readable>;
        for (const descriptor of [input, output]) if (typeof descriptor === "number") fs.closeSync(descriptor);
        let stdout = "";
        let stderr = "";
        let pendingLine = "";
        let timedOut = false;
        let killTimer: NodeJS.Timeout | undefined;
        const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
            timedOut = true;
            child.kill("SIGTERM");
            killTimer = setTimeout(() => child.kill("SIGKILL"), 2000);
        }, options.timeoutMs);
        child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
            stderr += chunk;
            if (!options.onStderrLine) return;
            const lines = (pendingLine + chunk).split("\n");
            pendingLine = lines.pop() ?? "";
            lines.forEach(options.onStderrLine);
        });
        const finish = (code: number | null, signal: NodeJS.Signals | null) => {
            clearTimeout(timer);
            clearTimeout(killTimer);
            if (pendingLine && options.onStderrLine) options.onStderrLine(pendingLine);
            resolve({ code, signal, stdout, stderr, timedOut });
        };
        child.on("error", reject);
        child.on("close", finish);
        // A killed ssh multiplexing client has handed its pipes to the master connection, which
        // keeps them open while the remote command runs: after a timeout, its exit is the end.
        child.on("exit", (code, signal) => {
            if (!timedOut) return;
            child.stdout?.destroy();
            child.stderr.destroy();
            finish(code, signal);
        });
        child.stdin?.on("error", () => undefined); // a child that exits without reading its input
        child.stdin?.end(options.input ?? "");
    });
}
