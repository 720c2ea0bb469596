/**
 * Vendor-neutral per-CPU bookkeeping used by the AMD model; nothing here knows about SVM.
 *
 * - {@link resolvePerCpu}: host-wide options with per-CPU overrides (`cpus: { 2: {...} }`) → one resolved
 *   options object per CPU (CPUs without an override share the host object, so 8,192 CPUs cost one array);
 * - {@link FaultKnobs}: the `'once' | 'always' | 'off'` fault-injection bookkeeping per CPU;
 * - {@link CounterTable}: named per-CPU counters in one `Float64Array`;
 * - {@link checkCpuIndex}: the "is this a CPU of the host" argument check.
 *
 * The Intel model needs exactly the same mechanisms; they are written without vendor knowledge so they can
 * move to `@vac/core` unchanged and be shared.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import type { FaultMode } from '@vac/core';

/**
 * Throw a {@link UsageError} unless `cpu` is an integer in [0, `nrCpus`).
 *
 * @param who - the operation, for the message (e.g. `'svm.vmrun'`)
 */
export function checkCpuIndex(who: string, cpu: number, nrCpus: number): void {
  if (!(Number.isInteger(cpu) && cpu >= 0 && cpu < nrCpus)) {
    throw new UsageError(`${who}: no CPU ${String(cpu)} (the host has CPUs 0 … ${nrCpus - 1})`);
  }
}

/**
 * Merge host-wide options with per-CPU overrides.
 *
 * @param who - the plug-in, for error messages (e.g. `'amd()'`)
 * @param base - the fully resolved host-wide options
 * @param overrides - `cpus: { n: Partial<T> }`; keys must be CPU numbers of this host
 * @param nrCpus - the number of CPUs of the host
 * @returns one object per CPU; CPUs without an override get `base` itself (same object)
 * @throws UsageError when an override names a CPU the host does not have
 */
export function resolvePerCpu<T extends object>(
  who: string,
  base: T,
  overrides: Readonly<Record<number, Partial<T>>> | undefined,
  nrCpus: number,
): T[] {
  const out = new Array<T>(nrCpus).fill(base);
  if (overrides === undefined) return out;
  for (const key of Object.keys(overrides)) {
    const cpu = Number(key);
    if (!(String(cpu) === key && Number.isInteger(cpu) && cpu >= 0 && cpu < nrCpus)) {
      throw new UsageError(`${who}: cpus: there is no CPU ${key} on a host with ${nrCpus} CPUs`);
    }
    const override = overrides[cpu];
    if (override === undefined) continue;
    const merged: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(override)) if (v !== undefined) merged[k] = v;
    out[cpu] = merged as T;
  }
  return out;
}

const MODE_OFF = 0;
const MODE_ONCE = 1;
const MODE_ALWAYS = 2;
const MODES: readonly FaultMode[] = ['off', 'once', 'always'];

/** Per-CPU injected-fault modes: `'once'` fires at the next opportunity and disarms, `'always'` fires every time. */
export class FaultKnobs {
  readonly #modes: Uint8Array;

  /**
   * @param nrCpus - the number of CPUs of the host
   */
  constructor(nrCpus: number) {
    this.#modes = new Uint8Array(nrCpus);
  }

  /** Arm (or disarm with `'off'`) the fault of `cpu`. */
  set(cpu: number, mode: FaultMode): void {
    const m = MODES.indexOf(mode);
    if (m < 0) throw new UsageError(`fault mode must be 'once', 'always' or 'off', got ${String(mode)}`);
    this.#modes[cpu] = m;
  }

  /** The current mode of `cpu`. */
  mode(cpu: number): FaultMode {
    return MODES[this.#modes[cpu] ?? MODE_OFF] ?? 'off';
  }

  /** Whether the fault fires now on `cpu`; a `'once'` fault disarms itself when it fires. */
  fire(cpu: number): boolean {
    const m = this.#modes[cpu];
    if (m === MODE_OFF || m === undefined) return false;
    if (m === MODE_ONCE) this.#modes[cpu] = MODE_OFF;
    return m === MODE_ONCE || m === MODE_ALWAYS;
  }
}

/**
 * Named per-CPU counters stored in one `Float64Array` (exact up to 2^53). Hot paths use the numeric slot of
 * a name ({@link CounterTable.slot}) once, then {@link CounterTable.add}.
 *
 * @typeParam Name - the counter names
 */
export class CounterTable<Name extends string> {
  /** The counter names, in slot order. */
  readonly names: readonly Name[];
  readonly #stride: number;
  readonly #values: Float64Array;

  /**
   * @param names - the counter names (slot = index in this list)
   * @param nrCpus - the number of CPUs
   */
  constructor(names: readonly Name[], nrCpus: number) {
    this.names = names;
    this.#stride = names.length;
    this.#values = new Float64Array(names.length * nrCpus);
  }

  /** The slot of a counter name. */
  slot(name: Name): number {
    const i = this.names.indexOf(name);
    if (i < 0) throw new UsageError(`unknown counter '${name}'`);
    return i;
  }

  /** Add `by` (default 1) to counter `slot` of `cpu`. */
  add(cpu: number, slot: number, by = 1): void {
    const i = cpu * this.#stride + slot;
    this.#values[i] = (this.#values[i] ?? 0) + by;
  }

  /** The value of counter `slot` of `cpu`. */
  value(cpu: number, slot: number): number {
    return this.#values[cpu * this.#stride + slot] ?? 0;
  }

  /** All counters of `cpu`, as a fresh frozen record. */
  get(cpu: number): Readonly<Record<Name, number>> {
    const out = {} as Record<Name, number>;
    const base = cpu * this.#stride;
    for (let i = 0; i < this.#stride; i++) out[this.names[i] as Name] = this.#values[base + i] ?? 0;
    return Object.freeze(out);
  }

  /** The sum of one counter over all CPUs. */
  total(slot: number): number {
    let sum = 0;
    for (let i = slot; i < this.#values.length; i += this.#stride) sum += this.#values[i] ?? 0;
    return sum;
  }
}
