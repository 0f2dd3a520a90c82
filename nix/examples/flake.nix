{
  # Real NixOS configurations for the example program's AWS mode (index.ts): one per host, named
  # as the hosts are, each booting on BIOS and UEFI instances (hosts/ec2.nix). `nix flake lock`
  # pins nixpkgs to an exact revision in flake.lock (commit it); the test machines cannot fetch
  # nixpkgs, so this flake is not evaluated by the tests. Inside a git work tree a flake sees only
  # files git tracks: `git add -N FILE` makes a new file (deployer.pub, flake.lock) visible to it
  # without committing it.
  description = "pulumi-nixos example: NixOS web hosts on EC2 (written for NixOS 25.05)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      host = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [ ./hosts/ec2.nix ./hosts/web.nix { networking.hostName = name; } ];
      };
    in {
      nixosConfigurations = nixpkgs.lib.genAttrs [ "web-1" "web-2" "web-3" ] host;
    };
}
