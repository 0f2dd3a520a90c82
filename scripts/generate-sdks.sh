#!/usr/bin/env bash
# Writes the provider's schema (sdk/schema.json) and generates the Go, Python and .NET SDKs from it
# with Pulumi's own code generators (sdk/generate): sdk/go/nixos, sdk/python, sdk/dotnet. Needs Go
# and a compiled checkout (npm run build). Usage: scripts/generate-sdks.sh [OUTDIR] (default: sdk)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/sdk}" && cd "${1:-$root/sdk}" && pwd)
export PATH="$PATH:/usr/local/go/bin" GOFLAGS=-mod=mod CGO_ENABLED=0

node -e 'process.stdout.write(JSON.stringify(require(process.argv[1]).packageSchema(), null, 2) + "\n")' \
  "$root/dist/schema/resources.js" >"$out/schema.json"
rm -rf "$out/go/nixos" "$out/python" "$out/dotnet"
cd "$root/sdk/generate"
go run . "$out/schema.json" "$out"
# pkg/v3 v3.248 no longer has the .NET generator; v3.206 is the newest here that does (see dotnet.go).
go run -tags dotnet -modfile dotnet.mod . "$out/schema.json" "$out"
# The generated README where PyPI (setup.py reads it from its own folder) and the Go module show it.
cp "$out/python/pulumi_nixos/README.md" "$out/python/README.md"
cp "$out/python/pulumi_nixos/README.md" "$out/README.md"
