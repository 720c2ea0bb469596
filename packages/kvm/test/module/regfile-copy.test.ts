/**
 * The generated register-file copies of KVM_GET/SET_REGS and KVM_GET/SET_SREGS (`module/regfile-copy.ts`) against the
 * register file's own accessors (`get64`/`set64`, the `SegmentRegister` views): the same values both ways, for
 * random 64-bit registers, bases above 2^32 and 2^53, limits, selectors and attribute bytes.
 */
import { describe, expect, test } from 'vitest';
import { KVM_REGS_FIELDS, KVM_SREGS_CODEC, KVM_SREGS_SEGMENTS, makeKvmRegs } from '../../src/abi/structs.js';
import { GuestCpuState } from '../../src/guest/cpu-state.js';
import { readRegs, readSegments, writeRegs, writeSegments } from '../../src/module/regfile-copy.js';

/** A deterministic generator of 32-bit words. */
function words(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

describe('register file ↔ kvm_regs / kvm_sregs segments', () => {
  test('readRegs and writeRegs agree with get64 and set64', () => {
    const next = words(7);
    for (let round = 0; round < 20; round++) {
      const a = new GuestCpuState();
      for (const k of KVM_REGS_FIELDS) a.set64(k, (BigInt(next()) << 32n) | BigInt(round % 3 === 0 ? 0 : next()));
      const out = makeKvmRegs();
      readRegs(a, out);
      for (const k of KVM_REGS_FIELDS) expect(out[k]).toBe(a.get64(k));
      const b = new GuestCpuState();
      writeRegs(b, out);
      for (const k of KVM_REGS_FIELDS) expect(b.get64(k)).toBe(a.get64(k));
    }
    // modulo 2^64, as set64
    const c = new GuestCpuState();
    writeRegs(c, makeKvmRegs({ rax: -1n, rbx: 1n << 64n }));
    expect(c.get64('rax')).toBe(0xffff_ffff_ffff_ffffn);
    expect(c.get64('rbx')).toBe(0n);
  });

  test('readSegments and writeSegments agree with the SegmentRegister views', () => {
    const next = words(11);
    for (let round = 0; round < 20; round++) {
      const a = new GuestCpuState();
      for (const n of KVM_SREGS_SEGMENTS) {
        const g = a.segment(n);
        g.base64 = (BigInt(round % 2 === 0 ? next() : 0) << 32n) | BigInt(next());
        g.limit = next();
        g.selector = next() & 0xffff;
        g.type = next() & 0xff;
        g.present = next() & 0xff;
        g.dpl = next() & 0xff;
        g.db = next() & 0xff;
        g.s = next() & 0xff;
        g.l = next() & 0xff;
        g.g = next() & 0xff;
        g.avl = next() & 0xff;
        g.unusable = next() & 0xff;
      }
      const out = KVM_SREGS_CODEC.zero();
      readSegments(a, out);
      const b = new GuestCpuState();
      writeSegments(b, out);
      for (const n of KVM_SREGS_SEGMENTS) {
        const g = a.segment(n);
        const want = { base: g.base64, limit: g.limit, selector: g.selector, type: g.type, present: g.present, dpl: g.dpl, db: g.db, s: g.s, l: g.l, g: g.g, avl: g.avl, unusable: g.unusable };
        expect(out[n]).toEqual(want);
        const h = b.segment(n);
        expect({ base: h.base64, limit: h.limit, selector: h.selector, type: h.type, present: h.present, dpl: h.dpl, db: h.db, s: h.s, l: h.l, g: h.g, avl: h.avl, unusable: h.unusable }).toEqual(want);
      }
    }
    // An attribute keeps its low 8 bits, as the views' setters do.
    const s = KVM_SREGS_CODEC.zero();
    s.cs.type = 0x1ab;
    s.cs.unusable = 0x301;
    const c = new GuestCpuState();
    writeSegments(c, s);
    expect(c.cs.type).toBe(0xab);
    expect(c.cs.unusable).toBe(1);
  });
});
