// Boots a test host. Runs as the first process of the host's own PID, mount and UTS namespaces
// (inside its network namespace), prepares what a machine's boot would, and becomes its systemd.
// $1 the host's folder on this machine, $2 its host name, $3 an SSH session's PATH on NixOS, $4 the
// Debian 13 root whose /usr (systemd, sshd, libraries) the host runs.
//
// A host with a system profile boots NixOS-shaped: the generation its boot loader picks is
// activated (as NixOS's stage 2 does), its own sshd runs, and Debian's userland is hidden (/bin holds only
// sh, /usr/bin only env, /usr/sbin only pam_unix's helper), so every tool comes from /run/current-system/sw/bin.
// A host without one boots Debian-like: what a cloud image is before nixos-infect.
//
// Each host's folder gets a copy (boot.sh), which its supervisor runs at every boot. (The folder is
// under /tmp, which the host gets a tmpfs of its own for: the shell keeps reading the script
// through its open file.)
export const BOOT_SCRIPT = String.raw`set -eu
dir=$1
mount --bind "$4/usr" /usr
mount --bind "$4/etc/ld.so.cache" /etc/ld.so.cache
hostname "$2"

for mounted in nix etc/nix etc/ssh root home boot; do mount --bind "$dir/$mounted" "/$mounted"; done
mount --bind "$dir/etc/systemd" /etc/systemd/system
mount --bind "$dir/etc/systemd-generators" /etc/systemd/system-generators
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system /run/systemd/system.conf.d /run/sshd
# Every boot has a boot id of its own (the kernel's is the machine's, shared by all hosts).
cat /proc/sys/kernel/random/uuid > /run/boot_id
mount --bind /run/boot_id /proc/sys/kernel/random/boot_id

sshd=/usr/sbin/sshd
sshd_options=
profile=/nix/var/nix/profiles/system
if [ -e "$profile" ]; then
  # The boot loader: GRUB, from the grub.cfg the stand-in switch-to-configuration installs as
  # NixOS's install-grub.pl writes it. Its header boots grubenv's next_entry (what grub-reboot
  # sets) once, clearing it first, and otherwise the default entry, 0: "NixOS - Default", the
  # system the last switch or boot installed. Only a host that never had one installed boots the
  # profile's current generation.
  top=
  if [ -s /boot/grub/grub.cfg ]; then
    entry=$(grub-editenv /boot/grub/grubenv list 2>/dev/null | sed -n 's/^next_entry=//p')
    if [ -n "$entry" ]; then grub-editenv /boot/grub/grubenv set next_entry=; else entry=0; fi
    # An entry is a title (within a submenu: "SUBMENU>TITLE") or a top-level entry's position.
    top=$(awk -v want="$entry" '
      /^[ \t]*submenu "/ { split($0, quoted, "\""); menu = quoted[2] ">"; next }
      /^[ \t]*menuentry "/ { split($0, quoted, "\""); title = menu quoted[2]; position = menu == "" ? entries++ : -1; next }
      /systemConfig=/ && (title == want || position "" == want) { match($0, /systemConfig=[^ ]*/); print substr($0, RSTART + 13, RLENGTH - 13); exit }
      /^[ \t]*}/ { if (title != "") title = ""; else menu = "" }
    ' /boot/grub/grub.cfg)
  fi
  [ -n "$top" ] || top=$(readlink -f "$profile")
  # Every boot brings the network up, as NixOS's network units do; a system may take it down again.
  ip link set dev eth0 up 2>/dev/null || true
  for file in passwd group shadow sudoers; do mount --bind "$dir/etc/nixos-$file" "/etc/$file"; done
  "$top/activate"
  # What NixOS's stage 2 links after activation: the system this boot started.
  ln -sfn "$top" /run/booted-system
  # The system's own units, which NixOS keeps in /etc/systemd/system (the hosts share /etc).
  if [ -d "$top/units" ]; then cp -RP "$top/units/." /run/systemd/system/; fi
  sw=/run/current-system/sw/bin
  sshd=$(readlink -f "$sw/sshd")
  sshd_options="-o SetEnv=PATH=$3"
  # NixOS patches systemd's default PATH for units to systemd's own bin/ and nothing else.
  printf '[Manager]\nDefaultEnvironment=PATH=%s\n' "$(dirname "$(readlink -f "$sw/systemctl")")" > /run/systemd/system.conf.d/path.conf
  # The Nix daemon, socket-activated as on NixOS: what a deploy user other than root copies through.
  daemon=$(readlink -f "$sw/nix-daemon")
  daemon_dir=$(dirname "$daemon")
  printf '[Socket]\nListenStream=/nix/var/nix/daemon-socket/socket\n[Install]\nWantedBy=sockets.target\n' > /run/systemd/system/nix-daemon.socket
  printf '[Unit]\nDescription=Nix daemon\n[Service]\nExecStart=%s/nix-daemon --daemon\nKillMode=process\n' "$daemon_dir" > /run/systemd/system/nix-daemon.service
  # The boot's sshd.service, wanted unless the system has socket-activated sshd (startWhenNeeded),
  # which brings its own sshd.socket; the system's switch changes which (nix/fixtures/flake.nix).
  wants="nix-daemon.socket"
  if [ ! -e "$top/units/sshd.socket" ]; then
    mkdir -p /run/systemd/system/multi-user.target.wants
    ln -s ../sshd.service /run/systemd/system/multi-user.target.wants/sshd.service
  fi
  printf 'SESSION_PATH=%s\n' "$3" > /run/sshd-session.env
  sh_target=$(readlink -f "$sw/sh")
  env_target=$(readlink -f "$sw/env")
  ln=$(readlink -f "$sw/ln")
else
  wants="sshd.service"
fi
printf '[Unit]\nDescription=SSH daemon\n[Service]\nExecStart=%s -D -e -f /etc/ssh/sshd_config %s\nStandardError=inherit\nKillMode=process\nRestart=always\n' "$sshd" "$sshd_options" > /run/systemd/system/sshd.service
# The host's multi-user.target (in place of Debian's, which pulls in a whole machine's units):
# NixOS's systems add the units it wants, and switch-to-configuration starts it again.
printf '[Unit]\nDescription=Multi-User System\nWants=%s\nAfter=%s\nAllowIsolate=yes\n' "$wants" "$wants" > /run/systemd/system/multi-user.target

mount -t tmpfs tmpfs /tmp
if [ -e "$profile" ]; then
  mount -t tmpfs -o mode=0755 tmpfs /usr/sbin
  mount -t tmpfs -o mode=0755 tmpfs /usr/bin
  "$ln" -s "$sh_target" /usr/bin/sh
  "$ln" -s "$env_target" /usr/bin/env
  # Debian's pam_unix runs its helper from /usr/sbin; NixOS's runs the setuid wrapper itself.
  "$ln" -s /run/wrappers/bin/unix_chkpwd /usr/sbin/unix_chkpwd
fi
export container=pulumi-nixos-test-host
exec /lib/systemd/systemd --system --unit=multi-user.target
`;
