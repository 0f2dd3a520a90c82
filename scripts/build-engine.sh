#!/usr/bin/env bash
# Builds the real Pulumi engine from Go modules (no CLI can be downloaded here):
#   pulumi                         github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
#   pulumi-language-nodejs         the Node.js language host (see build_from_sdk below)
#   pulumi-language-yaml           the YAML language host, github.com/pulumi/pulumi-yaml (YAML_VERSION)
#   pulumi-language-python         the Python language host and its pulumi-language-python-exec shim
#   pulumi-language-go             the Go language host
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
  command -v pulumi-language-yaml >/dev/null && command -v pulumi-language-python >/dev/null &&
  command -v pulumi-language-go >/dev/null; then
  say "using pulumi v$version from PATH: $(command -v pulumi)"
  dirname "$(command -v pulumi)"
  exit 0
fi

built() { [ -x "$bin/$1" ]; }
if built pulumi && built pulumi-language-nodejs && built pulumi-language-yaml && built pulumi-resource-pulumi-nodejs &&
  built pulumi-language-python && built pulumi-language-python-exec && built pulumi-language-go; then
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

# The language hosts. Since sdk v3.69 each is its own module (such as
# github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3), which the module proxy
# reachable here refuses ("403 This module version is not available", at every version); the last
# sdk/v3 releases that still hold them as packages are v3.68.0 (Node.js, Python) and v3.60.0 (Go).
# They only launch the program; the language's SDK talks to the engine itself. The Python one runs
# a program through the pulumi-language-python-exec script of the same release, found on PATH.
build_from_sdk() ( # NAME SDK_VERSION PACKAGE, in a module folder of its own (work/NAME)
  say "building $1 from github.com/pulumi/pulumi/sdk/v3@$2"
  mkdir -p "$work/$1" && cd "$work/$1"
  printf 'module pulumi-nixos/engine-%s\ngo 1.21\nrequire github.com/pulumi/pulumi/sdk/v3 %s\n' "$1" "$2" >go.mod
  go build -o "$bin/$1" -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$2" "$3"
)
built pulumi-language-nodejs ||
  build_from_sdk pulumi-language-nodejs v3.68.0 github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs
if ! built pulumi-language-python || ! built pulumi-language-python-exec; then
  build_from_sdk pulumi-language-python v3.68.0 github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
  install -m 0755 "$(cd "$work/pulumi-language-python" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)/python/cmd/pulumi-language-python-exec" "$bin/"
fi
built pulumi-language-go || build_from_sdk pulumi-language-go v3.60.0 github.com/pulumi/pulumi/sdk/v3/go/pulumi-language-go

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
