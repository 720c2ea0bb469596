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
