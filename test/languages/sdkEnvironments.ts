// The generated SDKs as users get them: the Python SDK as a wheel built from sdk/python and
// installed with pip into a virtual environment, beside the `pulumi` package at the engine's
// version; the Go SDK as a module required by its path (replaced by sdk/, as before a release).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../engine/engine";

/** The engine's version, which the Python and Go `pulumi` SDKs are pinned to. */
const ENGINE_VERSION: string = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "node_modules/@pulumi/pulumi/package.json"), "utf8")).version;

/** This process's environment with what `go build` needs here: the Go toolchain, and go.sum filled in as it resolves. */
export function goEnv(): NodeJS.ProcessEnv {
    return { ...process.env, PATH: `${process.env.PATH}:/usr/local/go/bin`, GOFLAGS: "-mod=mod", CGO_ENABLED: "0" };
}

/** go.mod of a program module that requires the nixos Go SDK by its path. */
export function goModule(moduleName: string): string {
    return `module ${moduleName}

go 1.25

require (
	github.com/pulumi-nixos/pulumi-nixos/sdk v0.0.0
	github.com/pulumi/pulumi/sdk/v3 v${ENGINE_VERSION}
)

replace github.com/pulumi-nixos/pulumi-nixos/sdk => ${path.join(REPO_ROOT, "sdk")}
`;
}

export interface PythonEnvironment {
    /** The folder of the virtual environment. */
    dir: string;
    /** The environment a program runs in with it active, as after `source venv/bin/activate`. */
    envVars: Record<string, string>;
    remove(): void;
}

/**
 * A virtual environment with `pulumi` at the engine's version and the nixos SDK's wheel, built
 * from sdk/python, installed with pip (its dependencies from PyPI).
 *
 * Programs find it on PATH, as an activated virtual environment: the Python language host built
 * here (sdk v3.68.0) takes `runtime.options.virtualenv` only as a command-line flag, which the
 * v3.248 engine no longer passes (it sends the options in the program's info instead).
 */
export function pythonEnvironment(): PythonEnvironment {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-python-"));
    const pip = (...args: string[]) => execFileSync(path.join(dir, "venv/bin/pip"), ["--disable-pip-version-check", "--quiet", ...args], { stdio: ["ignore", "ignore", "inherit"] });
    try {
        execFileSync("python3", ["-m", "venv", path.join(dir, "venv")], { stdio: "inherit" });
        // From a copy: setuptools leaves build/ and *.egg-info in the folder it builds.
        fs.cpSync(path.join(REPO_ROOT, "sdk/python"), path.join(dir, "sdk"), { recursive: true });
        pip("wheel", "--no-deps", path.join(dir, "sdk"), "--wheel-dir", path.join(dir, "wheels"));
        const [wheel] = fs.readdirSync(path.join(dir, "wheels")).filter((file) => file.endsWith(".whl"));
        pip("install", `pulumi==${ENGINE_VERSION}`, path.join(dir, "wheels", wheel));
    } catch (error) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw error;
    }
    const venv = path.join(dir, "venv");
    return {
        dir: venv,
        envVars: { PATH: `${path.join(venv, "bin")}:${process.env.PATH}`, VIRTUAL_ENV: venv },
        remove: () => fs.rmSync(dir, { recursive: true, force: true }),
    };
}
