/**
 * Module builds (what a `kvmX` is: a Linux release and its changes relative to 6.12), the shipped library of real
 * ones, and what can move between modules of different builds.
 *
 * @module
 */
export {
  BASELINE_BUILD,
  ERRNO_CHANGES,
  KVM_X86_QUIRK_IGNORE_GUEST_PAT,
  KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM,
  MODELLED_QUIRKS,
  type BuildChange,
  type BuildEffects,
  type CpuidBits,
  type CpuidReg,
  type ErrnoChangeId,
  type KvmBuild,
} from './build.js';
export {
  CHANGE_AMX,
  CHANGE_ASYNC_PF_INT,
  CHANGE_DISABLE_EXITS_AFTER_VCPUS,
  CHANGE_DISABLE_EXITS_NOT_ALLOWED,
  CHANGE_ENABLE_VIRT_AT_LOAD,
  CHANGE_MITIGATE_SMT_RSB,
  CHANGE_QUIRK_IGNORE_GUEST_PAT,
  CHANGE_QUIRK_SLOT_ZAP_ALL,
  CHANGE_QUIRK_VMCS12_FREEZE_IN_SMM,
  LINUX_5_16,
  LINUX_5_7,
  LINUX_6_1,
  LINUX_6_1_12,
  LINUX_6_11,
  LINUX_6_12,
  LINUX_6_14,
  LINUX_6_18,
  SHIPPED_BUILDS,
} from './library.js';
export {
  MAX_PROBED_CAP,
  MOVE_STEPS,
  MoveError,
  canMove,
  moveVm,
  probeModule,
  type EnabledCap,
  type ModuleFacts,
  type MovableVm,
  type MoveReason,
  type MoveSource,
  type MoveStep,
  type MoveVerdict,
  type MovedVm,
  type Rollback,
} from './compat.js';
export {
  KVM_X86_FIXES,
  VAC_OWNED_FILES,
  VAC_OWNED_FUNCTIONS,
  classifyFix,
  fixShare,
  type FixArea,
  type KvmFix,
} from './fixes.js';
export { CANARY_STATS, canaryArms, readKvmStats, type CanaryArm, type KvmStatValues } from './ab-stats.js';
