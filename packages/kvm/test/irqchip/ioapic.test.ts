/** The IOAPIC against ioapic.c, through a VM with two vCPUs whose APICs are software-enabled. */
import { describe, expect, test } from 'vitest';
import { APIC_EOI, APIC_SPIV, APIC_TMR, IOAPIC_DEFAULT_BASE_ADDRESS, ioapicField, type KvmIrqchip, type VcpuInterrupts } from '../../src/irqchip/index.js';
import { vmWith } from './helpers.js';

const BASE = BigInt(IOAPIC_DEFAULT_BASE_ADDRESS);

function enabledVm(): { chip: KvmIrqchip; vcpus: VcpuInterrupts[] } {
  const { chip, vcpus } = vmWith(2);
  for (const v of vcpus) v.lapic.writeRegister(APIC_SPIV, 0x1ff, 0n);
  return { chip, vcpus };
}

function writeRedir(chip: KvmIrqchip, pin: number, low: number, high = 0): void {
  chip.ioapic!.mmioWrite(BASE, 4, 0x10 + 2 * pin);
  chip.ioapic!.mmioWrite(BASE + 0x10n, 4, low);
  chip.ioapic!.mmioWrite(BASE, 4, 0x11 + 2 * pin);
  chip.ioapic!.mmioWrite(BASE + 0x10n, 4, high);
}

describe('registers — ioapic_read_indirect / ioapic_write_indirect', () => {
  test('version 0x00170011 (24 pins, version 0x11); ID and arbitration read (id & 0xf) << 24', () => {
    const { chip } = vmWith(0);
    const io = chip.ioapic!;
    io.mmioWrite(BASE, 4, 1);
    expect(io.mmioRead(BASE + 0x10n, 4)).toBe(0x00170011);
    io.mmioWrite(BASE, 4, 0);
    io.mmioWrite(BASE + 0x10n, 4, 0x0f000000);
    expect(io.mmioRead(BASE + 0x10n, 4)).toBe(0x0f000000);
    io.mmioWrite(BASE, 4, 2);
    expect(io.mmioRead(BASE + 0x10n, 4)).toBe(0x0f000000);
    io.mmioWrite(BASE + 0x10n, 4, 0); // arbitration writes are ignored
    expect(io.getState().id).toBe(0xf);
  });

  test('IOREGSEL keeps 8 bits; beyond pin 23 the window reads all-ones; other offsets read 0', () => {
    const { chip } = vmWith(0);
    const io = chip.ioapic!;
    io.mmioWrite(BASE, 4, 0x1234);
    expect(io.mmioRead(BASE, 4)).toBe(0x34);
    io.mmioWrite(BASE, 4, 0x40);
    expect(io.mmioRead(BASE + 0x10n, 4)).toBe(0xffffffff);
    expect(io.mmioRead(BASE + 0x20n, 4)).toBe(0);
    expect(io.mmioRead(BASE + 0x100n, 4)).toBeUndefined();
  });

  test('remote IRR and delivery status are read-only; an edge entry clears remote IRR', () => {
    const { chip } = vmWith(0);
    const s = chip.ioapic!.getState();
    s.redirtbl[3] = 0x1_d030n; // level, remote IRR, delivery status
    chip.ioapic!.setState(s);
    writeRedir(chip, 3, 0x0_0031 | 0x8000); // level, vector 0x31, tries to clear the read-only bits
    expect(ioapicField(chip.ioapic!.entry(3), 'remote_irr')).toBe(1);
    expect(ioapicField(chip.ioapic!.entry(3), 'delivery_status')).toBe(1);
    writeRedir(chip, 3, 0x0_0031); // edge
    expect(ioapicField(chip.ioapic!.entry(3), 'remote_irr')).toBe(0);
  });
});

