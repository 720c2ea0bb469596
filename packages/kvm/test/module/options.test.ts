/**
 * `kvm()`'s options are checked when the image is built, each read once: the run limit of a direct KVM_RUN must be
 * a positive integer (0, NaN, negatives and infinities made a direct KVM_RUN of a spinning guest never return), the
 * vendors must be vendor ops, and an unknown option is named.
 */
import { describe, expect, test } from 'vitest';
import { UsageError, createHost } from '@vac/core';
import { intel, vmxKvmOps } from '@vac/vmx';
import { KVM_EXIT_IO, KVM_RUN, kvm } from '../../src/index.js';
import { SPIN, makeVm } from './helpers.js';

function usage(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error('no UsageError');
}

describe('kvm() options', () => {
  test.each([0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53])('syncRunLimit %s → ERR_OUT_OF_RANGE naming it', (limit) => {
    const e = usage(() => kvm({ postfix: '0', syncRunLimit: limit }));
    expect(e.code).toBe('ERR_OUT_OF_RANGE');
    expect(e.message).toContain('kvm({ syncRunLimit })');
  });

  test('syncRunLimit of the wrong type → ERR_INVALID_ARG; 1 is accepted and a spinning guest returns EINTR at once', () => {
    expect(usage(() => kvm({ syncRunLimit: '10' as unknown as number })).code).toBe('ERR_INVALID_ARG');
    const host = createHost({ cpus: 2, hardware: intel() });
    host.modprobe(kvm({ postfix: '0', syncRunLimit: 1 }));
    const p = host.spawn({ groups: ['kvm'] });
    const t = makeVm(p, '/dev/kvm0', SPIN, 1);
    const fd = t.vcpus[0]?.fd as number;
    expect(() => p.ioctl(fd, KVM_RUN, 0)).toThrow(/EINTR/);
    expect(t.vcpus[0]?.run.exit_reason).not.toBe(KVM_EXIT_IO);
  });

  test('an unknown option is named; options that are not an object are refused', () => {
    const e = usage(() => kvm({ postfix: '0', syncRunLimt: 5 } as never));
    expect(e.code).toBe('ERR_UNKNOWN_NAME');
    expect(e.message).toContain('"syncRunLimt"');
    for (const bad of [null, 5, 'kvm0', []]) expect(usage(() => kvm(bad as never)).code).toBe('ERR_INVALID_ARG');
  });

  test('vendors must be an array of vendor ops; version a string', () => {
    expect(usage(() => kvm({ vendors: vmxKvmOps as never })).code).toBe('ERR_INVALID_ARG');
    const e = usage(() => kvm({ vendors: [vmxKvmOps, { name: 'fake' } as never] }));
    expect(e.code).toBe('ERR_INVALID_ARG');
    expect(e.message).toContain('vendors[1]');
    expect(usage(() => kvm({ version: 6 as never })).code).toBe('ERR_INVALID_ARG');
    expect(kvm({ postfix: '0', vendors: [vmxKvmOps], version: 'x' }).name).toBe('kvm0');
  });

  test('each option is read once (a getter cannot change what was checked)', () => {
    let reads = 0;
    const opts = {
      postfix: '3',
      get syncRunLimit(): number {
        reads++;
        return reads === 1 ? 1000 : 0;
      },
    };
    expect(kvm(opts).name).toBe('kvm3');
    expect(reads).toBe(1);
  });
});
