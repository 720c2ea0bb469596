/**
 * `VmIrqchip.sync` — the host clock's timer for the irqchip always holds the devices' earliest deadline — across its
 * shortcut: a sync with no device timer changed since the last one, and that deadline still ahead, returns at once.
 * Each step below changes a device timer through one of the hot wrappers (a guest port write, a line change) or lets
 * the clock fire it, and checks the clock timer against the devices.
 */
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_IRQ_LINE, asm16, vmOf } from '../../src/index.js';
import { SimTimer } from '../../src/irqchip/time.js';
import { irqHost, irqVm, VENDORS } from './support.js';

describe('SimTimer.changes', () => {
  test('moves with every call that can change a deadline, and with no other', () => {
    const t = new SimTimer();
    const at = (): number => SimTimer.changes;
    let n = at();
    t.start(100n);
    expect(at()).toBe(++n);
    t.setExpires(200n);
    expect(at()).toBe(++n);
    expect(t.takeDue(150n)).toBeUndefined();
    expect(at()).toBe(n);
    expect(t.takeDue(200n)).toBe(200n);
    expect(at()).toBe(++n);
    t.deadline();
    t.remaining(0n);
    expect(at()).toBe(n);
    t.cancel();
    expect(at()).toBe(n + 1);
  });
});

describe.each(VENDORS)('the irqchip clock timer on $name', ({ hardware }) => {
  test('follows the PIT through port writes, line changes and its own expiries', () => {
    const host = irqHost(hardware());
    const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
    const g = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 });
    g.vcpu();
    const irq = vmOf(p, g.vm).irq;
    if (irq === undefined) throw new Error('no irqchip');
    const agrees = (): void => expect(host.clock.nextDeadline()).toBe(irq.chip.nextDeadline());

    // Nothing timed yet: two syncs with nothing to do (the second takes the shortcut).
    irq.sync();
    irq.sync();
    expect(host.clock.nextDeadline()).toBeUndefined();
    // A line change with nothing timed leaves it so.
    p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 3, level: 1 });
    expect(host.clock.nextDeadline()).toBeUndefined();

    // PIT channel 0, mode 2, count 0x1000, written as the guest would (each write ends with a sync).
    irq.pioWrite(0x43, 1, 0x34);
    irq.pioWrite(0x40, 1, 0x00);
    irq.pioWrite(0x40, 1, 0x10);
    const first = irq.chip.nextDeadline();
    expect(first).toBeDefined();
    agrees();
    // A sync with nothing changed keeps it.
    p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 3, level: 0 });
    agrees();

    // The clock reaches the deadline: the PIT fires and re-arms one period later; the clock timer follows.
    host.clock.advanceTo(first as bigint);
    const second = irq.chip.nextDeadline();
    expect(second).toBeDefined();
    expect(second as bigint > (first as bigint)).toBe(true);
    agrees();
    irq.sync();
    agrees();

    // Reprogrammed in one-shot mode 0 with a larger count: the deadline moves, the clock timer with it.
    irq.pioWrite(0x43, 1, 0x30);
    irq.pioWrite(0x40, 1, 0x00);
    irq.pioWrite(0x40, 1, 0x20);
    expect(irq.chip.nextDeadline()).not.toBe(second);
    agrees();
  });
});
