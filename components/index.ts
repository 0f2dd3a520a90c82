// Public exports of pulumi-nixos.
export { NixosSystem, NixosSystemArgs, HealthChecksArgs, CommandHealthCheck, HttpHealthCheck, HostFileArgs, BinaryCacheArgs, JumpHostArgs } from "./nixosSystem";
export { NixosBootstrap, NixosBootstrapArgs } from "./nixosBootstrap";
export { NixosHost, NixosHostArgs, NixosHostImage, DeploySettings } from "./nixosHost";
export { NixosFleet, NixosFleetArgs, NixosFleetHost, NixosFleetHostOutputs } from "./nixosFleet";
export { SshKeyPair } from "./bootstrap/sshKeyPair";
export { WaitForNixos, WaitForNixosArgs } from "./bootstrap/waitForNixos";
export { DEFAULT_INFECT_PIN } from "./bootstrap/infect";
export { evaluateConfigurations, SystemEvaluation } from "./deploy/evaluate";
export { DeployError } from "./deploy/pipeline";
