/** The uapi state structs: C layouts, byte codecs, shape checks, and GET → SET → GET on the devices. */
import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { KVM_LAYOUTS } from '../../src/abi/layout.js';
import {
  APIC_EOI,
  APIC_LVTT,
  APIC_SPIV,
  APIC_TMICT,
  KVM_IOAPIC_STATE_SIZE,
  KVM_PIC_STATE_FIELDS,
  KVM_PIC_STATE_SIZE,
  KVM_PIT_STATE2_SIZE,
  KVM_PIT_STATE_SIZE,
  decodeKvmIoapicState,
  decodeKvmLapicState,
  decodeKvmPicState,
  decodeKvmPitState,
  encodeKvmIoapicState,
  encodeKvmLapicState,
  encodeKvmPicState,
  encodeKvmPitState,
  IOAPIC_REDIR_FIELDS,
  ioapicField,
  makeKvmLapicState,
  makeKvmPicState,
  makeKvmPitState2,
  validateKvmIoapicState,
  validateKvmLapicState,
  validateKvmPicState,
  validateKvmPitState,
  withIoapicField,
  type kvm_irqchip,
  type kvm_pic_state,
  type kvm_pit_state2,
} from '../../src/irqchip/index.js';
import { vmWith } from './helpers.js';

const u8 = fc.integer({ min: 0, max: 0xff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const picState = fc.record(Object.fromEntries(KVM_PIC_STATE_FIELDS.map((f) => [f, u8]))) as fc.Arbitrary<kvm_pic_state>;
const channel = fc.record({
  count: u32, latched_count: fc.integer({ min: 0, max: 0xffff }), count_latched: u8, status_latched: u8, status: u8,
  read_state: u8, write_state: u8, write_latch: u8, rw_mode: u8, mode: u8, bcd: u8, gate: u8,
  count_load_time: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
});
const pitState = fc.record({ channels: fc.tuple(channel, channel, channel), flags: u32 }) as fc.Arbitrary<kvm_pit_state2>;
const ioapicState = fc.record({ base_address: u64, ioregsel: u32, id: u32, irr: u32, redirtbl: fc.array(u64, { minLength: 24, maxLength: 24 }) });

describe('layouts (sizes the ioctl numbers encode)', () => {
  test('kvm_pic_state 16, kvm_ioapic_state 216, kvm_pit_state 72, kvm_pit_state2 112, kvm_lapic_state 1024', () => {
    expect([KVM_PIC_STATE_SIZE, KVM_IOAPIC_STATE_SIZE, KVM_PIT_STATE_SIZE, KVM_PIT_STATE2_SIZE, KVM_LAYOUTS.kvm_lapic_state.size]).toEqual([16, 216, 72, 112, 1024]);
  });

  test('redirection entry fields sit where union kvm_ioapic_redirect_entry puts them', () => {
    const e = 0xab00_0000_0001_f5c3n;
    expect([ioapicField(e, 'vector'), ioapicField(e, 'delivery_mode'), ioapicField(e, 'dest_mode'), ioapicField(e, 'delivery_status')]).toEqual([0xc3, 5, 0, 1]);
    expect([ioapicField(e, 'polarity'), ioapicField(e, 'remote_irr'), ioapicField(e, 'trig_mode'), ioapicField(e, 'mask'), ioapicField(e, 'dest_id')]).toEqual([1, 1, 1, 1, 0xab]);
    expect(withIoapicField(e, 'mask', 0)).toBe(0xab00_0000_0000_f5c3n);
  });

  // ioapicField splits an entry into 32-bit halves and keeps the last one: every field of any 64-bit entry, read in any
  // order (the same entry again, then another), equals the bigint formula (bits >> shift) & (2^width - 1).
  fcTest.prop([fc.array(fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(...(Object.keys(IOAPIC_REDIR_FIELDS) as Array<keyof typeof IOAPIC_REDIR_FIELDS>))), { minLength: 1, maxLength: 40 })], { numRuns: 200 })(
    'every redirection entry field matches the bigint formula, whatever was read before',
    (reads) => {
      for (const [bits, field] of reads) {
        const f = IOAPIC_REDIR_FIELDS[field];
        expect(ioapicField(bits, field)).toBe(Number((bits >> f.shift) & ((1n << f.bits) - 1n)));
      }
    },
  );
});

describe('byte codecs (fast-check)', () => {
  fcTest.prop([picState], { numRuns: 100 })('kvm_pic_state encode → decode', (s) => {
    const v = new DataView(new ArrayBuffer(16));
    encodeKvmPicState(s, v);
    expect(decodeKvmPicState(v)).toEqual(s);
  });
  test('kvm_pic_state: field i at byte i, the fields in C order (made and decoded alike)', () => {
    const v = new DataView(Uint8Array.from({ length: 16 }, (_, i) => 100 + i).buffer);
    const s = decodeKvmPicState(v);
    expect(Object.keys(s)).toEqual([...KVM_PIC_STATE_FIELDS]);
    expect(KVM_PIC_STATE_FIELDS.map((f) => s[f])).toEqual(Array.from({ length: 16 }, (_, i) => 100 + i));
    expect(Object.keys(makeKvmPicState({ elcr_mask: 0xf8 }))).toEqual([...KVM_PIC_STATE_FIELDS]);
    expect(makeKvmPicState({ elcr_mask: 0xf8 })).toEqual({ ...Object.fromEntries(KVM_PIC_STATE_FIELDS.map((f) => [f, 0])), elcr_mask: 0xf8 });
  });
  fcTest.prop([ioapicState], { numRuns: 100 })('kvm_ioapic_state encode → decode (pad written zero)', (s) => {
    const v = new DataView(new ArrayBuffer(216));
    new Uint8Array(v.buffer).fill(0xee);
    encodeKvmIoapicState(s, v);
    expect(decodeKvmIoapicState(v)).toEqual(s);
    expect(v.getUint32(KVM_LAYOUTS.kvm_ioapic_state.offsetOf('pad'), true)).toBe(0);
  });
  fcTest.prop([pitState], { numRuns: 100 })('kvm_pit_state2 and kvm_pit_state encode → decode (padding and reserved zero)', (s) => {
    const v = new DataView(new ArrayBuffer(112));
    new Uint8Array(v.buffer).fill(0xee);
    encodeKvmPitState(s, v);
    expect(decodeKvmPitState(v)).toEqual(s);
    expect(new Uint8Array(v.buffer, 76, 36).every((b) => b === 0)).toBe(true);
    const w = new DataView(new ArrayBuffer(72));
    encodeKvmPitState(s, w, 0, false);
    expect(decodeKvmPitState(w, 0, false)).toEqual({ ...s, flags: 0 });
  });
  fcTest.prop([fc.uint8Array({ minLength: 1024, maxLength: 1024 })], { numRuns: 20 })('kvm_lapic_state encode → decode', (regs) => {
    const v = new DataView(new ArrayBuffer(1024));
    encodeKvmLapicState({ regs }, v);
    expect(decodeKvmLapicState(v).regs).toEqual(regs);
  });
});

describe('shape checks name the bad field', () => {
  test.each([
    [() => validateKvmPicState({ ...makeKvmPicState(), imr: 256 }), /imr/],
    [() => validateKvmIoapicState({ base_address: 0n, ioregsel: 0, id: 0, irr: 0, redirtbl: [] }), /redirtbl/],
    [() => validateKvmPitState({ ...makeKvmPitState2(), flags: -1 }), /flags/],
    [() => validateKvmLapicState({ regs: new Uint8Array(10) }), /1024/],
  ])('%#', (check, re) => {
    expect(check()).toMatch(re);
  });

  test('a device refuses a malformed state with a UsageError and keeps its own', () => {
    const { chip } = vmWith(0);
    const before = chip.pic!.getState(0);
    const invalid = expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }) as Error;
    expect(() => chip.pic!.setState(0, { ...before, irr: 300 })).toThrow(invalid);
    expect(chip.pic!.getState(0)).toEqual(before);
    expect(() => chip.ioapic!.setState({ ...chip.ioapic!.getState(), irr: -1 })).toThrow(invalid);
    expect(() => chip.createPit(0, 0n).setState2({ ...makeKvmPitState2(), flags: 1.5 }, 0n)).toThrow(invalid);
    expect(() => chip.setIrq(0, -1, true)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(() => chip.advance(-1n)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
  });
});

describe('GET → SET → GET is exact', () => {
  const picOp = fc.oneof(
    fc.record({ port: fc.constantFrom(0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1), v: u8 }),
    // Not IRQ 2: a device line on the cascade pin lets the cascade pulse clear its edge latch, after which
    // SET's re-evaluation raises IRR again — in Linux as here (kvm_pic_update_irq), so no fixpoint exists.
    fc.record({ irq: fc.integer({ min: 0, max: 15 }).filter((i) => i !== 2), level: fc.boolean() }),
    fc.constant('ack' as const),
  );
  fcTest.prop([fc.array(picOp, { maxLength: 40 })], { numRuns: 200 })('PIC: a state reached through the ports, lines and acknowledges', (ops) => {
    const { chip, vcpus } = vmWith(1);
    for (const o of ops) {
      if (o === 'ack') vcpus[0]!.getInterrupt();
      else if ('port' in o) chip.pioWrite(o.port, 1, o.v, 0n);
      else chip.setIrq(0, o.irq, o.level);
    }
    const get = () => [chip.pic!.getState(0), chip.pic!.getState(1)] as const;
    const set = (s: readonly [kvm_pic_state, kvm_pic_state]) => {
      chip.pic!.setState(0, s[0]);
      chip.pic!.setState(1, s[1]);
    };
    // SET re-evaluates the cascade (kvm_pic_update_irq), which ICW1 and port writes do not always do: the
    // master's pin 2 may gain its IRR bit once. Everything else comes back exactly, and from then on the round
    // trip is exact.
    const a = get();
    set(a);
    const b = get();
    const withoutPin2 = (s: kvm_pic_state) => ({ ...s, irr: s.irr & ~4, last_irr: s.last_irr & ~4 });
    expect([withoutPin2(b[0]), b[1]]).toEqual([withoutPin2(a[0]), a[1]]);
    set(b);
    expect(get()).toEqual(b);
  });

  test('PIC: SET re-evaluates the cascade, as kvm_pic_update_irq does (a slave request pulses master pin 2)', () => {
    const { chip } = vmWith(1);
    chip.pic!.setState(1, { ...makeKvmPicState(), irr: 1 });
    expect(chip.pic!.getState(0)).toMatchObject({ irr: 0x04, last_irr: 0 });
  });

  fcTest.prop([ioapicState], { numRuns: 100 })('IOAPIC: any table, IRR re-raised', (s) => {
    const { chip } = vmWith(2);
    chip.ioapic!.setState(s);
    const got = chip.ioapic!.getState();
    const { chip: other } = vmWith(2);
    other.ioapic!.setState(got);
    expect(other.ioapic!.getState()).toEqual(got);
  });

  fcTest.prop([pitState, fc.bigInt({ min: 0n, max: 1n << 40n })], { numRuns: 100 })('PIT: any channels and flags, at any time', (s, now) => {
    const { chip } = vmWith(1);
    const pit = chip.createPit(0, 0n);
    pit.setState2(s, now);
    const got = pit.getState2();
    const { chip: other } = vmWith(1);
    const pit2 = other.createPit(0, 0n);
    pit2.setState2(got, now);
    expect(pit2.getState2()).toEqual(got);
  });

  fcTest.prop([fc.array(fc.integer({ min: 0x20, max: 0xff }), { maxLength: 8 }), fc.integer({ min: 0, max: 100_000 })], { numRuns: 50 })(
    'LAPIC: a state reached by interrupts, EOIs and a running one-shot timer',
    (vectors, tmict) => {
      const { chip, vcpus } = vmWith(1);
      const l = vcpus[0]!.lapic;
      l.writeRegister(APIC_SPIV, 0x1ff, 0n);
      l.writeRegister(APIC_LVTT, 0xec, 0n);
      l.writeRegister(APIC_TMICT, tmict, 0n);
      for (const vec of vectors) {
        chip.signalMsi({ address_lo: 0xfee00000, address_hi: 0, data: vec, flags: 0, devid: 0 });
        if (vec & 1) l.getInterrupt();
        if (vec & 2) l.writeRegister(APIC_EOI, 0, 0n);
      }
      const got = makeKvmLapicState(l.getState(1000n));
      chip.setLapicState(vcpus[0]!, got.regs, 1000n);
      expect(l.getState(1000n)).toEqual(got.regs);
    },
  );

  test('LAPIC into a fresh vCPU: the stored PPR ignores the loaded ISR until the next PPR update (as on a real KVM)', () => {
    const { chip, vcpus } = vmWith(1);
    const l = vcpus[0]!.lapic;
    l.writeRegister(APIC_SPIV, 0x1ff, 0n);
    chip.signalMsi({ address_lo: 0xfee00000, address_hi: 0, data: 0x21, flags: 0, devid: 0 });
    l.getInterrupt();
    const page = l.getState(0n);
    expect(new DataView(page.buffer).getUint32(0xa0, true)).toBe(0x20);
    const { chip: c2, vcpus: v2 } = vmWith(1);
    c2.setLapicState(v2[0]!, page, 0n);
    expect(new DataView(v2[0]!.lapic.getState(0n).buffer).getUint32(0xa0, true)).toBe(0);
    expect(v2[0]!.lapic.readRegister(0xa0, 4, 0n)).toBe(0x20); // a PPR read recomputes it
  });
});

describe('struct kvm_irqchip (KVM_GET/SET_IRQCHIP)', () => {
  test('520 bytes; the union decoded by chip_id; the recorded IOAPIC bytes read back', async () => {
    const { KVM_IRQCHIP_SIZE, decodeKvmIrqchip, encodeKvmIrqchip } = await import('../../src/irqchip/index.js');
    const { hex } = await import('./helpers.js');
    expect(KVM_IRQCHIP_SIZE).toBe(520);
    const { chip } = vmWith(0);
    const v = new DataView(new ArrayBuffer(520));
    const states: kvm_irqchip[] = [
      { chip_id: 0, chip: { pic: chip.pic!.getState(0) } },
      { chip_id: 2, chip: { ioapic: chip.ioapic!.getState() } },
      { chip_id: 7, chip: { dummy: new Uint8Array(512).fill(3) } },
    ];
    for (const s of states) {
      encodeKvmIrqchip(s, v);
      expect(decodeKvmIrqchip(v)).toEqual(s);
    }
    const raw = new Uint8Array(520);
    raw[0] = 2;
    raw.set(hex('irqchip_2_reset'), 8);
    expect(decodeKvmIrqchip(new DataView(raw.buffer))).toEqual({ chip_id: 2, chip: { ioapic: chip.ioapic!.getState() } });
  });
});
