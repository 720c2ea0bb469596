/** The PIC pair against i8259.c, rule by rule. */
import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { KvmPic, type PicHooks } from '../../src/irqchip/index.js';

function picWith(accepts = true): { pic: KvmPic; acked: number[]; masks: [number, boolean][]; wakeups: number[] } {
  const acked: number[] = [];
  const masks: [number, boolean][] = [];
  const wakeups: number[] = [];
  const hooks: PicHooks = {
    ackedIrq: (_chip, irq) => acked.push(irq),
    maskChanged: (_chip, irq, m) => masks.push([irq, m]),
    wakeup: () => wakeups.push(1),
    anyVcpuAcceptsPicIntr: () => accepts,
  };
  return { pic: new KvmPic(hooks), acked, masks, wakeups };
}

/** ICW1-ICW4: master at vector 0x08 (cascade on IRQ 2), slave at 0x70, `icw4` as given. */
function init(pic: KvmPic, icw4 = 0x01): void {
  for (const [cmd, data, base, casc] of [[0x20, 0x21, 0x08, 4], [0xa0, 0xa1, 0x70, 2]] as const) {
    pic.ioWrite(cmd, 0x11);
    pic.ioWrite(data, base);
    pic.ioWrite(data, casc);
    pic.ioWrite(data, icw4);
  }
}

describe('initialization (ICW1-ICW4) — i8259.c pic_ioport_write, kvm_pic_reset', () => {
  test('ICW1 starts the sequence; ICW2 sets irq_base & 0xf8; ICW4 only when ICW1 bit 0', () => {
    const { pic } = picWith();
    pic.ioWrite(0x20, 0x11);
    expect(pic.getState(0)).toMatchObject({ init_state: 1, init4: 1, imr: 0 });
    pic.ioWrite(0x21, 0x0f);
    expect(pic.getState(0)).toMatchObject({ irq_base: 0x08, init_state: 2 });
    pic.ioWrite(0x21, 0x04);
    expect(pic.getState(0).init_state).toBe(3);
    pic.ioWrite(0x21, 0x13); // SFNM + AEOI + 8086
    expect(pic.getState(0)).toMatchObject({ init_state: 0, special_fully_nested_mode: 1, auto_eoi: 1 });
    pic.ioWrite(0x20, 0x10); // ICW1 without ICW4 clears SFNM and AEOI
    pic.ioWrite(0x21, 0x20);
    pic.ioWrite(0x21, 0x04);
    expect(pic.getState(0)).toMatchObject({ init_state: 0, irq_base: 0x20, special_fully_nested_mode: 0, auto_eoi: 0 });
  });

  test('ICW1 keeps level-triggered IRR bits and drops edge ones', () => {
    const { pic } = picWith();
    init(pic);
    pic.ioWrite(0x4d0, 0xff); // ELCR: only bits 3-7 writable on the master
    expect(pic.ioRead(0x4d0)).toBe(0xf8);
    pic.setIrq(1, 0, true); // edge
    pic.setIrq(3, 0, true); // level
    expect(pic.getState(0).irr).toBe(0x0a);
    pic.ioWrite(0x20, 0x11);
    expect(pic.getState(0)).toMatchObject({ irr: 0x08, last_irr: 0, imr: 0, init_state: 1 });
  });

  test('the slave ELCR mask is 0xde (IRQ 8 and 13 stay edge)', () => {
    const { pic } = picWith();
    pic.ioWrite(0x4d1, 0xff);
    expect(pic.ioRead(0x4d1)).toBe(0xde);
  });
});

