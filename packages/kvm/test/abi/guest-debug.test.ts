/**
 * KVM_SET_GUEST_DEBUG (`kvm_arch_vcpu_ioctl_set_guest_debug`, arch/x86/kvm/x86.c) and KVM_EXIT_DEBUG: single-step,
 * INT3 and instruction breakpoints, #DB/#BP injection, BLOCKIRQ, and the capabilities that advertise them.
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_SET_GUEST_DEBUG,
  KVM_CAP_SET_GUEST_DEBUG2,
  KVM_CAP_X86_ROBUST_SINGLESTEP,
  KVM_CHECK_EXTENSION,
  KVM_EXIT_DEBUG,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_GET_REGS,
  KVM_GUESTDBG_BLOCKIRQ,
  KVM_GUESTDBG_ENABLE,
  KVM_GUESTDBG_INJECT_BP,
  KVM_GUESTDBG_INJECT_DB,
  KVM_GUESTDBG_SINGLESTEP,
  KVM_GUESTDBG_USE_HW_BP,
  KVM_GUESTDBG_USE_SW_BP,
  KVM_INTERRUPT,
  KVM_NMI,
  KVM_RUN,
  KVM_SET_GUEST_DEBUG,
  KVM_SET_REGS,
  KVM_PIO_DATA_OFFSET,
  makeKvmGuestDebug,
  makeKvmRegs,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { guestVm, type GuestVm } from './guest-vm.js';
import { errnoOf } from './support.js';

const DR6_SINGLESTEP = 0xffff4ff0n;

function debug(g: GuestVm, control: number, debugreg: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]): number {
  return g.p.ioctl(g.fd, KVM_SET_GUEST_DEBUG, makeKvmGuestDebug({ control, arch: { debugreg: debugreg as [bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint] } }));
}

function run(g: GuestVm): number {
  g.p.ioctl(g.fd, KVM_RUN, 0);
  return g.run.exit_reason;
}

function regs(g: GuestVm): ReturnType<typeof makeKvmRegs> {
  const r = makeKvmRegs();
  g.p.ioctl(g.fd, KVM_GET_REGS, r);
  return r;
}

/** IVT entry `vector` → 0:`ip`. */
function handler(g: GuestVm, vector: number, ip: number, code: number[]): void {
  g.mem.bytes.set(code, ip);
  g.mem.bytes.set([ip & 0xff, ip >> 8, 0, 0], vector * 4);
}

