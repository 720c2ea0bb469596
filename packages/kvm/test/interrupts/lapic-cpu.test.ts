/**
 * The in-kernel LAPIC as the guest CPU and the vCPU ioctls see it: one APIC base (KVM_GET/SET_SREGS, the
 * IA32_APICBASE MSR of KVM_GET/SET_MSRS and of the guest's rdmsr/wrmsr, `kvm_run.apic_base` and the LAPIC itself),
 * CR8 as the LAPIC's TPR, the x2APIC registers as MSRs, the TSC-deadline timer armed by the guest's wrmsr of
 * IA32_TSC_DEADLINE (KVM_CAP_TSC_DEADLINE_TIMER), APs that start KVM_MP_STATE_UNINITIALIZED and wait for INIT/SIPI,
 * and a halted vCPU that stays KVM_MP_STATE_HALTED across KVM_RUN calls.
 *
 * Linux: arch/x86/kvm/lapic.c `kvm_lapic_set_base`, `kvm_x2apic_msr_read/write`, `kvm_set_lapic_tscdeadline_msr`,
 * `kvm_apic_accept_events`; arch/x86/kvm/x86.c `kvm_set_apic_base`, `__get_sregs_common`, `kvm_arch_vcpu_create`,
 * `kvm_arch_vcpu_ioctl_run`, `kvm_arch_vcpu_ioctl_get/set_mpstate`, `__kvm_emulate_halt`, `vcpu_block`.
 */
import { KernelError, type Process } from '@vac/core';
import { expectKernelError } from '@vac/test-support';
import { describe, expect, test } from 'vitest';
import {
  Asm16,
  KVM_CAP_TSC_DEADLINE_TIMER,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_GET_MSRS,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_IRQ_LINE,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_INIT_RECEIVED,
  KVM_MP_STATE_RUNNABLE,
  KVM_MP_STATE_SIPI_RECEIVED,
  KVM_MP_STATE_UNINITIALIZED,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_LAPIC,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_SREGS,
  asm16,
  makeKvmCpuid2,
  makeKvmLapicState,
  makeKvmMpState,
  makeKvmMsrs,
  makeKvmRegs,
  makeKvmSregs,
  type RealModeVcpu,
} from '../../src/index.js';
import { irqHost, irqVm, picInit, VENDORS, type IrqVm } from './support.js';

const MSR_APICBASE = 0x1b;
const MSR_TSC_DEADLINE = 0x6e0;
const X2APIC_EOI = 0x80b;
const X2APIC_SVR = 0x80f;
const X2APIC_ICR = 0x830;
const X2APIC_LVTT = 0x832;
const APIC_TASKPRI = 0x80;
const APIC_ID = 0x20;
const CPUID_X2APIC = 1 << 21;
const CPUID_TSC_DEADLINE = 1 << 24;

/** KVM_RUN ending with `code` (the guest may have run: no "state unchanged" check). */
function expectRunErrno(fn: () => unknown, code: 'EINTR' | 'EAGAIN'): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KernelError);
  expect((err as KernelError).code).toBe(code);
}

/** Little-endian bytes of a 32-bit value. */
function d32(x: number): number[] {
  return [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];
}

/** `mov ecx, msr; mov eax, lo; mov edx, hi; wrmsr`. */
function wrmsr(a: Asm16, msr: number, lo: number, hi = 0): Asm16 {
  return a.db(0x66, 0xb9, ...d32(msr), 0x66, 0xb8, ...d32(lo), 0x66, 0xba, ...d32(hi), 0x0f, 0x30);
}

/** x2APIC on: `mov ecx, IA32_APICBASE; rdmsr; or eax, 0xc00; wrmsr`. */
function enableX2apic(a: Asm16): Asm16 {
  return a.db(0x66, 0xb9, ...d32(MSR_APICBASE), 0x0f, 0x32, 0x66, 0x0d, ...d32(0xc00), 0x0f, 0x30);
}

