/**
 * The x86 steps of KVM_CREATE_VCPU (virt/kvm/kvm_main.c `kvm_vm_ioctl_create_vcpu`, arch/x86/kvm/x86.c):
 * `kvm_arch_vcpu_precreate` checks the id against the VM's `max_vcpu_ids`; `kvm_arch_vcpu_create` +
 * `kvm_vcpu_reset` give the vCPU its x86 state (CPUID none, MSRs, FPU, the VM's default TSC frequency) and its reset
 * system registers (TR, LDTR, IDTR, the APIC base with BSP on the boot vCPU only), and with an in-kernel irqchip an
 * AP's MP state KVM_MP_STATE_UNINITIALIZED (it waits for INIT/SIPI); `kvm_arch_vcpu_postcreate`
 * synchronizes its TSC with the VM's. Its `kvm_run` mapping shows the VM's coalesced-MMIO ring.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_MAX_VCPU_IDS, KVM_MP_STATE_UNINITIALIZED } from '../abi/constants.js';
import { allocDirtyRing } from './dirty-ring.js';
import { allocGuestFpu } from './guest-fpu.js';
import { syncRingCopy } from './kernel-io.js';
import { vcpuArch } from './vcpu-arch.js';
import { resetSregs } from './vcpu-sregs.js';
import { setTscKhz, synchronizeTsc } from './vcpu-tsc.js';
import type { Vcpu } from './vcpu.js';
import { vmArch } from './vm-arch.js';
import type { Vm } from './vm.js';

/**
 * `kvm_arch_vcpu_precreate`: the id must be below the VM's `max_vcpu_ids` (KVM_CAP_MAX_VCPU_ID, else
 * KVM_MAX_VCPU_IDS). @throws KernelError EINVAL
 */
export function vcpuPrecreate(vm: Vm, id: number, op: string): void {
  const limit = vmArch(vm).vcpuIdLimit;
  if (id >= limit) throw new KernelError('EINVAL', op, `vCPU id ${id} is not below the VM's max_vcpu_ids (${limit})`);
}

/**
 * `kvm_arch_vcpu_create` + `kvm_vcpu_reset(vcpu, false)` + `kvm_arch_vcpu_postcreate`, once the vCPU's fd exists.
 * The VM's `max_vcpu_ids` is fixed from now on (Linux fixes it in precreate; the model waits for the creation to
 * succeed, so that a failed KVM_CREATE_VCPU leaves the VM as it was).
 */
export function vcpuCreated(v: Vcpu): void {
  const vmA = vmArch(v.vm);
  if (vmA.maxVcpuIds === 0) vmA.maxVcpuIds = KVM_MAX_VCPU_IDS;
  // kvm_arch_vcpu_create → fpu_alloc_guest_fpstate: the process's guest XSAVE permissions are locked now.
  allocGuestFpu(v.vm.instance, vcpuArch(v), v.vm.owner);
  // kvm_set_tsc_khz(vcpu, kvm->arch.default_tsc_khz): a rate the VM-wide KVM_SET_TSC_KHZ already accepted
  if (vmA.defaultTscKhz !== vcpuArch(v).tscKhz) setTscKhz(v, vmA.defaultTscKhz);
  // init_vmcs / init_vmcb: the exits the VM has disabled by now (kvm_{hlt,mwait,pause,cstate}_in_guest).
  vcpuArch(v).disabledExits = vmA.disabledExits;
  resetSregs(v, v.id === vmA.bspVcpuId);
  // kvm_arch_vcpu_create: with an in-kernel irqchip (full or split) an AP waits for INIT/SIPI.
  if (v.vm.irq !== undefined && v.id !== vmA.bspVcpuId) vcpuArch(v).mpState = KVM_MP_STATE_UNINITIALIZED;
  synchronizeTsc(v, undefined);
  let other: Vcpu | undefined;
  for (const o of v.vm.vcpus.values()) if (o !== v && o.runAllocated) other = o;
  syncRingCopy(v, other);
  allocDirtyRing(v);
}
