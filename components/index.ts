// Public exports of pulumi-nixos.
export { NixosSystem, NixosSystemArgs, HealthChecksArgs, CommandHealthCheck, HttpHealthCheck, HostFileArgs, BinaryCacheArgs, JumpHostArgs } from "./nixosSystem";
export { NixosBootstrap, NixosBootstrapArgs } from "./nixosBootstrap";
export { NixosHost, NixosHostArgs, NixosHostImage, DeploySettings } from "./nixosHost";
export { NixosFleet, NixosFleetArgs, NixosFleetHost, NixosFleetHostOutputs } from "./nixosFleet";
export { SshKeyPair } from "./sshKeyPair";
export { WaitForNixos, WaitForNixosArgs } from "./waitForNixos";
export { DEFAULT_INFECT_PIN } from "../deploy/bootstrap/infect";
export { evaluateConfigurations, SystemEvaluation } from "../deploy/evaluate";
export { DeployError } from "../deploy/pipeline";
