/** The conformance figures add up. */
import { describe, expect, test } from 'vitest';
import type { Mismatch } from '../replay/compare.js';
import type { Divergence } from '../replay/explain.js';
import { computeFigures, figuresMarkdown } from '../replay/figures.js';
import type { Fact } from '../replay/golden.js';

const ioctl = (name: string, ret: number, errno?: string): Fact['steps'][number] => ({ op: 'ioctl', fd: 'sys', name, nr: 0, arg: { int: '0x0' }, ret, ...(errno === undefined ? {} : { errno }) });
const facts: Fact[] = [
  { id: 'x.agrees', title: '', steps: [ioctl('KVM_A', 0)] },
  { id: 'x.refused', title: '', steps: [ioctl('KVM_B', -1, 'EINVAL')] },
  { id: 'x.lacks', title: '', steps: [ioctl('KVM_B', 0)] },
  { id: 'y.machine', title: '', steps: [ioctl('KVM_C', 0)] },
];
const mm = (fact: string, path: string, step: string, expected: string, actual: string): Mismatch => ({ fact, vendor: 'intel', path, step, expected, actual });
const mismatches = [mm('x.lacks', 'steps.0.errno', 'KVM_B', '(none)', 'EINVAL'), mm('y.machine', 'steps.0.ret', 'KVM_C', '1', '0')];
const list: Divergence[] = [
  { id: 'b', class: 'not-modelled', summary: 's', linux: ['l'], facts: ['x.lacks'] },
  { id: 'c', class: 'emulator-vendor', summary: 's', linux: ['l'], facts: ['y.machine'] },
];

describe('computeFigures', () => {
  test('agreeing, diverging, by class, by group; refusals of a lacking ioctl counted apart', () => {
    const f = computeFigures(facts, mismatches, list, 2);
    expect(f).toMatchObject({ facts: 4, comparisons: 8, agreeing: 2, agreeingByRefusal: 1, diverging: 2, machineOnly: 1 });
    expect(f.byClass['not-modelled']).toEqual({ facts: 1, entries: 1 });
    expect(f.byClass['emulator-vendor']).toEqual({ facts: 1, entries: 1 });
    expect(f.byGroup).toEqual([{ group: 'x', facts: 3, agreeing: 2, machineOnly: 0 }, { group: 'y', facts: 1, agreeing: 0, machineOnly: 1 }]);
    expect(figuresMarkdown(f, 'here')).toContain('**4 facts**');
  });
});
