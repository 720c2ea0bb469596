/** GSI routing, IRQ sources, split mode and the per-vCPU interrupt questions (irqchip.c, irq_comm.c, irq.c). */
import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import {
  APIC_EOI,
  APIC_SPIV,
  DEFAULT_ROUTING,
  KVM_IRQ_ROUTING_HV_SINT,
  KVM_IRQ_ROUTING_MSI,
  KvmIrqchip,
  KvmPic,
  RoutingTable,
} from '../../src/irqchip/index.js';
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from '../../src/abi/constants.js';
import { fakeVcpu, initPics, vmWith } from './helpers.js';

describe('the default routing — kvm_setup_default_irq_routing', () => {
  test('GSI 0-15 go to the IOAPIC pin and the PIC pin, 16-23 to the IOAPIC only (40 entries)', () => {
    expect(DEFAULT_ROUTING).toHaveLength(40);
    const t = RoutingTable.defaultTable({ picInKernel: true, ioapicInKernel: true, x2apicFormat: false });
    expect(t.nrRtEntries).toBe(24);
    expect(t.routes(10)).toEqual([
      { gsi: 10, type: 'irqchip', irqchip: KVM_IRQCHIP_IOAPIC, pin: 10 },
      { gsi: 10, type: 'irqchip', irqchip: KVM_IRQCHIP_PIC_SLAVE, pin: 10 },
    ]);
    expect(t.routes(20)).toEqual([{ gsi: 20, type: 'irqchip', irqchip: KVM_IRQCHIP_IOAPIC, pin: 20 }]);
    expect(t.gsiOf(KVM_IRQCHIP_PIC_MASTER, 3)).toBe(3);
    expect(t.gsiOf(KVM_IRQCHIP_PIC_SLAVE, 12)).toBe(12);
    expect(t.gsiOf(KVM_IRQCHIP_PIC_SLAVE, 3)).toBe(-1);
  });

  test('every VM starts from one shared default table, and a VM that sets its own leaves the others on it', () => {
    const a = KvmIrqchip.createKernel();
    const b = KvmIrqchip.createKernel({ x2apicFormat: true });
    expect(b.routing).toBe(a.routing); // the default table has no MSI route: x2apicFormat changes nothing in it
    const before = [...a.routing.entries()];
    b.setGsiRouting([{ gsi: 0, type: KVM_IRQ_ROUTING_MSI, flags: 0, msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x30, devid: 0 } }]);
    expect(b.routing).not.toBe(a.routing);
    expect([...a.routing.entries()]).toEqual(before);
    expect([...KvmIrqchip.createKernel().routing.entries()]).toEqual(before);
    expect(KvmIrqchip.createSplit(24).routing).toBe(KvmIrqchip.createSplit(0).routing);
  });

  test('irqchip routes need the chip in the kernel (split mode: EINVAL)', () => {
    const chip = KvmIrqchip.createSplit(24);
    expect(() => chip.setGsiRouting(DEFAULT_ROUTING)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(chip.routing.nrRtEntries).toBe(1);
    expect(chip.setIrq(0, 0, true)).toBe(-1);
  });

  test('Hyper-V SINT routes are accepted and deliver nothing', () => {
    const { chip } = vmWith(1);
    chip.setGsiRouting([{ gsi: 7, type: KVM_IRQ_ROUTING_HV_SINT, flags: 0, hv_sint: { vcpu: 0, sint: 1 } }]);
    expect(chip.setIrq(0, 7, true)).toBe(-1);
  });
});

describe('IRQ source ids — kvm_request_irq_source_id', () => {
  test('0 and 1 are KVM’s; the PIT takes 2; the 64th request fails with EFAULT', () => {
    const { chip } = vmWith(0);
    chip.createPit(0, 0n);
    expect(chip.pitIrqSourceId).toBe(2);
    for (let i = 3; i < 64; i++) expect(chip.requestIrqSourceId()).toBe(i);
    expect(() => chip.requestIrqSourceId()).toThrow(expect.objectContaining({ code: 'EFAULT' }) as Error);
    chip.freeIrqSourceId(40);
    expect(chip.requestIrqSourceId()).toBe(40);
  });
});

