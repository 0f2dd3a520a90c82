// Public exports of pulumi-nixos.
export { NixosSystem, NixosSystemArgs, HealthChecksArgs, CommandHealthCheck, HttpHealthCheck } from "./nixosSystem";
export { evaluateConfigurations, SystemEvaluation } from "./deploy/evaluate";
export { DeployError } from "./deploy/pipeline";
