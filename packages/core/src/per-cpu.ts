/**
 * Vendor-neutral per-CPU bookkeeping shared by the hardware models (`@vac/vmx`, `@vac/svm`); nothing here
 * knows about VMX or SVM.
 *
 * - {@link checkCpuIndex}, {@link cpuAt}, {@link noSuchCpu}: the "is this a CPU of the host" argument check;
 *   the check is a compare (or one array read), the error is built apart, off the hot path;
 * - {@link resolvePerCpu}: host-wide options with per-CPU overrides (`cpus: { 2: {...} }`) → one resolved
 *   options object per CPU (CPUs without an override share the host object, so 8,192 CPUs cost one array);
 * - {@link FaultKnobs}, {@link FAULT_MODES}, {@link isFaultMode}: the `'once' | 'always' | 'off'`
 *   fault-injection bookkeeping per CPU;
 * - {@link CounterTable}: named per-CPU counters in one `Float64Array`.
 *
 * These are plumbing for hardware models, not part of the API a program using a host needs: they are exported from
 * `@vac/core/internal` only.
 *
 * @module
 */
import { UsageError } from './errors.js';
import type { FaultMode } from './hardware.js';

/**
 * The {@link UsageError} for a CPU number the host does not have. Kept out of line so that callers' checks
 * stay a compare: `if (!(cpu >= 0 && cpu < n)) throw noSuchCpu(who, cpu, n)`.
 *
 * @param who - the operation or component, for the message (e.g. `'svm.vmrun'`, `'vmx'`)
 * @param cpu - the CPU number that was given
 * @param nrCpus - the number of CPUs of the host
 * @returns the error (the caller throws it)
 */
export function noSuchCpu(who: string, cpu: number, nrCpus: number): UsageError {
  return new UsageError('ERR_NO_SUCH_CPU', `${who}: no CPU ${String(cpu)} (the host has CPUs 0 … ${nrCpus - 1})`);
}

/**
 * Throw a {@link UsageError} (see {@link noSuchCpu}) unless `cpu` is an integer in [0, `nrCpus`).
 *
 * @param who - the operation, for the message (e.g. `'svm.vmrun'`)
 * @param cpu - the CPU number to check
 * @param nrCpus - the number of CPUs of the host
 */
export function checkCpuIndex(who: string, cpu: number, nrCpus: number): void {
  if (!(Number.isInteger(cpu) && cpu >= 0 && cpu < nrCpus)) throw noSuchCpu(who, cpu, nrCpus);
}

/**
 * The entry of a per-CPU array for `cpu` (typically the host's `Cpu` objects): one array read and one compare
 * when `cpu` is valid; a {@link UsageError} (see {@link noSuchCpu}) when the array has no entry for it.
 *
 * @typeParam T - the entry type (`undefined` entries count as missing)
 * @param who - the operation or component, for the message
 * @param perCpu - one entry per CPU of the host
 * @param cpu - the CPU number
 * @returns the entry of `cpu`
 */
export function cpuAt<T>(who: string, perCpu: readonly T[], cpu: number): T {
  const c = perCpu[cpu];
  if (c === undefined) throw noSuchCpu(who, cpu, perCpu.length);
  return c;
}

/**
 * Merge host-wide options with per-CPU overrides.
 *
 * @typeParam T - the options of one CPU
 * @param who - where the overrides are, for error messages (e.g. `'amd(): cpus'`)
 * @param base - the fully resolved host-wide options
 * @param overrides - `cpus: { n: Partial<T> }`; keys must be CPU numbers of this host; `undefined` values
 *   do not override
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
      throw new UsageError('ERR_NO_SUCH_CPU', `${who}: there is no CPU ${key} on a host with ${nrCpus} CPUs`);
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

/** The fault modes, in {@link FaultKnobs}' code order (`'off'` = 0, `'once'` = 1, `'always'` = 2). */
export const FAULT_MODES: readonly FaultMode[] = Object.freeze(['off', 'once', 'always']);

/**
 * Whether `value` is a {@link FaultMode} (for validating options).
 *
 * @param value - anything
 * @returns `true` for `'once'`, `'always'` and `'off'`
 */
