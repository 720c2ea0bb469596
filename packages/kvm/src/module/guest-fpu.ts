/**
 * The dynamic part of a vCPU's guest FPU (`struct fpu_guest`, arch/x86/kernel/fpu/core.c and xstate.c; the KVM side
 * in arch/x86/kvm/x86.c and cpuid.c): what the VMM's process may give its guests (its guest XSAVE permissions,
 * `arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)`), what KVM offers that process (`kvm_get_filtered_xcr0`: KVM_CAP_XSAVE2,
 * KVM_GET_SUPPORTED_CPUID), and how a vCPU's FPU grows when its CPUID gives it AMX tile data
 * (`kvm_check_cpuid` → `fpu_enable_guest_xfd_features` → `__xfd_enable_feature` → `fpstate_realloc`: the user-ABI
 * image becomes `uabi_size` bytes, 11008 with AMX).
 *
 * @module
 */
import { KernelError, XFEATURE_MASK_USER_DYNAMIC, XFEATURE_MASK_XTILE, type Process } from '@vac/core';
import { fpuUserConfig } from '@vac/core/internal';
import type { kvm_cpuid_entry2 } from '../abi/structs.js';
import type { KvmInstance } from './instance.js';
import { findCpuid } from './vcpu-cpuid.js';
import type { VcpuArch } from './vcpu-arch.js';
import type { X86Caps } from './x86-caps.js';
import { buildOf } from '../builds/build.js';

/** `sizeof(struct kvm_xsave)`: the image KVM_GET_XSAVE / KVM_SET_XSAVE carry, and the least a guest FPU's is. */
export const KVM_XSAVE_SIZE = 4096;

/** `XFEATURE_MASK_XTILE_CFG`. */
const XFEATURE_MASK_XTILE_CFG = XFEATURE_MASK_XTILE & ~XFEATURE_MASK_USER_DYNAMIC;

/**
 * `xstate_get_guest_group_perm()` of the calling process, the lock bit included: without a process (a probe from
 * the library itself) the default permissions, `fpu_user_cfg.default_features`.
 */
export function guestPermOf(inst: KvmInstance, proc: Process | undefined): bigint {
  if (proc !== undefined) return proc.xstatePermissions().guestPerm;
  return fpuUserConfig(inst.host.cpus[0]!).defaultFeatures;
}

/**
 * `kvm_get_filtered_xcr0()`: `kvm_caps.supported_xcr0`, and when it has dynamic features only those the process
 * may give its guests — with XTILE_CFG dropped too when XTILE_DATA is not permitted (setting one without the other
 * in XCR0 is illegal).
 */
export function filteredXcr0(caps: X86Caps, guestPerm: bigint): bigint {
  let permitted = caps.supportedXcr0;
  if ((permitted & XFEATURE_MASK_USER_DYNAMIC) !== 0n) {
    permitted &= guestPerm;
    if ((permitted & XFEATURE_MASK_USER_DYNAMIC) === 0n) permitted &= ~XFEATURE_MASK_XTILE_CFG;
  }
  return permitted;
}

/**
 * `fpu_alloc_guest_fpstate` for a new vCPU of `owner`'s VM: the guest permissions are locked
 * (`fpu_init_guest_permissions`), the image is `sizeof(struct kvm_xsave)`, and the user-visible features are the
 * kernel's defaults (no dynamic ones yet).
 */
export function allocGuestFpu(inst: KvmInstance, arch: VcpuArch, owner: Process): void {
  arch.fpuPerm = owner.xstatePermissions().lockGuest();
  arch.fpuUserXfeatures = fpuUserConfig(inst.host.cpus[0]!).defaultFeatures;
}

/**
 * The dynamic-feature part of `kvm_check_cpuid` for CPUID `entries` about to be set: the dynamic features of leaf
 * 0xD.0 EDX:EAX must be in the process's guest permissions (`__xfd_enable_feature`: EPERM otherwise); the vCPU's
 * FPU then grows to the permitted size (`fpstate_realloc`: `uabi_size`, the features user space may load). The state
 * already in the image is kept. @throws KernelError EPERM
 */
export function enableGuestXfdFeatures(inst: KvmInstance, arch: VcpuArch, entries: readonly kvm_cpuid_entry2[], owner: Process, op: string): void {
  if (!buildOf(inst).dynamicXsave) return; // a release before the AMX series: no such check, no growing
  const e = findCpuid(entries, 0xd, 0);
  if (e === undefined) return;
  const dynamic = (BigInt(e.eax >>> 0) | (BigInt(e.edx >>> 0) << 32n)) & XFEATURE_MASK_USER_DYNAMIC;
  if (dynamic === 0n) return;
  const perms = owner.xstatePermissions();
  if ((perms.guestPerm & dynamic) !== dynamic) {
    throw new KernelError('EPERM', op, `CPUID 0xD gives the guest XSAVE features 0x${dynamic.toString(16)} the process has not been permitted (arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM))`);
  }
  if ((arch.fpuXfeatures & dynamic) === dynamic) return; // fpstate_realloc is not needed again
  arch.fpuXfeatures |= dynamic;
  arch.fpuUserXfeatures |= dynamic;
  const size = perms.guestUserSize;
  if (size > arch.fpu.length) {
    const grown = new Uint8Array(size);
    grown.set(arch.fpu);
    arch.fpu = grown;
  }
  arch.fpuUabiSize = Math.max(arch.fpuUabiSize, size);
}
