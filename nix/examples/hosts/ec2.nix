# What every host converted by pulumi-nixos on EC2 needs: the disk layout its user data leaves
# (root filesystem labelled "nixos"), the boot disk of Nitro instance types, and SSH with the
# host key the program pinned (NixOS's default path, kept through nixos-infect).
{ lib, ... }: {
  boot.loader.grub.device = "/dev/nvme0n1"; # "/dev/xvda" on Xen types (t2, m4, c4, …)
  boot.initrd.availableKernelModules = [ "nvme" "ena" "xen_blkfront" "xen_netfront" ];
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  networking.useDHCP = lib.mkDefault true;

  services.openssh.enable = true;
  services.openssh.settings.PasswordAuthentication = false;
  services.openssh.hostKeys = [ { path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; } ];
  # The deployer's public key (the one given to the program as sshPublicKey):
  #   cp ~/.ssh/id_ed25519.pub nix/examples/deployer.pub
  # Without it, a deploy would lock the deployer out; magic rollback would undo that deploy.
  users.users.root.openssh.authorizedKeys.keyFiles = [ ../deployer.pub ];
  networking.firewall.allowedTCPPorts = [ 22 ];
  system.stateVersion = "24.11";
}
