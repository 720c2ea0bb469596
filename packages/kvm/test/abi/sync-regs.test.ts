/**
 * KVM_CAP_SYNC_REGS: `kvm_run.kvm_valid_regs` / `kvm_dirty_regs` and `s.regs` (arch/x86/kvm/x86.c `sync_regs`,
 * `store_regs`, `kvm_arch_vcpu_ioctl_run`).
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_SYNC_REGS,
  KVM_CHECK_EXTENSION,
  KVM_EXIT_IO,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_EVENTS,
  KVM_RUN,
  KVM_RUN_OFFSETS,
  KVM_SYNC_X86_EVENTS,
  KVM_SYNC_X86_REGS,
  KVM_SYNC_X86_SREGS,
  KVM_VCPU_EVENTS_CODEC,
  makeKvmRegs,
  makeKvmSregs,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { guestVm } from './guest-vm.js';
import { errnoOf } from './support.js';

const ALL = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;

describe.each(VENDORS)('KVM_CAP_SYNC_REGS ($name)', (vendor) => {
  test('answered KVM_SYNC_X86_VALID_FIELDS (7) on both fds', () => {
    const g = guestVm(vendor, [0xf4]);
    expect(g.p.ioctl(g.sys, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS)).toBe(7);
    expect(g.p.ioctl(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS)).toBe(7);
  });

  test('kvm_valid_regs: after the exit s.regs holds exactly what KVM_GET_REGS, KVM_GET_SREGS and KVM_GET_VCPU_EVENTS answer', () => {
    const g = guestVm(vendor, [0xb0, 0x41, 0xe6, 0x10, 0xf4]);
    g.run.kvm_valid_regs = ALL;
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
    const r = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, r);
    expect(g.run.getSyncRegs()).toEqual(r);
    expect(r.rax & 0xffn).toBe(0x41n);
    const s = makeKvmSregs();
    g.p.ioctl(g.fd, KVM_GET_SREGS, s);
    expect(g.run.getSyncSregs()).toEqual(s);
    const ev = KVM_VCPU_EVENTS_CODEC.zero();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    expect(KVM_VCPU_EVENTS_CODEC.decode(g.run.view, KVM_RUN_OFFSETS['s.regs.events'])).toEqual(ev);
    expect(g.run.kvm_valid_regs).toBe(ALL); // user space's word, left as it was
  });

  test('kvm_dirty_regs: s.regs.regs is loaded before the guest runs (as KVM_SET_REGS, RFLAGS bit 1 set) and the bit cleared', () => {
    const g = guestVm(vendor, [0xe6, 0x10, 0xf4]);
    const r = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, r);
    g.run.setSyncRegs({ ...r, rax: 0x77n, rflags: 0n });
    g.run.kvm_dirty_regs = KVM_SYNC_X86_REGS;
    g.run.kvm_valid_regs = KVM_SYNC_X86_REGS;
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.kvm_dirty_regs).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
    expect(g.run.bytes[g.run.io.data_offset]).toBe(0x77);
    expect(g.run.getSyncRegs().rflags & 2n).toBe(2n);
  });

  test('a set KVM_SET_SREGS refuses: EINVAL; the sets before it are loaded and their bits cleared, the refused one kept; kvm_valid_regs still stored', () => {
    const g = guestVm(vendor, [0xe6, 0x10, 0xf4]);
    const regs = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, regs);
    const sregs = makeKvmSregs();
    g.p.ioctl(g.fd, KVM_GET_SREGS, sregs);
    g.run.setSyncRegs({ ...regs, rbx: 0x1234n });
    g.run.setSyncSregs({ ...sregs, cr0: sregs.cr0 | 0x8000_0000n }); // CR0.PG without PE
    g.run.kvm_dirty_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
    g.run.kvm_valid_regs = KVM_SYNC_X86_SREGS;
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(g.run.kvm_dirty_regs).toBe(KVM_SYNC_X86_SREGS);
    const now = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, now);
    expect(now.rbx).toBe(0x1234n);
    expect(g.run.getSyncSregs()).toEqual(sregs); // store_regs overwrote the refused sregs with the vCPU's
  });

  test('bits outside KVM_SYNC_X86_VALID_FIELDS in either word: EINVAL before anything is loaded, the vCPU unchanged', () => {
    const g = guestVm(vendor, [0xe6, 0x10, 0xf4]);
    g.run.kvm_valid_regs = 8;
    expect(errnoOf(g.host, () => g.p.ioctl(g.fd, KVM_RUN, 0))).toBe('EINVAL');
    g.run.kvm_valid_regs = 0;
    g.run.setSyncRegs(makeKvmRegs({ rax: 5n, rflags: 2n }));
    g.run.kvm_dirty_regs = KVM_SYNC_X86_REGS + 2 ** 40;
    expect(errnoOf(g.host, () => g.p.ioctl(g.fd, KVM_RUN, 0))).toBe('EINVAL');
    const r = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, r);
    expect(r.rip).toBe(0x1000n);
    g.run.kvm_dirty_regs = 0;
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
  });

  test('immediate_exit: the dirty sets are loaded and the valid ones stored, then EINTR', () => {
    const g = guestVm(vendor, [0xf4]);
    g.run.setSyncRegs(makeKvmRegs({ rcx: 9n, rip: 0x1000n, rsp: 0x8000n, rflags: 2n }));
    g.run.kvm_dirty_regs = KVM_SYNC_X86_REGS;
    g.run.kvm_valid_regs = KVM_SYNC_X86_REGS;
    g.run.immediate_exit = 1;
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(g.run.getSyncRegs().rcx).toBe(9n);
    expect(g.run.kvm_dirty_regs).toBe(0);
  });
});
