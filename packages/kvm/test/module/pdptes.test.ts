/**
 * The PAE PDPTEs KVM loads (arch/x86/kvm/x86.c `load_pdptrs`, `pdptr_rsvd_bits`): a present entry with bit 1, 2, 5–8
 * or one at or above MAXPHYADDR set cannot be loaded. A guest `mov cr0` that starts PAE paging then raises #GP
 * (`kvm_set_cr0` returns 1) and paging stays off; KVM_SET_SREGS ignores the failure (`__set_sregs_common`) and the
 * PDPTRs stay as they were (KVM_GET_SREGS2).
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_GET_SREGS,
  KVM_GET_SREGS2,
  KVM_RUN,
  KVM_SET_SREGS,
  makeKvmSregs,
  makeKvmSregs2,
  KVM_SREGS2_FLAGS_PDPTRS_VALID,
} from '../../src/index.js';
import { guestVm, type GuestVm } from '../abi/guest-vm.js';
import { VENDORS } from './helpers.js';

const CR0_PG = 1n << 31n;
const PDPT = 0x5000;

/**
 * `mov eax, 0x20; mov cr4, eax` (PAE), `mov eax, 0x5000; mov cr3, eax`, `mov eax, 0x80000011; mov cr0, eax` (PE, PG),
 * `out 0x10; hlt`; the #GP handler (IVT 13) at 0x3000: `out 0x13; hlt`.
 */
function pagingGuest(vendor: (typeof VENDORS)[number], pdpte0: bigint): GuestVm {
  const g = guestVm(vendor, [
    0x66, 0xb8, 0x20, 0, 0, 0, 0x0f, 0x22, 0xe0,
    0x66, 0xb8, 0x00, 0x50, 0, 0, 0x0f, 0x22, 0xd8,
    0x66, 0xb8, 0x11, 0, 0, 0x80, 0x0f, 0x22, 0xc0,
    0xe6, 0x10, 0xf4,
  ]);
  g.mem.bytes.set([0x00, 0x30, 0x00, 0x00], 13 * 4);
  g.mem.bytes.set([0xe6, 0x13, 0xf4], 0x3000);
  writePdpte(g, 0, pdpte0);
  return g;
}

function writePdpte(g: GuestVm, i: number, value: bigint): void {
  new DataView(g.mem.bytes.buffer, g.mem.bytes.byteOffset).setBigUint64(PDPT + 8 * i, value, true);
}

function sregs2(g: GuestVm): ReturnType<typeof makeKvmSregs2> {
  const s = makeKvmSregs2();
  g.p.ioctl(g.fd, KVM_GET_SREGS2, s);
  return s;
}

describe.each(VENDORS)('PAE PDPTEs ($name)', (vendor) => {
  test.each([
    ['bit 5', 0x6021n],
    ['bit 1', 0x6003n],
    ['bit 8', 0x6101n],
    ['bit 36 (MAXPHYADDR 36)', 0x10_0000_6001n],
  ])('mov cr0 starting PAE paging with a present PDPTE with %s set: #GP, paging off', (_bit, pdpte) => {
    const g = pagingGuest(vendor, pdpte);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
    expect(g.run.io.port).toBe(0x13);
    const s = makeKvmSregs();
    g.p.ioctl(g.fd, KVM_GET_SREGS, s);
    expect([s.cr0 & CR0_PG, s.cr4, s.cr3]).toEqual([0n, 0x20n, 0x5000n]);
  });

  test.each([
    ['valid', 0x6001n],
    ['not present, reserved bits set', 0x10_0000_61e6n],
  ])('mov cr0 starting PAE paging with a %s PDPTE: paging starts (the interpreter stops there), the PDPTRs loaded', (_what, pdpte) => {
    const g = pagingGuest(vendor, pdpte);
    writePdpte(g, 3, 0x9001n);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_INTERNAL_ERROR);
    const s = sregs2(g);
    expect(s.cr0 & CR0_PG).toBe(CR0_PG);
    expect(s.flags).toBe(BigInt(KVM_SREGS2_FLAGS_PDPTRS_VALID));
    expect(s.pdptrs).toEqual([pdpte, 0n, 0n, 0x9001n]);
  });

  test('KVM_SET_SREGS into PAE paging loads the PDPTEs; with a reserved bit it succeeds and keeps the PDPTRs it had', () => {
    const g = pagingGuest(vendor, 0x6001n);
    const s = makeKvmSregs();
    g.p.ioctl(g.fd, KVM_GET_SREGS, s);
    s.cr0 |= CR0_PG | 1n;
    s.cr4 = 0x20n;
    s.cr3 = BigInt(PDPT);
    expect(g.p.ioctl(g.fd, KVM_SET_SREGS, s)).toBe(0);
    expect(sregs2(g).pdptrs).toEqual([0x6001n, 0n, 0n, 0n]);
    writePdpte(g, 0, 0x7001n);
    writePdpte(g, 1, 0x8041n); // bit 6
    expect(g.p.ioctl(g.fd, KVM_SET_SREGS, s)).toBe(0);
    expect(sregs2(g).pdptrs).toEqual([0x6001n, 0n, 0n, 0n]);
    writePdpte(g, 1, 0x8001n);
    expect(g.p.ioctl(g.fd, KVM_SET_SREGS, s)).toBe(0);
    expect(sregs2(g).pdptrs).toEqual([0x7001n, 0x8001n, 0n, 0n]);
  });
});
