/**
 * A real-mode guest programs the PIC and the PIT, enables interrupts and halts; its IRQ 0 handler (through the IVT)
 * counts ticks. The halted vCPU sleeps inside KVM_RUN and simulated time carries it from tick to tick.
 */
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_EXIT_IO, KVM_RUN, asm16 } from '../../src/index.js';
import { countingHandler, irqHost, irqVm, picInit, pitInit, VENDORS } from './support.js';

/** PIC and PIT set up, `sti`, then `hlt; jmp` forever; after `ticks` interrupts, an `out 0x80` reports the count. */
function tickGuest(ticks: number) {
  const a = asm16();
  picInit(a, [0]);
  pitInit(a, 1193);
  a.sti().label('idle').hlt().cmp(Asm16Word(0x500), ticks).jb('idle').mov('ax', Asm16Word(0x500)).out(0x80, 'al').label('done').hlt().jmp('done');
  countingHandler(a, 'irq0');
  return a;
}

import { Asm16 } from '../../src/index.js';
function Asm16Word(addr: number) {
  return Asm16.word(addr);
}

describe.each(VENDORS)('PIT ticks counted by a halted guest ($name)', ({ hardware }) => {
  test('a direct KVM_RUN: simulated time jumps from tick to tick; the 5th tick ends in the guest\'s OUT', () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'vmm' });
    const g = irqVm(p, '/dev/kvm0', tickGuest(5), { 8: 'irq0' });
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 });
    const v = g.vcpu();
    const t0 = host.clock.now;
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_IO);
    expect(v.run.io.port).toBe(0x80);
    expect(v.run.bytes[v.run.io.data_offset]).toBe(5);
    expect(g.word(0x500)).toBe(5);
    // Five periods of 1193 PIT cycles (1193 / 1193182 Hz ≈ 999.85 µs each) have passed, and a little guest time.
    const elapsed = Number(host.clock.now - t0);
    expect(elapsed).toBeGreaterThanOrEqual(4 * 999_847);
    expect(elapsed).toBeLessThan(5 * 999_847 + 100_000);
  });
});
