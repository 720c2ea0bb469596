/**
 * The builds a fleet can run, by name: `@vac/kvm`'s shipped library and {@link LINUX_6_18_APF_REVERTED}, a bad build
 * made of real changes, for canary rollouts to catch.
 *
 * @module
 */
import { CHANGE_ASYNC_PF_INT, CHANGE_QUIRK_IGNORE_GUEST_PAT, CHANGE_QUIRK_VMCS12_FREEZE_IN_SMM, SHIPPED_BUILDS, type KvmBuild } from '@vac/kvm';
import { UsageError } from '@vac/core';

/**
 * A **bad build** (hypothetical, made of real changes): Linux 6.18 with the interrupt-based async page fault series
 * reverted (`CHANGE_ASYNC_PF_INT`: 2635b5c4a0e4, 557a961abbe0, 72de5fa4c161 — as a distribution kernel that drops a
 * series while backporting would be). MSR_KVM_ASYNC_PF_INT and _ACK are gone from KVM_GET_MSR_INDEX_LIST and have no
 * handler, so a guest that enabled interrupt-based async page faults (Linux guests do at boot when
 * KVM_FEATURE_ASYNC_PF_INT is offered: `kvm_guest_cpu_init`) holds a value the build cannot restore: `canMove`
 * refuses its move, and a VMM that restores without checking loses the value. A canary catches it; a fleet-wide
 * rollout would strand every such VM.
 */
export const LINUX_6_18_APF_REVERTED: KvmBuild = Object.freeze({
  name: 'linux-6.18-apf-reverted',
  linux: '6.18',
  changes: Object.freeze([CHANGE_QUIRK_IGNORE_GUEST_PAT, CHANGE_QUIRK_VMCS12_FREEZE_IN_SMM, CHANGE_ASYNC_PF_INT]),
});

/** Every build a fleet can name: the shipped ones and the bad one. */
export const FLEET_BUILDS: readonly KvmBuild[] = Object.freeze([...SHIPPED_BUILDS, LINUX_6_18_APF_REVERTED]);

/** The build called `name`. @throws UsageError `ERR_UNKNOWN_NAME` for a name not in {@link FLEET_BUILDS} */
export function fleetBuild(name: string): KvmBuild {
  const b = FLEET_BUILDS.find((x) => x.name === name);
  if (b === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `no build ${JSON.stringify(name)} (known: ${FLEET_BUILDS.map((x) => x.name).join(', ')})`);
  return b;
}