describe.each(VENDORS)('KVM_SET_GUEST_DEBUG ($name)', (vendor) => {
  test('KVM_CAP_SET_GUEST_DEBUG 1, KVM_CAP_SET_GUEST_DEBUG2 the supported flags (0x1f0003), KVM_CAP_X86_ROBUST_SINGLESTEP 1', () => {
    const g = guestVm(vendor, [0xf4]);
    expect(g.p.ioctl(g.sys, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG)).toBe(1);
    expect(g.p.ioctl(g.sys, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2)).toBe(0x1f0003);
    expect(g.p.ioctl(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2)).toBe(0x1f0003);
    expect(g.p.ioctl(g.sys, KVM_CHECK_EXTENSION, KVM_CAP_X86_ROBUST_SINGLESTEP)).toBe(1);
  });

  test('SINGLESTEP: KVM_EXIT_DEBUG after every instruction (exception 1, pc the next linear RIP, dr6 BS, dr7 0x400), until HLT exits', () => {
    const g = guestVm(vendor, [0xb0, 0x01, 0xb3, 0x02, 0xf4]);
    expect(debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP)).toBe(0);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    const d = g.run.debug;
    expect([d.exception, d.pc, d.dr6, d.dr7]).toEqual([1, 0x1002n, DR6_SINGLESTEP, 0x400n]);
    expect(regs(g).rax & 0xffn).toBe(1n);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    expect(g.run.debug.pc).toBe(0x1004n);
    expect(run(g)).toBe(KVM_EXIT_HLT);
    expect(regs(g).rip).toBe(0x1005n);
  });

  test('SINGLESTEP across I/O exits (KVM_CAP_X86_ROBUST_SINGLESTEP): an OUT or IN exits, and the next KVM_RUN completes it and reports the step without running further', () => {
    const g = guestVm(vendor, [0xe6, 0x10, 0xe4, 0x60, 0x90, 0xf4]);
    debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
    expect(run(g)).toBe(KVM_EXIT_IO);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    expect(g.run.debug.pc).toBe(0x1002n);
    expect(run(g)).toBe(KVM_EXIT_IO);
    g.run.bytes[KVM_PIO_DATA_OFFSET] = 0x5a;
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    expect(g.run.debug.pc).toBe(0x1004n);
    expect(regs(g).rax & 0xffn).toBe(0x5an);
  });

  test('USE_SW_BP: INT3 exits before it executes (exception 3, pc its address) every time; INJECT_BP then delivers #BP returning past the INT3', () => {
    const g = guestVm(vendor, [0x90, 0xcc, 0xf4]);
    handler(g, 3, 0x2000, [0xe6, 0x13, 0xf4]);
    g.run.debug.dr6 = 0x1234n;
    debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    expect([g.run.debug.exception, g.run.debug.pc, g.run.debug.dr6]).toEqual([3, 0x1001n, 0x1234n]);
    expect(regs(g).rip).toBe(0x1001n);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    expect(regs(g).rip).toBe(0x1001n);
    // gdb's way to hand the guest its own INT3: re-inject #BP.
    expect(debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_INJECT_BP)).toBe(0);
    expect(run(g)).toBe(KVM_EXIT_IO);
    expect(g.run.io.port).toBe(0x13);
    const sp = Number(regs(g).rsp);
    expect(g.mem.bytes[sp]! | (g.mem.bytes[sp + 1]! << 8)).toBe(0x1002); // the return IP is past the INT3
  });

  test('without USE_SW_BP an INT3 goes through the IVT', () => {
    const g = guestVm(vendor, [0x90, 0xcc, 0xf4]);
    handler(g, 3, 0x2000, [0xe6, 0x13, 0xf4]);
    debug(g, KVM_GUESTDBG_ENABLE);
    expect(run(g)).toBe(KVM_EXIT_IO);
    expect(g.run.io.port).toBe(0x13);
  });

  test('USE_HW_BP: an enabled instruction breakpoint exits before the instruction (dr6 B0, dr7 as given); RFLAGS.RF lets it execute once', () => {
    const g = guestVm(vendor, [0x90, 0x90, 0xb0, 0x07, 0xf4]);
    const dr7 = 0x401n; // L0, R/W0 = 00 (execute), LEN0 = 00
    expect(debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, [0x1002n, 0n, 0n, 0n, 0n, 0n, 0n, dr7])).toBe(0);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    const d = g.run.debug;
    expect([d.exception, d.pc, d.dr6, d.dr7]).toEqual([1, 0x1002n, 0xffff0ff1n, dr7]);
    expect(regs(g).rip).toBe(0x1002n);
    expect(run(g)).toBe(KVM_EXIT_DEBUG);
    const r = regs(g);
    g.p.ioctl(g.fd, KVM_SET_REGS, makeKvmRegs({ ...r, rflags: r.rflags | 0x10000n }));
    expect(run(g)).toBe(KVM_EXIT_HLT);
    const after = regs(g);
    expect(after.rax & 0xffn).toBe(7n);
    expect(after.rflags & 0x10000n).toBe(0n); // RF cleared once the instruction completed
  });

  test('a disabled breakpoint (no L/G bit) or a data breakpoint does not stop the guest; ENABLE off turns everything off', () => {
    const g = guestVm(vendor, [0x90, 0xcc, 0xf4]);
    handler(g, 3, 0x2000, [0xf4]);
    debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, [0x1000n, 0x1001n, 0n, 0n, 0n, 0n, 0n, 0x100408n]); // G1 with R/W1 = 01 (write); bp 0 not enabled
    expect(run(g)).toBe(KVM_EXIT_HLT);
    expect(regs(g).rip).toBe(0x2001n);
    const h = guestVm(vendor, [0x90, 0xcc, 0xf4]);
    handler(h, 3, 0x2000, [0xf4]);
    debug(h, KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_SINGLESTEP);
    expect(run(h)).toBe(KVM_EXIT_HLT);
    expect(regs(h).rip).toBe(0x2001n);
  });

  test('INJECT_DB delivers #DB at the next entry; a second injection while it is pending is EBUSY, the vCPU unchanged; unknown control bits are accepted', () => {
    const g = guestVm(vendor, [0xf4]);
    handler(g, 1, 0x2000, [0xe6, 0x11, 0xf4]);
    expect(debug(g, KVM_GUESTDBG_INJECT_DB)).toBe(0);
    expect(errnoOf(g.host, () => debug(g, KVM_GUESTDBG_INJECT_DB))).toBe('EBUSY');
    expect(errnoOf(g.host, () => debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_BP))).toBe('EBUSY');
    expect(run(g)).toBe(KVM_EXIT_IO);
    expect(g.run.io.port).toBe(0x11);
    expect(debug(g, KVM_GUESTDBG_ENABLE | 0x4000_0000)).toBe(0);
  });

  test('BLOCKIRQ holds a new NMI while stepping with it; the first entry after it is cleared takes it', () => {
    const g = guestVm(vendor, [0xfb, 0x90, 0x90, 0x90, 0xf4]);
    handler(g, 2, 0x2000, [0xe6, 0x15, 0xf4]);
    debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ);
    expect(run(g)).toBe(KVM_EXIT_DEBUG); // STI
    g.p.ioctl(g.fd, KVM_NMI, 0);
    for (const pc of [0x1002n, 0x1003n, 0x1004n]) {
      expect(run(g)).toBe(KVM_EXIT_DEBUG);
      expect(g.run.debug.pc).toBe(pc);
    }
    debug(g, 0);
    expect(run(g)).toBe(KVM_EXIT_IO);
    expect(g.run.io.port).toBe(0x15);
  });

  test('BLOCKIRQ does not hold an interrupt KVM_INTERRUPT queued: it is being injected, and is injected again at the entry (recorded: run.events.blockirq-interrupt)', () => {
    const g = guestVm(vendor, [0xfb, 0x90, 0xe6, 0x10, 0xf4]);
    handler(g, 0x20, 0x2000, [0xe6, 0x14, 0xf4]);
    debug(g, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ);
    g.p.ioctl(g.fd, KVM_INTERRUPT, { irq: 0x20 });
    expect(run(g)).toBe(KVM_EXIT_IO);
    expect(g.run.io.port).toBe(0x14);
  });
});