describe('per-vCPU interrupts — kvm_cpu_has_interrupt / kvm_cpu_get_interrupt', () => {
  test('the PIC’s interrupt reaches only the vCPU whose LINT0 is ExtINT (the BSP) and is taken before the APIC’s', () => {
    const { chip, vcpus } = vmWith(2);
    initPics(chip);
    for (const v of vcpus) v.lapic.writeRegister(APIC_SPIV, 0x1ff, 0n);
    chip.signalMsi({ address_lo: 0xfee00000, address_hi: 0, data: 0xf0, flags: 0, devid: 0 });
    chip.setIrq(0, 1, true);
    expect(vcpus[0]!.hasExtint()).toBe(true);
    expect(vcpus[1]!.hasExtint()).toBe(false);
    expect(vcpus[0]!.getInterrupt()).toBe(0x09);
    expect(vcpus[0]!.getInterrupt()).toBe(0xf0);
    expect(vcpus[0]!.hasInterrupt()).toBe(false);
  });

  test('the PIC wakes the first vCPU that accepts its interrupts', () => {
    const { chip, fakes } = vmWith(2);
    initPics(chip);
    const before = fakes.map((f) => f.kicks);
    chip.setIrq(0, 3, true);
    expect(fakes[0]!.kicks).toBeGreaterThan(before[0]!);
    expect(fakes[1]!.kicks).toBe(before[1]);
  });

  test('split mode: KVM_INTERRUPT queues the ExtINT vector (EEXIST while pending, EINVAL ≥ 256); full mode: ENXIO', () => {
    const chip = KvmIrqchip.createSplit(24);
    const v = chip.addVcpu(fakeVcpu(0));
    expect(() => v.injectExtint(256)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    v.injectExtint(0x20);
    expect(() => v.injectExtint(0x21)).toThrow(expect.objectContaining({ code: 'EEXIST' }) as Error);
    expect(v.hasInterrupt()).toBe(true);
    expect(v.getInterrupt()).toBe(0x20);
    expect(v.pendingExternalVector).toBe(-1);
    const { vcpus } = vmWith(1);
    expect(() => vcpus[0]!.injectExtint(0x20)).toThrow(expect.objectContaining({ code: 'ENXIO' }) as Error);
  });

  test('split mode: the EOI of a level MSI routed on a reserved IOAPIC pin exits to user space', () => {
    const eois: [number, number][] = [];
    const chip = KvmIrqchip.createSplit(24, { ioapicEoiExit: (id, vec) => eois.push([id, vec]) });
    const v = chip.addVcpu(fakeVcpu(0));
    v.lapic.writeRegister(APIC_SPIV, 0x1ff, 0n);
    chip.setGsiRouting([
      { gsi: 4, type: KVM_IRQ_ROUTING_MSI, flags: 0, msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x8000 | 0x44, devid: 0 } },
      { gsi: 30, type: KVM_IRQ_ROUTING_MSI, flags: 0, msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x8000 | 0x55, devid: 0 } },
    ]);
    expect(chip.setIrq(0, 4, true)).toBe(1);
    expect(v.getInterrupt()).toBe(0x44);
    v.lapic.writeRegister(APIC_EOI, 0, 0n);
    expect(chip.setIrq(0, 30, true)).toBe(1);
    expect(v.getInterrupt()).toBe(0x55);
    v.lapic.writeRegister(APIC_EOI, 0, 0n); // GSI 30 is not a reserved IOAPIC pin: no exit
    expect(eois).toEqual([[0, 0x44]]);
  });

  test('KVM_ENABLE_CAP(SPLIT_IRQCHIP) with more than 4096 pins is EINVAL', () => {
    expect(() => KvmIrqchip.createSplit(4097)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });
});

