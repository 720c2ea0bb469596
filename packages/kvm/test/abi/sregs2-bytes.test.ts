/**
 * KVM_GET_SREGS2 / KVM_SET_SREGS2 on the C bytes of `struct kvm_sregs2` (module/vcpu-sregs.ts `getSregs2Bytes`,
 * `setSregs2Bytes`: the segments copied as words between the register file and the bytes) answer exactly as on the
 * object form: the same errno for the same structure, the same state after it (the whole host's snapshot, and every
 * register read back both ways), with and without an in-kernel LAPIC (which holds the APIC base and CR8).
 */
import { fc, test as fcTest } from '@fast-check/vitest';
import { O_RDWR, createHost, isKernelError } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VM,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_SREGS2,
  KVM_REGS_CODEC,
  KVM_RUN,
  KVM_SET_SREGS2,
  KVM_SREGS2_CODEC,
  KVM_SREGS_CODEC,
  createRealModeVcpu,
  kvm,
  makeKvmSregs2,
  type kvm_segment,
  type kvm_sregs2,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { expectSameGetBothWays } from './support.js';

const U64 = 0xffff_ffff_ffff_ffffn;

/** A host with one vCPU that has run (`hlt`), with an in-kernel irqchip when `irqchip`. */
function vcpu(vendor: (typeof VENDORS)[number], irqchip: boolean) {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  if (irqchip) p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  const { fd } = createRealModeVcpu(p, sys, vm);
  try {
    p.ioctl(fd, KVM_RUN, 0); // no memory: an exit (or EINTR), either way the vCPU has run
  } catch (e) {
    if (!isKernelError(e)) throw e;
  }
  return { host, p, fd };
}

/** The errno code `f` throws, or 'ok'. */
function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (isKernelError(e)) return e.code;
    throw e;
  }
}

const u64 = fc.oneof(fc.constantFrom(0n, 1n, 0xffff_ffffn, 1n << 32n, 1n << 47n, U64), fc.bigInt({ min: 0n, max: U64 }));
const byte = fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 255 }));
const segment: fc.Arbitrary<kvm_segment> = fc.record({
  base: u64,
  limit: fc.oneof(fc.constantFrom(0, 0xffff, 0xffff_ffff), fc.integer({ min: 0, max: 0xffff_ffff })),
  selector: fc.integer({ min: 0, max: 0xffff }),
  type: byte,
  present: byte,
  dpl: byte,
  db: byte,
  s: byte,
  l: fc.constant(0),
  g: byte,
  avl: byte,
  unusable: byte,
  padding: fc.constant(0),
});
/** Mostly one of `valid` (so that most structures are taken), sometimes anything of `any`. */
function mostly<T>(valid: readonly T[], any: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ arbitrary: fc.constantFrom(...valid), weight: 4 }, { arbitrary: any, weight: 1 });
}
// CR0 PE, PG, CD, NW in every combination; CR4 PAE and other bits; EFER LME/LMA (64-bit mode needs PG and PAE)
const cr0 = mostly(
  [0x6000_0010n, 0x11n, 0x8000_0011n, 0x8000_0033n],
  fc.tuple(fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean(), fc.constantFrom(0n, 1n << 32n)).map(([pe, pg, cd, nw, hi]) => 0x10n | (pe ? 1n : 0n) | (pg ? 1n << 31n : 0n) | (cd ? 1n << 30n : 0n) | (nw ? 1n << 29n : 0n) | hi),
);
const cr4 = mostly([0n, 1n << 5n, (1n << 5n) | (1n << 9n)], fc.oneof(fc.constantFrom(1n << 18n, 1n << 23n, 1n << 30n), fc.bigInt({ min: 0n, max: (1n << 24n) - 1n })));
const efer = mostly([0n, 0n, (1n << 8n) | (1n << 10n), 1n << 11n], fc.constantFrom(1n << 8n, 1n << 10n, 1n, 1n << 15n));
const apicBase = mostly([0xfee0_0900n, 0xfee0_0800n, 0xfee0_0000n], fc.constantFrom(0xfee0_0d00n, 0xfee0_0c00n, 0xfee0_0400n, 1n << 52n, 0xfee0_0801n));
const sregs2: fc.Arbitrary<kvm_sregs2> = fc.record({
  cs: fc.tuple(segment, mostly([0], fc.constantFrom(1, 2))).map(([seg, l]) => ({ ...seg, l })),
  ds: segment, es: segment, fs: segment, gs: segment, ss: segment, tr: segment, ldt: segment,
  gdt: fc.record({ base: u64, limit: fc.integer({ min: 0, max: 0xffff }), padding: fc.constant([0, 0, 0]) }),
  idt: fc.record({ base: u64, limit: fc.integer({ min: 0, max: 0xffff }), padding: fc.constant([0, 0, 0]) }),
  cr0, cr2: u64, cr3: mostly([0n, 0x1000n, 0x3fe0n], fc.oneof(fc.constant(1n << 52n), u64)), cr4, cr8: fc.constantFrom(0n, 5n, 0xfn, 0x10n, 0x1fn),
  efer, apic_base: apicBase,
  flags: mostly([0n, 1n], fc.constantFrom(2n, 3n, 1n << 40n)),
  pdptrs: fc.tuple(u64, u64, u64, u64),
}) as fc.Arbitrary<kvm_sregs2>;

