/** The PIT against i8254.c: ports, modes, latches, the speaker port, IRQ 0 in simulated time, reinjection. */
import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { KVM_PIT_FLAGS_HPET_LEGACY, KVM_PIT_SPEAKER_DUMMY, makeKvmPitState2 } from '../../src/irqchip/index.js';
import { initPics, vmWith } from './helpers.js';

/** ns for `n` PIT input ticks, rounded up so that `n` whole ticks have elapsed. */
const ticks = (n: number): bigint => (BigInt(n) * 1_000_000_000n + 1193180n) / 1193181n;

function pitVm() {
  const vm = vmWith(1);
  initPics(vm.chip);
  const pit = vm.chip.createPit(KVM_PIT_SPEAKER_DUMMY, 0n);
  return { ...vm, pit };
}

describe('programming — pit_ioport_write / pit_ioport_read', () => {
  test('mode 2, LSB then MSB: channel 0 counts down from the count and reloads', () => {
    const { chip } = pitVm();
    chip.pioWrite(0x43, 1, 0x34, 0n); // ch0, lobyte/hibyte, mode 2
    chip.pioWrite(0x40, 1, 0x00, 0n);
    chip.pioWrite(0x40, 1, 0x10, 0n); // count 0x1000
    expect(chip.pit!.getState2().channels[0]).toMatchObject({ count: 0x1000, mode: 2, rw_mode: 3, write_state: 3 });
    const t = ticks(0x100);
    const lo = chip.pioRead(0x40, 1, t)!;
    const hi = chip.pioRead(0x40, 1, t)!;
    expect((hi << 8) | lo).toBe(0x1000 - 0x100);
  });

  test('the counter latch freezes the value until both bytes are read', () => {
    const { chip } = pitVm();
    chip.pioWrite(0x43, 1, 0x34, 0n);
    chip.pioWrite(0x40, 1, 0x00, 0n);
    chip.pioWrite(0x40, 1, 0x20, 0n);
    chip.pioWrite(0x43, 1, 0x00, ticks(0x10)); // latch channel 0
    const lo = chip.pioRead(0x40, 1, ticks(0x800))!;
    const hi = chip.pioRead(0x40, 1, ticks(0x800))!;
    expect((hi << 8) | lo).toBe(0x2000 - 0x10);
  });

  test('read-back status: OUT, access mode, mode, BCD', () => {
    const { chip } = pitVm();
    chip.pioWrite(0x43, 1, 0xb6, 0n); // ch2, lobyte/hibyte, mode 3
    chip.pioWrite(0x43, 1, 0xe8, 0n); // read-back: status only, channel 2
    // Mode 3 in its first half-period (d % count < (count + 1) / 2) has OUT high: 0x80 | 3 << 4 | 3 << 1.
    expect(chip.pioRead(0x42, 1, 0n)).toBe(0xb6);
    expect(chip.pit!.getState2().channels[2]!.status_latched).toBe(0);
  });

  test('modes 6 and 7 read as 2 and 3', () => {
    const { chip } = pitVm();
    chip.pioWrite(0x43, 1, 0x7c, 0n); // ch1, mode 6
    expect(chip.pit!.getState2().channels[1]!.mode).toBe(2);
    chip.pioWrite(0x43, 1, 0x7e, 0n); // mode 7
    expect(chip.pit!.getState2().channels[1]!.mode).toBe(3);
  });

  test('port 0x61: gate and speaker data round-trip; OUT 2 shows in bit 5; refresh toggles every 2^14 ns', () => {
    const { chip } = pitVm();
    chip.pioWrite(0x61, 1, 0x03, 0n);
    expect(chip.pioRead(0x61, 1, 0n)! & 0x03).toBe(0x03);
    expect(chip.pioRead(0x61, 1, 1n << 14n)! & 0x10).toBe(0x10);
    expect(chip.pioRead(0x61, 1, 2n << 14n)! & 0x10).toBe(0);
    const plain = vmWith(1);
    plain.chip.createPit(0, 0n);
    expect(plain.chip.pioRead(0x61, 1, 0n)).toBeUndefined(); // no KVM_PIT_SPEAKER_DUMMY
  });
});

