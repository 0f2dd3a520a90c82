// The Go, Python and .NET SDKs, generated from the provider's schema by Pulumi's own code
// generators (sdk/generate, scripts/generate-sdks.sh): the committed ones are what the generators
// make of the current schema, the Go SDK compiles in a program that declares a System, and the
// Python SDK byte-compiles. (No .NET SDK can be installed on these machines to compile sdk/dotnet.)
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { REPO_ROOT } from "../engine/engine";
import { goEnv, goModule } from "./sdkEnvironments";

const SDK = path.join(REPO_ROOT, "sdk");
const GENERATED = ["schema.json", "README.md", "go/nixos", "python", "dotnet"];

let scratch: string;

before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-sdks-"));
});

after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Every file under `dir`, relative to it, with its content. */
function filesUnder(dir: string): Map<string, string> {
    const files = new Map<string, string>();
    for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
        if (!entry.isFile()) continue;
        const file = path.join(entry.parentPath, entry.name);
        files.set(path.relative(dir, file), fs.readFileSync(file, "latin1"));
    }
    return files;
}

test("the committed schema and SDKs are what the generators make of the provider's schema", () => {
    const fresh = path.join(scratch, "generated");
    execFileSync("bash", [path.join(REPO_ROOT, "scripts/generate-sdks.sh"), fresh], { env: goEnv(), stdio: ["ignore", "ignore", "inherit"] });
    for (const part of GENERATED) {
        const [committed, generated] = [path.join(SDK, part), path.join(fresh, part)];
        if (fs.statSync(committed).isFile()) {
            assert.equal(fs.readFileSync(committed, "utf8"), fs.readFileSync(generated, "utf8"), `${part} is out of date: run scripts/generate-sdks.sh`);
            continue;
        }
        const [old, now] = [filesUnder(committed), filesUnder(generated)];
        assert.deepEqual([...old.keys()].sort(), [...now.keys()].sort(), `sdk/${part} has other files than the generators make`);
        for (const [file, content] of now) assert.equal(old.get(file), content, `sdk/${part}/${file} is out of date: run scripts/generate-sdks.sh`);
    }
});

test("the Go SDK compiles in a program that declares a System", () => {
    const program = path.join(scratch, "go-program");
    fs.mkdirSync(program);
    fs.writeFileSync(path.join(program, "go.mod"), goModule("nixos-sdk-check"));
    fs.writeFileSync(path.join(program, "main.go"), `package main

import (
	"github.com/pulumi-nixos/pulumi-nixos/sdk/go/nixos"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		system, err := nixos.NewSystem(ctx, "web", &nixos.SystemArgs{
			Address:       pulumi.String("10.0.3.7"),
			HostPublicKey: pulumi.String("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZVjbKFFju8WPwD5kP6G0EpwYW86fZQ4vj3A4Nn0q57"),
			PrivateKey:    pulumi.ToSecret(pulumi.String("-----BEGIN OPENSSH PRIVATE KEY-----")).(pulumi.StringOutput),
			Flake:         pulumi.String("./nix"),
			Configuration: pulumi.String("web"),
			HealthChecks: &nixos.HealthChecksArgs{
				Commands: nixos.CommandHealthCheckArray{&nixos.CommandHealthCheckArgs{Name: pulumi.String("up"), Command: pulumi.String("true")}},
			},
		})
		if err != nil {
			return err
		}
		ctx.Export("closure", system.Closure)
		ctx.Export("packages", system.Packages)
		return nil
	})
}
`);
    execFileSync("go", ["build", "-o", path.join(scratch, "go-program-binary"), "."], { cwd: program, env: goEnv(), stdio: ["ignore", "ignore", "inherit"] });
    assert.ok(fs.statSync(path.join(scratch, "go-program-binary")).size > 0);
});

test("the Python SDK byte-compiles", () => {
    execFileSync("python3", ["-m", "compileall", "-q", path.join(SDK, "python")], {
        env: { ...process.env, PYTHONPYCACHEPREFIX: path.join(scratch, "pycache") }, stdio: ["ignore", "inherit", "inherit"],
    });
    assert.ok(fs.readdirSync(path.join(scratch, "pycache"), { recursive: true }).some((file) => /system\.cpython-\d+\.pyc$/.test(String(file))), "system.py was not compiled");
});
