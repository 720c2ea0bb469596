import { describe, expect, test } from 'vitest';
import {
  ARCH_GET_XCOMP_GUEST_PERM,
  ARCH_GET_XCOMP_PERM,
  ARCH_GET_XCOMP_SUPP,
  ARCH_REQ_XCOMP_GUEST_PERM,
  ARCH_REQ_XCOMP_PERM,
  FPU_GUEST_PERM_LOCKED,
  cpuidKey,
  createHost,
  type Host,
  type Process,
} from '../../src/index.js';
import { expectKernelError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

/**
 * A host whose CPUs report XSAVE with x87, SSE, AVX and — with `amx` — AMX tile config and data at the offsets
 * every AMX CPU reports (64 bytes at 2752, 8192 at 2816) and XFD; without `xfd` the CPU lacks XFD.
 */
function host(opts: { amx: boolean; xfd?: boolean }): Host {
  const h = createHost({ cpus: 2, hardware: fakeHardware() });
  const xcr0 = opts.amx ? 0x60007 : 0x7;
  for (const cpu of h.cpus) {
    cpu.cpuid.set(1, { eax: 0, ebx: 0, ecx: 1 << 26, edx: 0 });
    cpu.cpuid.set(0xd, { eax: xcr0, ebx: 0, ecx: 0, edx: 0 });
    cpu.cpuid.set(cpuidKey(0xd, 1), { eax: 0xf | (opts.xfd ?? opts.amx ? 0x10 : 0), ebx: 0, ecx: 0, edx: 0 });
    cpu.cpuid.set(cpuidKey(0xd, 2), { eax: 256, ebx: 576, ecx: 0, edx: 0 });
    if (opts.amx) {
      cpu.cpuid.set(cpuidKey(0xd, 17), { eax: 64, ebx: 2752, ecx: 2, edx: 0 });
      cpu.cpuid.set(cpuidKey(0xd, 18), { eax: 8192, ebx: 2816, ecx: 6, edx: 0 });
    }
  }
  return h;
}

function get(p: Process, option: number): bigint {
  const out = new BigUint64Array(1);
  expect(p.archPrctl(option, out)).toBe(0);
  return out[0]!;
}

describe('arch_prctl: XSAVE permissions (fpu_xstate_prctl)', () => {
  test('an AMX host: tile data is dynamic, so it is permitted only on request; the answers grow by it', () => {
    const p = host({ amx: true }).spawn();
    expect(get(p, ARCH_GET_XCOMP_SUPP)).toBe(0x60007n);
    expect(get(p, ARCH_GET_XCOMP_PERM)).toBe(0x20007n); // default_features: XTILE_CFG yes, XTILE_DATA no
    expect(get(p, ARCH_GET_XCOMP_GUEST_PERM)).toBe(0x20007n);
    expect(p.xstatePermissions().guestUserSize).toBe(2752 + 64);
    expect(p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)).toBe(0);
    expect(get(p, ARCH_GET_XCOMP_GUEST_PERM)).toBe(0x60007n);
    expect(p.xstatePermissions().guestUserSize).toBe(11008);
    expect(get(p, ARCH_GET_XCOMP_PERM)).toBe(0x20007n); // the host set is separate
    expect(p.archPrctl(ARCH_REQ_XCOMP_PERM, 18)).toBe(0);
    expect(get(p, ARCH_GET_XCOMP_PERM)).toBe(0x60007n);
    expect(p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)).toBe(0); // already permitted: 0 again
  });

  test('bad requests: EINVAL at or beyond XFEATURE_MAX and for an unknown option, EOPNOTSUPP for a static feature; nothing changes', () => {
    const p = host({ amx: true }).spawn();
    expectKernelError(p.host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 19), 'EINVAL');
    expectKernelError(p.host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 64), 'EINVAL');
    expectKernelError(p.host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, -1), 'EINVAL');
    expectKernelError(p.host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 17), 'EOPNOTSUPP');
    expectKernelError(p.host, () => p.archPrctl(ARCH_REQ_XCOMP_PERM, 2), 'EOPNOTSUPP');
    expectKernelError(p.host, () => p.archPrctl(0x1026, 18), 'EINVAL');
    expectKernelError(p.host, () => p.archPrctl(ARCH_GET_XCOMP_GUEST_PERM), 'EFAULT');
    expect(get(p, ARCH_GET_XCOMP_GUEST_PERM)).toBe(0x20007n);
    expect(get(p, ARCH_GET_XCOMP_PERM)).toBe(0x20007n);
  });

  test('no AMX, or AMX without XFD: the kernel offers no dynamic feature, a request is EOPNOTSUPP', () => {
    for (const h of [host({ amx: false }), host({ amx: true, xfd: false })]) {
      const p = h.spawn();
      expectKernelError(p.host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18), 'EOPNOTSUPP');
      expect(get(p, ARCH_GET_XCOMP_GUEST_PERM) & (1n << 18n)).toBe(0n);
    }
    expect(get(host({ amx: false }).spawn(), ARCH_GET_XCOMP_SUPP)).toBe(7n);
  });

  test('the first guest FPU locks the guest permissions: a request that adds a feature is EBUSY, one that adds none is 0', () => {
    const h = host({ amx: true });
    const locked = h.spawn();
    expect(locked.xstatePermissions().lockGuest()).toBe(0x20007n);
    expect(locked.xstatePermissions().guestPerm & FPU_GUEST_PERM_LOCKED).toBe(FPU_GUEST_PERM_LOCKED);
    expectKernelError(locked.host, () => locked.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18), 'EBUSY');
    expect(get(locked, ARCH_GET_XCOMP_GUEST_PERM)).toBe(0x20007n); // the lock bit is not shown
    expect(locked.archPrctl(ARCH_REQ_XCOMP_PERM, 18)).toBe(0); // the host set is not locked
    const early = h.spawn();
    expect(early.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)).toBe(0);
    expect(early.xstatePermissions().lockGuest()).toBe(0x60007n);
    expect(early.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)).toBe(0);
  });

  test('each process has its own permissions; a dead process is ESRCH', () => {
    const h = host({ amx: true });
    const a = h.spawn();
    const b = h.spawn({ parent: a });
    a.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18);
    expect(get(b, ARCH_GET_XCOMP_GUEST_PERM)).toBe(0x20007n); // spawn is fork + exec: exec resets (fpstate_reset)
    a.kill();
    expectKernelError(a.host, () => a.archPrctl(ARCH_GET_XCOMP_SUPP, new BigUint64Array(1)), 'ESRCH');
  });
});
