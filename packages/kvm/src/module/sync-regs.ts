/**
 * The registers synchronized through `kvm_run` (KVM_CAP_SYNC_REGS, arch/x86/kvm/x86.c `sync_regs`, `store_regs`,
 * `kvm_arch_vcpu_ioctl_run`): at the start of KVM_RUN the sets named in `kvm_dirty_regs` are loaded from `s.regs`
 * (`regs` as KVM_SET_REGS, `sregs` as KVM_SET_SREGS, `events` as KVM_SET_VCPU_EVENTS, with their checks: EINVAL, and
 * the bits of the sets already loaded cleared), and on the way out — whatever KVM_RUN returns, even its EINVAL — the
 * sets named in `kvm_valid_regs` are stored there. A bit outside `KVM_SYNC_X86_VALID_FIELDS` in either word is EINVAL
 * before anything is loaded.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_SYNC_X86_EVENTS, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, KVM_SYNC_X86_VALID_FIELDS } from '../abi/constants.js';
import { KVM_RUN_OFFSETS, type KvmRunView } from '../abi/kvm-run.js';
import { KVM_SREGS_CODEC } from '../abi/structs.js';
import { vcpuArch } from './vcpu-arch.js';
import { getVcpuEvents, setVcpuEvents } from './vcpu-events-ioctls.js';
import { getSregs, setSregs } from './vcpu-sregs.js';
import type { Vcpu } from './vcpu.js';

const OFF_VALID = KVM_RUN_OFFSETS.kvm_valid_regs;
const OFF_DIRTY = KVM_RUN_OFFSETS.kvm_dirty_regs;

/** Whether `kvm_valid_regs` or `kvm_dirty_regs` has any bit set (all 128 bits looked at). */
export function syncRegsRequested(run: KvmRunView): boolean {
  const dv = run.view;
  return (dv.getUint32(OFF_VALID, true) | dv.getUint32(OFF_VALID + 4, true) | dv.getUint32(OFF_DIRTY, true) | dv.getUint32(OFF_DIRTY + 4, true)) !== 0;
}

/** A word has a bit outside `KVM_SYNC_X86_VALID_FIELDS`. */
function invalidBits(run: KvmRunView, off: number): boolean {
  const dv = run.view;
  return (dv.getUint32(off, true) & ~KVM_SYNC_X86_VALID_FIELDS) !== 0 || dv.getUint32(off + 4, true) !== 0;
}

/**
 * The start of KVM_RUN: the bit check, then `sync_regs`.
 * @throws KernelError EINVAL (bits outside the valid fields; a set KVM_SET_SREGS or KVM_SET_VCPU_EVENTS would refuse —
 *   the sets before it are loaded and their bits cleared, as Linux does)
 */
export function loadSyncRegs(v: Vcpu): void {
  const run = v.run;
  if (invalidBits(run, OFF_VALID) || invalidBits(run, OFF_DIRTY)) throw new KernelError('EINVAL', 'KVM_RUN', 'kvm_valid_regs or kvm_dirty_regs has bits outside KVM_SYNC_X86_VALID_FIELDS');
  const dv = run.view;
  let dirty = dv.getUint32(OFF_DIRTY, true);
  if ((dirty & KVM_SYNC_X86_REGS) !== 0) {
    // __set_regs (as KVM_SET_REGS: a pending exception is dropped)
    v.setRegs(run.getSyncRegs());
    vcpuArch(v).exception.pending = false;
    dirty &= ~KVM_SYNC_X86_REGS;
    dv.setUint32(OFF_DIRTY, dirty, true);
  }
  if ((dirty & KVM_SYNC_X86_SREGS) !== 0) {
    setSregs(v, run.getSyncSregs(), 'KVM_RUN');
    dirty &= ~KVM_SYNC_X86_SREGS;
    dv.setUint32(OFF_DIRTY, dirty, true);
  }
  if ((dirty & KVM_SYNC_X86_EVENTS) !== 0) {
    setVcpuEvents(v, run.getSyncEvents(), 'KVM_RUN');
    dirty &= ~KVM_SYNC_X86_EVENTS;
    dv.setUint32(OFF_DIRTY, dirty, true);
  }
}

/** `store_regs`: the sets named in `kvm_valid_regs` (the valid bits of it) into `s.regs`. */
export function storeSyncRegs(v: Vcpu): void {
  const run = v.run;
  const valid = run.view.getUint32(OFF_VALID, true);
  if ((valid & KVM_SYNC_X86_REGS) !== 0) {
    const r = run.getSyncRegs();
    v.getRegs(r);
    run.setSyncRegs(r);
  }
  if ((valid & KVM_SYNC_X86_SREGS) !== 0) {
    const s = KVM_SREGS_CODEC.zero();
    getSregs(v, s);
    run.setSyncSregs(s);
  }
  if ((valid & KVM_SYNC_X86_EVENTS) !== 0) run.setSyncEvents(getVcpuEvents(v));
}
