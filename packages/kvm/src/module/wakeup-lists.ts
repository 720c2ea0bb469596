/**
 * The per-CPU lists of blocked vCPUs a posted-interrupt wakeup looks at: Linux's `wakeup_vcpus_on_cpu`
 * (arch/x86/kvm/vmx/posted_intr.c: `pi_enable_wakeup_handler` adds a vCPU that blocks to the list of the CPU whose
 * wakeup vector it waits on, `pi_wakeup_handler` walks only that CPU's list). A wakeup costs what is blocked on its
 * CPU, not what the host holds.
 *
 * The lists are intrusive (the links live in the vCPUs, as `list_head`s do): adding and removing are O(1), with no
 * hashing, and a vCPU is in at most one list.
 *
 * @module
 */

/** What a list holds: an object with room for its links. */
export interface WakeupNode<T> {
  /** @internal The next vCPU on the same CPU's list. */
  wakeupNext: T | undefined;
  /** @internal The previous one. */
  wakeupPrev: T | undefined;
  /** @internal The CPU whose list holds it, or -1. */
  wakeupCpu: number;
}

/** One list per CPU, in the order the vCPUs blocked (`list_add_tail`). */
export class WakeupLists<T extends WakeupNode<T>> {
  readonly #cpus: number;
  /** Per CPU, made when a vCPU first blocks (a module whose vCPUs never block costs nothing per CPU). */
  #heads: Array<T | undefined> | undefined;
  #tails: Array<T | undefined> = [];
  #size = 0;

  /** @param cpus - the number of CPUs */
  constructor(cpus: number) {
    this.#cpus = cpus;
  }

  /** How many vCPUs are on some list. */
  get size(): number {
    return this.#size;
  }

  /** The first vCPU blocked on `cpu` (follow `wakeupNext` for the others). */
  first(cpu: number): T | undefined {
    const heads = this.#heads;
    return heads === undefined ? undefined : heads[cpu];
  }

  /** Put `node` at the end of `cpu`'s list (it must be on none). */
  add(cpu: number, node: T): void {
    let heads = this.#heads;
    if (heads === undefined) {
      // Packed arrays (no holes): the wakeup looks its CPU up on an interrupt path.
      heads = [];
      const tails: Array<T | undefined> = [];
      for (let i = 0; i < this.#cpus; i++) {
        heads.push(undefined);
        tails.push(undefined);
      }
      this.#heads = heads;
      this.#tails = tails;
    }
    const tail = this.#tails[cpu];
    node.wakeupCpu = cpu;
    node.wakeupPrev = tail;
    node.wakeupNext = undefined;
    if (tail === undefined) heads[cpu] = node;
    else tail.wakeupNext = node;
    this.#tails[cpu] = node;
    this.#size++;
  }

  /** Take `node` off its list (nothing when it is on none). */
  remove(node: T): void {
    const cpu = node.wakeupCpu;
    const heads = this.#heads;
    if (cpu < 0 || heads === undefined) return;
    const { wakeupPrev: prev, wakeupNext: next } = node;
    if (prev === undefined) heads[cpu] = next;
    else prev.wakeupNext = next;
    if (next === undefined) this.#tails[cpu] = prev;
    else next.wakeupPrev = prev;
    node.wakeupPrev = undefined;
    node.wakeupNext = undefined;
    node.wakeupCpu = -1;
    this.#size--;
  }
}
