/**
 * Whether the machine has a CPU to spare — the condition under which the bridge and the preload library spin for
 * their next message instead of sleeping (`request-fifo.ts`, "spin, then block"; the library's `spin_enter`).
 *
 * Spinning pays on an idle machine, where a sleeping thread's wake-up is the wake-up of an idle CPU (in a VM, of a
 * vCPU that sleeps in the hypervisor). On a busy one it does harm: the spinner holds a CPU the other side needs to
 * answer it (measured at load 12 on 2 CPUs: both sides' spins ran to their end on every call and a KVM_GET_REGS took
 * 123 µs instead of 17–19), and a wake-up does not wait for an idle CPU anyway. So both sides spin only while no
 * more threads are runnable (the reader included) than there are CPUs, from `/proc/loadavg` ("0.52 0.58 0.59
 * 2/389 12345": three load averages, then runnable/all threads), read at most every {@link SPARE_CPU_CHECK_MS}.
 * The load averages are not used: they lag by a minute, and a benchmark's own spinning threads raise them. (At
 * load 13 on this 2-CPU machine, 300 samples 10 ms apart counted 8 to 26 runnable threads: never a CPU to spare.)
 *
 * **Spins that pay.** The count says no in the case that matters most: a live migration's downtime, where the
 * stopped source QEMU, the bridge and the destination QEMU are busy at once on 2 CPUs — and there spinning paid on
 * the quiet machine (QEMU's downtime 6 ms median with the spin forced against 7.5 ms with the gate, docs/performance.md,
 * session 9). What harms on a busy machine is a spin that runs to its end because the other side has no CPU to
 * answer on; a spin that catches its message is the saving it exists for. So when the count says no, each side asks
 * {@link SpinCredit}: it spins while its recent spins caught their message (each catch gives {@link SPIN_CREDIT}
 * more spins, each spin that runs out halves what is left), and with no credit it tries one spin in
 * {@link SPIN_PROBE_EVERY} to learn whether spinning pays again. On a machine where the other side waits for a CPU,
 * that is a few budgets of CPU per catch; where it answers in time, every call spins.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** How long one reading of `/proc/loadavg` is used before the next (ms). */
export const SPARE_CPU_CHECK_MS = 10;

/**
 * Whether `/proc/loadavg`'s text says a machine of `cpus` CPUs has one to spare: runnable threads (the reader
 * included) at most `cpus`. False for text it cannot parse.
 */
export function spareCpuIn(loadavg: string, cpus: number): boolean {
  const m = /^\S+ \S+ \S+ (\d+)\//.exec(loadavg);
  return m !== null && Number(m[1]) <= cpus;
}

/** {@link spareCpuIn} of this machine, read again at most every {@link SPARE_CPU_CHECK_MS}. */
export class SpareCpu {
  readonly #cpus: number;
  readonly #read: () => string;
  #at = -Infinity;
  #spare = false;

  /**
   * @param read - reads `/proc/loadavg` (tests give their own text)
   * @param cpus - the CPU count (default: `os.availableParallelism()`)
   */
  constructor(read: () => string = () => readFileSync('/proc/loadavg', 'latin1'), cpus: number = availableParallelism()) {
    this.#read = read;
    this.#cpus = cpus;
  }

  /** Whether the machine has a CPU to spare now (as last read, at most {@link SPARE_CPU_CHECK_MS} ago). */
  now(): boolean {
    const t = performance.now();
    if (t - this.#at < SPARE_CPU_CHECK_MS) return this.#spare;
    this.#at = t;
    try {
      this.#spare = spareCpuIn(this.#read(), this.#cpus);
    } catch {
      this.#spare = false; // no /proc/loadavg: do not spin
    }
    return this.#spare;
  }
}

/** How many spins one spin that caught its message allows when the runnable count says no ({@link SpinCredit}). */
export const SPIN_CREDIT = 8;
/** With no credit, one call in this many spins anyway, to learn whether spinning pays ({@link SpinCredit}); a power of 2. */
export const SPIN_PROBE_EVERY = 16;

/**
 * Whether spinning paid lately (module notes, "Spins that pay"): the condition under which a side spins when the
 * runnable count ({@link SpareCpu}) says no. The preload library keeps the same in C (`spin_credit`).
 */
export class SpinCredit {
  #credit = 0;
  #calls = 0;

  /** Whether to spin now: while there is credit, else once in {@link SPIN_PROBE_EVERY} calls. */
  mayTry(): boolean {
    if (this.#credit > 0) return true;
    this.#calls = (this.#calls + 1) & (SPIN_PROBE_EVERY - 1);
    return this.#calls === 0;
  }

  /** A spin ended: `caught` when its message came within the budget (credit {@link SPIN_CREDIT}), else it halves. */
  record(caught: boolean): void {
    this.#credit = caught ? SPIN_CREDIT : this.#credit >> 1;
  }

  /** The spins left before the next probe (for tests). */
  get credit(): number {
    return this.#credit;
  }
}
