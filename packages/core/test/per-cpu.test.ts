import { describe, expect, test } from 'vitest';

import { UsageError } from '../src/errors.js';
import * as core from '../src/index.js';
import * as internal from '../src/internal.js';
import {
  CounterTable,
  FAULT_MODES,
  FaultKnobs,
  checkCpuIndex,
  cpuAt,
  isFaultMode,
  noSuchCpu,
  resolvePerCpu,
} from '../src/per-cpu.js';

describe('per-CPU helpers', () => {
  test('are exported from the internal entry point (for the vendor packages), not from the public index', () => {
    expect(internal.checkCpuIndex).toBe(checkCpuIndex);
    expect(internal.cpuAt).toBe(cpuAt);
    expect(internal.resolvePerCpu).toBe(resolvePerCpu);
    expect(internal.FaultKnobs).toBe(FaultKnobs);
    expect(internal.CounterTable).toBe(CounterTable);
    expect(Object.keys(core)).not.toContain('checkCpuIndex');
    expect(Object.keys(core)).not.toContain('FaultKnobs');
  });
});

describe('checkCpuIndex / cpuAt / noSuchCpu', () => {
  test('the error names the operation and the CPUs of the host', () => {
    const e = noSuchCpu('svm.vmrun', 7, 4);
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toBe('svm.vmrun: no CPU 7 (the host has CPUs 0 … 3)');
  });

  test('checkCpuIndex accepts exactly the integers 0 … n-1', () => {
    for (const cpu of [0, 1, 3]) expect(() => checkCpuIndex('x', cpu, 4)).not.toThrow();
    for (const cpu of [-1, 4, 0.5, Number.NaN, Infinity]) {
      expect(() => checkCpuIndex('x', cpu, 4)).toThrow(UsageError);
    }
    expect(() => checkCpuIndex('vmx', 4, 4)).toThrow('vmx: no CPU 4 (the host has CPUs 0 … 3)');
  });

  test('cpuAt returns the entry or throws for a CPU the array has none for', () => {
    const cpus = ['a', 'b', 'c'];
    expect(cpuAt('x', cpus, 2)).toBe('c');
    expect(() => cpuAt('intel', cpus, 3)).toThrow('intel: no CPU 3 (the host has CPUs 0 … 2)');
    expect(() => cpuAt('intel', cpus, -1)).toThrow(UsageError);
    expect(() => cpuAt('intel', cpus, 1.5)).toThrow('intel: no CPU 1.5');
  });
});

describe('resolvePerCpu', () => {
  const base = { a: 1, b: 'x' };

  test('CPUs without an override share the host object', () => {
    const out = resolvePerCpu('m: cpus', base, undefined, 3);
    expect(out).toHaveLength(3);
    for (const o of out) expect(o).toBe(base);
  });

  test('an override is merged over the host options; undefined values do not override', () => {
    const out = resolvePerCpu('m: cpus', base, { 1: { a: 2, b: undefined } as never }, 3);
    expect(out[0]).toBe(base);
    expect(out[1]).toEqual({ a: 2, b: 'x' });
    expect(out[2]).toBe(base);
    expect(base).toEqual({ a: 1, b: 'x' });
  });

  test('an override for a CPU the host does not have is a UsageError', () => {
    expect(() => resolvePerCpu('amd(): cpus', base, { 7: { a: 2 } }, 4)).toThrow(
      'amd(): cpus: there is no CPU 7 on a host with 4 CPUs',
    );
    expect(() => resolvePerCpu('m', base, { x: {} } as never, 4)).toThrow('m: there is no CPU x on a host with 4 CPUs');
    expect(() => resolvePerCpu('m', base, { '01': {} } as never, 4)).toThrow(UsageError);
  });
});

describe('FaultKnobs', () => {
  test("'once' fires once, 'always' every time, 'off' never", () => {
    const k = new FaultKnobs(3);
    expect(k.mode(0)).toBe('off');
    expect(k.fire(0)).toBe(false);
    k.set(0, 'once');
    k.set(1, 'always');
    expect(k.mode(0)).toBe('once');
    expect(k.fire(0)).toBe(true);
    expect(k.mode(0)).toBe('off');
    expect(k.fire(0)).toBe(false);
    for (let i = 0; i < 3; i++) expect(k.fire(1)).toBe(true);
    expect(k.mode(1)).toBe('always');
    k.set(1, 'off');
    expect(k.fire(1)).toBe(false);
    expect(k.fire(2)).toBe(false);
  });

  test('a bad mode is a UsageError, with the owner prefix when given', () => {
    expect(() => new FaultKnobs(1).set(0, 'never' as never)).toThrow("fault mode must be 'once', 'always' or 'off', got never");
    expect(() => new FaultKnobs(1, 'vmx').set(0, 'never' as never)).toThrow(
      "vmx: fault mode must be 'once', 'always' or 'off', got never",
    );
  });

  test('isFaultMode / FAULT_MODES', () => {
    expect([...FAULT_MODES].sort()).toEqual(['always', 'off', 'once']);
    for (const m of FAULT_MODES) expect(isFaultMode(m)).toBe(true);
    for (const v of ['never', undefined, null, 1, {}]) expect(isFaultMode(v)).toBe(false);
  });
});

describe('CounterTable', () => {
  const NAMES = ['a', 'b', 'c'] as const;

  test('counts per CPU and in total', () => {
    const t = new CounterTable(NAMES, 2);
    expect(t.slot('b')).toBe(1);
    expect(() => t.slot('z' as never)).toThrow(UsageError);
    t.add(0, 0);
    t.add(1, 0, 4);
    t.add(1, 2);
    expect(t.value(1, 0)).toBe(4);
    expect(t.get(0)).toEqual({ a: 1, b: 0, c: 0 });
    expect(t.get(1)).toEqual({ a: 4, b: 0, c: 1 });
    expect(Object.keys(t.get(1))).toEqual(['a', 'b', 'c']);
    expect(Object.isFrozen(t.get(1))).toBe(true);
    expect(t.total(0)).toBe(5);
    expect(t.totals()).toEqual({ a: 5, b: 0, c: 1 });
    // The storage is CPU-major, stride = number of names: hot paths may increment it in place.
    expect([...t.values]).toEqual([1, 0, 0, 4, 0, 1]);
    t.values[1 * NAMES.length + 1]! += 1;
    expect(t.get(1).b).toBe(1);
    expect(Object.isFrozen(t.totals())).toBe(true);
  });

  test('get returns a copy', () => {
    const t = new CounterTable(NAMES, 1);
    const before = t.get(0);
    t.add(0, 1);
    expect(before.b).toBe(0);
    expect(t.get(0).b).toBe(1);
  });
});
