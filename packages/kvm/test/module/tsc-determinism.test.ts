/**
 * The guest TSC is the vCPU's own (arch/x86/kvm/x86.c `kvm_read_l1_tsc`: the host TSC scaled, plus the vCPU's offset,
 * which `kvm_synchronize_tsc` sets at creation), counting its host's simulated clock: the same guest reads the same
 * `rdtsc` values whatever other guests ran before it in the process. Within one run a guest instruction reads it as far
 * into the run as it is (the clock counts the run's instructions only at its end): two `rdtsc`s in a row differ, as on
 * a real vCPU (recorded on the real /dev/kvm: `run.rdtsc-twice`).
 */
import { describe, expect, test } from 'vitest';
import { KVM_EXIT_HLT, KVM_EXIT_IO, KVM_GET_REGS, KVM_GET_TSC_KHZ, KVM_RUN, makeKvmRegs } from '../../src/index.js';
import { guestVm, type GuestVm } from '../abi/guest-vm.js';
import { VENDORS } from './helpers.js';

/** `mov cx, 200; loop $; rdtsc; out 0x10, al; rdtsc; hlt`: two TSC reads with an exit and some work between. */
const READ_TSC_TWICE = [0xb9, 0xc8, 0x00, 0xe2, 0xfe, 0x0f, 0x31, 0xe6, 0x10, 0x0f, 0x31, 0xf4];

/** EDX:EAX after a KVM_RUN that ends with `exit`. */
function tscAtExit(g: GuestVm, exit: number): bigint {
  expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
  expect(g.run.exit_reason).toBe(exit);
  const r = makeKvmRegs();
  g.p.ioctl(g.fd, KVM_GET_REGS, r);
  return ((r.rdx & 0xffff_ffffn) << 32n) | (r.rax & 0xffff_ffffn);
}

/** The two TSC values the guest reads on a fresh VM of `vendor`. */
function readings(vendor: (typeof VENDORS)[number]): bigint[] {
  const g = guestVm(vendor, READ_TSC_TWICE);
  return [tscAtExit(g, KVM_EXIT_IO), tscAtExit(g, KVM_EXIT_HLT)];
}

describe.each(VENDORS)('the guest TSC ($name)', (vendor) => {
  test('the same guest reads the same rdtsc values with other guests run between', () => {
    const first = readings(vendor);
    for (const other of VENDORS) for (let i = 0; i < 2; i++) readings(other);
    expect(readings(vendor)).toEqual(first);
    // It counts: the second read, after the exit, is later than the first.
    expect(first[1]! > first[0]!).toBe(true);
  });

  test('within one run each instruction reads the TSC as far into the run as it is: rdtsc, three MOVs, then RDMSR(IA32_TSC) and rdtsc read 4 and 6 instructions later', () => {
    // rdtsc; mov ebx, eax; mov esi, edx; mov ecx, 0x10; rdmsr; mov edi, eax; rdtsc; hlt
    const g = guestVm(vendor, [0x0f, 0x31, 0x66, 0x89, 0xc3, 0x66, 0x89, 0xd6, 0x66, 0xb9, 0x10, 0, 0, 0, 0x0f, 0x32, 0x66, 0x89, 0xc7, 0x0f, 0x31, 0xf4]);
    const khz = BigInt(g.p.ioctl(g.fd, KVM_GET_TSC_KHZ, 0));
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    const r = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, r);
    const low = (v: bigint) => v & 0xffff_ffffn;
    // The clock's nominal rate is 1 ns per instruction: 4 and 6 ns later, in TSC cycles (rounded down at each end).
    const cycles = (ns: bigint) => [(ns * khz) / 1_000_000n, (ns * khz + 999_999n) / 1_000_000n];
    expect(cycles(4n)).toContain(low(r.rdi - r.rbx));
    expect(cycles(6n)).toContain(low(r.rax - r.rbx));
  });
});
