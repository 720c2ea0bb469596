import { describe, expect, test } from 'vitest';

import { Cpu } from '../../src/cpu.js';
import { KernelError, UsageError, isKernelError } from '../../src/errors.js';
import { KVM_MAX_NR_USER_RETURN_MSRS, UserReturnMsrs } from '../../src/vac/uret.js';

const MSR_STAR = 0xc0000081;
const MSR_LSTAR = 0xc0000082;
const MSR_CSTAR = 0xc0000083;
const MSR_SYSCALL_MASK = 0xc0000084;
const MSR_TSC_AUX = 0xc0000103;

/** CPUs whose listed MSRs hold host values `0x1000 * (cpu + 1) + (msr & 0xff)`, with a write log. */
function makeCpus(n: number, msrs: readonly number[]): { cpus: Cpu[]; writes: [number, number, bigint][] } {
  const writes: [number, number, bigint][] = [];
  const cpus: Cpu[] = [];
  for (let id = 0; id < n; id++) {
    const cpu = new Cpu(id);
    for (const msr of msrs) {
      cpu.msrs.set(msr, BigInt(0x1000 * (id + 1) + (msr & 0xff)));
      cpu.msrWriteHooks.set(msr, (c, m, v) => {
        writes.push([c.id, m, v]);
        return true;
      });
    }
    cpus.push(cpu);
  }
  return { cpus, writes };
}

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

/** Sixteen implemented MSR numbers plus one more. */
const MANY = Array.from({ length: 17 }, (_, i) => 0xc0010000 + i);

