/**
 * The interrupt shadow of an instruction that exited for an MMIO read and is completed by the next KVM_RUN
 * (arch/x86/kvm/x86.c `complete_emulated_mmio` → `complete_emulated_io` → `kvm_emulate_instruction` with
 * EMULTYPE_NO_DECODE, whose writeback calls `toggle_interruptibility` with the emulator's `interruptibility`): a
 * MOV SS / POP SS completed from MMIO opens a MOV SS shadow that holds a pending NMI for the next instruction, and an
 * instruction that was itself in an STI shadow ends it — as the same instructions do without MMIO.
 */
import { describe, expect, test } from 'vitest';
import { KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_GET_VCPU_EVENTS, KVM_NMI, KVM_RUN, makeKvmVcpuEvents } from '../../src/index.js';
import { guestVm, type GuestVm } from '../abi/guest-vm.js';
import { VENDORS } from './helpers.js';

const KVM_X86_SHADOW_INT_MOV_SS = 1;

/** `mov ax, 0x2000; mov ds, ax`: DS at 0x20000, past the guest's 64 KiB of RAM (MMIO); AX stays 0x2000. */
const DS_AT_MMIO = [0xb8, 0x00, 0x20, 0x8e, 0xd8];
/** After the instruction under test: `out 0x10; out 0x11; hlt`. */
const THEN = [0xe6, 0x10, 0xe6, 0x11, 0xf4];

/** A guest running `code` then {@link THEN}, with an NMI handler (IVT vector 2) at 0x2000 `out 0x20; hlt`. */
function mmioGuest(vendor: (typeof VENDORS)[number], code: readonly number[]): GuestVm {
  const g = guestVm(vendor, [...DS_AT_MMIO, ...code, ...THEN]);
  g.mem.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4);
  g.mem.bytes.set([0xe6, 0x20, 0xf4], 0x2000);
  return g;
}

/** KVM_RUN to the MMIO read at 0x20000; answers it with `value` (a word) and queues an NMI. */
function readThenNmi(g: GuestVm, value: number): void {
  expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
  expect(g.run.exit_reason).toBe(KVM_EXIT_MMIO);
  expect([g.run.mmio.phys_addr, g.run.mmio.is_write]).toEqual([0x20000, 0]);
  g.run.mmio.data.set([value & 0xff, value >> 8]);
  expect(g.p.ioctl(g.fd, KVM_NMI, 0)).toBe(0);
}

/** KVM_RUN; the port of the OUT it exited at. */
function runToPort(g: GuestVm): number {
  expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
  expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
  return g.run.io.port;
}

function shadowOf(g: GuestVm): number {
  const ev = makeKvmVcpuEvents();
  g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
  return ev.interrupt.shadow;
}

describe.each(VENDORS)('the interrupt shadow of an instruction completed from MMIO ($name)', (vendor) => {
  test.each([
    ['mov ss, [0]', [0x8e, 0x16, 0x00, 0x00]],
    // The stack at 0x20000 (SS = 0x2000, SP = 0): POP SS reads its selector from MMIO.
    ['pop ss', [0x8e, 0xd0, 0xbc, 0x00, 0x00, 0x17]],
  ])('%s: the MOV SS shadow holds the NMI for the next instruction', (_name, code) => {
    const g = mmioGuest(vendor, code);
    readThenNmi(g, 0);
    expect(runToPort(g)).toBe(0x10); // the instruction in the shadow, before the NMI
    expect(runToPort(g)).toBe(0x20); // then the NMI
  });

  test('an MOV SS from MMIO leaves the shadow in KVM_GET_VCPU_EVENTS when KVM_RUN ends right after it', () => {
    // `mov ss, [0]; mov ax, [0]`: the second read exits to user space while the first instruction's shadow holds.
    const g = mmioGuest(vendor, [0x8e, 0x16, 0x00, 0x00, 0xa1, 0x00, 0x00]);
    readThenNmi(g, 0);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_MMIO);
    expect(shadowOf(g)).toBe(KVM_X86_SHADOW_INT_MOV_SS);
  });

  test('an instruction in an STI shadow that completes from MMIO ends the shadow: the NMI comes right after it', () => {
    // `sti; mov ax, [0]`: the read is in the STI shadow; once completed the NMI is taken before `out 0x10`.
    const g = mmioGuest(vendor, [0xfb, 0xa1, 0x00, 0x00]);
    readThenNmi(g, 0x1234);
    expect(runToPort(g)).toBe(0x20);
  });
});