describe.each(VENDORS)('KVM_GET/SET_SREGS2 on the C bytes match the object form on $name', (vendor) => {
  const answers = new Map<string, number>();
  fcTest.prop([fc.boolean(), sregs2], { numRuns: 150 })('the same errno, the same state, the same registers read back', (irqchip, s) => {
    const a = vcpu(vendor, irqchip);
    const b = vcpu(vendor, irqchip);
    const bytes = KVM_SREGS2_CODEC.toBytes(s);
    const copy = bytes.slice();
    const answer = outcome(() => a.p.ioctl(a.fd, KVM_SET_SREGS2, bytes));
    expect(answer).toBe(outcome(() => b.p.ioctl(b.fd, KVM_SET_SREGS2, makeKvmSregs2(s))));
    answers.set(answer, (answers.get(answer) ?? 0) + 1);
    expect(bytes).toEqual(copy); // KVM_SET_SREGS2 writes nothing back
    expect(a.host.snapshot()).toEqual(b.host.snapshot());
    // read back: the bytes GET of one is the object GET of the other, encoded; KVM_GET_SREGS and the registers too
    expectSameGetBothWays(KVM_SREGS2_CODEC, KVM_GET_SREGS2, makeKvmSregs2, a, b);
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const sx = new Uint8Array(KVM_SREGS_CODEC.size);
      const sy = new Uint8Array(KVM_SREGS_CODEC.size);
      x.p.ioctl(x.fd, KVM_GET_SREGS, sx);
      y.p.ioctl(y.fd, KVM_GET_SREGS, sy);
      expect(sx).toEqual(sy);
      const rx = new Uint8Array(KVM_REGS_CODEC.size);
      const ry = new Uint8Array(KVM_REGS_CODEC.size);
      x.p.ioctl(x.fd, KVM_GET_REGS, rx);
      y.p.ioctl(y.fd, KVM_GET_REGS, ry);
      expect(rx).toEqual(ry);
    }
  });

  test('the structures above were taken often enough (about a fifth), and refused often', () => {
    expect(answers.get('ok') ?? 0).toBeGreaterThan(15);
    expect(answers.get('EINVAL') ?? 0).toBeGreaterThan(10);
  });

  test('a structure shorter than sizeof(struct kvm_sregs2) is EFAULT both ways, with nothing written or changed', () => {
    const a = vcpu(vendor, false);
    const before = a.host.snapshot();
    const short = new Uint8Array(KVM_SREGS2_CODEC.size - 1).fill(0x5a);
    expect(outcome(() => a.p.ioctl(a.fd, KVM_GET_SREGS2, short))).toBe('EFAULT');
    expect(short).toEqual(new Uint8Array(KVM_SREGS2_CODEC.size - 1).fill(0x5a));
    expect(outcome(() => a.p.ioctl(a.fd, KVM_SET_SREGS2, short))).toBe('EFAULT');
    expect(a.host.snapshot()).toEqual(before);
  });
});
