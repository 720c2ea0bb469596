/**
 * KVM_GET_MSRS / KVM_SET_MSRS on a vCPU (arch/x86/kvm/x86.c `msr_io` with `do_get_msr` / `do_set_msr`): the
 * entries are processed in order until one fails; the result is how many were processed (QEMU asserts it equals
 * the number it passed). KVM_SET_CPUID2 / KVM_GET_CPUID2 (arch/x86/kvm/cpuid.c).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_GET_CPUID2, KVM_GET_MSRS, KVM_SET_CPUID2, KVM_SET_MSRS } from '../abi/constants.js';
import { KVM_MAX_CPUID_ENTRIES } from '../abi/constants-x86.js';
import { copyFlexToUser, userAccess } from '../abi/codec.js';
import { KVM_CPUID_ENTRY2_CODEC, type kvm_cpuid_entry2 } from '../abi/structs.js';
import { KVM_CPUID2_CODEC, KVM_MSRS_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { msrIo } from './system-arch-ioctls.js';
import { vcpuArch } from './vcpu-arch.js';
import { enableGuestXfdFeatures } from './guest-fpu.js';
import { checkCpuid, cpuidEqual, findCpuid, guestHas, guestMaxPhyAddr } from './vcpu-cpuid.js';
import { HostMsrBatch } from './vcpu-msrs.js';
import { apicBaseOf } from './vcpu-sregs.js';
import { x86Caps } from './x86-caps.js';
import type { Vcpu } from './vcpu.js';

/** Bit `bit` of register `reg` of CPUID entry `e`, set or cleared. */
function setCpuidBit(e: kvm_cpuid_entry2, reg: 'ecx' | 'edx', bit: number, on: boolean): void {
  e[reg] = on ? (e[reg] | (1 << bit)) >>> 0 : (e[reg] & ~(1 << bit)) >>> 0;
}

/**
 * `kvm_update_cpuid_runtime`: the CPUID bits KVM keeps in step with the vCPU — OSXSAVE with CR4.OSXSAVE, APIC with
 * the APIC base's enable bit, OSPKE with CR4.PKE, and CPUID 0xD's XSAVE size with XCR0.
 */
export function cpuidRuntime(v: Vcpu, entries: kvm_cpuid_entry2[]): void {
  const s = v.regs;
  const l1 = findCpuid(entries, 1);
  if (l1 !== undefined) {
    setCpuidBit(l1, 'ecx', 27, (s.cr4 & (1n << 18n)) !== 0n);
    setCpuidBit(l1, 'edx', 9, (apicBaseOf(v) & (1n << 11n)) !== 0n);
  }
  const l7 = findCpuid(entries, 7, 0);
  if (l7 !== undefined) setCpuidBit(l7, 'ecx', 4, (s.cr4 & (1n << 22n)) !== 0n);
  const ld = findCpuid(entries, 0xd, 0);
  if (ld !== undefined) {
    // xstate_required_size(vcpu->arch.xcr0, false)
    ld.ebx = x86Caps(v.vm.instance).xstateSizeFor(vcpuArch(v).xcr0);
  }
}

/** The vCPU MSR and CPUID ioctls. */
export const VCPU_MSR_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_MSRS',
    request: KVM_GET_MSRS,
    arg: { dir: 'inout', codec: KVM_MSRS_CODEC, flex: { header: 'in', entries: 'inout' } },
    run: (v, arg) => msrIo(arg, 'KVM_GET_MSRS', new HostMsrBatch(v), true),
  },
  {
    name: 'KVM_SET_MSRS',
    request: KVM_SET_MSRS,
    arg: { dir: 'in', codec: KVM_MSRS_CODEC },
    run: (v, arg) => msrIo(arg, 'KVM_SET_MSRS', new HostMsrBatch(v), false),
  },
  {
    name: 'KVM_SET_CPUID2',
    request: KVM_SET_CPUID2,
    arg: { dir: 'in', codec: KVM_CPUID2_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_CPUID2';
      const h = userAccess(op, () => KVM_CPUID2_CODEC.copyInHeader(arg));
      if (h.nent > KVM_MAX_CPUID_ENTRIES) throw new KernelError('E2BIG', op, `${h.nent} entries: at most ${KVM_MAX_CPUID_ENTRIES}`);
      const entries = userAccess(op, () => KVM_CPUID2_CODEC.copyInEntries(arg, h.nent));
      const arch = vcpuArch(v);
      // kvm_set_cpuid: after the first KVM_RUN only the CPUID already set is accepted again.
      if (v.stats.entries > 0) {
        const now = arch.cpuid.map((e) => KVM_CPUID_ENTRY2_CODEC.clone(e));
        cpuidRuntime(v, now);
        const given = entries.map((e) => KVM_CPUID_ENTRY2_CODEC.clone(e));
        cpuidRuntime(v, given);
        if (!cpuidEqual(given, now)) throw new KernelError('EINVAL', op, 'the vCPU has run: only the same CPUID may be set again');
        return 0;
      }
      const why = checkCpuid(entries);
      if (why !== undefined) throw new KernelError('EINVAL', op, why);
      enableGuestXfdFeatures(v.vm.instance, arch, entries, v.vm.owner, op); // kvm_check_cpuid: EPERM without the permission
      cpuidRuntime(v, entries);
      arch.cpuid = entries;
      // kvm_vcpu_after_set_cpuid: the LAPIC timer modes (TSC deadline with CPUID.1:ECX[24]), the version register
      // (directed EOI with x2APIC), and the APIC base's reserved bits (x2APIC, MAXPHYADDR).
      const lapic = v.intr?.chip?.lapic;
      if (lapic !== undefined) {
        const caps = x86Caps(v.vm.instance);
        lapic.setCpuid({ x2apic: guestHas(arch, caps, '1.ecx', 21), tscDeadline: guestHas(arch, caps, '1.ecx', 24), maxPhyAddr: guestMaxPhyAddr(arch) });
      }
      return 0;
    },
  },
  {
    name: 'KVM_GET_CPUID2',
    request: KVM_GET_CPUID2,
    arg: { dir: 'inout', codec: KVM_CPUID2_CODEC, flex: { header: 'inout', entries: 'out' } },
    run(v, arg) {
      const op = 'KVM_GET_CPUID2';
      const h = userAccess(op, () => KVM_CPUID2_CODEC.copyInHeader(arg));
      const arch = vcpuArch(v);
      // kvm_vcpu_ioctl_get_cpuid2: E2BIG with nent left as it was.
      if (h.nent < arch.cpuid.length) throw new KernelError('E2BIG', op, `room for ${h.nent} entries, ${arch.cpuid.length} needed`);
      // The entries with the bits KVM keeps current at run time (kvm_update_cpuid_runtime), as the guest sees them.
      const entries = arch.cpuid.map((e) => KVM_CPUID_ENTRY2_CODEC.clone(e));
      cpuidRuntime(v, entries);
      copyFlexToUser(KVM_CPUID2_CODEC, { nent: entries.length }, entries, arg, op);
      return 0;
    },
  },
];