describe('interrupt acknowledge — kvm_pic_read_irq', () => {
  test('an edge on IRQ 1 gives vector 0x09, moves IRR to ISR, and drops the output', () => {
    const { pic, wakeups } = picWith();
    init(pic);
    expect(pic.setIrq(1, 0, true)).toBe(1);
    expect(pic.output).toBe(true);
    expect(wakeups.length).toBeGreaterThan(0);
    expect(pic.readIrq()).toBe(0x09);
    expect(pic.getState(0)).toMatchObject({ irr: 0, isr: 0x02 });
    expect(pic.output).toBe(false);
  });

  test('the slave cascades through IRQ 2: IRQ 10 is slave base + 2', () => {
    const { pic } = picWith();
    init(pic);
    pic.setIrq(10, 0, true);
    expect(pic.output).toBe(true);
    expect(pic.readIrq()).toBe(0x72);
    expect(pic.getState(0).isr).toBe(0x04);
    expect(pic.getState(1).isr).toBe(0x04);
  });

  test('nothing pending: the spurious IRQ 7 (master base + 7)', () => {
    const { pic } = picWith();
    init(pic);
    expect(pic.readIrq()).toBe(0x0f);
    expect(pic.getState(0).isr).toBe(0);
  });

  test('a second edge while the first is pending is coalesced (0); a masked pin answers -1', () => {
    const { pic } = picWith();
    init(pic);
    pic.setIrq(4, 0, true);
    pic.setIrq(4, 0, false);
    expect(pic.setIrq(4, 0, true)).toBe(0);
    pic.ioWrite(0x21, 0x20); // mask IRQ 5
    expect(pic.setIrq(5, 0, true)).toBe(-1);
  });

  test('priority: IRQ 0 beats IRQ 3; an in-service IRQ 0 holds IRQ 3 back until EOI', () => {
    const { pic, acked } = picWith();
    init(pic);
    pic.setIrq(3, 0, true);
    pic.setIrq(0, 0, true);
    expect(pic.readIrq()).toBe(0x08);
    expect(pic.output).toBe(false); // IRQ 3 is lower than the in-service IRQ 0
    pic.ioWrite(0x20, 0x20); // non-specific EOI
    expect(acked).toEqual([0]);
    expect(pic.output).toBe(true);
    expect(pic.readIrq()).toBe(0x0b);
  });

  test('auto-EOI clears ISR at acknowledge; rotate-on-auto-EOI moves the priority', () => {
    const { pic, acked } = picWith();
    init(pic, 0x03);
    pic.ioWrite(0x20, 0x80); // OCW2 rotate in auto-EOI mode (set)
    pic.setIrq(3, 0, true);
    expect(pic.readIrq()).toBe(0x0b);
    expect(pic.getState(0)).toMatchObject({ isr: 0, priority_add: 4, rotate_on_auto_eoi: 1 });
    expect(acked).toEqual([3]);
  });

  test('level-triggered pins keep IRR at acknowledge and follow the line', () => {
    const { pic } = picWith();
    init(pic);
    pic.ioWrite(0x4d0, 0x20); // IRQ 5 level
    expect(pic.setIrq(5, 0, true)).toBe(1);
    expect(pic.setIrq(5, 0, true)).toBe(0);
    expect(pic.readIrq()).toBe(0x0d);
    expect(pic.getState(0)).toMatchObject({ irr: 0x20, isr: 0x20 });
    pic.setIrq(5, 0, false);
    expect(pic.getState(0).irr).toBe(0);
  });

  test('the line is the OR of the IRQ sources (kvm_pic_set_irq with irq_states)', () => {
    const { pic } = picWith();
    init(pic);
    pic.ioWrite(0x4d0, 0x20);
    pic.setIrq(5, 0, true);
    pic.setIrq(5, 2, true);
    pic.setIrq(5, 0, false);
    expect(pic.getState(0).irr).toBe(0x20);
    pic.setIrq(5, 2, false);
    expect(pic.getState(0).irr).toBe(0);
  });
});

