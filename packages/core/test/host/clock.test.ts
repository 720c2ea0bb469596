/** The host's simulated clock: guest execution, scheduler ticks, timers, the jump when every thread sleeps. */
import { describe, expect, it } from 'vitest';
import { createHost, SimClock, type Host } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';

function host(): Host {
  return createHost({ cpus: 2, hardware: fakeHardware() });
}

describe('SimClock', () => {
  it('starts at 0 and moves by instructions at the nominal rate', () => {
    const c = new SimClock();
    expect(c.now).toBe(0n);
    c.advanceInstructions(1000);
    expect(c.now).toBe(1000n);
    c.nsPerInstruction = 3;
    c.advanceInstructions(10);
    expect(c.now).toBe(1030n);
    expect(c.nowNs).toBe(1030);
  });

  it('fires timers once their deadline has come, earliest first, with the clock time', () => {
    const c = new SimClock();
    const fired: string[] = [];
    const a = c.timer((now) => fired.push(`a@${now}`));
    const b = c.timer((now) => fired.push(`b@${now}`));
    a.set(500n);
    b.set(200n);
    expect(c.nextDeadline()).toBe(200n);
    c.advanceBy(100);
    expect(fired).toEqual([]);
    c.advanceBy(900);
    expect(fired).toEqual(['b@1000', 'a@1000']);
    expect(a.deadline).toBeUndefined();
    expect(c.nextDeadline()).toBeUndefined();
  });

  it('a timer re-armed by its callback fires again when due; removed timers never fire', () => {
    const c = new SimClock();
    let n = 0;
    const t = c.timer((now) => {
      n++;
      t.set(now + 100n);
    });
    t.set(100n);
    c.advanceTo(350n);
    expect(n).toBe(1);
    expect(t.deadline).toBe(450n);
    c.advanceTo(450n);
    expect(n).toBe(2);
    t.remove();
    c.advanceTo(10_000n);
    expect(n).toBe(2);
  });

  it("keeps a timer's deadline accessor on its class, not on each timer (a hidden class per timer outlived the timer)", () => {
    const c = new SimClock();
    const a = c.timer(() => undefined);
    const b = c.timer(() => undefined);
    expect(Object.getOwnPropertyDescriptor(a, 'deadline')).toBeUndefined();
    expect(Object.getPrototypeOf(a)).toBe(Object.getPrototypeOf(b));
    b.set(70n);
    expect([a.deadline, b.deadline]).toEqual([undefined, 70n]);
  });

  it('moving a timer later recomputes the next deadline', () => {
    const c = new SimClock();
    const a = c.timer(() => undefined);
    const b = c.timer(() => undefined);
    a.set(10n);
    b.set(20n);
    a.set(30n);
    expect(c.nextDeadline()).toBe(20n);
    b.set(undefined);
    expect(c.nextDeadline()).toBe(30n);
  });

  it('never goes back and refuses bad values (UsageError)', () => {
    const c = new SimClock();
    c.advanceTo(100n);
    expect(() => c.advanceTo(99n)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(() => c.advanceBy(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(() => c.advanceBy(1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(() => (c.tickNs = 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(() => (c.nsPerInstruction = -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(() => c.advanceTo(2n ** 60n)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }) as Error);
    expect(c.now).toBe(100n);
  });
});

describe('host.clock and the scheduler', () => {
  it('each tick moves the clock one period (1 ms by default)', () => {
    const h = host();
    const p = h.spawn();
    h.scheduler.spawn(p, {}, function* () {
      for (;;) yield;
    });
    h.scheduler.run(3);
    expect(h.clock.now).toBe(3_000_000n);
  });

  it('when every thread sleeps, a tick jumps to the next deadline; a thread awake keeps the period', () => {
    const h = host();
    const p = h.spawn();
    const fired: bigint[] = [];
    const t = h.clock.timer((now) => fired.push(now));
    t.set(50_000_000n);
    const th = h.scheduler.spawn(p, {}, function* (self) {
      self.sleeping = true;
      for (;;) yield;
    });
    h.scheduler.tick(); // the thread is not asleep yet at the first tick
    expect(h.clock.now).toBe(1_000_000n);
    h.scheduler.tick();
    expect(h.clock.now).toBe(50_000_000n);
    expect(fired).toEqual([50_000_000n]);
    th.sleeping = false;
    h.scheduler.tick();
    expect(h.clock.now).toBe(51_000_000n);
  });
});
