// The folders are layers that point one way: schema/ at the bottom, the Pulumi-free deploy/ core
// above it, then provider/ (the gRPC protocol) and components/ (the library users import), which
// never import each other. A relative import running back up, or Pulumi inside the core, fails here.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../engine/engine";

/** Each layer and the project layers it may import (besides itself). */
const MAY_IMPORT: Record<string, string[]> = {
    schema: [],
    deploy: ["schema"],
    provider: ["schema", "deploy"],
    components: ["schema", "deploy"],
};

function sourcesOf(layer: string): string[] {
    return fs.readdirSync(path.join(REPO_ROOT, layer), { recursive: true, encoding: "utf8" })
        .filter((file) => file.endsWith(".ts")).map((file) => path.join(layer, file));
}

/** The layer (top folder) and the packages each import of a source file names. */
function importsOf(file: string): { layers: string[]; packages: string[] } {
    const source = fs.readFileSync(path.join(REPO_ROOT, file), "utf8");
    const specifiers = [...source.matchAll(/(?:from|import|import\(|require\()\s*["']([^"']+)["']/g)].map((match) => match[1]);
    // package.json is read for the version (from the compiled file's place), not a layer.
    const layers = specifiers.filter((specifier) => specifier.startsWith(".") && !specifier.endsWith("package.json"))
        .map((specifier) => path.normalize(path.join(path.dirname(file), specifier)).split(path.sep)[0]);
    return { layers, packages: specifiers.filter((specifier) => !specifier.startsWith(".")) };
}

for (const [layer, allowed] of Object.entries(MAY_IMPORT)) {
    test(`${layer}/ imports only ${[layer, ...allowed].join(", ")}`, () => {
        for (const file of sourcesOf(layer)) {
            const { layers, packages } = importsOf(file);
            const wrong = layers.filter((imported) => imported !== layer && !allowed.includes(imported));
            assert.deepEqual(wrong, [], `${file} imports ${wrong.join(", ")}, a layer above or beside it`);
            if (layer === "schema" || layer === "deploy") {
                assert.deepEqual(packages.filter((name) => name.startsWith("@pulumi/")), [], `${file} imports Pulumi into the Pulumi-free ${layer}/`);
            }
        }
    });
}
