// Deploys flake-pinned NixOS systems to hosts over SSH, keyed by their closure, with rollback by generation.
package nixos
