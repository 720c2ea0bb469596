/**
 * The model against what a real /dev/kvm answered (Linux 6.18 on this project's machine; recorded by
 * fixtures/real-kvm-irqchip.c into fixtures/real-kvm-irqchip.json — the tests only read the JSON).
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_IRQ_ROUTING_IRQCHIP,
  KVM_IRQ_ROUTING_MSI,
  KVM_MSI_VALID_DEVID,
  KVM_PIT_SPEAKER_DUMMY,
  KVM_USERSPACE_IRQ_SOURCE_ID,
  KvmIrqchip,
  MSR_IA32_APICBASE,
  decodeKvmIoapicState,
  decodeKvmPicState,
  encodeKvmIoapicState,
  encodeKvmPicState,
  makeKvmPitState2,
  type kvm_irq_routing_entry,
} from '../../src/irqchip/index.js';
import { fakeVcpu, hex, REAL, vmWith } from './helpers.js';

function picBytes(chip: KvmIrqchip, i: 0 | 1): string {
  const b = new Uint8Array(16);
  encodeKvmPicState(chip.pic!.getState(i), new DataView(b.buffer));
  return Buffer.from(b).toString('hex');
}

function ioapicBytes(chip: KvmIrqchip): string {
  const b = new Uint8Array(216);
  encodeKvmIoapicState(chip.ioapic!.getState(), new DataView(b.buffer));
  return Buffer.from(b).toString('hex');
}

describe('reset states (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_CREATE_VCPU)', () => {
  test('the fixture comes from a real KVM', () => {
    expect(String(REAL['kernel'])).toMatch(/^\d+\.\d+/);
  });

  test('PIC master and slave: zero but for the ELCR masks 0xf8 and 0xde', () => {
    const { chip } = vmWith(0);
    expect(picBytes(chip, 0)).toBe(REAL['irqchip_0_reset']);
    expect(picBytes(chip, 1)).toBe(REAL['irqchip_1_reset']);
  });

  test('IOAPIC: base 0xfec00000, every pin masked', () => {
    const { chip } = vmWith(0);
    expect(ioapicBytes(chip)).toBe(REAL['irqchip_2_reset']);
  });

  test('PIT: mode 0xff, count 65536, gates 1/1/0, channel 0 load time 0 and 1-2 at creation', () => {
    const { chip } = vmWith(0);
    const pit = chip.createPit(KVM_PIT_SPEAKER_DUMMY, 5_000n);
    const real = REAL['pit2_reset'] as { flags: number; channels: Record<string, unknown>[] };
    const s = pit.getState2();
    expect(s.flags).toBe(real.flags);
    s.channels.forEach((c, i) => {
      const { count_load_time_is_zero, ...rest } = real.channels[i] as Record<string, unknown>;
      const { count_load_time, ...mine } = c;
      expect(mine).toEqual(rest);
      expect(count_load_time === 0n).toBe(count_load_time_is_zero);
    });
  });

  test('LAPIC of vCPU 0 (BSP, LINT0 ExtINT) and vCPU 1, and their APIC base MSRs', () => {
    const { vcpus } = vmWith(2);
    expect(Buffer.from(vcpus[0]!.lapic.getState(0n)).toString('hex')).toBe(REAL['lapic_0_reset']);
    expect(Buffer.from(vcpus[1]!.lapic.getState(0n)).toString('hex')).toBe(REAL['lapic_1_reset']);
    expect(vcpus[0]!.lapic.apicBase).toBe(BigInt(REAL['apic_base_0_reset'] as number));
    expect(vcpus[1]!.lapic.apicBase).toBe(BigInt(REAL['apic_base_1_reset'] as number));
    expect(MSR_IA32_APICBASE).toBe(0x1b);
  });

  test('split irqchip: the same LAPIC reset state', () => {
    const chip = KvmIrqchip.createSplit(24);
    const v = chip.addVcpu(fakeVcpu(0));
    expect(Buffer.from(v.lapic.getState(0n)).toString('hex')).toBe(REAL['split_lapic_0_reset']);
    expect(() => chip.createPit(0, 0n)).toThrow(expect.objectContaining({ code: 'ENOENT' }) as Error);
  });

  test('split irqchip with x2APIC in the guest CPUID: the version advertises directed EOI (0x1050014)', () => {
    const chip = KvmIrqchip.createSplit(24);
    const v = chip.addVcpu(fakeVcpu(0));
    v.lapic.setCpuid({ x2apic: true, tscDeadline: false, maxPhyAddr: 36 });
    expect(v.lapic.regs.get(0x30)).toBe(REAL['split_lvr_with_x2apic']);
    const { vcpus } = vmWith(1);
    vcpus[0]!.lapic.setCpuid({ x2apic: true, tscDeadline: false, maxPhyAddr: 36 });
    expect(vcpus[0]!.lapic.regs.get(0x30)).toBe(0x50014); // in-kernel IOAPIC: no directed EOI
  });
});

describe('KVM_IRQ_LINE_STATUS answers', () => {
  test('GSI 0 (PIC pin unmasked edge + IOAPIC pin masked): 1, 1, 2, 0, 2', () => {
    const { chip } = vmWith(2);
    const got = [true, true, false, true, false].map((l) => chip.setIrq(KVM_USERSPACE_IRQ_SOURCE_ID, 0, l));
    expect(got).toEqual(REAL['irq_line_status_gsi0_sequence']);
    expect(picBytes(chip, 0)).toBe(REAL['pic_master_after_gsi0']);
  });

  test('GSI 16 (IOAPIC only, masked): -1 then 1; GSI 24 (unrouted): -1', () => {
    const { chip } = vmWith(2);
    expect([chip.setIrq(0, 16, true), chip.setIrq(0, 16, false)]).toEqual(REAL['irq_line_status_gsi16']);
    expect(chip.setIrq(0, 24, true)).toBe(REAL['irq_line_status_gsi24']);
  });
});

describe('SET → GET with odd values', () => {
  test('KVM_SET_PIT2 keeps raw channel bytes and flags, reloads a 0 count as 65536', () => {
    const { chip } = vmWith(0);
    const pit = chip.createPit(0, 0n);
    const ch = (i: number) => ({
      count: i === 0 ? 0 : 0x12345, latched_count: 0x1234, count_latched: 3, status_latched: 1, status: 0x5a,
      read_state: 4, write_state: 3, write_latch: 0x77, rw_mode: 3, mode: i === 1 ? 7 : 2, bcd: 1, gate: 5, count_load_time: 12345n,
    });
    pit.setState2(makeKvmPitState2({ flags: 0xfffffff0, channels: [ch(0), ch(1), ch(2)] }), 100n);
    const real = REAL['pit2_after_set_odd'] as { flags: number; channels: Record<string, unknown>[] };
    const s = pit.getState2();
    expect(s.flags).toBe(real.flags);
    s.channels.forEach((c, i) => {
      const { count_load_time_is_zero: _z, ...rest } = real.channels[i] as Record<string, unknown>;
      const { count_load_time: _t, ...mine } = c;
      expect(mine).toEqual(rest);
    });
    // Channel 0's load time stays what SET gave; channels 1 and 2 are reloaded now.
    expect(s.channels.map((c) => c.count_load_time)).toEqual([12345n, 100n, 100n]);
  });

  test('KVM_SET_IRQCHIP(IOAPIC): base, IOREGSEL and ID raw, remote IRR kept, masked irr re-raised', () => {
    const { chip } = vmWith(2);
    const s = decodeKvmIoapicState(new DataView(hex('irqchip_2_reset').buffer));
    s.base_address = 0xfec01000n;
    s.ioregsel = 0x1ff;
    s.id = 0xff;
    s.irr = 0x00ff00ff;
    s.redirtbl = s.redirtbl.map((_, i) => 0x0200000000010000n | (BigInt(i & 1) << 15n) | 0x1000n | 0x4000n | BigInt(0x20 + i));
    chip.ioapic!.setState(s);
    expect(ioapicBytes(chip)).toBe(REAL['ioapic_after_set_odd']);
  });

  test('KVM_SET_LAPIC: PPR from TPR alone (the ISR is recounted after), LVR recomputed, TMCCT 0', () => {
    const { vcpus } = vmWith(2);
    const page = vcpus[1]!.lapic.getState(0n);
    const v = new DataView(page.buffer);
    const w = (o: number, x: number) => v.setUint32(o, x >>> 0, true);
    w(0x20, 0x05000000); w(0x30, 0xdeadbeef); w(0x80, 0x123); w(0xa0, 0x77); w(0xd0, 0xff00ffff); w(0xe0, 0);
    w(0xf0, 0x1ff); w(0x110, 1 << 16); w(0x220, 1 << 1); w(0x280, 0xff); w(0x300, 0xffffffff); w(0x310, 0xffffffff);
    w(0x380, 0); w(0x390, 0x1234); w(0x3e0, 0xff); w(0x3f0, 0xffffffff);
    vcpus[1]!.lapic.setState(page, 10n);
    expect(Buffer.from(vcpus[1]!.lapic.getState(10n)).toString('hex')).toBe(REAL['lapic_after_set_odd']);
  });
});

describe('KVM_SIGNAL_MSI answers', () => {
  test('0 to a software-disabled APIC, 1 once enabled, 0 to an absent APIC ID, EINVAL for unknown flags', () => {
    const { chip, vcpus } = vmWith(2);
    const msi = { address_lo: 0xfee00000, address_hi: 0, data: 0x31, flags: 0, devid: 0 };
    expect(chip.signalMsi(msi)).toBe(REAL['signal_msi_sw_disabled']);
    const page = vcpus[0]!.lapic.getState(0n);
    new DataView(page.buffer).setUint32(0xf0, 0x1ff, true);
    chip.setLapicState(vcpus[0]!, page, 0n);
    expect(chip.signalMsi(msi)).toBe(REAL['signal_msi_enabled']);
    expect(chip.signalMsi(msi)).toBe(REAL['signal_msi_again']);
    expect(() => chip.signalMsi({ ...msi, flags: 2 })).toThrow(expect.objectContaining({ code: 'EINVAL', errno: -(REAL['signal_msi_bad_flags'] as number) }) as Error);
    expect(chip.signalMsi({ ...msi, address_lo: 0xfee00000 | (7 << 12) })).toBe(REAL['signal_msi_no_destination']);
    expect(Buffer.from(vcpus[0]!.lapic.getState(0n)).toString('hex')).toBe(REAL['lapic_0_after_msi']);
  });
});

describe('KVM_SET_GSI_ROUTING answers', () => {
  const ic = (gsi: number, irqchip: number, pin: number, flags = 0): kvm_irq_routing_entry => ({ gsi, type: KVM_IRQ_ROUTING_IRQCHIP, flags, irqchip: { irqchip, pin } });
  const msi = (gsi: number, flags = 0, data = 0x40): kvm_irq_routing_entry => ({ gsi, type: KVM_IRQ_ROUTING_MSI, flags, msi: { address_lo: 0xfee00000, address_hi: 0, data, devid: 0 } });
  const cases: [string, kvm_irq_routing_entry[]][] = [
    ['routing_too_many', Array.from({ length: 4097 }, () => msi(1))],
    ['routing_gsi_4096', [ic(4096, 2, 0)]],
    ['routing_gsi_4095', [ic(4095, 2, 0)]],
    ['routing_ioapic_pin_24', [ic(4095, 2, 24)]],
    ['routing_slave_pin_8', [ic(4095, 1, 8)]],
    ['routing_slave_pin_7', [ic(4095, 1, 7)]],
    ['routing_chip_3', [ic(4095, 3, 0)]],
    ['routing_irqchip_flags', [ic(4095, 0, 0, 1)]],
    ['routing_msi_devid', [msi(5, KVM_MSI_VALID_DEVID)]],
    ['routing_msi_flags_2', [msi(5, 2)]],
    ['routing_two_msi_same_gsi', [msi(5), msi(5)]],
    ['routing_same_chip_twice', [ic(3, 2, 3), ic(3, 2, 4)]],
    ['routing_ioapic_and_pic', [ic(3, 2, 3), ic(3, 0, 3)]],
    ['routing_irqchip_and_msi', [ic(3, 2, 3), msi(3)]],
    ['routing_bad_type', [{ gsi: 3, type: 99, flags: 0 }]],
  ];
  test.each(cases)('%s', (key, entries) => {
    const { chip } = vmWith(1);
    const expected = REAL[key] as number;
    if (expected === 0) {
      expect(() => chip.setGsiRouting(entries)).not.toThrow();
    } else {
      const before = chip.routing;
      expect(() => chip.setGsiRouting(entries)).toThrow(expect.objectContaining({ code: 'EINVAL', errno: -expected }) as Error);
      expect(chip.routing).toBe(before);
    }
  });

  test('an unrouted GSI answers -1; an MSI route 1 on a rising line and -1 on a falling one', () => {
    const { chip, vcpus } = vmWith(2);
    const page = vcpus[0]!.lapic.getState(0n);
    new DataView(page.buffer).setUint32(0xf0, 0x1ff, true);
    chip.setLapicState(vcpus[0]!, page, 0n);
    chip.setGsiRouting([msi(3, 0, 0x50)]);
    expect(chip.setIrq(0, 0, true)).toBe(REAL['line_status_unrouted_gsi0']);
    expect([chip.setIrq(0, 3, true), chip.setIrq(0, 3, false)]).toEqual(REAL['line_status_msi_gsi3']);
  });
});

test('decodeKvmPicState reads the recorded bytes back to the model state', () => {
  const { chip } = vmWith(0);
  expect(decodeKvmPicState(new DataView(hex('irqchip_1_reset').buffer))).toEqual(chip.pic!.getState(1));
});

describe('delivery to software-enabled APICs', () => {
  /** The third VM of the recorder: APICs 0 and 1 enabled with flat logical IDs 1 and 2; pin 17 level to APIC 0; RTC edge to APIC 0. */
  function thirdVm() {
    const { chip, vcpus } = vmWith(2);
    vcpus.forEach((v, i) => {
      const page = v.lapic.getState(0n);
      const dv = new DataView(page.buffer);
      dv.setUint32(0xf0, 0x1ff, true);
      dv.setUint32(0xd0, ((1 << i) << 24) >>> 0, true);
      chip.setLapicState(v, page, 0n);
    });
    const s = chip.ioapic!.getState();
    s.redirtbl[17] = 0x8000n | 0x51n;
    s.redirtbl[8] = 0x38n;
    chip.ioapic!.setState(s);
    chip.pic!.setState(1, { ...chip.pic!.getState(1), imr: 0xff });
    return { chip, vcpus };
  }

  test('a level pin: delivered (1), held by remote IRR (-1), falling (1), held again (-1)', () => {
    const { chip } = thirdVm();
    expect([true, true, false, true].map((l) => chip.setIrq(0, 17, l))).toEqual(REAL['level_pin_17_sequence']);
    expect(chip.ioapic!.entry(17).toString(16).padStart(16, '0')).toBe(REAL['level_pin_17_entry']);
  });

  test('the RTC: a second rising edge before the EOI is coalesced (0)', () => {
    const { chip } = thirdVm();
    expect([true, false, true, false].map((l) => chip.setIrq(0, 8, l))).toEqual(REAL['rtc_sequence']);
  });

  test('lowest priority to logical flat 3: vector hashing gives even vectors to APIC 0, odd to APIC 1', () => {
    const { chip, vcpus } = thirdVm();
    const got = [0, 1, 2, 3].map((k) => chip.signalMsi({ address_lo: 0xfee00000 | (3 << 12) | (1 << 2), address_hi: 0, data: 0x100 | (0x60 + k), flags: 0, devid: 0 }));
    expect(got).toEqual(REAL['lowest_prio_msi_results']);
    const irr3 = (i: number) => vcpus[i]!.lapic.regs.get(0x230).toString(16).padStart(8, '0');
    expect([irr3(0), irr3(1)]).toEqual([REAL['lowest_prio_irr_0'], REAL['lowest_prio_irr_1']]);
    expect(chip.signalMsi({ address_lo: 0xfee00000 | (0xff << 12), address_hi: 0, data: 0x70, flags: 0, devid: 0 })).toBe(REAL['broadcast_msi']);
  });
});