/** Give a vCPU CPUID leaves 0 and 1 with the given ECX bits of leaf 1. */
function setCpuid(p: Process, fd: number, ecx1: number): void {
  p.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2([
    { function: 0, eax: 1, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
    { function: 1, eax: 0x50657, ecx: ecx1, edx: 0x781abfd },
  ]));
}

/** KVM_GET_MSRS of one MSR. */
function getMsr(p: Process, fd: number, index: number): bigint {
  const m = makeKvmMsrs([{ index }]);
  expect(p.ioctl(fd, KVM_GET_MSRS, m)).toBe(1);
  return m.entries[0]!.data;
}

/** The 32-bit LAPIC register at `off` of KVM_GET_LAPIC. */
function lapicReg(p: Process, fd: number, off: number): number {
  const s = makeKvmLapicState();
  p.ioctl(fd, KVM_GET_LAPIC, s);
  return new DataView(s.regs.buffer, s.regs.byteOffset).getUint32(off, true);
}

function mpState(p: Process, fd: number): number {
  const s = makeKvmMpState();
  p.ioctl(fd, KVM_GET_MP_STATE, s);
  return s.mp_state;
}

/** A VM with an in-kernel irqchip running `program`, and its vCPU 0 (and more with `vcpus`). */
function chipVm(p: Process, program: Asm16, handlers: Record<number, string> = {}, vcpus = 1): { g: IrqVm; v: RealModeVcpu[] } {
  const g = irqVm(p, '/dev/kvm0', program, handlers);
  p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
  const v: RealModeVcpu[] = [];
  for (let id = 0; id < vcpus; id++) v.push(g.vcpu(id));
  return { g, v };
}

