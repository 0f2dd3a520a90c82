# A web server, so that a change shows up in `pulumi preview` as package versions.
{ pkgs, ... }: {
  services.nginx.enable = true;
  services.nginx.virtualHosts.default.root = pkgs.writeTextDir "index.html" "<h1>deployed by pulumi-nixos</h1>";
  networking.firewall.allowedTCPPorts = [ 80 ];
  environment.systemPackages = [ pkgs.htop pkgs.curl ];
}
