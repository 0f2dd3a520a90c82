# The unit that waits for one file a pulumi-nixos deploy writes (NixosSystem's `files`): a oneshot
# that is active once the file exists, so services ordered after it start only when their key is
# there. Plain Nix without nixpkgs' lib, shared by key-files.nix (the NixOS module) and the test
# fixtures' stand-in systems. `sh` and `sleep` are store paths: a unit's PATH is not to be relied on.
{ sh, sleep }:
name: { path, timeoutSeconds ? null, ... }:
{
  description = "Wait for ${path} (pulumi-nixos file ${name})";
  serviceConfig = {
    Type = "oneshot";
    RemainAfterExit = true;
    TimeoutStartSec = if timeoutSeconds == null then "infinity" else toString timeoutSeconds;
    # $$ is systemd's literal $; the path is passed as an argument, never spliced into the script.
    ExecStart = "${sh} -c 'while [ ! -e \"$$1\" ]; do ${sleep} 0.2; done' wait-for ${path}";
  };
}
