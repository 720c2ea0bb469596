/** The replay catches a model that answers differently from the recorded kernel. */
import { describe, expect, test } from 'vitest';
import { MODEL_VENDORS, changedRuns, modelHost, replayFact } from '../replay/facts.js';
import { loadGroup, type Fact, type Step } from '../replay/golden.js';

const intel = MODEL_VENDORS[0]!;
const system = loadGroup('system');
const run = loadGroup('run');

function fact(group: { facts: readonly Fact[] }, id: string): Fact {
  const f = group.facts.find((x) => x.id === id);
  if (f === undefined) throw new Error(`no fact ${id}`);
  return f;
}

function withStep(f: Fact, i: number, change: (s: Step) => Step): Fact {
  return { ...f, steps: f.steps.map((s, k) => (k === i ? change(s) : s)) };
}

describe('replayFact', () => {
  const host = modelHost(intel, 2);

  test('a fact the model agrees with has no difference; changing the kernel\'s answer makes one', () => {
    const f = fact(system, 'system.api-version');
    expect(replayFact(host, 'intel', f)).toEqual([]);
    const changed = withStep(f, 0, (s) => (s.op === 'ioctl' ? { ...s, ret: 13 } : s));
    expect(replayFact(host, 'intel', changed).map((m) => m.path)).toEqual(['steps.0.ret']);
  });

  test('a different errno is reported and ends the fact', () => {
    const f = fact(system, 'system.unknown-ioctl');
    const changed = withStep(f, 0, (s) => (s.op === 'ioctl' ? { ...s, errno: 'ENOTTY' } : s));
    expect(replayFact(host, 'intel', changed).map((m) => `${m.path} ${m.expected} ${m.actual}`)).toEqual(['steps.0.errno ENOTTY EINVAL']);
  });

  test('guest memory, registers and exits are compared after each KVM_RUN', () => {
    const f = fact(run, 'run.ud2-through-ivt');
    const memAt = f.steps.findIndex((s) => s.op === 'mem');
    const changed = withStep(f, memAt, (s) => (s.op === 'mem' ? { ...s, changes: [[0xeffb, '11']] } : s));
    expect(replayFact(host, 'intel', changed).some((m) => m.path === `steps.${memAt}.changes`)).toBe(true);
  });

  test('changedRuns finds the runs of bytes that differ', () => {
    expect(changedRuns(Uint8Array.from([0, 0, 0, 0]), Uint8Array.from([0, 1, 2, 0]))).toEqual([[1, '0102']]);
    expect(changedRuns(Uint8Array.from([5, 5]), Uint8Array.from([5, 5]))).toEqual([]);
  });
});
