/**
 * `@vac/fleet`: the user-space side of running several KVM modules on one host — what the RFC leaves to user space.
 * Move a running VM to another module in place ({@link moveInPlace}), upgrade a host by loading a new module and
 * moving its VMs under a plan, and roll an upgrade across a fleet of simulated hosts in waves. Everything here uses
 * only the public `/dev/kvm` ABI (through `@vac/kvm`'s VMM helpers) and the host's public API.
 *
 * @packageDocumentation
 */
import './events.js';

export { FLEET_EVENTS } from './events.js';
export { DEFAULT_SYSCALL_COSTS, MeteredProcess, ioctlName, type SyscallCosts, type SyscallCount } from './meter.js';
export { GuestVmm, defaultExitHandler, type ExitAction, type ExitHandler, type GuestVmmOptions, type InitialMsr, type VmIncarnation } from './guest-vmm.js';
export { HANDOFF_PHASES, MOVE_PHASES, moveInPlace, type MoveOptions, type MovePhase, type MoveResult, type PhaseRecord } from './move.js';
export { countingGuest, words, type CountingGuestOptions } from './guests.js';
export { describeUpgrade, orderVms, runUpgrade, upgradeAnnotations, type FailureRule, type MoveOrder, type PlanAction, type UpgradePlan, type UpgradeReport, type VmOutcome } from './plan.js';
export { FLEET_BUILDS, LINUX_6_18_APF_REVERTED, fleetBuild } from './fleet/builds.js';
export { generateFleet, type FleetHostSpec, type FleetSpec, type FleetVmSpec } from './fleet/spec.js';
export { INJECTED_FAULT_KINDS, drawHostFault, type FaultInjection, type InjectedFault, type InjectedFaultKind } from './fleet/faults.js';
export { runHostJob, type HostJob, type HostOutcome, type HostPlanSettings } from './fleet/host-job.js';
export { HostPool } from './fleet/pool.js';
export { runRollout, type FleetReport, type HostRecord, type RolloutOptions, type RolloutPolicy, type WaveRecord } from './fleet/rollout.js';
export { formatFleetReport, percentile, summarizeRollout, type RolloutSummary } from './fleet/report.js';
export { renderRolloutSvg, type RolloutSvgOptions } from './fleet/svg.js';
export { seededRandom, pick, type Random } from './fleet/random.js';
export { compareReleases, loadedModules, newestBuild, place, requireMitigations, spread, type ModuleCandidate, type PlacementPolicy, type VmNeeds } from './placement.js';
export { STRATEGIES, compareStrategies, formatStrategies, type Strategy, type StrategyAssumptions, type StrategyHost, type StrategyResult } from './strategies.js';
export { moveByHandoff, type HandoffResult } from './handoff.js';
export { CoreAllocator, SmtMonitor, checkSmtIsolation, trustDomainOf, type SmtLoadViolation, type SmtViolation } from './smt.js';
export { VmmSandbox, type SandboxNodeCheck, type VmmSandboxOptions } from './sandbox.js';
