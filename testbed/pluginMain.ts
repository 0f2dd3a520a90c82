// pulumi-resource-testbed: the plugin serving testbed:index:Machine (see machineResource.ts), run
// by the engine like any provider plugin.
import { PACKAGE_VERSION, resourceSchemas } from "../schema/resources";
import { ProviderServer } from "../provider/server";
import { machine, MACHINE } from "./machineResource";

const engineAddress = process.argv.slice(2).find((argument) => !argument.startsWith("-"));
const schema = { name: "testbed", version: PACKAGE_VERSION, resources: resourceSchemas([MACHINE]) };
new ProviderServer({ version: PACKAGE_VERSION, schema, handlers: [machine] }, engineAddress).listen().then((port) => {
    process.stdout.write(`${port}\n`);
}, (error: Error) => {
    process.stderr.write(`pulumi-resource-testbed: cannot serve: ${error.message}\n`);
    process.exit(1);
});
