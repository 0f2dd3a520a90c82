#!/usr/bin/env bash
# Makes the Debian 13 (trixie) root file system that carries today's NixOS majors into the lab:
# systemd 257, OpenSSH 10.0, Nix 2.26, sudo 1.9.16 (NixOS 25.05 ships systemd 257, OpenSSH 10.0,
# Nix 2.28). Test hosts boot with its /usr (testbed/boot.ts) and the fixtures' userland store paths
# hold its programs (nix/fixtures/flake.nix); the deployer's Nix 2.26 runs from it too (below).
# Built once from Debian's registry with mmdebstrap (about a minute, 280 MB), then reused while its
# package list is the same: a root is used only once it is complete (made in a temporary folder
# and renamed into place).
set -euo pipefail
root=/var/cache/pulumi-nixos/debian-13
# busybox-static: the stand-in systems' build tools, which run on the deployer (Debian 12's libc or
# 13's) and on a host alike, being static. grub-common: grub-editenv, which a test host's boot loader
# reads its one-time entry with, and the stand-in systems carry, as NixOS's GRUB systems do.
packages=systemd,openssh-server,openssh-client,nix-bin,sudo,iproute2,procps,util-linux,busybox-static,grub-common
say() { echo "[debian-13] $*" >&2; }

# The deployer's Nix 2.26: each program runs in a mount namespace of its own where /usr is the
# root's (so Nix, and the ssh it starts, are Debian 13's), and everything else (/nix, /tmp, the
# checkout, /etc) is this machine's. `PATH=$root.deployer-nix:$PATH` makes it the deployer's nix.
deployer_nix() {
  mkdir -p "$root.deployer-nix"
  for program in nix nix-store nix-env nix-instantiate nix-build; do
    cat > "$root.deployer-nix/$program" <<SCRIPT
#!/bin/sh
exec unshare --mount sh -c 'mount --bind "\$0/usr" /usr && mount --bind "\$0/etc/ld.so.cache" /etc/ld.so.cache && exec "\$@"' "$root" /usr/bin/$program "\$@"
SCRIPT
    chmod +x "$root.deployer-nix/$program"
  done
}

if [ "$(cat "$root/.packages" 2>/dev/null)" = "$packages" ]; then
  say "reusing $root"
  deployer_nix
  exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
say "making $root from Debian's trixie packages (about a minute, once)"
# The Debian mirror this machine's apt already uses (its sources name it for bookworm).
mirror=$(sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\) .*/\2/p' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
  grep -v security | head -n 1) || true
[ -n "$mirror" ] || { say "no Debian mirror found in this machine's apt sources"; exit 1; }
mkdir -p "$(dirname "$root")"
rm -rf "$root.partial"
mmdebstrap --quiet --variant=minbase --include="$packages" trixie "$root.partial" "$mirror"
echo "$packages" > "$root.partial/.packages"
rm -rf "$root"
mv "$root.partial" "$root"
deployer_nix
say "made $root: $(chroot "$root" dpkg-query -W -f "\${Package} \${Version}  " systemd openssh-server nix-bin sudo)"