describe('delivery — ioapic_set_irq / ioapic_service', () => {
  test('edge pin, physical destination 1: vector in vCPU 1’s IRR, coalesced while pending', () => {
    const { chip, vcpus } = enabledVm();
    writeRedir(chip, 4, 0x34, 1 << 24);
    expect(chip.setIrq(0, 4, true)).toBe(2); // PIC pin 4 (unmasked at reset) 1 + one APIC 1
    expect(vcpus[1]!.lapic.hasInterrupt()).toBe(0x34);
    expect(vcpus[0]!.lapic.hasInterrupt()).toBe(-1);
    expect(chip.setIrq(0, 4, true)).toBe(1); // PIC (no new edge) 1 + IOAPIC coalesced 0
  });

  test('level pin: remote IRR until EOI; the EOI re-delivers while the line is still high', () => {
    const { chip, vcpus } = enabledVm();
    writeRedir(chip, 17, 0x8000 | 0x51, 0);
    expect(chip.setIrq(0, 17, true)).toBe(1);
    expect(ioapicField(chip.ioapic!.entry(17), 'remote_irr')).toBe(1);
    expect(chip.setIrq(0, 17, true)).toBe(-1); // remote IRR set: not serviced
    const l = vcpus[0]!.lapic;
    expect(l.getInterrupt()).toBe(0x51);
    expect(l.regs.testVector(APIC_TMR, 0x51)).toBe(true);
    l.writeRegister(APIC_EOI, 0, 1n);
    expect(ioapicField(chip.ioapic!.entry(17), 'remote_irr')).toBe(1); // delivered again at once
    expect(l.hasInterrupt()).toBe(0x51);
    l.getInterrupt();
    chip.setIrq(0, 17, false);
    l.writeRegister(APIC_EOI, 0, 2n);
    expect(ioapicField(chip.ioapic!.entry(17), 'remote_irr')).toBe(0);
  });

  test('a falling line answers 1 even on a masked pin; a masked rising one -1', () => {
    const { chip } = enabledVm();
    expect(chip.setIrq(0, 20, true)).toBe(-1);
    expect(chip.setIrq(0, 20, false)).toBe(1);
  });

  test('unmasking a level pin with a pending IRR delivers it — or resamples it through an irqfd resampler', () => {
    const { chip, vcpus } = enabledVm();
    writeRedir(chip, 18, 0x1_8000 | 0x60); // masked level
    chip.setIrq(0, 18, true);
    writeRedir(chip, 18, 0x8000 | 0x60);
    expect(vcpus[0]!.lapic.hasInterrupt()).toBe(0x60);
    let resampled = 0;
    chip.registerResampler(19, () => resampled++);
    writeRedir(chip, 19, 0x1_8000 | 0x61);
    chip.setIrq(0, 19, true);
    writeRedir(chip, 19, 0x8000 | 0x61);
    expect(resampled).toBe(1);
    expect(chip.ioapic!.getState().irr & (1 << 19)).toBe(0);
  });

  test('GET hides delivered edge pins from irr; SET re-raises irr pins', () => {
    const { chip, vcpus } = enabledVm();
    writeRedir(chip, 5, 0x45);
    chip.setIrq(0, 5, true);
    expect(chip.ioapic!.getState().irr & (1 << 5)).toBe(0);
    const s = chip.ioapic!.getState();
    s.redirtbl[6] = 0x46n;
    s.irr = 1 << 6;
    chip.ioapic!.setState(s);
    expect(vcpus[0]!.lapic.hasInterrupt()).toBe(0x46);
  });

  test('the entries SET_IRQCHIP wrote decide the next line change: masked -1, level with remote IRR -1, edge delivered', () => {
    const { chip, vcpus } = enabledVm();
    chip.pic!.ioWrite(0x21, 0xff); // keep the PIC out of the count (GSIs 9-11 are slave pins)
    chip.pic!.ioWrite(0xa1, 0xff);
    writeRedir(chip, 9, 0x49); // unmasked edge, then masked by the SET below
    const s = chip.ioapic!.getState();
    s.redirtbl[9] = 0x1_0049n;
    s.redirtbl[10] = 0xc04an; // level, remote IRR
    s.redirtbl[11] = 0x4bn; // unmasked edge (masked since the reset)
    chip.ioapic!.setState(s);
    expect(chip.setIrq(0, 9, true)).toBe(-1);
    expect(chip.setIrq(0, 10, true)).toBe(-1);
    expect(chip.setIrq(0, 11, true)).toBe(1);
    expect(vcpus[0]!.lapic.hasInterrupt()).toBe(0x4b);
  });

  test('RTC (GSI 8) is coalesced until every destination EOIs it', () => {
    const { chip, vcpus } = enabledVm();
    writeRedir(chip, 8, 0x38);
    chip.pic!.ioWrite(0xa1, 0x01); // keep the PIC out of the count
    expect(chip.setIrq(0, 8, true)).toBe(1);
    chip.setIrq(0, 8, false);
    expect(chip.setIrq(0, 8, true)).toBe(0);
    chip.setIrq(0, 8, false);
    const l = vcpus[0]!.lapic;
    l.getInterrupt();
    l.writeRegister(APIC_EOI, 0, 0n);
    expect(chip.setIrq(0, 8, true)).toBe(1);
  });

  test('an EOI storm: the 10000th successive re-delivery waits 10 ms (IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT)', () => {
    const { chip, vcpus } = enabledVm();
    writeRedir(chip, 16, 0x8000 | 0x70);
    chip.setIrq(0, 16, true);
    const l = vcpus[0]!.lapic;
    for (let i = 0; i < 10_000; i++) {
      expect(l.getInterrupt()).toBe(0x70);
      l.writeRegister(APIC_EOI, 0, 1000n);
    }
    expect(l.hasInterrupt()).toBe(-1);
    expect(chip.nextDeadline()).toBe(1000n + 10_000_000n);
    chip.advance(1000n + 10_000_000n);
    expect(l.hasInterrupt()).toBe(0x70);
  });
});