describe('invariants (fast-check)', () => {
  const step = fc.record({ gsi: fc.integer({ min: 0, max: 15 }), level: fc.boolean(), source: fc.integer({ min: 0, max: 3 }) });
  fcTest.prop([fc.array(step, { maxLength: 50 })], { numRuns: 100 })(
    'kvm_set_irq on the default table = the PIC pin plus the IOAPIC pin, each counted when ≥ 0',
    (steps) => {
      const { chip } = vmWith(1);
      const twin = vmWith(1).chip;
      initPics(chip);
      initPics(twin);
      for (const s of steps) {
        const got = chip.setIrq(s.source, s.gsi, s.level);
        const io = twin.ioapic!.setIrq(s.gsi, s.source, s.level, true);
        const pic = (twin.pic as KvmPic).setIrq(s.gsi, s.source, s.level);
        const parts = [io, pic].filter((r) => r >= 0);
        expect(got).toBe(parts.length === 0 ? -1 : parts.reduce((a, b) => a + b, 0));
        expect(chip.pic!.getState(0)).toEqual(twin.pic!.getState(0));
        expect(chip.ioapic!.getState()).toEqual(twin.ioapic!.getState());
      }
    },
  );

  fcTest.prop([fc.array(fc.integer({ min: 0x20, max: 0xff }), { maxLength: 40 }), fc.array(fc.boolean(), { maxLength: 40 })], { numRuns: 100 })(
    'LAPIC: vectors are acknowledged highest class first, ISR holds exactly the unacknowledged-by-EOI ones, EOI clears the highest',
    (vectors, eois) => {
      const { chip, vcpus } = vmWith(1);
      const l = vcpus[0]!.lapic;
      l.writeRegister(APIC_SPIV, 0x1ff, 0n);
      const inService: number[] = [];
      vectors.forEach((vec, i) => {
        chip.signalMsi({ address_lo: 0xfee00000, address_hi: 0, data: vec, flags: 0, devid: 0 });
        const got = l.getInterrupt();
        if (got !== -1) {
          const top = inService.length === 0 ? -1 : Math.max(...inService);
          expect(got >> 4).toBeGreaterThan(top === -1 ? -1 : top >> 4);
          inService.push(got);
        }
        if (eois[i] === true && inService.length > 0) {
          l.writeRegister(APIC_EOI, 0, 0n);
          inService.splice(inService.indexOf(Math.max(...inService)), 1);
        }
        const words = new Array<number>(8).fill(0);
        for (const v of inService) words[v >> 5] = ((words[v >> 5] ?? 0) | (1 << (v & 31))) >>> 0;
        expect(words.map((_, w) => l.regs.get(0x100 + 16 * w))).toEqual(words);
      });
    },
  );
});

describe('guest accesses through KvmIrqchip', () => {
  test('MMIO goes to the vCPU’s own APIC page first, then the IOAPIC window; anything else is not in the kernel', () => {
    const { chip, vcpus } = vmWith(2);
    expect(chip.mmioRead(vcpus[1]!, 0xfee00020n, 4, 0n)).toBe(0x01000000); // vCPU 1's own APIC ID
    expect(chip.mmioWrite(vcpus[0]!, 0xfec00000n, 4, 1, 0n)).toBe(true);
    expect(chip.mmioRead(vcpus[0]!, 0xfec00010n, 4, 0n)).toBe(0x00170011);
    expect(chip.mmioRead(vcpus[0]!, 0xfed00000n, 4, 0n)).toBeUndefined();
    expect(chip.pioRead(0x3f8, 1, 0n)).toBeUndefined(); // no device: the access exits to user space
    expect(chip.pioWrite(0x40, 1, 0, 0n)).toBe(false); // no PIT yet
  });
});
