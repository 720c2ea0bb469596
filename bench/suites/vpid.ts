/**
 * 1. VPID allocator: alloc + free of one ID with 16, 4,096 and 60,000 IDs held.
 *
 * - baseline: Linux's algorithm, a flat `Uint32Array` bitmap searched word by word from 0
 *   (`find_first_zero_bit` over `vmx_vpid_bitmap`), written here;
 * - `number-allocator` (npm): an ordered set of free intervals (lowest free first);
 * - ours: `VpidAllocator` (what VAC uses: owner tag, exhaustion count, checks) and the bare `IdBitmap`
 *   under it (the summary hierarchy).
 *
 * The held IDs are 1 … N (VPID 0 is the host's), the worst case for the linear scan: the first zero bit is
 * N/32 words in. Before timing, every implementation replays the same pseudo-random alloc/free sequence and
 * must return the same lowest-free ID at every step (a correctness check, not a timed one).
 */
import { IdBitmap } from '@vac/core/internal';
import { VMX_NR_VPIDS, VpidAllocator } from '@vac/vmx';
import { NumberAllocator } from 'number-allocator';
import { check, measure, row, sink, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';

const GROUP = '1. VPID allocator';

/** Linux's `vmx_vpid_bitmap` with `find_first_zero_bit`: the baseline. */
export class LinearBitmap {
  readonly #words = new Uint32Array(VMX_NR_VPIDS / 32);

  constructor() {
    this.#words[0] = 1; // set_bit(0, vmx_vpid_bitmap): 0 is reserved for the host
  }

  /** `allocate_vpid`: the lowest zero bit, set; 0 when none is free. */
  alloc(): number {
    const words = this.#words;
    for (let i = 0; i < words.length; i++) {
      const w = words[i] as number;
      if (w !== 0xffffffff) {
        const inv = ~w;
        const bit = 31 - Math.clz32(inv & -inv);
        words[i] = w | (1 << bit);
        return (i << 5) | bit;
      }
    }
    return 0;
  }

  /** `free_vpid`. */
  free(vpid: number): void {
    if (vpid === 0) return;
    const i = vpid >>> 5;
    this.#words[i] = (this.#words[i] as number) & ~(1 << (vpid & 31));
  }
}

/** The common shape of the four contenders (for the correctness replay; the timed loops use `impl`). */
interface Allocator {
  alloc(): number;
  free(id: number): void;
  readonly impl: unknown;
}

/** `number-allocator` over 1 … 65,535 (VPID 0 is never handed out). */
function numberAllocator(): Allocator {
  const a = new NumberAllocator(1, VMX_NR_VPIDS - 1);
  return {
    alloc: () => a.alloc() ?? 0,
    free: (id) => a.free(id),
    impl: a,
  };
}

const OWNER = { instance: 'kvm0', vm: 1, vcpu: 0 };

function vpidAllocator(): Allocator {
  const a = new VpidAllocator<typeof OWNER>();
  return { alloc: () => a.alloc(OWNER), free: (id) => a.free(id), impl: a };
}

function idBitmap(): Allocator {
  const b = new IdBitmap(VMX_NR_VPIDS);
  b.set(0);
  return {
    alloc: () => {
      const i = b.takeFirstZero();
      return i < 0 ? 0 : i;
    },
    free: (id) => {
      if (id !== 0) b.clear(id);
    },
    impl: b,
  };
}

function linear(): Allocator {
  const l = new LinearBitmap();
  return { alloc: () => l.alloc(), free: (id) => l.free(id), impl: l };
}

/**
 * Replay one pseudo-random alloc/free sequence (LCG, fixed seed) on every allocator and require the same
 * ID from each at every step, and the lowest free one. Throws on the first difference.
 */
export function checkSameLowestFree(steps: number): void {
  const impls: Array<[string, Allocator]> = [
    ['linear', linear()],
    ['number-allocator', numberAllocator()],
    ['VpidAllocator', vpidAllocator()],
    ['IdBitmap', idBitmap()],
  ];
  const held: number[] = [];
  const taken = new Uint8Array(VMX_NR_VPIDS);
  taken[0] = 1;
  let seed = 12345;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  for (let s = 0; s < steps; s++) {
    // Mostly allocations early on (so the set grows into the tens of thousands), then a mix.
    const allocate = held.length === 0 || rnd() < (s < steps / 2 ? 0.9 : 0.45);
    if (allocate) {
      const expected = taken.indexOf(0);
      for (const [name, a] of impls) {
        const got = a.alloc();
        if (got !== expected) throw new Error(`VPID check, step ${s}: ${name} allocated ${got}, the lowest free ID is ${expected}`);
      }
      taken[expected] = 1;
      held.push(expected);
    } else {
      const k = Math.floor(rnd() * held.length);
      const id = held[k] as number;
      held[k] = held[held.length - 1] as number;
      held.pop();
      taken[id] = 0;
      for (const [, a] of impls) a.free(id);
    }
  }
}

/**
 * The timed loops, one function literal per contender: closures made from one literal share V8's feedback,
 * so a shared loop would see four `alloc` targets and measure a megamorphic call instead of the allocator.
 */
const LOOPS: Record<string, (a: Allocator, batch: number) => () => void> = {
  linear: (a, batch) => {
    const l = (a as { readonly impl: LinearBitmap }).impl;
    return () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const id = l.alloc();
        l.free(id);
        acc += id;
      }
      sink.n += acc;
    };
  },
  numberAllocator: (a, batch) => {
    const n = (a as { readonly impl: NumberAllocator }).impl;
    return () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const id = n.alloc() ?? 0;
        n.free(id);
        acc += id;
      }
      sink.n += acc;
    };
  },
  vpidAllocator: (a, batch) => {
    const v = (a as { readonly impl: VpidAllocator<typeof OWNER> }).impl;
    return () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const id = v.alloc(OWNER);
        v.free(id);
        acc += id;
      }
      sink.n += acc;
    };
  },
  idBitmap: (a, batch) => {
    const bm = (a as { readonly impl: IdBitmap }).impl;
    return () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const id = bm.takeFirstZero();
        bm.clear(id);
        acc += id;
      }
      sink.n += acc;
    };
  },
};

