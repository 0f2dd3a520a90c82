# The units that start services once a file a pulumi-nixos deploy writes (NixosSystem's `files`) is
# there. Plain Nix without nixpkgs' lib, shared by key-files.nix (the NixOS module) and the test
# fixtures' stand-in systems. `coreutils` is a store path: a unit's PATH is not to be relied on.
#
# Nothing here waits: switch-to-configuration-ng starts every active target's wanted units and
# waits for all their jobs, and a unit that waited for a file the deploy writes only after the
# switch (`activation: "after"`), or never (a typo), would hang the switch and keep a rebooted host
# from reaching multi-user.target. Instead:
# - <name>-key.path, wanted by multi-user.target, watches for the file (a path unit is active at
#   once, so no switch or boot waits for it) and starts <name>-key.service when it appears;
# - <name>-key.service is active once the file exists, and starting it starts the services;
# - each service starts only once the file is there: a start without it (the switch's, the boot's)
#   is skipped by its condition, neither failed nor waiting.
{ coreutils }:
name: { path, services ? [ ], ... }:
let
  keyService = "${name}-key.service";
  serviceUnits = map (service: "${service}.service") services;
in
{
  pathUnit = {
    description = "Watch for ${path} (pulumi-nixos file ${name})";
    pathConfig = { PathExists = path; Unit = keyService; };
  };
  keyUnit = {
    description = "${path} is there (pulumi-nixos file ${name})";
    unitConfig = { ConditionPathExists = path; };
    wants = serviceUnits;
    before = serviceUnits;
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "${coreutils}/bin/true"; };
  };
  # What each of `services` gets.
  serviceUnit = {
    unitConfig = { ConditionPathExists = [ path ]; };
    after = [ keyService ];
  };
}
