/**
 * User-space MSR exits (KVM_CAP_X86_USER_SPACE_MSR): which failed guest RDMSR/WRMSR go to user space
 * (`kvm_msr_user_space`, arch/x86/kvm/x86.c), what `kvm_run.msr` holds, and how the next KVM_RUN completes the
 * instruction (`complete_emulated_msr_access`: #GP when `msr.error` is set, else EDX:EAX ← `msr.data` for RDMSR).
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_X86_USER_SPACE_MSR,
  KVM_CHECK_EXTENSION,
  KVM_ENABLE_CAP,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_EXIT_X86_RDMSR,
  KVM_EXIT_X86_WRMSR,
  KVM_GET_MSRS,
  KVM_GET_REGS,
  KVM_MSR_EXIT_REASON_FILTER,
  KVM_MSR_EXIT_REASON_INVAL,
  KVM_MSR_EXIT_REASON_UNKNOWN,
  KVM_RUN,
  KVM_RUN_OFFSETS,
  KVM_SET_REGS,
  KVM_X86_SET_MSR_FILTER,
  makeKvmEnableCap,
  makeKvmMsrFilter,
  makeKvmRegs,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { guestVm, type GuestVm } from './guest-vm.js';
import { errnoOf } from './support.js';

const MSR_IA32_SYSENTER_CS = 0x174;
const MSR_IA32_CR_PAT = 0x277;
const UNKNOWN_MSR = 0x12345; // no MSR KVM handles

/** `mov ecx, msr; rdmsr; hlt` at 0x1000; the #GP handler (IVT 13) at 0x2000 does `out 0x13, al; hlt`. */
function rdmsrGuest(vendor: (typeof VENDORS)[number], msr: number): GuestVm {
  const g = guestVm(vendor, [0x66, 0xb9, msr & 0xff, (msr >>> 8) & 0xff, (msr >>> 16) & 0xff, msr >>> 24, 0x0f, 0x32, 0xf4]);
  withGpHandler(g);
  return g;
}

/** `mov ecx, msr; mov eax, lo; mov edx, hi; wrmsr; hlt`, and the #GP handler. */
function wrmsrGuest(vendor: (typeof VENDORS)[number], msr: number, value: bigint): GuestVm {
  const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
  const lo = Number(value & 0xffff_ffffn);
  const hi = Number(value >> 32n);
  const g = guestVm(vendor, [0x66, 0xb9, ...le32(msr), 0x66, 0xb8, ...le32(lo), 0x66, 0xba, ...le32(hi), 0x0f, 0x30, 0xf4]);
  withGpHandler(g);
  return g;
}

function withGpHandler(g: GuestVm): void {
  g.mem.bytes.set([0xe6, 0x13, 0xf4], 0x2000);
  g.mem.bytes.set([0x00, 0x20, 0x00, 0x00], 13 * 4);
}

function enable(g: GuestVm, mask: number): number {
  return g.p.ioctl(g.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_X86_USER_SPACE_MSR, args: [BigInt(mask), 0n, 0n, 0n] }));
}

function regs(g: GuestVm): ReturnType<typeof makeKvmRegs> {
  const r = makeKvmRegs();
  g.p.ioctl(g.fd, KVM_GET_REGS, r);
  return r;
}

/** The #GP handler ran (its OUT to port 0x13). */
function expectGp(g: GuestVm): void {
  expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
  expect(g.run.io.port).toBe(0x13);
}