describe('OCW2 and OCW3', () => {
  test('specific EOI (0x60 | n) clears ISR bit n; rotate on specific EOI sets priority_add', () => {
    const { pic } = picWith();
    init(pic);
    pic.setIrq(1, 0, true);
    pic.setIrq(6, 0, true);
    pic.readIrq();
    pic.ioWrite(0x20, 0x61);
    expect(pic.getState(0).isr).toBe(0);
    pic.readIrq();
    pic.ioWrite(0x20, 0xe6); // rotate on specific EOI 6
    expect(pic.getState(0)).toMatchObject({ isr: 0, priority_add: 7 });
  });

  test('set priority (0xc0 | n): n + 1 becomes the highest', () => {
    const { pic } = picWith();
    init(pic);
    pic.ioWrite(0x20, 0xc4);
    expect(pic.getState(0).priority_add).toBe(5);
    pic.setIrq(1, 0, true);
    pic.setIrq(6, 0, true);
    expect(pic.readIrq()).toBe(0x0e); // 6 outranks 1 now
  });

  test('OCW3 selects IRR (0x0a) or ISR (0x0b) for port 0x20; 0x21 reads IMR', () => {
    const { pic } = picWith();
    init(pic);
    pic.setIrq(1, 0, true);
    pic.setIrq(3, 0, true);
    pic.readIrq();
    pic.ioWrite(0x20, 0x0a);
    expect(pic.ioRead(0x20)).toBe(0x08);
    pic.ioWrite(0x20, 0x0b);
    expect(pic.ioRead(0x20)).toBe(0x02);
    pic.ioWrite(0x21, 0xa5);
    expect(pic.ioRead(0x21)).toBe(0xa5);
  });

  test('poll (0x0c): the next read acknowledges and answers 0x80 | pin, then 7 when empty', () => {
    const { pic } = picWith();
    init(pic);
    pic.setIrq(4, 0, true);
    pic.ioWrite(0x20, 0x0c);
    expect(pic.ioRead(0x20)).toBe(0x84);
    expect(pic.getState(0)).toMatchObject({ irr: 0, isr: 0, poll: 0 });
    pic.ioWrite(0x20, 0x0c);
    expect(pic.ioRead(0x20)).toBe(7);
  });

  test('special mask mode is stored (OCW3 0x68 / 0x48)', () => {
    const { pic } = picWith();
    pic.ioWrite(0x20, 0x68);
    expect(pic.getState(0).special_mask).toBe(1);
    pic.ioWrite(0x20, 0x48);
    expect(pic.getState(0).special_mask).toBe(0);
  });

  test('IMR writes fire mask notifiers per changed pin', () => {
    const { pic, masks } = picWith();
    init(pic);
    pic.ioWrite(0xa1, 0x03);
    expect(masks).toEqual([[8, true], [9, true]]);
  });

  test('other ports are not the PIC’s; wider accesses are ignored (reads 0)', () => {
    const { pic } = picWith();
    expect(pic.ioWrite(0x22, 1)).toBe(false);
    expect(pic.ioRead(0x40)).toBeUndefined();
    expect(pic.ioWrite(0x21, 0xffff, 2)).toBe(true);
    expect(pic.getState(0).imr).toBe(0);
    expect(pic.ioRead(0x21, 2)).toBe(0);
  });

  test('special fully nested mode: a slave interrupt above an in-service slave one gets through', () => {
    const { pic } = picWith();
    init(pic, 0x11); // SFNM on both
    pic.setIrq(12, 0, true);
    expect(pic.readIrq()).toBe(0x74);
    pic.setIrq(9, 0, true); // higher slave priority while master ISR bit 2 is set
    expect(pic.output).toBe(true);
    expect(pic.readIrq()).toBe(0x71);
  });
});

describe('invariants (fast-check)', () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('line' as const), irq: fc.integer({ min: 0, max: 15 }), level: fc.boolean() }),
    fc.record({ k: fc.constant('ack' as const) }),
    fc.record({ k: fc.constant('eoi' as const), slave: fc.boolean() }),
    fc.record({ k: fc.constant('imr' as const), slave: fc.boolean(), v: fc.integer({ min: 0, max: 255 }) }),
  );
  fcTest.prop([fc.array(op, { maxLength: 60 })], { numRuns: 200 })(
    'every acknowledged vector is base + pin, ISR bits only come from acknowledges, output ⇔ a deliverable pin',
    (ops) => {
      const { pic } = picWith();
      init(pic);
      for (const o of ops) {
        if (o.k === 'line') pic.setIrq(o.irq, 0, o.level);
        else if (o.k === 'imr') pic.ioWrite(o.slave ? 0xa1 : 0x21, o.v);
        else if (o.k === 'eoi') pic.ioWrite(o.slave ? 0xa0 : 0x20, 0x20);
        else {
          const before = pic.getState(0).isr;
          const v = pic.readIrq();
          expect((v >= 0x08 && v <= 0x0f) || (v >= 0x70 && v <= 0x77)).toBe(true);
          const after = pic.getState(0).isr;
          // A master vector is in service afterwards, unless it was the spurious IRQ 7 (ISR untouched).
          if (v < 0x70 && !(v === 0x0f && after === before)) expect(after & (1 << (v - 8))).not.toBe(0);
        }
        const m = pic.getState(0);
        const pending = m.irr & ~m.imr & 0xff;
        if (!pic.output) {
          // nothing pending is above the highest in-service pin (no rotation in this run)
          const highestIsr = m.isr === 0 ? 8 : 31 - Math.clz32(m.isr & -m.isr);
          const bestIrr = pending === 0 ? 8 : 31 - Math.clz32(pending & -pending);
          expect(bestIrr >= highestIsr).toBe(true);
        }
      }
    },
  );
});
