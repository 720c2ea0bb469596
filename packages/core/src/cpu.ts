/**
 * A logical CPU of the simulated host: online state, CPUID leaves, MSRs and CR4.
 *
 * The vendor hardware model fills in the virtualization parts when the host is created (CPUID leaves, MSRs and
 * their write hooks) and keeps its own per-CPU state beside these.
 *
 * @module
 */

/** The four output registers of one CPUID leaf. */
export interface CpuidRegs {
  /** EAX */
  readonly eax: number;
  /** EBX */
  readonly ebx: number;
  /** ECX */
  readonly ecx: number;
  /** EDX */
  readonly edx: number;
}

/**
 * A hook a hardware model may install to give an MSR side effects or to refuse a write (#GP).
 * Return `false` to make the write fault.
 */
export type MsrWriteHook = (cpu: Cpu, msr: number, value: bigint) => boolean;

/**
 * The per-CPU values of one kind (MSRs, CPUID leaves, MSR write hooks) of a host's CPUs, stored by key: one
 * column per key, indexed by CPU number (`undefined` = the CPU has no such key). A pass over every CPU for one
 * MSR (the user-return snapshot, a compatibility check) then reads one array in order, instead of one hash table
 * per CPU: on thousands of CPUs the per-CPU tables no longer fit the caches and every pass misses.
 */
export class PerCpuTable<V> {
  /** The columns, in the order their keys were first set. */
  readonly columns = new Map<number, Array<V | undefined>>();
  readonly #size: number;

  /** @param size - the number of CPUs (column length) */
  constructor(size: number) {
    this.#size = size;
  }

  /** The column of `key`, created (all `undefined`) if missing. */
  column(key: number): Array<V | undefined> {
    let col = this.columns.get(key);
    if (col === undefined) {
      col = new Array<V | undefined>(this.#size).fill(undefined);
      this.columns.set(key, col);
    }
    return col;
  }
}

/** The three tables of a host's CPUs ({@link Cpu.cpuid}, {@link Cpu.msrs}, {@link Cpu.msrWriteHooks}). */
export class CpuTables {
  /** CPUID leaves. */
  readonly cpuid: PerCpuTable<CpuidRegs>;
  /** MSR values. */
  readonly msrs: PerCpuTable<bigint>;
  /** MSR write hooks. */
  readonly msrWriteHooks: PerCpuTable<MsrWriteHook>;

  readonly #slots = new Map<number, MsrSlot>();

  /** @param size - the number of CPUs */
  constructor(size: number) {
    this.cpuid = new PerCpuTable(size);
    this.msrs = new PerCpuTable(size);
    this.msrWriteHooks = new PerCpuTable(size);
  }

  /** The {@link MsrSlot} of `msr` (made once; its columns are created if missing). */
  msrSlot(msr: number): MsrSlot {
    let slot = this.#slots.get(msr);
    if (slot === undefined) {
      slot = new MsrSlot(this, msr, this.msrs.column(msr), this.msrWriteHooks.column(msr));
      this.#slots.set(msr, slot);
    }
    return slot;
  }
}

/**
 * One MSR of every CPU of a host, looked up once: hot paths that write the same MSR over and over (the L1D
 * flush before each VM entry, the user-return MSRs around each KVM_RUN) keep it and call
 * {@link Cpu.wrmsrSlot} / {@link Cpu.rdmsrSlot}, which skip the two hash lookups of
 * {@link Cpu.wrmsrSafe}. Get one with {@link Cpu.msrSlot}; it behaves exactly as the MSR number does.
 */
export class MsrSlot {
  /** The MSR number. */
  readonly msr: number;
  /** @internal The tables it belongs to. */
  readonly tables: CpuTables;
  /** @internal Every CPU's value (`undefined`: not implemented there). */
  readonly values: Array<bigint | undefined>;
  /** @internal Every CPU's write hook. */
  readonly hooks: Array<MsrWriteHook | undefined>;

  /** @internal Use {@link Cpu.msrSlot}. */
  constructor(tables: CpuTables, msr: number, values: Array<bigint | undefined>, hooks: Array<MsrWriteHook | undefined>) {
    this.tables = tables;
    this.msr = msr;
    this.values = values;
    this.hooks = hooks;
  }
}

/**
 * One CPU's row of a {@link PerCpuTable}, with the API of a `Map<number, V>`. Iteration follows the order in
 * which keys were first set on any CPU of the table.
 */
class PerCpuMap<V> implements Map<number, V> {
  readonly #columns: Map<number, Array<V | undefined>>;
  readonly #table: PerCpuTable<V>;
  readonly #cpu: number;

  /** The row of `table` at index `cpu`. */
  constructor(table: PerCpuTable<V>, cpu: number) {
    this.#table = table;
    this.#columns = table.columns;
    this.#cpu = cpu;
  }

