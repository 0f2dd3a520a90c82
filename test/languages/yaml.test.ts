// A Pulumi YAML program (runtime: yaml, no code of its own) through the real engine, the YAML
// language host built from Go modules and the installed plugin: the story every language tells
// (test/languages/languageStory.ts); and a project that names the plugin's folder instead.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { createTestStack } from "../engine/engine";
import { languageStory } from "./languageStory";

const PROGRAM = `
config:
  address: { type: string }
  hostPublicKey: { type: string }
  privateKey: { type: string, secret: true }
  configuration: { type: string }
  token: { type: string, secret: true }
resources:
  key:
    type: nixos:index:SshKeyPair
    properties:
      comment: web
  web:
    type: nixos:index:System
    properties:
      address: \${address}
      hostPublicKey: \${hostPublicKey}
      privateKey: \${privateKey}
      flake: ./nix
      configuration: \${configuration}
      healthChecks:
        commands:
          - name: app is healthy
            command: 'test "$(cat /run/standin/health)" = ok'
            timeoutSeconds: 2
      files:
        app-token:
          content: \${token}
outputs:
  closure: \${web.closure}
  generation: \${web.generation}
  publicKey: \${key.publicKey}
`;

languageStory({ language: "YAML", setUp: () => ({ runtime: "yaml", source: PROGRAM }) });

test("a project that names the plugin's folder in Pulumi.yaml (plugins.providers) uses it without installing it", async () => {
    const keys = await createTestStack("yaml-plugin-path", { runtime: "yaml", source: `
resources:
  key:
    type: nixos:index:SshKeyPair
    properties:
      comment: web
outputs:
  publicKey: \${key.publicKey}
` }, {}, { plugins: "project" });
    try {
        const result = await keys.stack.up();
        assert.match(result.outputs.publicKey.value, /^ssh-ed25519 AAAA/);
        const installed = path.join(keys.dir, "home/plugins");
        assert.deepEqual(fs.existsSync(installed) ? fs.readdirSync(installed).filter((entry) => entry.includes("nixos")) : [], [], "the plugin was installed");
        await keys.stack.destroy();
    } finally {
        await keys.remove();
    }
});
