#!/usr/bin/env bash
# Installs what `npm run demo`, `npm test` and `npm run bench` need on a fresh Debian machine (as
# root), skipping whatever is already there: Debian packages (Nix, OpenSSH, iproute2, util-linux,
# sudo for the test hosts, GNU time for measuring nix processes), node_modules (npm ci, when
# missing or not what package-lock.json pins), the Pulumi engine (scripts/build-engine.sh, minutes
# the first time, then cached), the Debian 13 root the test hosts and the Nix 2.26 deployer run
# (scripts/debian-13-root.sh, a minute the first time, then cached), and the compiled TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[setup] $*" >&2; }

missing=()
for package in nix-bin openssh-server iproute2 util-linux sudo time openssl; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm writes what it installed to node_modules/.package-lock.json: compare that with the lock file
# rather than timestamps, which a checkout changes without changing the contents.
node_modules_current() {
  node -e '
    const want = require("./package-lock.json").packages;
    const have = require("./node_modules/.package-lock.json").packages;
    const pin = (p) => p && [p.version, p.resolved, p.integrity].join(" ");
    const stale = Object.keys(want).filter((name) => name !== "" && pin(want[name]) !== pin(have[name]) && !(want[name].optional && !have[name]));
    process.exit(stale.length || Object.keys(have).some((name) => !(name in want)) ? 1 : 0);
  ' 2>/dev/null
}
if ! node_modules_current; then
  say "installing node_modules (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

export PATH="$PATH:/usr/local/go/bin"
bash scripts/build-engine.sh >/dev/null
bash scripts/debian-13-root.sh

say "compiling TypeScript and bundling the provider plugin"
rm -rf dist
node_modules/.bin/tsc -p .
node dist/scripts/plugin.js