describe.each(VENDORS)('KVM_CAP_X86_USER_SPACE_MSR ($name)', (vendor) => {
  test('answered 1 on both fds; KVM_ENABLE_CAP takes INVAL|UNKNOWN|FILTER and refuses other bits and flags with EINVAL, the VM unchanged', () => {
    const g = rdmsrGuest(vendor, UNKNOWN_MSR);
    expect(g.p.ioctl(g.sys, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR)).toBe(1);
    expect(g.p.ioctl(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR)).toBe(1);
    expect(enable(g, 7)).toBe(0);
    expect(enable(g, 0)).toBe(0);
    expect(errnoOf(g.host, () => enable(g, 8))).toBe('EINVAL');
    expect(errnoOf(g.host, () => enable(g, 0x100))).toBe('EINVAL');
    expect(errnoOf(g.host, () => g.p.ioctl(g.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_X86_USER_SPACE_MSR, flags: 1, args: [1n, 0n, 0n, 0n] })))).toBe('EINVAL');
    // The refused masks left the mask at 0: the unknown MSR is #GP.
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expectGp(g);
  });

  test('RDMSR of an MSR KVM does not know, with UNKNOWN: KVM_EXIT_X86_RDMSR (reason, index, data 0, error 0, pad 0), RIP still at it; the next KVM_RUN puts msr.data in EDX:EAX and goes on', () => {
    const g = rdmsrGuest(vendor, UNKNOWN_MSR);
    expect(enable(g, KVM_MSR_EXIT_REASON_UNKNOWN)).toBe(0);
    g.run.bytes.fill(0xaa, KVM_RUN_OFFSETS['msr.error'], KVM_RUN_OFFSETS['msr.data'] + 8);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_X86_RDMSR);
    expect(g.run.msr.error).toBe(0);
    expect([...g.run.bytes.subarray(KVM_RUN_OFFSETS['msr.error'] + 1, KVM_RUN_OFFSETS['msr.reason'])]).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(g.run.msr.reason).toBe(KVM_MSR_EXIT_REASON_UNKNOWN);
    expect(g.run.msr.index).toBe(UNKNOWN_MSR);
    expect(g.run.msr.data).toBe(0n);
    expect(regs(g).rip).toBe(0x1006n); // at the RDMSR
    g.run.msr.data = 0x1122_3344_5566_7788n;
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    const r = regs(g);
    expect(r.rax).toBe(0x5566_7788n);
    expect(r.rdx).toBe(0x1122_3344n);
    expect(r.rip).toBe(0x1009n);
  });

  test('RDMSR answered with msr.error ≠ 0: #GP through the IVT, EAX and EDX unchanged', () => {
    const g = rdmsrGuest(vendor, UNKNOWN_MSR);
    g.p.ioctl(g.fd, KVM_SET_REGS, makeKvmRegs({ ...regs(g), rax: 0x1234n, rdx: 0x5678n }));
    enable(g, KVM_MSR_EXIT_REASON_UNKNOWN);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_X86_RDMSR);
    g.run.msr.error = 1;
    g.run.msr.data = 0xffn;
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expectGp(g);
    const r = regs(g);
    expect(r.rax).toBe(0x1234n);
    expect(r.rdx).toBe(0x5678n);
  });

  test('without the reason in the mask the access is #GP, no exit (INVAL and FILTER do not cover an unknown MSR)', () => {
    const g = rdmsrGuest(vendor, UNKNOWN_MSR);
    enable(g, KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_FILTER);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expectGp(g);
  });

  test('WRMSR of an unknown MSR: KVM_EXIT_X86_WRMSR with EDX:EAX in msr.data; error 0 completes it', () => {
    const g = wrmsrGuest(vendor, UNKNOWN_MSR, 0xdead_beef_0bad_f00dn);
    enable(g, KVM_MSR_EXIT_REASON_UNKNOWN);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_X86_WRMSR);
    expect(g.run.msr.reason).toBe(KVM_MSR_EXIT_REASON_UNKNOWN);
    expect(g.run.msr.index).toBe(UNKNOWN_MSR);
    expect(g.run.msr.data).toBe(0xdead_beef_0bad_f00dn);
    expect(regs(g).rip).toBe(0x1012n);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(regs(g).rip).toBe(0x1015n);
  });

  test('WRMSR answered with msr.error ≠ 0 is #GP', () => {
    const g = wrmsrGuest(vendor, UNKNOWN_MSR, 1n);
    enable(g, KVM_MSR_EXIT_REASON_UNKNOWN);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    g.run.msr.error = 1;
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expectGp(g);
  });

  test('a value KVM refuses (PAT with an invalid memory type) is reason INVAL; the MSR keeps its value after the answer', () => {
    const g = wrmsrGuest(vendor, MSR_IA32_CR_PAT, 0x02n);
    enable(g, KVM_MSR_EXIT_REASON_INVAL);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_X86_WRMSR);
    expect(g.run.msr.reason).toBe(KVM_MSR_EXIT_REASON_INVAL);
    expect(g.run.msr.index).toBe(MSR_IA32_CR_PAT);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    const msrs = { nmsrs: 1, entries: [{ index: MSR_IA32_CR_PAT, reserved: 0, data: 0n }] };
    expect(g.p.ioctl(g.fd, KVM_GET_MSRS, msrs)).toBe(1);
    expect(msrs.entries[0]?.data).toBe(0x0007_0406_0007_0406n); // the reset PAT: user space's "success" writes nothing
  });

  test('an access the MSR filter denies: reason FILTER with FILTER in the mask, #GP without; the x2APIC range is never filtered', () => {
    const g = rdmsrGuest(vendor, MSR_IA32_SYSENTER_CS);
    const filter = makeKvmMsrFilter();
    const denyRead = { ...filter, ranges: filter.ranges.map((r, i) => (i === 0 ? { flags: 1, nmsrs: 1, base: MSR_IA32_SYSENTER_CS, bitmap: new Uint8Array(8) } : r)) };
    expect(g.p.ioctl(g.vm, KVM_X86_SET_MSR_FILTER, denyRead)).toBe(0);
    enable(g, KVM_MSR_EXIT_REASON_FILTER);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_X86_RDMSR);
    expect(g.run.msr.reason).toBe(KVM_MSR_EXIT_REASON_FILTER);
    expect(g.run.msr.index).toBe(MSR_IA32_SYSENTER_CS);
    g.run.msr.data = 0x10n;
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(regs(g).rax).toBe(0x10n);

    const h = rdmsrGuest(vendor, MSR_IA32_SYSENTER_CS);
    h.p.ioctl(h.vm, KVM_X86_SET_MSR_FILTER, denyRead);
    enable(h, KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL);
    h.p.ioctl(h.fd, KVM_RUN, 0);
    expectGp(h);
  });

  test('immediate_exit after an RDMSR exit completes the RDMSR, then EINTR without entering the guest', () => {
    const g = rdmsrGuest(vendor, UNKNOWN_MSR);
    enable(g, KVM_MSR_EXIT_REASON_UNKNOWN);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    g.run.msr.data = 0x42n;
    g.run.immediate_exit = 1;
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(g.run.exit_reason).toBe(KVM_EXIT_X86_RDMSR); // left as it was
    const r = regs(g);
    expect(r.rax).toBe(0x42n);
    expect(r.rip).toBe(0x1008n); // past the RDMSR, before the HLT
    g.run.immediate_exit = 0;
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(regs(g).rax).toBe(0x42n);
  });

  test('a known MSR the guest may read does not exit even with every reason enabled', () => {
    const g = rdmsrGuest(vendor, MSR_IA32_SYSENTER_CS);
    enable(g, 7);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
  });
});
