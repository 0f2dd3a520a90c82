// A Python program through the real engine, with the nixos SDK as Python users get it: the wheel
// built from sdk/python, installed with pip beside `pulumi` (test/languages/sdkEnvironments.ts),
// run by the Python language host. The story and its assertions: test/languages/languageStory.ts.
import { languageStory } from "./languageStory";
import { PythonEnvironment, pythonEnvironment } from "./sdkEnvironments";

const PROGRAM = `
import pulumi
import pulumi_nixos as nixos

config = pulumi.Config()
key = nixos.SshKeyPair("key", comment="web")
web = nixos.System(
    "web",
    address=config.require("address"),
    host_public_key=config.require("hostPublicKey"),
    private_key=config.require_secret("privateKey"),
    flake="./nix",
    configuration=config.require("configuration"),
    health_checks=nixos.HealthChecksArgs(commands=[
        nixos.CommandHealthCheckArgs(name="app is healthy", command='test "$(cat /run/standin/health)" = ok', timeout_seconds=2),
    ]),
    files={"app-token": nixos.HostFileArgs(content=config.require_secret("token"))},
)
pulumi.export("closure", web.closure)
pulumi.export("generation", web.generation)
pulumi.export("publicKey", key.public_key)
`;

let python: PythonEnvironment | undefined;

languageStory({
    language: "Python",
    setUp() {
        python = pythonEnvironment();
        return { runtime: "python", source: PROGRAM, envVars: python.envVars };
    },
    tearDown: () => python?.remove(),
});