describe('UserReturnMsrs (kvm_add/find/set_user_return_msr, kvm_on_user_return)', () => {
  test('KVM_MAX_NR_USER_RETURN_MSRS is 16', () => {
    expect(KVM_MAX_NR_USER_RETURN_MSRS).toBe(16);
  });

  test('add probes on CPU 0, appends, and find returns the slot', () => {
    const { cpus, writes } = makeCpus(2, [MSR_STAR, MSR_LSTAR]);
    const u = new UserReturnMsrs(cpus);
    expect(u.add(MSR_STAR)).toBe(0);
    expect(writes).toEqual([[0, MSR_STAR, 0x1081n]]); // wrmsrl_safe of the value just read
    expect(u.add(MSR_LSTAR)).toBe(1);
    expect(u.find(MSR_LSTAR)).toBe(1);
    expect(u.find(MSR_CSTAR)).toBe(-1);
    expect(u.nrSlots).toBe(2);
    expect(u.msrAt(1)).toBe(MSR_LSTAR);
  });

  test('registering the same MSR twice shares the slot (refcounted)', () => {
    const { cpus } = makeCpus(1, [MSR_STAR, MSR_TSC_AUX]);
    const u = new UserReturnMsrs(cpus);
    const kvm0 = u.add(MSR_TSC_AUX);
    const kvm1 = u.add(MSR_TSC_AUX);
    expect(kvm1).toBe(kvm0);
    expect(u.slots()).toEqual([{ slot: 0, msr: MSR_TSC_AUX, refs: 2 }]);
    u.release(MSR_TSC_AUX); // kvm1 unloads: only its reference goes
    expect(u.slots()).toEqual([{ slot: 0, msr: MSR_TSC_AUX, refs: 1 }]);
    expect(u.find(MSR_TSC_AUX)).toBe(0);
    u.release(MSR_TSC_AUX);
    expect(u.slots()).toEqual([]);
    expect(u.nrSlots).toBe(0);
    expect(() => u.release(MSR_TSC_AUX)).toThrow(UsageError);
  });

  test('a freed slot is reused; other slots keep their indices', () => {
    const { cpus } = makeCpus(1, [MSR_STAR, MSR_LSTAR, MSR_CSTAR]);
    const u = new UserReturnMsrs(cpus);
    u.add(MSR_STAR);
    u.add(MSR_LSTAR);
    u.release(MSR_STAR);
    expect(u.find(MSR_LSTAR)).toBe(1);
    expect(u.nrSlots).toBe(2);
    expect(u.add(MSR_CSTAR)).toBe(0);
    expect(u.slots().map((s) => [s.slot, s.msr])).toEqual([
      [0, MSR_CSTAR],
      [1, MSR_LSTAR],
    ]);
  });

  test('the 17th distinct MSR is ENOSPC (Linux: BUG_ON), and nothing changes', () => {
    const { cpus } = makeCpus(1, MANY);
    const u = new UserReturnMsrs(cpus);
    for (let i = 0; i < 16; i++) expect(u.add(MANY[i] as number)).toBe(i);
    const before = u.slots();
    const e = catchError(() => u.add(MANY[16] as number));
    expect(isKernelError(e, 'ENOSPC')).toBe(true);
    expect((e as KernelError).errno).toBe(28);
    expect((e as KernelError).op).toBe('kvm_add_user_return_msr');
    expect(u.slots()).toEqual(before);
    // Sharing an already listed MSR still works when all 16 slots are taken.
    expect(u.add(MANY[3] as number)).toBe(3);
    u.release(MANY[5] as number);
    expect(u.add(MANY[16] as number)).toBe(5);
  });

  test('an MSR that faults on the probe is EIO and is not listed', () => {
    const { cpus } = makeCpus(2, [MSR_STAR]);
    const u = new UserReturnMsrs(cpus);
    expect(isKernelError(catchError(() => u.add(0x12345)), 'EIO')).toBe(true); // rdmsr #GP
    cpus[0]?.msrs.set(0x777, 1n);
    cpus[0]?.msrWriteHooks.set(0x777, () => false); // reads fine, write #GP
    expect(isKernelError(catchError(() => u.add(0x777)), 'EIO')).toBe(true);
    expect(u.slots()).toEqual([]);
    expect(() => u.add(-1)).toThrow(UsageError);
    expect(() => u.add(2 ** 32)).toThrow(UsageError);
    expect(() => new UserReturnMsrs([])).toThrow(UsageError);
  });

  test('set: (value & mask) | (host & ~mask), registers the notifier once, no-op when equal', () => {
    const { cpus, writes } = makeCpus(2, [MSR_STAR, MSR_SYSCALL_MASK]);
    const u = new UserReturnMsrs(cpus);
    u.add(MSR_STAR);
    const slot = u.add(MSR_SYSCALL_MASK);
    u.cpuOnline(1);
    writes.length = 0;
    expect(u.isRegistered(1)).toBe(false);
    // host of MSR_SYSCALL_MASK on CPU 1 = 0x2084
    expect(u.set(1, slot, 0xabcd_0000n, 0xffff_0000n)).toBe(0);
    expect(writes).toEqual([[1, MSR_SYSCALL_MASK, 0xabcd_2084n]]);
    expect(cpus[1]?.msrs.get(MSR_SYSCALL_MASK)).toBe(0xabcd_2084n);
    expect(u.isRegistered(1)).toBe(true);
    expect(u.isRegistered(0)).toBe(false);
    expect(u.cpuState(1).values[slot]).toEqual({ slot, msr: MSR_SYSCALL_MASK, host: 0x2084n, curr: 0xabcd_2084n });
    // Same resulting value: no write.
    expect(u.set(1, slot, 0xabcd_ffffn, 0xffff_0000n)).toBe(0);
    expect(writes).toHaveLength(1);
    // A full 64-bit value with an all-ones mask.
    expect(u.set(1, slot, 0xffff_ffff_ffff_ffffn, (1n << 64n) - 1n)).toBe(0);
    expect(cpus[1]?.msrs.get(MSR_SYSCALL_MASK)).toBe(0xffff_ffff_ffff_ffffn);
    expect(() => u.set(1, 7, 0n, 0n)).toThrow(UsageError);
    expect(() => u.set(2, slot, 0n, 0n)).toThrow(UsageError);
  });

  test('write fault: set returns 1, nothing changes, notifier not registered', () => {
    const { cpus } = makeCpus(1, [MSR_TSC_AUX]);
    const u = new UserReturnMsrs(cpus);
    const slot = u.add(MSR_TSC_AUX);
    u.cpuOnline(0);
    cpus[0]?.msrWriteHooks.set(MSR_TSC_AUX, (_c, _m, v) => v < 0x1_0000_0000n); // TSC_AUX: upper 32 bits reserved
    const before = u.cpuState(0);
    expect(u.set(0, slot, 0x1_0000_0001n, (1n << 64n) - 1n)).toBe(1);
    expect(u.cpuState(0)).toEqual(before);
    expect(u.isRegistered(0)).toBe(false);
    expect(cpus[0]?.msrs.get(MSR_TSC_AUX)).toBe(0x1003n);
    expect(u.set(0, slot, 7n, (1n << 64n) - 1n)).toBe(0);
    expect(u.isRegistered(0)).toBe(true);
  });

  test('return to user restores every changed slot and unregisters', () => {
    const { cpus, writes } = makeCpus(2, [MSR_STAR, MSR_LSTAR, MSR_CSTAR]);
    const u = new UserReturnMsrs(cpus);
    const star = u.add(MSR_STAR);
    u.add(MSR_LSTAR);
    const cstar = u.add(MSR_CSTAR);
    for (const c of [0, 1]) u.cpuOnline(c);
    const all = (1n << 64n) - 1n;
    u.set(0, star, 0x11n, all);
    u.set(0, cstar, 0x33n, all);
    writes.length = 0;
    u.onUserReturn(0);
    expect(writes).toEqual([
      [0, MSR_STAR, 0x1081n],
      [0, MSR_CSTAR, 0x1083n],
    ]);
    expect(u.isRegistered(0)).toBe(false);
    expect(u.cpuState(0).values.every((v) => v.host === v.curr)).toBe(true);
    expect(cpus[0]?.msrs.get(MSR_STAR)).toBe(0x1081n);
    // CPU 1 untouched.
    expect(cpus[1]?.msrs.get(MSR_STAR)).toBe(0x2081n);
  });

  test('returnToUser restores like onUserReturn when the notifier is registered, and writes nothing when not', () => {
    const { cpus, writes } = makeCpus(2, [MSR_STAR]);
    const u = new UserReturnMsrs(cpus);
    const star = u.add(MSR_STAR);
    for (const c of [0, 1]) u.cpuOnline(c);
    writes.length = 0;
    u.returnToUser(0); // nothing loaded: no write
    expect(writes).toEqual([]);
    u.set(1, star, 0x11n, (1n << 64n) - 1n);
    writes.length = 0;
    u.returnToUser(0); // another CPU's guest value is not this CPU's business
    expect(writes).toEqual([]);
    u.returnToUser(1);
    expect(writes).toEqual([[1, MSR_STAR, 0x2081n]]);
    expect(u.isRegistered(1)).toBe(false);
    expect(cpus[1]?.msrs.get(MSR_STAR)).toBe(0x2081n);
    expect(catchError(() => u.returnToUser(2))).toBeInstanceOf(UsageError);
  });

  test('loadGuest: the sets of each entry in order; while nothing changed since a full load, nothing is done', () => {
    const { cpus, writes } = makeCpus(2, [MSR_STAR, MSR_TSC_AUX]);
    const u = new UserReturnMsrs(cpus);
    const star = u.add(MSR_STAR);
    const aux = u.add(MSR_TSC_AUX);
    for (const c of [0, 1]) u.cpuOnline(c);
    writes.length = 0;
    const guest = [
      { slot: aux, value: 0x1003n }, // CPU 0's host value: never written there
      { slot: star, value: 0x55n },
    ];
    u.loadGuest(0, guest);
    expect(writes).toEqual([[0, MSR_STAR, 0x55n]]);
    expect(u.isRegistered(0)).toBe(true);
    u.loadGuest(0, guest); // loaded again without a return to user space (a vCPU thread scheduled in again)
    expect(writes).toHaveLength(1);
    u.returnToUser(0);
    expect(writes).toEqual([
      [0, MSR_STAR, 0x55n],
      [0, MSR_STAR, 0x1081n],
    ]);
    u.loadGuest(0, guest); // the restore changed a current value: written again
    expect(writes).toHaveLength(3);
    expect(cpus[0]?.msrs.get(MSR_STAR)).toBe(0x55n);
    // A list equal to the host's values changes nothing, loaded once or again.
    writes.length = 0;
    u.returnToUser(0);
    const hostValues = [{ slot: aux, value: 0x1003n }];
    u.loadGuest(0, hostValues);
    u.returnToUser(0);
    u.loadGuest(0, hostValues);
    expect(writes).toEqual([[0, MSR_STAR, 0x1081n]]);
    expect(u.isRegistered(0)).toBe(false);
    // CPU 1's values are its own: nothing of CPU 0's load carries over.
    writes.length = 0;
    u.loadGuest(1, hostValues);
    expect(writes).toEqual([[1, MSR_TSC_AUX, 0x1003n]]);
    expect(() => u.loadGuest(2, hostValues)).toThrow(UsageError);
    expect(() => u.loadGuest(0, [{ slot: 9, value: 0n }])).toThrow(UsageError);
  });

  test('loadGuest does what the same sets do, after each change that could matter', () => {
    // Two identical hosts: one loads with loadGuest, the other with a set per entry; every write and state must agree.
    const a = makeCpus(2, [MSR_STAR, MSR_LSTAR, MSR_TSC_AUX]);
    const b = makeCpus(2, [MSR_STAR, MSR_LSTAR, MSR_TSC_AUX]);
    const ua = new UserReturnMsrs(a.cpus);
    const ub = new UserReturnMsrs(b.cpus);
    const all = (1n << 64n) - 1n;
    const load = (cpu: number, entries: ReadonlyArray<{ slot: number; value: bigint }>): void => {
      ua.loadGuest(cpu, entries);
      for (const e of entries) ub.set(cpu, e.slot, e.value, all);
    };
    const both = (f: (u: UserReturnMsrs) => void): void => {
      f(ua);
      f(ub);
    };
    const agree = (): void => {
      expect(a.writes).toEqual(b.writes);
      for (const c of [0, 1]) expect(ua.cpuState(c)).toEqual(ub.cpuState(c));
      expect(ua.uncheckedFaults).toBe(ub.uncheckedFaults);
    };
    both((u) => u.add(MSR_TSC_AUX));
    both((u) => u.cpuOnline(0));
    const guest = [{ slot: 0, value: 0x1003n }];
    load(0, guest);
    load(0, guest);
    agree();
    // A slot added later (kvm1 loads): the same list now finds another slot list.
    both((u) => u.add(MSR_STAR));
    const two = [
      { slot: 0, value: 0x1003n },
      { slot: 1, value: 0x1081n },
    ];
    load(0, two);
    agree();
    // Another module's guest values on the same CPU, then ours again.
    load(0, [{ slot: 1, value: 7n }]);
    load(0, two);
    agree();
    // The host's value read again (per-CPU enable) after the CPU's MSR changed under it.
    a.cpus[0]?.msrs.set(MSR_TSC_AUX, 0x77n);
    b.cpus[0]?.msrs.set(MSR_TSC_AUX, 0x77n);
    both((u) => u.cpuOnline(0));
    load(0, two);
    both((u) => u.returnToUser(0));
    load(0, two);
    agree();
    // A write that faults is tried again at every load, as a set per entry would.
    const tries = { a: 0, b: 0 };
    a.cpus[0]?.msrWriteHooks.set(MSR_TSC_AUX, () => (tries.a++, false));
    b.cpus[0]?.msrWriteHooks.set(MSR_TSC_AUX, () => (tries.b++, false));
    both((u) => u.returnToUser(0));
    load(0, two);
    load(0, two);
    agree();
    expect(tries).toEqual({ a: 3, b: 3 }); // the restore, then each load
    for (const h of [a, b]) h.cpus[0]?.msrWriteHooks.delete(MSR_TSC_AUX);
    load(0, two);
    // The last reference of a slot released: its host value back, then the list's slot no longer in use.
    both((u) => u.release(MSR_STAR));
    agree();
    expect(() => ua.loadGuest(0, two)).toThrow(UsageError);
    expect(() => ub.set(0, 1, 0n, all)).toThrow(UsageError);
    load(0, guest);
    agree();
  });

  test('dropCpu (per-CPU disable) restores only if registered', () => {
    const { cpus, writes } = makeCpus(1, [MSR_STAR]);
    const u = new UserReturnMsrs(cpus);
    const slot = u.add(MSR_STAR);
    u.cpuOnline(0);
    writes.length = 0;
    u.dropCpu(0);
    expect(writes).toEqual([]);
    u.set(0, slot, 5n, (1n << 64n) - 1n);
    u.dropCpu(0);
    expect(writes).toEqual([
      [0, MSR_STAR, 5n],
      [0, MSR_STAR, 0x1081n],
    ]);
    expect(u.isRegistered(0)).toBe(false);
  });

  test('cpuOnline snapshots host = curr from the CPU', () => {
    const { cpus } = makeCpus(1, [MSR_LSTAR]);
    const u = new UserReturnMsrs(cpus);
    u.add(MSR_LSTAR);
    cpus[0]?.msrs.set(MSR_LSTAR, 0xffff_8000_0000_1234n); // the host kernel changed its entry point
    u.cpuOnline(0);
    expect(u.cpuState(0)).toEqual({
      registered: false,
      values: [{ slot: 0, msr: MSR_LSTAR, host: 0xffff_8000_0000_1234n, curr: 0xffff_8000_0000_1234n }],
    });
  });

  test('a late registration snapshots host values on every CPU (beyond the RFC)', () => {
    const { cpus } = makeCpus(3, [MSR_STAR, MSR_TSC_AUX]);
    const u = new UserReturnMsrs(cpus);
    u.add(MSR_STAR);
    for (const c of [0, 1, 2]) u.cpuOnline(c); // CPUs already enabled by kvm0
    const slot = u.add(MSR_TSC_AUX); // kvm1 loads later
    expect(u.cpuState(2).values[slot]).toEqual({ slot, msr: MSR_TSC_AUX, host: 0x3003n, curr: 0x3003n });
    u.set(2, slot, 9n, (1n << 64n) - 1n);
    u.onUserReturn(2);
    expect(cpus[2]?.msrs.get(MSR_TSC_AUX)).toBe(0x3003n); // not 0
  });

  test('releasing the last reference while a guest value is loaded restores the host value', () => {
    const { cpus } = makeCpus(2, [MSR_TSC_AUX]);
    const u = new UserReturnMsrs(cpus);
    const slot = u.add(MSR_TSC_AUX);
    u.cpuOnline(1);
    u.set(1, slot, 42n, (1n << 64n) - 1n);
    u.release(MSR_TSC_AUX);
    expect(cpus[1]?.msrs.get(MSR_TSC_AUX)).toBe(0x2003n);
    expect(u.uncheckedFaults).toBe(0);
  });

  test('a faulting restore is counted and the slot still counts as restored (unchecked wrmsrl)', () => {
    const { cpus } = makeCpus(1, [MSR_STAR]);
    const u = new UserReturnMsrs(cpus);
    const slot = u.add(MSR_STAR);
    u.cpuOnline(0);
    u.set(0, slot, 1n, (1n << 64n) - 1n);
    cpus[0]?.msrWriteHooks.set(MSR_STAR, () => false);
    u.onUserReturn(0);
    expect(u.uncheckedFaults).toBe(1);
    expect(u.cpuState(0).values[0]?.curr).toBe(0x1081n);
  });
});
