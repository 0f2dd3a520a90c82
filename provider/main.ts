// pulumi-resource-nixos: the provider plugin the Pulumi engine launches. The engine passes its own
// address as the first argument and reads the port to connect to from the first line of stdout.
import { PACKAGE_VERSION, packageSchema } from "../schema/resources";
import { ProviderServer } from "./server";
import { sshKeyPair } from "./resources/sshKeyPair";
import { system } from "./resources/system";
import { waitForNixos } from "./resources/waitForNixos";

const engineAddress = process.argv.slice(2).find((argument) => !argument.startsWith("-"));
new ProviderServer({ version: PACKAGE_VERSION, schema: packageSchema(), handlers: [system, waitForNixos, sshKeyPair] }, engineAddress).listen().then((port) => {
    process.stdout.write(`${port}\n`);
}, (error: Error) => {
    process.stderr.write(`pulumi-resource-nixos: cannot serve: ${error.message}\n`);
    process.exit(1);
});
