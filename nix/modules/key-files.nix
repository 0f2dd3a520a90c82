# pulumi-nixos: services that start once the files a deploy writes are there. Written for NixOS
# 24.11 and 25.05 (switch-to-configuration-ng, systemd 256 and 257).
#
#   imports = [ ./nix/modules/key-files.nix ];
#   pulumi-nixos.keyFiles.db-password = { path = "/run/keys/db-password"; services = [ "postgresql" ]; };
#
# makes db-password-key.path, which watches for /run/keys/db-password, and db-password-key.service,
# active once the file is there, which starts postgresql; postgresql starts only once the file is
# there. No unit waits (key-file-unit.nix says why): a switch or a boot without the file goes on,
# and the services start the moment a deploy writes it, before or after the switch. After a reboot
# (/run/keys is a ramfs) the services start when the next deploy puts the files back, as colmena's
# <name>-key.service has them do.
{ config, lib, pkgs, ... }:
let
  cfg = config.pulumi-nixos.keyFiles;
  unitsFor = import ./key-file-unit.nix { inherit (pkgs) coreutils; };
in
{
  options.pulumi-nixos.keyFiles = lib.mkOption {
    default = { };
    description = "Files written by pulumi-nixos (NixosSystem's `files`) that services need: each makes <name>-key.path and <name>-key.service.";
    type = lib.types.attrsOf (lib.types.submodule {
      options = {
        path = lib.mkOption {
          type = lib.types.strMatching "/[A-Za-z0-9._@+=,/-]+";
          example = "/run/keys/db-password";
          description = "The file's absolute path on the host, as given to NixosSystem's `files`.";
        };
        services = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = [ ];
          description = "Services (without .service) that start only once the file exists.";
        };
      };
    });
  };

  config = {
    systemd.paths = lib.mapAttrs' (name: key: lib.nameValuePair "${name}-key" ((unitsFor name key).pathUnit // { wantedBy = [ "multi-user.target" ]; })) cfg;
    systemd.services = lib.mkMerge (
      [ (lib.mapAttrs' (name: key: lib.nameValuePair "${name}-key" (unitsFor name key).keyUnit) cfg) ]
      ++ lib.mapAttrsToList (name: key: lib.genAttrs key.services (_: (unitsFor name key).serviceUnit)) cfg
    );
  };
}
