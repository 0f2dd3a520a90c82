# What every host converted by pulumi-nixos on EC2 needs: the disk layout its user data leaves
# (root file system labelled "nixos" with /boot on it, the ESP labelled "ESP"), a boot loader that
# boots with BIOS (Xen types: t2, m4, c4, …) and with UEFI (Nitro types, which boot Ubuntu 24.04
# with UEFI), and SSH with the host key the program pinned (NixOS's default path, kept through
# nixos-infect).
{ lib, ... }: {
  # GRUB for both firmwares: into the disk's BIOS boot partition (Ubuntu's and Debian's images have
  # one) and, as EFI/BOOT/BOOTX64.EFI, onto the ESP. The ESP (about 100 MB) holds nothing else: the
  # kernels stay in /nix/store on the root file system, which GRUB reads, so no generation copies
  # anything onto it.
  boot.loader.grub = {
    device = "/dev/nvme0n1"; # "/dev/xvda" on Xen types
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  boot.loader.efi.efiSysMountPoint = "/boot/efi";
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  fileSystems."/boot/efi" = { device = "/dev/disk/by-label/ESP"; fsType = "vfat"; };
  boot.initrd.availableKernelModules = [ "nvme" "ena" "xen_blkfront" "xen_netfront" ];
  # The boot on the serial console, which `aws ec2 get-console-output` shows.
  boot.kernelParams = [ "console=ttyS0,115200n8" ];
  networking.useDHCP = lib.mkDefault true;

  services.openssh.enable = true;
  services.openssh.settings.PasswordAuthentication = false;
  services.openssh.hostKeys = [ { path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; } ];
  # The deployer's public key (the one given to the program as sshPublicKey). A flake sees only
  # files that git tracks, so make the new file visible to it without committing it:
  #   cp ~/.ssh/id_ed25519.pub nix/examples/deployer.pub && git add -N nix/examples/deployer.pub
  # Without it, a deploy would lock the deployer out; magic rollback would undo that deploy.
  users.users.root.openssh.authorizedKeys.keyFiles = [ ../deployer.pub ];
  networking.firewall.allowedTCPPorts = [ 22 ];
  system.stateVersion = "25.05";
}