describe.each(VENDORS)('the in-kernel LAPIC and the vCPU ($name)', ({ name, hardware }) => {
  describe('one APIC base', () => {
    test('the x2APIC ICR in KVM_GET_LAPIC: one 64-bit register on Intel (its upper half also at 0x304), ICR + ICR2 on AMD (x2apic_icr_is_split)', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const a = asm16();
      enableX2apic(a);
      wrmsr(a, X2APIC_SVR, 0x1ff);
      wrmsr(a, X2APIC_ICR, 0x40, 7); // fixed IPI, vector 0x40, to x2APIC ID 7 (no such vCPU: delivered nowhere)
      a.db(0x66, 0xb9, ...d32(X2APIC_ICR), 0x0f, 0x32, 0x66, 0xa3, 0x00, 0x06, 0x66, 0x89, 0x16, 0x04, 0x06); // rdmsr → 0x600
      a.out(0x80, 'al');
      const { g, v } = chipVm(p, a);
      const bsp = v[0] as RealModeVcpu;
      setCpuid(p, bsp.fd, CPUID_X2APIC);
      p.ioctl(bsp.fd, KVM_RUN, 0);
      expect(bsp.run.exit_reason).toBe(KVM_EXIT_IO);
      // kvm_x2apic_icr_read: the guest reads back the whole 64-bit ICR on both vendors
      expect(g.word(0x600) | (g.word(0x602) << 16)).toBe(0x40);
      expect(g.word(0x604) | (g.word(0x606) << 16)).toBe(7);
      // kvm_apic_state_fixup: ICR2 holds the destination either way; Intel's 64-bit ICR also leaves it at 0x304
      expect(lapicReg(p, bsp.fd, 0x300)).toBe(0x40);
      expect(lapicReg(p, bsp.fd, 0x310)).toBe(7);
      expect(lapicReg(p, bsp.fd, 0x304)).toBe(name === 'amd' ? 0 : 7);
      // KVM_SET_LAPIC of what KVM_GET_LAPIC gave keeps the ICR the guest reads
      const s = makeKvmLapicState();
      p.ioctl(bsp.fd, KVM_GET_LAPIC, s);
      p.ioctl(bsp.fd, KVM_SET_LAPIC, s);
      expect(lapicReg(p, bsp.fd, 0x310)).toBe(7);
      expect(lapicReg(p, bsp.fd, 0x304)).toBe(name === 'amd' ? 0 : 7);
    });

    test('KVM_GET_SREGS, KVM_GET_MSRS(IA32_APICBASE), the guest\'s rdmsr and kvm_run.apic_base all read the LAPIC\'s base', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      // the guest reads IA32_APICBASE into 0x600/0x604 and stops
      const a = asm16().db(0x66, 0xb9, ...d32(MSR_APICBASE), 0x0f, 0x32, 0x66, 0xa3, 0x00, 0x06, 0x66, 0x89, 0x16, 0x04, 0x06).out(0x80, 'al');
      const { g, v } = chipVm(p, a, {}, 2);
      const [bsp, ap] = v as [RealModeVcpu, RealModeVcpu];
      const sregs = makeKvmSregs();
      p.ioctl(bsp.fd, KVM_GET_SREGS, sregs);
      expect(sregs.apic_base).toBe(0xfee00900n); // enabled, BSP
      p.ioctl(ap.fd, KVM_GET_SREGS, sregs);
      expect(sregs.apic_base).toBe(0xfee00800n); // enabled, not BSP
      // relocate vCPU 0's APIC page through KVM_SET_MSRS: KVM_GET_SREGS and the guest see the same value
      expect(p.ioctl(bsp.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_APICBASE, data: 0xfed00900n }]))).toBe(1);
      p.ioctl(bsp.fd, KVM_GET_SREGS, sregs);
      expect(sregs.apic_base).toBe(0xfed00900n);
      p.ioctl(bsp.fd, KVM_RUN, 0);
      expect(bsp.run.exit_reason).toBe(KVM_EXIT_IO);
      expect((g.word(0x600) | (g.word(0x602) << 16)) >>> 0).toBe(0xfed00900);
      expect(g.word(0x604)).toBe(0);
      expect(bsp.run.apic_base).toBe(0xfed00900n);
      // and back through KVM_SET_SREGS: KVM_GET_MSRS sees it
      sregs.apic_base = 0xfee00900n;
      p.ioctl(bsp.fd, KVM_SET_SREGS, sregs);
      expect(getMsr(p, bsp.fd, MSR_APICBASE)).toBe(0xfee00900n);
    });

    test('KVM_SET_SREGS puts x2APIC mode in the LAPIC (its ID register follows); without CPUID x2APIC it is EINVAL and nothing changes', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const { v } = chipVm(p, asm16().hlt(), {}, 2);
      const ap = v[1] as RealModeVcpu;
      const sregs = makeKvmSregs();
      p.ioctl(ap.fd, KVM_GET_SREGS, sregs);
      expect(lapicReg(p, ap.fd, APIC_ID)).toBe(1 << 24); // xAPIC ID 1
      sregs.apic_base = 0xfee00c00n; // enabled + x2APIC
      expectKernelError(host, () => p.ioctl(ap.fd, KVM_SET_SREGS, sregs), 'EINVAL');
      expect(getMsr(p, ap.fd, MSR_APICBASE)).toBe(0xfee00800n);
      setCpuid(p, ap.fd, CPUID_X2APIC);
      p.ioctl(ap.fd, KVM_SET_SREGS, sregs);
      expect(getMsr(p, ap.fd, MSR_APICBASE)).toBe(0xfee00c00n);
      // KVM_GET_LAPIC in x2APIC mode without KVM_X2APIC_API_USE_32BIT_IDS: the ID shifted as in xAPIC (kvm_apic_state_fixup)
      expect(lapicReg(p, ap.fd, APIC_ID)).toBe(1 << 24);
      // the x2APIC ID register as an MSR (host read through KVM_GET_MSRS: kvm_x2apic_msr_read)
      expect(getMsr(p, ap.fd, 0x802)).toBe(1n);
    });

    test('x2APIC MSRs #GP (KVM_GET_MSRS stops at them) in xAPIC mode and without an in-kernel LAPIC', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const { v } = chipVm(p, asm16().hlt());
      const m = makeKvmMsrs([{ index: 0x802 }]);
      expect(p.ioctl(v[0]!.fd, KVM_GET_MSRS, m)).toBe(0);
      const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
      const u = g2.vcpu();
      expect(p.ioctl(u.fd, KVM_GET_MSRS, makeKvmMsrs([{ index: 0x802 }]))).toBe(0);
      expect(p.ioctl(u.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: 0x808, data: 0n }]))).toBe(0);
    });

    test('CR8 is the LAPIC\'s TPR: KVM_SET_SREGS.cr8 → KVM_GET_LAPIC, KVM_SET_LAPIC → KVM_GET_SREGS.cr8 and kvm_run.cr8', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const { v } = chipVm(p, asm16().out(0x80, 'al'));
      const fd = v[0]!.fd;
      const sregs = makeKvmSregs();
      p.ioctl(fd, KVM_GET_SREGS, sregs);
      expect(sregs.cr8).toBe(0n);
      sregs.cr8 = 5n;
      p.ioctl(fd, KVM_SET_SREGS, sregs);
      expect(lapicReg(p, fd, APIC_TASKPRI)).toBe(0x50);
      const s = makeKvmLapicState();
      p.ioctl(fd, KVM_GET_LAPIC, s);
      new DataView(s.regs.buffer, s.regs.byteOffset).setUint32(APIC_TASKPRI, 0x70, true);
      p.ioctl(fd, KVM_SET_LAPIC, s);
      p.ioctl(fd, KVM_GET_SREGS, sregs);
      expect(sregs.cr8).toBe(7n);
      p.ioctl(fd, KVM_RUN, 0);
      expect(v[0]!.run.cr8).toBe(7n);
    });
  });

  describe('the TSC-deadline timer', () => {
    /**
     * The guest: x2APIC on, the LAPIC enabled (SVR 0x1ff), LVTT = vector 0x40 in TSC-deadline mode, IA32_TSC_DEADLINE =
     * rdtsc + `delta`, read back into 0x510; `sti`, `hlt` until the handler (which stores rdtsc at 0x520 and counts at
     * 0x500) ran, then `out 0x80`.
     */
    function deadlineGuest(delta: number): Asm16 {
      const a = asm16();
      enableX2apic(a);
      wrmsr(a, X2APIC_SVR, 0x1ff);
      wrmsr(a, X2APIC_LVTT, 0x40 | (2 << 17));
      a.db(0x0f, 0x31, 0x66, 0x05, ...d32(delta), 0x66, 0x83, 0xd2, 0x00); // rdtsc; add eax, delta; adc edx, 0
      a.db(0x66, 0x89, 0x06, 0x30, 0x05, 0x66, 0x89, 0x16, 0x34, 0x05); // mov [0x530], eax; mov [0x534], edx
      a.db(0x66, 0xb9, ...d32(MSR_TSC_DEADLINE), 0x0f, 0x30); // wrmsr IA32_TSC_DEADLINE
      a.db(0x0f, 0x32, 0x66, 0xa3, 0x10, 0x05, 0x66, 0x89, 0x16, 0x14, 0x05); // rdmsr → [0x510], [0x514]
      a.sti().label('idle').hlt().cmp(Asm16.word(0x500), 1).jb('idle').out(0x80, 'al').label('done').hlt().jmp('done');
      a.label('timer').inc(Asm16.word(0x500));
      a.db(0x0f, 0x31, 0x66, 0xa3, 0x20, 0x05, 0x66, 0x89, 0x16, 0x24, 0x05); // rdtsc → [0x520], [0x524]
      wrmsr(a, X2APIC_EOI, 0);
      return a.iret();
    }

    const qword = (g: IrqVm, at: number): bigint => BigInt(g.word(at)) | (BigInt(g.word(at + 2)) << 16n) | (BigInt(g.word(at + 4)) << 32n) | (BigInt(g.word(at + 6)) << 48n);

    test('KVM_CAP_TSC_DEADLINE_TIMER is 1 on /dev/kvm and on a VM fd', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const g = irqVm(p, '/dev/kvm0', asm16().hlt());
      expect(p.ioctl(g.sys, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER)).toBe(1);
      expect(p.ioctl(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER)).toBe(1);
    });

    test('a guest arms IA32_TSC_DEADLINE and takes the timer interrupt through its IVT when its TSC reaches the deadline', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const delta = 2_000_000;
      const { g, v } = chipVm(p, deadlineGuest(delta), { 0x40: 'timer' });
      const fd = v[0]!.fd;
      setCpuid(p, fd, CPUID_X2APIC | CPUID_TSC_DEADLINE);
      p.ioctl(fd, KVM_RUN, 0);
      expect(v[0]!.run.exit_reason).toBe(KVM_EXIT_IO);
      expect(v[0]!.run.io.port).toBe(0x80);
      const deadline = qword(g, 0x530);
      expect(qword(g, 0x510)).toBe(deadline); // rdmsr read the armed deadline back
      expect(g.word(0x500)).toBe(1);
      const taken = qword(g, 0x520);
      expect(taken).toBeGreaterThanOrEqual(deadline);
      expect(taken - deadline).toBeLessThan(BigInt(delta / 100));
      // the timer fired: the MSR reads 0 again (apic_timer_expired clears tscdeadline in TSC-deadline mode)
      expect(getMsr(p, fd, MSR_TSC_DEADLINE)).toBe(0n);
    });

    test('without CPUID TSC_DEADLINE_TIMER the LVTT cannot select TSC-deadline mode: the write is ignored and the guest sleeps', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const { g, v } = chipVm(p, deadlineGuest(2_000_000), { 0x40: 'timer' });
      const fd = v[0]!.fd;
      setCpuid(p, fd, CPUID_X2APIC);
      expectRunErrno(() => p.ioctl(fd, KVM_RUN, 0), 'EINTR');
      expect(v[0]!.run.exit_reason).toBe(KVM_EXIT_INTR);
      expect(qword(g, 0x510)).toBe(0n);
      expect(g.word(0x500)).toBe(0);
      expect(getMsr(p, fd, MSR_TSC_DEADLINE)).toBe(0n);
    });

    test('KVM_SET_MSRS(IA32_TSC_DEADLINE) arms the LAPIC timer too; without an in-kernel LAPIC it is taken and reads 0', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const a = asm16();
      enableX2apic(a);
      wrmsr(a, X2APIC_SVR, 0x1ff);
      wrmsr(a, X2APIC_LVTT, 0x40 | (2 << 17));
      a.out(0x80, 'al').hlt();
      const { v } = chipVm(p, a);
      const fd = v[0]!.fd;
      setCpuid(p, fd, CPUID_X2APIC | CPUID_TSC_DEADLINE);
      p.ioctl(fd, KVM_RUN, 0);
      const at = getMsr(p, fd, 0x10) + 1_000_000n;
      expect(p.ioctl(fd, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_TSC_DEADLINE, data: at }]))).toBe(1);
      expect(getMsr(p, fd, MSR_TSC_DEADLINE)).toBe(at);
      const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
      const u = g2.vcpu();
      expect(p.ioctl(u.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_TSC_DEADLINE, data: at }]))).toBe(1);
      expect(getMsr(p, u.fd, MSR_TSC_DEADLINE)).toBe(0n);
    });
  });

  describe('MP states with an in-kernel irqchip', () => {
    test('an AP starts KVM_MP_STATE_UNINITIALIZED, the BSP RUNNABLE; without an irqchip both are RUNNABLE', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const { v } = chipVm(p, asm16().hlt(), {}, 2);
      expect(mpState(p, v[0]!.fd)).toBe(KVM_MP_STATE_RUNNABLE);
      expect(mpState(p, v[1]!.fd)).toBe(KVM_MP_STATE_UNINITIALIZED);
      const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
      g2.vcpu(0);
      expect(mpState(p, g2.vcpu(1).fd)).toBe(KVM_MP_STATE_RUNNABLE);
    });

    test('INIT-SIPI-SIPI through the BSP\'s ICR: the AP\'s KVM_RUN returns EAGAIN once woken, then it starts at vector:0', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const a = asm16();
      enableX2apic(a);
      wrmsr(a, X2APIC_SVR, 0x1ff);
      wrmsr(a, X2APIC_ICR, 0x4500, 1); // INIT, assert, to APIC 1
      wrmsr(a, X2APIC_ICR, 0x4602, 1); // SIPI vector 2
      wrmsr(a, X2APIC_ICR, 0x4602, 1); // SIPI again (ignored: the AP is no longer waiting)
      a.out(0x80, 'al').hlt();
      const { g, v } = chipVm(p, a, {}, 2);
      const [bsp, ap] = v as [RealModeVcpu, RealModeVcpu];
      setCpuid(p, bsp.fd, CPUID_X2APIC);
      // the AP's code at 0x2000 (vector 2 → CS 0x0200): mov ax, 0x1234; mov [0x600], ax; out 0x81, al; hlt
      g.mem.set([0xb8, 0x34, 0x12, 0xa3, 0x00, 0x06, 0xe6, 0x81, 0xf4], 0x2000);
      // nothing can wake the AP yet: a direct KVM_RUN ends as a signal would
      expectRunErrno(() => p.ioctl(ap.fd, KVM_RUN, 0), 'EINTR');
      expect(ap.run.exit_reason).toBe(KVM_EXIT_INTR);
      expect(mpState(p, ap.fd)).toBe(KVM_MP_STATE_UNINITIALIZED);
      p.ioctl(bsp.fd, KVM_RUN, 0);
      expect(bsp.run.exit_reason).toBe(KVM_EXIT_IO);
      // woken by the INIT: KVM_RUN accepts INIT and SIPI and returns EAGAIN without entering the guest
      expectRunErrno(() => p.ioctl(ap.fd, KVM_RUN, 0), 'EAGAIN');
      expect(mpState(p, ap.fd)).toBe(KVM_MP_STATE_RUNNABLE);
      const sregs = makeKvmSregs();
      p.ioctl(ap.fd, KVM_GET_SREGS, sregs);
      expect([sregs.cs.selector, sregs.cs.base]).toEqual([0x200, 0x2000n]);
      const regs = makeKvmRegs();
      p.ioctl(ap.fd, KVM_GET_REGS, regs);
      expect(regs.rip).toBe(0n);
      p.ioctl(ap.fd, KVM_RUN, 0);
      expect(ap.run.exit_reason).toBe(KVM_EXIT_IO);
      expect(ap.run.io.port).toBe(0x81);
      expect(g.word(0x600)).toBe(0x1234); // INIT reset DS to 0: [0x600] is linear 0x600, not in CS's segment
    });

    test('KVM_GET_MP_STATE accepts a pending INIT (INIT_RECEIVED), then a SIPI (RUNNABLE at vector:0)', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const a = asm16();
      enableX2apic(a);
      wrmsr(a, X2APIC_ICR, 0x4500, 1);
      a.out(0x80, 'al');
      wrmsr(a, X2APIC_ICR, 0x4610, 1); // SIPI vector 0x10
      a.out(0x80, 'al').hlt();
      const { v } = chipVm(p, a, {}, 2);
      const [bsp, ap] = v as [RealModeVcpu, RealModeVcpu];
      setCpuid(p, bsp.fd, CPUID_X2APIC);
      p.ioctl(bsp.fd, KVM_RUN, 0);
      expect(mpState(p, ap.fd)).toBe(KVM_MP_STATE_INIT_RECEIVED);
      p.ioctl(bsp.fd, KVM_RUN, 0);
      expect(mpState(p, ap.fd)).toBe(KVM_MP_STATE_RUNNABLE);
      const sregs = makeKvmSregs();
      p.ioctl(ap.fd, KVM_GET_SREGS, sregs);
      expect(sregs.cs.selector).toBe(0x1000);
    });

    test('KVM_SET_MP_STATE(SIPI_RECEIVED) is INIT_RECEIVED with a SIPI pending: the next KVM_GET_MP_STATE starts the vCPU', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const { v } = chipVm(p, asm16().hlt(), {}, 2);
      const ap = v[1] as RealModeVcpu;
      p.ioctl(ap.fd, KVM_SET_MP_STATE, makeKvmMpState({ mp_state: KVM_MP_STATE_SIPI_RECEIVED }));
      expect(mpState(p, ap.fd)).toBe(KVM_MP_STATE_RUNNABLE);
      const sregs = makeKvmSregs();
      p.ioctl(ap.fd, KVM_GET_SREGS, sregs);
      expect([sregs.cs.selector, sregs.cs.base]).toEqual([0, 0n]);
      // without an in-kernel LAPIC only RUNNABLE is taken, and nothing changes
      const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
      const u = g2.vcpu();
      for (const s of [KVM_MP_STATE_UNINITIALIZED, KVM_MP_STATE_HALTED, KVM_MP_STATE_SIPI_RECEIVED]) {
        expectKernelError(host, () => p.ioctl(u.fd, KVM_SET_MP_STATE, makeKvmMpState({ mp_state: s })), 'EINVAL');
      }
    });

    test('a halted vCPU stays KVM_MP_STATE_HALTED across KVM_RUN calls until an interrupt (or KVM_SET_MP_STATE) makes it runnable', () => {
      const host = irqHost(hardware());
      const p = host.spawn({ name: 'vmm' });
      const a = asm16();
      picInit(a, [3]);
      a.sti().hlt().out(0x80, 'al').hlt().out(0x81, 'al').hlt();
      a.label('irq3').inc(Asm16.word(0x500)).mov('al', 0x20).out(0x20, 'al').iret();
      const { g, v } = chipVm(p, a, { 11: 'irq3' });
      const { fd, run } = v[0]!;
      expectRunErrno(() => p.ioctl(fd, KVM_RUN, 0), 'EINTR');
      expect(mpState(p, fd)).toBe(KVM_MP_STATE_HALTED);
      const regs = makeKvmRegs();
      p.ioctl(fd, KVM_GET_REGS, regs);
      const rip = regs.rip;
      // still halted: KVM_RUN blocks again, the guest does not go past its hlt
      expectRunErrno(() => p.ioctl(fd, KVM_RUN, 0), 'EINTR');
      p.ioctl(fd, KVM_GET_REGS, regs);
      expect(regs.rip).toBe(rip);
      expect(mpState(p, fd)).toBe(KVM_MP_STATE_HALTED);
      // IRQ 3 wakes it: the handler runs, then the out after the hlt
      p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 3, level: 1 });
      p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 3, level: 0 });
      p.ioctl(fd, KVM_RUN, 0);
      expect([run.exit_reason, run.io.port, g.word(0x500)]).toEqual([KVM_EXIT_IO, 0x80, 1]);
      expect(mpState(p, fd)).toBe(KVM_MP_STATE_RUNNABLE);
      // halted again; user space makes it RUNNABLE: it continues after the hlt without an interrupt
      expectRunErrno(() => p.ioctl(fd, KVM_RUN, 0), 'EINTR');
      expect(mpState(p, fd)).toBe(KVM_MP_STATE_HALTED);
      p.ioctl(fd, KVM_SET_MP_STATE, makeKvmMpState({ mp_state: KVM_MP_STATE_RUNNABLE }));
      p.ioctl(fd, KVM_RUN, 0);
      expect([run.exit_reason, run.io.port, g.word(0x500)]).toEqual([KVM_EXIT_IO, 0x81, 1]);
    });
  });
});