describe('IRQ 0 in simulated time — create_pit_timer, pit_timer_fn, pit_do_work', () => {
  test('mode 2 on channel 0 raises IRQ 0 every period; the BSP takes vector 0x08 through the PIC', () => {
    const { chip, vcpus } = pitVm();
    chip.pioWrite(0x43, 1, 0x34, 0n);
    chip.pioWrite(0x40, 1, 0x9c, 0n);
    chip.pioWrite(0x40, 1, 0x2e, 0n); // 11932: ~10 ms
    const period = (11932n * 1_000_000_000n) / 1193181n;
    expect(chip.nextDeadline()).toBe(period);
    chip.advance(period);
    expect(vcpus[0]!.hasExtint()).toBe(true);
    expect(vcpus[0]!.getInterrupt()).toBe(0x08);
    chip.pioWrite(0x20, 1, 0x20, period); // EOI: acks GSI 0 for the reinjection logic
    expect(chip.nextDeadline()).toBe(2n * period);
    chip.advance(2n * period);
    expect(vcpus[0]!.getInterrupt()).toBe(0x08);
  });

  test('reinjection: ticks the guest has not acknowledged are counted and delivered one per EOI', () => {
    const { chip, vcpus } = pitVm();
    chip.pioWrite(0x43, 1, 0x34, 0n);
    chip.pioWrite(0x40, 1, 0xa9, 0n);
    chip.pioWrite(0x40, 1, 0x04, 0n); // 1193 ticks: 999 847 ns
    const period = (1193n * 1_000_000_000n) / 1193181n;
    chip.advance(3n * period);
    expect(chip.pit!.pending).toBe(3);
    for (let i = 0; i < 3; i++) {
      expect(vcpus[0]!.getInterrupt()).toBe(0x08);
      chip.pioWrite(0x20, 1, 0x20, 3n * period);
    }
    expect(chip.pit!.pending).toBe(0);
    expect(vcpus[0]!.hasExtint()).toBe(false);
  });

  test('without reinjection a missed tick is lost (the edge coalesces in the PIC)', () => {
    const { chip, vcpus } = pitVm();
    chip.setPitReinject(false);
    chip.pioWrite(0x43, 1, 0x34, 0n);
    chip.pioWrite(0x40, 1, 0xa9, 0n);
    chip.pioWrite(0x40, 1, 0x04, 0n);
    const period = (1193n * 1_000_000_000n) / 1193181n;
    chip.advance(3n * period);
    expect(vcpus[0]!.getInterrupt()).toBe(0x08);
    chip.pioWrite(0x20, 1, 0x20, 3n * period);
    expect(vcpus[0]!.hasExtint()).toBe(false);
  });

  test('mode 0 is one-shot; a periodic count below 200 µs is stretched to 200 µs after the first tick', () => {
    const { chip } = pitVm();
    chip.pioWrite(0x43, 1, 0x30, 0n);
    chip.pioWrite(0x40, 1, 0x10, 0n);
    chip.pioWrite(0x40, 1, 0x00, 0n);
    const t = (16n * 1_000_000_000n) / 1193181n;
    chip.advance(t);
    expect(chip.nextDeadline()).toBeUndefined();
    chip.pioWrite(0x43, 1, 0x34, t);
    chip.pioWrite(0x40, 1, 0x10, t);
    chip.pioWrite(0x40, 1, 0x00, t);
    expect(chip.nextDeadline()).toBe(t + t);
    chip.advance(t + t);
    expect(chip.nextDeadline()).toBe(t + t + 200_000n);
  });

  test('HPET legacy mode keeps channel 0 from arming (KVM_SET_PIT2 flags)', () => {
    const { chip } = pitVm();
    const s = chip.pit!.getState2();
    s.flags = KVM_PIT_FLAGS_HPET_LEGACY;
    s.channels[0]!.mode = 2;
    s.channels[0]!.count = 1000;
    chip.pit!.setState2(s, 0n);
    expect(chip.nextDeadline()).toBeUndefined();
  });

  test('KVM_CREATE_PIT2 twice is EEXIST', () => {
    const { chip } = pitVm();
    expect(() => chip.createPit(0, 0n)).toThrow(expect.objectContaining({ code: 'EEXIST' }) as Error);
  });
});

describe('invariants (fast-check)', () => {
  fcTest.prop([fc.integer({ min: 2, max: 0xffff }), fc.array(fc.bigInt({ min: 0n, max: 5_000_000n }), { minLength: 1, maxLength: 40 })], { numRuns: 100 })(
    'a mode 2 counter read is always within 1..count: it reloads, never skips below 1 or above the count',
    (count, steps) => {
      const { chip } = pitVm();
      chip.pioWrite(0x43, 1, 0x34, 0n);
      chip.pioWrite(0x40, 1, count & 0xff, 0n);
      chip.pioWrite(0x40, 1, count >> 8, 0n);
      let now = 0n;
      for (const dt of steps) {
        now += dt;
        chip.advance(now);
        chip.pioWrite(0x43, 1, 0x00, now);
        const v = chip.pioRead(0x40, 1, now)! | (chip.pioRead(0x40, 1, now)! << 8);
        expect(v).toBeGreaterThanOrEqual(1);
        expect(v).toBeLessThanOrEqual(count);
      }
    },
  );

  fcTest.prop([fc.integer({ min: 1193, max: 0xffff }), fc.integer({ min: 1, max: 30 })], { numRuns: 50 })(
    'with reinjection every elapsed period is delivered exactly once when the guest acknowledges each',
    (count, periods) => {
      const { chip, vcpus } = pitVm();
      chip.pioWrite(0x43, 1, 0x34, 0n);
      chip.pioWrite(0x40, 1, count & 0xff, 0n);
      chip.pioWrite(0x40, 1, count >> 8, 0n);
      const period = (BigInt(count) * 1_000_000_000n) / 1193181n;
      const end = BigInt(periods) * period;
      chip.advance(end);
      let delivered = 0;
      while (vcpus[0]!.hasExtint()) {
        expect(vcpus[0]!.getInterrupt()).toBe(0x08);
        chip.pioWrite(0x20, 1, 0x20, end);
        delivered++;
      }
      expect(delivered).toBe(periods);
    },
  );
});

test('KVM_SET_PIT (legacy struct) reloads without touching flags', () => {
  const { chip } = pitVm();
  chip.pioWrite(0x61, 1, 0x02, 0n);
  chip.pit!.setState({ channels: makeKvmPitState2().channels }, 0n);
  expect(chip.pit!.getState2().flags).toBe(2);
  expect(chip.pit!.getState().channels[0]!.count).toBe(0x10000);
});

test('an hour of 200 µs ticks with nobody acknowledging is counted in one step (18 000 000 pending)', () => {
  const { chip, vcpus } = pitVm();
  chip.pioWrite(0x43, 1, 0x34, 0n);
  chip.pioWrite(0x40, 1, 0x02, 0n);
  chip.pioWrite(0x40, 1, 0x00, 0n); // count 2: 1676 ns, limited to 200 µs after the first tick
  const first = (2n * 1_000_000_000n) / 1193181n;
  const hour = 3_600_000_000_000n;
  chip.advance(hour);
  expect(chip.pit!.pending).toBe(Number((hour - first) / 200_000n) + 1);
  expect(vcpus[0]!.getInterrupt()).toBe(0x08);
});