test('a real-mode guest programming the PIC and the PIT through their ports reads what the real KVM gave it', () => {
  // fixtures/real-kvm-irqchip.c, "guest_port_reads": the same OUT/IN sequence, in the same order.
  const { chip } = vmWith(1);
  chip.createPit(KVM_PIT_SPEAKER_DUMMY, 0n);
  const reads: number[] = [];
  let now = 1_000n;
  const out = (port: number, v: number) => chip.pioWrite(port, 1, v, (now += 100n));
  const inb = (port: number) => reads.push(chip.pioRead(port, 1, (now += 100n))!);
  for (const [cmd, data, base, casc] of [[0x20, 0x21, 0x08, 4], [0xa0, 0xa1, 0x70, 2]] as const) {
    out(cmd, 0x11); out(data, base); out(data, casc); out(data, 0x01);
  }
  for (const gsi of [1, 3]) {
    chip.setIrq(0, gsi, true);
    chip.setIrq(0, gsi, false);
  }
  for (const ocw3 of [0x0a, 0x0c, 0x0b, 0x0a, 0x0c, 0x0c]) {
    out(0x20, ocw3);
    inb(0x20);
  }
  out(0x4d0, 0xff); inb(0x4d0);
  out(0x21, 0xa5); inb(0x21);
  out(0x43, 0xb6); out(0x42, 0x00); out(0x42, 0x10);
  out(0x43, 0xe8); inb(0x42);
  out(0x43, 0x30); out(0x40, 0xff); out(0x40, 0xff);
  out(0x43, 0xe2); inb(0x40);
  out(0x43, 0x7a);
  out(0x43, 0xe4); inb(0x41);
  out(0x61, 0x03); inb(0x61);
  const real = REAL['guest_port_reads'] as number[];
  const refresh = 0x10; // port 0x61 bit 4 toggles with time
  expect(reads.map((r, i) => (i === reads.length - 1 ? r & ~refresh : r))).toEqual(real.map((r, i) => (i === real.length - 1 ? r & ~refresh : r)));
});
