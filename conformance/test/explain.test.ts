/** Holding differences against a divergence list: coverage, stale entries, patterns, vendors. */
import { describe, expect, test } from 'vitest';
import type { Mismatch } from '../replay/compare.js';
import { covers, explain, globRegExp, type Divergence } from '../replay/explain.js';

const m = (fact: string, vendor: Mismatch['vendor'], path = 'steps.0.ret', actual = '0'): Mismatch => ({ fact, vendor, path, step: 'KVM_X', expected: '1', actual });
const both = ['intel', 'amd'] as const;

describe('explain', () => {
  test('a difference no entry covers is unexplained', () => {
    const r = explain([m('a', 'intel')], new Set(['a']), [], both);
    expect(r.unexplained).toHaveLength(1);
  });

  test('an entry covers the facts, vendors and paths it names', () => {
    const d: Divergence = { id: 'd', class: 'not-modelled', summary: 's', linux: ['x'], facts: ['a'], where: '*.ret', vendors: ['intel'] };
    expect(covers(d, m('a', 'intel'))).toBe(true);
    expect(covers(d, m('a', 'amd'))).toBe(false);
    expect(covers(d, m('b', 'intel'))).toBe(false);
    expect(covers(d, m('a', 'intel', 'steps.0.errno'))).toBe(false);
    expect(covers({ ...d, where: (x) => x.actual === '7' }, m('a', 'intel'))).toBe(false);
  });

  test('an exact fact that agrees on a vendor makes the entry stale for that vendor', () => {
    const d: Divergence = { id: 'd', class: 'not-modelled', summary: 's', linux: ['x'], facts: ['a', 'b'] };
    const r = explain([m('a', 'intel'), m('a', 'amd'), m('b', 'intel')], new Set(['a', 'b']), [d], both);
    expect(r.unexplained).toEqual([]);
    expect(r.stale).toEqual(['d: b agrees on amd']);
  });

  test('a pattern must match some difference on each vendor; unknown ids and duplicate entries are reported', () => {
    const p: Divergence = { id: 'p', class: 'emulator-vendor', summary: 's', linux: ['x'], facts: ['guest.*', 'gone'] };
    const r = explain([m('guest.alu.s1', 'intel')], new Set(['guest.alu.s1']), [p, p], both);
    expect(r.stale).toContain('p: no fact matching guest.* diverges on amd');
    expect(r.unknown).toContain('p: gone');
    expect(r.duplicates).toEqual(['p']);
  });

  test('globs match whole strings, * across dots', () => {
    expect(globRegExp('guest.*').test('guest.alu8.s1')).toBe(true);
    expect(globRegExp('steps.*.ret').test('steps.12.ret')).toBe(true);
    expect(globRegExp('steps.*.ret').test('steps.12.return')).toBe(false);
  });
});