  get size(): number {
    let n = 0;
    for (const col of this.#columns.values()) if (col[this.#cpu] !== undefined) n++;
    return n;
  }

  get(key: number): V | undefined {
    return this.#columns.get(key)?.[this.#cpu];
  }

  has(key: number): boolean {
    return this.#columns.get(key)?.[this.#cpu] !== undefined;
  }

  set(key: number, value: V): this {
    this.#table.column(key)[this.#cpu] = value;
    return this;
  }

  delete(key: number): boolean {
    const col = this.#columns.get(key);
    if (col === undefined || col[this.#cpu] === undefined) return false;
    col[this.#cpu] = undefined;
    return true;
  }

  clear(): void {
    for (const col of this.#columns.values()) if (col[this.#cpu] !== undefined) col[this.#cpu] = undefined;
  }

  forEach(callbackfn: (value: V, key: number, map: Map<number, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) callbackfn.call(thisArg, v, k, this);
  }

  *entries(): MapIterator<[number, V]> {
    for (const [k, col] of this.#columns) {
      const v = col[this.#cpu];
      if (v !== undefined) yield [k, v];
    }
  }

  *keys(): MapIterator<number> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'Map';
  }
}

/**
 * One logical CPU.
 *
 * Its CPUID leaves, MSRs and MSR write hooks behave as three `Map`s, but the host keeps every CPU's values in
 * shared per-key columns (see `PerCpuTable`): `cpu.msrs` is this CPU's row. A `Map`'s iteration order is the
 * order in which each key was first set on any CPU of the host.
 */
export class Cpu {
  /** The CPU number (0 … N-1). */
  readonly id: number;
  /** Whether the CPU is online (cpuhp state "active"). */
  online = true;
  /** The CR4 register (only the bits the model uses are meaningful). */
  cr4 = 0;
  /**
   * CPUID leaves by {@link cpuidKey}: sub-leaf 0 of a leaf under the leaf number, the other sub-leaves of an
   * indexed leaf (4, 7, 0xD, …) under `cpuidKey(leaf, index)`. A missing leaf reads as zeros.
   */
  readonly cpuid: Map<number, CpuidRegs>;
  /** Implemented MSRs and their values; accessing a missing one faults (#GP). */
  readonly msrs: Map<number, bigint>;
  /** Write hooks by MSR number, installed by the hardware model. */
  readonly msrWriteHooks: Map<number, MsrWriteHook>;
  readonly #cpuidColumns: Map<number, Array<CpuidRegs | undefined>>;
  readonly #msrColumns: Map<number, Array<bigint | undefined>>;
  readonly #hookColumns: Map<number, Array<MsrWriteHook | undefined>>;
  readonly #tables: CpuTables;
  /** This CPU's index in the columns: its number in the host's tables, 0 in tables of its own. */
  readonly #row: number;

  /**
   * @param id - the CPU number
   * @param tables - @internal the host's tables of every CPU's CPUID leaves, MSRs and hooks, indexed by CPU
   *   number (a CPU made on its own has tables of its own)
   */
  constructor(id: number, tables?: CpuTables) {
    this.id = id;
    const row = tables === undefined ? 0 : id;
    const t = tables ?? new CpuTables(1);
    this.#row = row;
    this.#tables = t;
    this.cpuid = new PerCpuMap(t.cpuid, row);
    this.msrs = new PerCpuMap(t.msrs, row);
    this.msrWriteHooks = new PerCpuMap(t.msrWriteHooks, row);
    this.#cpuidColumns = t.cpuid.columns;
    this.#msrColumns = t.msrs.columns;
    this.#hookColumns = t.msrWriteHooks.columns;
  }

  /** Execute CPUID for `leaf`, sub-leaf `index` (ECX; 0 when omitted). */
  readCpuid(leaf: number, index = 0): CpuidRegs {
    return this.#cpuidColumns.get(index === 0 ? leaf : cpuidKey(leaf, index))?.[this.#row] ?? ZERO_LEAF;
  }

  /** `rdmsr_safe`: the MSR's value, or `undefined` when reading it faults (#GP). */
  rdmsrSafe(msr: number): bigint | undefined {
    return this.#msrColumns.get(msr)?.[this.#row];
  }

  /** `wrmsr_safe`: write an MSR; `false` when the write faults (#GP: unimplemented, or refused by the hardware). */
  wrmsrSafe(msr: number, value: bigint): boolean {
    const row = this.#row;
    const col = this.#msrColumns.get(msr);
    if (col?.[row] === undefined) return false;
    const hook = this.#hookColumns.get(msr)?.[row];
    if (hook !== undefined && !hook(this, msr, value)) return false;
    col[row] = value;
    return true;
  }

  /**
   * The {@link MsrSlot} of `msr` for this CPU's host (the same object for every CPU of the host; a CPU made on
   * its own has its own). Keep it to write or read the MSR without a lookup.
   */
  msrSlot(msr: number): MsrSlot {
    return this.#tables.msrSlot(msr);
  }

  /** {@link Cpu.rdmsrSafe} through a slot. */
  rdmsrSlot(slot: MsrSlot): bigint | undefined {
    if (slot.tables !== this.#tables) return this.rdmsrSafe(slot.msr);
    return slot.values[this.#row];
  }

  /** {@link Cpu.wrmsrSafe} through a slot: the same checks, hook and result. */
  wrmsrSlot(slot: MsrSlot, value: bigint): boolean {
    if (slot.tables !== this.#tables) return this.wrmsrSafe(slot.msr, value);
    const row = this.#row;
    const values = slot.values;
    if (values[row] === undefined) return false;
    const hook = slot.hooks[row];
    if (hook !== undefined && !hook(this, slot.msr, value)) return false;
    values[row] = value;
    return true;
  }
}

/**
 * The key of CPUID leaf `leaf`, sub-leaf `index` in {@link Cpu.cpuid}: the leaf number for sub-leaf 0, and
 * `leaf + index × 2^32` for the others (a leaf number is 32 bits, so keys never collide).
 * @param leaf - EAX of CPUID
 * @param index - ECX of CPUID (the sub-leaf)
 */
export function cpuidKey(leaf: number, index: number): number {
  return (leaf >>> 0) + (index >>> 0) * 0x1_0000_0000;
}

const ZERO_LEAF: CpuidRegs = Object.freeze({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
