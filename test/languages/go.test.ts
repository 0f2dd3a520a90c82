// A Go program through the real engine, with the nixos Go SDK required by its module path (sdk/),
// compiled and run by the Go language host. The story and its assertions:
// test/languages/languageStory.ts.
import { languageStory } from "./languageStory";
import { goEnv, goModule } from "./sdkEnvironments";

const PROGRAM = `package main

import (
	"github.com/pulumi-nixos/pulumi-nixos/sdk/go/nixos"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		conf := config.New(ctx, "")
		key, err := nixos.NewSshKeyPair(ctx, "key", &nixos.SshKeyPairArgs{Comment: pulumi.String("web")})
		if err != nil {
			return err
		}
		web, err := nixos.NewSystem(ctx, "web", &nixos.SystemArgs{
			Address:       pulumi.String(conf.Require("address")),
			HostPublicKey: pulumi.String(conf.Require("hostPublicKey")),
			PrivateKey:    conf.RequireSecret("privateKey"),
			Flake:         pulumi.String("./nix"),
			Configuration: pulumi.String(conf.Require("configuration")),
			HealthChecks: &nixos.HealthChecksArgs{
				Commands: nixos.CommandHealthCheckArray{&nixos.CommandHealthCheckArgs{
					Name:           pulumi.String("app is healthy"),
					Command:        pulumi.String(\`test "$(cat /run/standin/health)" = ok\`),
					TimeoutSeconds: pulumi.Float64(2),
				}},
			},
			Files: nixos.HostFileMap{"app-token": &nixos.HostFileArgs{Content: conf.RequireSecret("token")}},
		})
		if err != nil {
			return err
		}
		ctx.Export("closure", web.Closure)
		ctx.Export("generation", web.Generation)
		ctx.Export("publicKey", key.PublicKey)
		return nil
	})
}
`;

languageStory({
    language: "Go",
    setUp: () => ({ runtime: "go", source: PROGRAM, files: { "go.mod": goModule("nixos-story") }, envVars: goEnv() as Record<string, string> }),
});