export function isFaultMode(value: unknown): value is FaultMode {
  return (FAULT_MODES as readonly unknown[]).includes(value);
}

/**
 * Per-CPU injected-fault modes: `'once'` fires at the next opportunity and disarms, `'always'` fires every
 * time. One byte per CPU; {@link FaultKnobs.fire} is a typed-array read (and a write when a `'once'` fault
 * fires).
 */
export class FaultKnobs {
  readonly #modes: Uint8Array;
  readonly #who: string;

  /**
   * @param nrCpus - the number of CPUs of the host
   * @param who - a prefix for the message of a bad mode (e.g. `'vmx'`); none by default
   */
  constructor(nrCpus: number, who = '') {
    this.#modes = new Uint8Array(nrCpus);
    this.#who = who === '' ? '' : `${who}: `;
  }

  /**
   * Arm (or disarm with `'off'`) the fault of `cpu`. The caller checks `cpu`.
   *
   * @throws UsageError for a mode that is not a {@link FaultMode}
   */
  set(cpu: number, mode: FaultMode): void {
    const m = FAULT_MODES.indexOf(mode);
    if (m < 0) throw new UsageError('ERR_INVALID_ARG', `${this.#who}fault mode must be 'once', 'always' or 'off', got ${String(mode)}`);
    this.#modes[cpu] = m;
  }

  /** The current mode of `cpu`. */
  mode(cpu: number): FaultMode {
    return FAULT_MODES[this.#modes[cpu] ?? MODE_OFF] ?? 'off';
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
 * Named per-CPU counters stored in one `Float64Array` (exact up to 2^53), CPU-major. Hot paths compute the
 * numeric slot of a name once (its index in the names, or {@link CounterTable.slot}), then call
 * {@link CounterTable.add}: one typed-array increment, no allocation, no CPU check (the caller checks `cpu`).
 *
 * @typeParam Name - the counter names
 */
export class CounterTable<Name extends string> {
  /** The counter names, in slot order. */
  readonly names: readonly Name[];
  /**
   * The storage, CPU-major: counter `slot` of `cpu` is `values[cpu * names.length + slot]`. A hot path may
   * keep this array and increment it in place (no call, no extra loads); everything else goes through the
   * methods.
   */
  readonly values: Float64Array;
  readonly #stride: number;

  /**
   * @param names - the counter names (slot = index in this list)
   * @param nrCpus - the number of CPUs
   */
  constructor(names: readonly Name[], nrCpus: number) {
    this.names = names;
    this.#stride = names.length;
    this.values = new Float64Array(names.length * nrCpus);
  }

  /**
   * The slot of a counter name.
   *
   * @throws UsageError for a name not in {@link CounterTable.names}
   */
  slot(name: Name): number {
    const i = this.names.indexOf(name);
    if (i < 0) throw new UsageError('ERR_UNKNOWN_NAME', `unknown counter '${name}'`);
    return i;
  }

  /** Add `by` (default 1) to counter `slot` of `cpu`. */
  add(cpu: number, slot: number, by = 1): void {
    this.values[cpu * this.#stride + slot]! += by;
  }

  /** The value of counter `slot` of `cpu`. */
  value(cpu: number, slot: number): number {
    return this.values[cpu * this.#stride + slot] ?? 0;
  }

  /** All counters of `cpu`, as a fresh frozen record. */
  get(cpu: number): Readonly<Record<Name, number>> {
    const out = {} as Record<Name, number>;
    const base = cpu * this.#stride;
    for (let i = 0; i < this.#stride; i++) out[this.names[i] as Name] = this.values[base + i] ?? 0;
    return Object.freeze(out);
  }

  /** The sum of one counter over all CPUs. */
  total(slot: number): number {
    let sum = 0;
    for (let i = slot; i < this.values.length; i += this.#stride) sum += this.values[i] ?? 0;
    return sum;
  }

  /** Every counter summed over all CPUs, as a fresh frozen record. */
  totals(): Readonly<Record<Name, number>> {
    const out = {} as Record<Name, number>;
    for (let i = 0; i < this.#stride; i++) out[this.names[i] as Name] = this.total(i);
    return Object.freeze(out);
  }
}
