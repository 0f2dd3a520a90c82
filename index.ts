// An example program: a small fleet of NixOS hosts from one flake.
//
//   mode "local" (the default): three machines made on this computer (network namespaces running
//   a real OpenSSH server; needs root), which boot Debian-like and become NixOS when a stand-in
//   nixos-infect runs, deployed from the stand-in flake in nix/fixtures. `npm run demo` tells the
//   whole story with it.
//
//   mode "aws": EC2 instances converted by nixos-infect and deployed from your flake:
//     pulumi config set mode aws
//     pulumi config set aws:region eu-central-1
//     pulumi config set flake github:you/infra/<rev>        # or ./nix/examples
//     pulumi config set sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"
//     pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519
//
//   In either mode, `pulumi config set canary 1` (or '["web-2"]') deploys that host first and the
//   others only after it succeeded.
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { NixosFleet, NixosFleetHost, SshKeyPair } from "./components";
import { TestMachine } from "./testbed/testMachine";

const config = new pulumi.Config();
const hostNames = ["web-1", "web-2", "web-3"];

function localFleet(): NixosFleet {
    const flake = config.get("flake") ?? `path:${path.resolve(__dirname, "..", "nix", "fixtures")}`;
    // The stand-in configuration every host runs, and optionally one host given a broken system.
    const version = config.get("version") ?? "v1";
    const brokenHost = config.get("brokenHost");
    const deployer = new SshKeyPair("deployer-key", { comment: "pulumi-nixos deployer" });
    const hosts: Record<string, NixosFleetHost> = {};
    for (const name of hostNames) {
        const hostKey = new SshKeyPair(`${name}-host-key`, { comment: name });
        const machine = new TestMachine(`${name}-machine`, {
            hostPrivateKey: hostKey.privateKey,
            hostPublicKey: hostKey.publicKey,
            authorizedKey: deployer.publicKey,
            firstSystemFlake: flake,
            firstSystemConfiguration: "first-boot",
            infectAfterSeconds: 2,
            baseDir: path.join(os.tmpdir(), `pulumi-nixos-${pulumi.getStack()}`),
        });
        hosts[name] = {
            address: machine.address,
            hostPublicKey: hostKey.publicKey,
            configuration: name === brokenHost ? "switch-fails" : version,
            waitForBoot: true,
            bootTimeoutSeconds: 60,
        };
    }
    return new NixosFleet("fleet", {
        flake,
        sshPrivateKey: deployer.privateKey,
        canary: config.getObject<number | string[]>("canary"),
        batchSize: config.getNumber("batchSize"),
        deploy: {
            confirmTimeoutSeconds: 10,
            healthChecks: { commands: [{ name: "app is healthy", command: 'test "$(cat /run/standin/health)" = ok', timeoutSeconds: 5 }] },
        },
        hosts,
    });
}

function awsFleet(): NixosFleet {
    return new NixosFleet("fleet", {
        flake: config.require("flake"),
        sshPrivateKey: config.requireSecret("sshPrivateKey"),
        sshPublicKey: config.require("sshPublicKey"),
        canary: config.getObject<number | string[]>("canary"),
        batchSize: config.getNumber("batchSize") ?? 1,
        hosts: Object.fromEntries(hostNames.map((name) => [name, {
            aws: { instanceType: config.get("instanceType") ?? "t3.small", openPorts: [80], tags: { project: "pulumi-nixos-example" } },
        }])),
    });
}

const fleet = config.get("mode") === "aws" ? awsFleet() : localFleet();

/** Each host's address, closure, generation and whether it is in the canary. */
export const hosts = fleet.hosts;
/** The hosts that deploy first. */
export const canary = fleet.canary;
