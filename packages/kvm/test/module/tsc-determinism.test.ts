/**
 * The guest TSC is the vCPU's own (arch/x86/kvm/x86.c `kvm_read_l1_tsc`: the host TSC scaled, plus the vCPU's offset,
 * which `kvm_synchronize_tsc` sets at creation), counting its host's simulated clock: the same guest reads the same
 * `rdtsc` values whatever other guests ran before it in the process.
 */
import { describe, expect, test } from 'vitest';
import { KVM_EXIT_HLT, KVM_EXIT_IO, KVM_GET_REGS, KVM_RUN, makeKvmRegs } from '../../src/index.js';
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
});
