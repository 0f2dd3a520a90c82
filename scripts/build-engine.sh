#!/usr/bin/env bash
# Builds the real Pulumi engine from Go modules (no CLI can be downloaded here):
#   pulumi                         github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
#   pulumi-language-nodejs         the Node.js language host (see LANGUAGE_HOST_SDK below)
#   pulumi-language-yaml           the YAML language host, github.com/pulumi/pulumi-yaml (YAML_VERSION)
#   pulumi-resource-pulumi-nodejs  the dynamic-provider shim shipped in @pulumi/pulumi
# into $PULUMI_NIXOS_ENGINE_DIR (default: ~/.cache/pulumi-nixos/engine, shared by every checkout),
# building only what is missing. A `pulumi` already on PATH at the wanted version is used instead.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=$(node -p "require('$root/node_modules/@pulumi/pulumi/package.json').version" 2>/dev/null ||
  node -p "require('$root/package.json').dependencies['@pulumi/pulumi'].replace(/^[^0-9]*/, '')")
engine_dir=${PULUMI_NIXOS_ENGINE_DIR:-$HOME/.cache/pulumi-nixos/engine}
bin="$engine_dir/v$version/bin"
YAML_VERSION=v1.25.0
say() { echo "[engine] $*" >&2; }

if command -v pulumi >/dev/null && [ "$(command -v pulumi)" != "$bin/pulumi" ] &&
  [ "$(pulumi version 2>/dev/null)" = "v$version" ] && command -v pulumi-language-nodejs >/dev/null &&
  command -v pulumi-language-yaml >/dev/null; then
  say "using pulumi v$version from PATH: $(command -v pulumi)"
  dirname "$(command -v pulumi)"
  exit 0
fi

built() { [ -x "$bin/$1" ]; }
if built pulumi && built pulumi-language-nodejs && built pulumi-language-yaml && built pulumi-resource-pulumi-nodejs; then
  say "reusing pulumi v$version built in $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { say "Go is needed to build the engine (looked for 'go' on PATH)"; exit 1; }
mkdir -p "$bin"
work=$(mktemp -d)
# go build is silent for minutes: say now and then that it is still at work.
started=$SECONDS
( while sleep 60 </dev/null >/dev/null 2>&1; do say "still building ($(((SECONDS - started) / 60)) min so far)"; done ) >/dev/null &
ticker=$!
trap 'kill "$ticker"; rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# The CLI: a wrapper module requires pkg/v3 and sdk/v3 at one version and repeats pkg's
# non-local replace, because `go install` refuses modules that have replace directives.
if ! built pulumi; then
say "building pulumi v$version from github.com/pulumi/pulumi/pkg/v3, once (4 to 9 minutes on 2 cores)"
mkdir -p "$work/cli" && cd "$work/cli"
cat >go.mod <<MOD
module pulumi-nixos/engine-cli
go 1.25
require (
	github.com/pulumi/pulumi/pkg/v3 v$version
	github.com/pulumi/pulumi/sdk/v3 v$version
)
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
MOD
go mod download github.com/pulumi/pulumi/pkg/v3
go build -o "$bin/pulumi.tmp" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$bin/pulumi.tmp" "$bin/pulumi"
say "built $("$bin/pulumi" version)"
fi

# The language host. Since sdk v3.69 it is its own module
# (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3), which the module proxy
# reachable here refuses ("403 This module version is not available", at every version). The last
# sdk/v3 release that still contains it as a package is v3.68.0; it only launches the program
# (`node …/@pulumi/pulumi/cmd/run`), and the SDK talks to the engine itself.
LANGUAGE_HOST_SDK=v3.68.0
if ! built pulumi-language-nodejs; then
say "building pulumi-language-nodejs from github.com/pulumi/pulumi/sdk/v3@$LANGUAGE_HOST_SDK"
mkdir -p "$work/language-host" && cd "$work/language-host"
cat >go.mod <<MOD
module pulumi-nixos/engine-language-host
go 1.21
require github.com/pulumi/pulumi/sdk/v3 $LANGUAGE_HOST_SDK
MOD
go build -o "$bin/pulumi-language-nodejs" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGUAGE_HOST_SDK" \
  github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs
fi

# The YAML language host, for Pulumi YAML programs (runtime: yaml). Its module has no replace
# directives, so `go install` builds it at its own dependencies' versions (it does not compile
# against the engine's newer pkg/v3).
if ! built pulumi-language-yaml; then
say "building pulumi-language-yaml $YAML_VERSION from github.com/pulumi/pulumi-yaml (minutes the first time)"
(cd "$work" && GOFLAGS= GOBIN="$work/yaml-bin" go install \
  -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=$YAML_VERSION" \
  "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@$YAML_VERSION")
mv "$work/yaml-bin/pulumi-language-yaml" "$bin/pulumi-language-yaml"
fi

# Dynamic providers run through this shim, which @pulumi/pulumi ships as a shell script.
install -m 0755 "$root/node_modules/@pulumi/pulumi/pulumi-resource-pulumi-nodejs" "$bin/"
say "engine ready in $bin"
echo "$bin"