/** Run the group. */
export function runVpid(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  checkSameLowestFree(b.quick ? 20_000 : 150_000);
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  const batch = 256;
  for (const held of [16, 4096, 60_000]) {
    const variant = `${held.toLocaleString('en-US')} held`;
    const contenders: Array<[string, keyof typeof LOOPS, () => Allocator]> = [
      ['flat bitmap, linear scan (Linux; baseline)', 'linear', linear],
      ['number-allocator 1.0.14', 'numberAllocator', numberAllocator],
      ['VpidAllocator (ours)', 'vpidAllocator', vpidAllocator],
      ['IdBitmap (ours, bare)', 'idBitmap', idBitmap],
    ];
    let base: { label: string; m: Measurement } | undefined;
    const ms = new Map<string, Measurement>();
    for (const [name, loop, make] of contenders) {
      const a = make();
      for (let i = 0; i < held; i++) a.alloc();
      const next = held + 1;
      const m = measure(b, `${name} @${held}`, (LOOPS[loop] as (a: Allocator, batch: number) => () => void)(a, batch), { opsPerCall: batch });
      // The state is as before: the next allocation is still N + 1 (correctness, not timing).
      const id = a.alloc();
      if (id !== next) throw new Error(`${name} @${held}: allocated ${id} after the run, expected ${next}`);
      ms.set(name, m);
      rows.push(row(GROUP, name, variant, m, base, { note: 'alloc + free of one ID' }));
      base ??= { label: `${name}, ${variant}`, m };
    }
    const ours = ms.get('VpidAllocator (ours)') as Measurement;
    const lin = ms.get('flat bitmap, linear scan (Linux; baseline)') as Measurement;
    if (held === 16) {
      targets.push(check('VPID alloc+free ≤ 1.5× the linear baseline at 16 held', `${(ours.nsPerOp / lin.nsPerOp).toFixed(2)}× (${ours.nsPerOp.toFixed(1)} vs ${lin.nsPerOp.toFixed(1)} ns)`, ours.nsPerOp / lin.nsPerOp, 1.5));
    }
    if (held === 60_000) {
      targets.push(check('VPID alloc+free ≤ 30 ns at 60,000 held', `${ours.nsPerOp.toFixed(1)} ns`, ours.nsPerOp, 30));
    }
  }
  return { rows, targets };
}
