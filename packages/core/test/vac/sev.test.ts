import { describe, expect, test } from 'vitest';

import { KernelError, UsageError, isKernelError } from '../../src/errors.js';
import { SevAsidAllocator } from '../../src/vac/sev.js';

/** CPUID 0x8000001F with ECX = max_sev_asid = 10, EDX = min_sev_asid = 5: SEV [5, 10], SEV-ES [1, 4]. */
function make(onFlush?: () => boolean | void): SevAsidAllocator<string> {
  return SevAsidAllocator.fromCpuid<string>(
    { eax: 0, ebx: 0, ecx: 10, edx: 5 },
    onFlush === undefined ? {} : { onFlush },
  );
}

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('SevAsidAllocator (sev_asid_new / sev_asid_free / __sev_recycle_asids)', () => {
  test('geometry from CPUID 0x8000001F', () => {
    const s = make();
    expect(s.maxSevAsid).toBe(10);
    expect(s.minSevAsid).toBe(5);
    expect(s.nrAsids).toBe(11);
    expect(s.range(false)).toEqual([5, 10]);
    expect(s.range(true)).toEqual([1, 4]);
  });

  test('SEV takes [min, max], SEV-ES [1, min-1], lowest first, with owners', () => {
    const s = make();
    expect(s.alloc(false, 'vmA')).toBe(5);
    expect(s.alloc(false, 'vmB')).toBe(6);
    expect(s.alloc(true, 'vmC')).toBe(1);
    expect(s.alloc(true, 'vmD')).toBe(2);
    expect(s.inUse).toBe(4);
    expect(s.ownerOf(6)).toBe('vmB');
    expect(s.isInUse(1)).toBe(true);
    expect(s.isInUse(0)).toBe(false);
    expect(s.state().inUse).toEqual([
      [1, 'vmC'],
      [2, 'vmD'],
      [5, 'vmA'],
      [6, 'vmB'],
    ]);
  });

  test('an empty range is ENOTTY (sev_asid_new: min_asid > max_asid)', () => {
    const noEs = new SevAsidAllocator({ maxSevAsid: 10, minSevAsid: 1 });
    const e = catchError(() => noEs.alloc(true, 'x'));
    expect(isKernelError(e, 'ENOTTY')).toBe(true);
    expect((e as KernelError).errno).toBe(25);
    expect((e as KernelError).op).toBe('sev_asid_new');
    expect(noEs.alloc(false, 'y')).toBe(1);

    const noSev = new SevAsidAllocator({ maxSevAsid: 10, minSevAsid: 11 }); // all ASIDs kept for SEV-ES
    expect(isKernelError(catchError(() => noSev.alloc(false, 'x')), 'ENOTTY')).toBe(true);
    expect(noSev.alloc(true, 'y')).toBe(1);

    const none = SevAsidAllocator.fromCpuid({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
    expect(isKernelError(catchError(() => none.alloc(false, 'x')), 'ENOTTY')).toBe(true);
    expect(isKernelError(catchError(() => none.alloc(true, 'x')), 'ENOTTY')).toBe(true);
    expect(none.state()).toEqual({ inUse: [], awaitingReclaim: [], flushes: 0, recycles: 0 });
  });

  test('a freed ASID is not reused before a recycle', () => {
    const s = make();
    expect(s.alloc(false, 'a')).toBe(5);
    s.free(5);
    expect(s.isInUse(5)).toBe(false);
    expect(s.isAwaitingReclaim(5)).toBe(true);
    expect(s.ownerOf(5)).toBeUndefined();
    expect(s.alloc(false, 'b')).toBe(6);
    expect(s.inUse).toBe(1);
    expect(s.flushes).toBe(0);
  });

  test('exhaustion with nothing to reclaim: EBUSY, no flush, state unchanged', () => {
    const s = make();
    for (let i = 0; i < 6; i++) s.alloc(false, `vm${i}`);
    const before = s.state();
    const e = catchError(() => s.alloc(false, 'late'));
    expect(isKernelError(e, 'EBUSY')).toBe(true);
    expect((e as KernelError).errno).toBe(16);
    expect(s.state()).toEqual(before);
    expect(s.flushes).toBe(0);
  });

  test('exhaustion then recycle: one flush (WBINVD + DF_FLUSH), freed ASIDs come back', () => {
    let hook = 0;
    const s = make(() => {
      hook++;
    });
    for (let i = 0; i < 6; i++) s.alloc(false, `vm${i}`); // 5 … 10
    s.free(7);
    s.free(9);
    expect(s.state().awaitingReclaim).toEqual([7, 9]);
    expect(s.alloc(false, 'new1')).toBe(7); // recycle, retry
    expect(s.flushes).toBe(1);
    expect(s.recycles).toBe(1);
    expect(hook).toBe(1);
    expect(s.state().awaitingReclaim).toEqual([]);
    expect(s.alloc(false, 'new2')).toBe(9); // already recycled: no new flush
    expect(s.flushes).toBe(1);
    expect(isKernelError(catchError(() => s.alloc(false, 'new3')), 'EBUSY')).toBe(true);
    expect(s.flushes).toBe(1);
    expect(hook).toBe(1);
  });

  test('the flush is only done when the requested range has something to reclaim, but recycles both ranges', () => {
    const s = make();
    for (let i = 0; i < 6; i++) s.alloc(false, `sev${i}`);
    for (let i = 0; i < 4; i++) s.alloc(true, `es${i}`);
    s.free(2); // an SEV-ES ASID awaits reclaim; the SEV range has none
    const before = s.state();
    expect(isKernelError(catchError(() => s.alloc(false, 'x')), 'EBUSY')).toBe(true);
    expect(s.state()).toEqual(before); // sev_flush_asids: find_next_bit(reclaim, nr_asids, min) > max → -EBUSY
    s.free(8);
    expect(s.alloc(true, 'es-new')).toBe(2); // flush: recycles 2 and 8
    expect(s.flushes).toBe(1);
    expect(s.alloc(false, 'sev-new')).toBe(8); // no second flush needed
    expect(s.flushes).toBe(1);
    expect(s.inUse).toBe(10);
  });

  test('DF_FLUSH failure: EBUSY, the flush (WBINVD) stays counted, nothing else changes', () => {
    let ok = false;
    const s = make(() => ok);
    for (let i = 0; i < 6; i++) s.alloc(false, `vm${i}`);
    s.free(6);
    const before = s.state();
    const e = catchError(() => s.alloc(false, 'x'));
    expect(isKernelError(e, 'EBUSY')).toBe(true);
    // The one real effect of the failed call, as in Linux: WBINVD ran on all CPUs and DF_FLUSH was issued.
    expect(s.flushes).toBe(1);
    expect(s.state()).toEqual({ ...before, flushes: 1 });
    expect(s.recycles).toBe(0);
    expect(s.isAwaitingReclaim(6)).toBe(true);
    ok = true;
    expect(s.alloc(false, 'y')).toBe(6);
    expect(s.flushes).toBe(2);
    expect(s.recycles).toBe(1);
  });

  test('free of an ASID not in use is a usage error', () => {
    const s = make();
    expect(() => s.free(5)).toThrow(UsageError);
    const a = s.alloc(false, 'a');
    s.free(a);
    expect(() => s.free(a)).toThrow(UsageError); // double free: already awaiting reclaim
    expect(() => s.free(0)).toThrow(UsageError);
    expect(() => s.free(11)).toThrow(UsageError);
    expect(() => new SevAsidAllocator({ maxSevAsid: 10, minSevAsid: 0 })).toThrow(UsageError);
    expect(() => new SevAsidAllocator({ maxSevAsid: -1, minSevAsid: 1 })).toThrow(UsageError);
  });

  test('unique across modules: one allocator, every VM gets its own ASID', () => {
    const s = make();
    const got = [s.alloc(false, 'kvm0/vm1'), s.alloc(false, 'kvm1/vm1'), s.alloc(false, 'kvm2/vm1')];
    expect(new Set(got).size).toBe(3);
    expect(isKernelError(new KernelError('EBUSY', 'x'), 'EBUSY')).toBe(true);
  });
});
