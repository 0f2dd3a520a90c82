# pulumi-nixos: services that wait for the files a deploy writes from Pulumi secrets.
#
#   imports = [ ./nix/modules/key-files.nix ];
#   pulumi-nixos.keyFiles.db-password = { path = "/run/keys/db-password"; services = [ "postgresql" ]; };
#
# makes db-password-key.service, active once /run/keys/db-password exists, and orders postgresql
# after it (and makes it require it). A deploy writes files before the new system activates, so on
# a switch the wait ends at once; after a reboot (/run/keys is a tmpfs), the services wait until the
# next deploy puts the files back, as colmena's <name>-key.service does.
{ config, lib, pkgs, ... }:
let
  cfg = config.pulumi-nixos.keyFiles;
  unitFor = import ./key-file-unit.nix { sh = "${pkgs.bash}/bin/sh"; sleep = "${pkgs.coreutils}/bin/sleep"; };
in
{
  options.pulumi-nixos.keyFiles = lib.mkOption {
    default = { };
    description = "Files written by pulumi-nixos (NixosSystem's `files`) that services wait for: each makes <name>-key.service.";
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
        timeoutSeconds = lib.mkOption {
          type = lib.types.nullOr lib.types.ints.positive;
          default = null;
          description = "How long the wait may take before the unit (and the services that require it) fail; null waits for ever.";
        };
      };
    });
  };

  config.systemd.services = lib.mkMerge (
    [ (lib.mapAttrs' (name: key: lib.nameValuePair "${name}-key" (unitFor name key // { wantedBy = [ "multi-user.target" ]; })) cfg) ]
    ++ lib.mapAttrsToList (name: key: lib.genAttrs key.services (_: {
      after = [ "${name}-key.service" ];
      requires = [ "${name}-key.service" ];
    })) cfg
  );
}
