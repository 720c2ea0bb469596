/**
 * CPU hotplug: an ordered list of states with startup and teardown callbacks (kernel/cpu.c).
 *
 * Bringing a CPU up runs the startup callbacks in state order; if one fails, the teardowns of the states
 * already done run in reverse and the CPU stays offline (`cpuhp_up_callbacks` → `undo_cpu_up`). Taking a
 * CPU down runs the teardowns in reverse order. Installing a state with callbacks on the online CPUs
 * (`cpuhp_setup_state`) rolls back on the first failure (`cpuhp_rollback_install`).
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import { makeUndo, type Unsubscribe } from '../events.js';
import type { Host } from './host.js';

/** Callbacks of a hotplug state. A startup throws a {@link KernelError} to refuse the CPU. */
export interface CpuhpCallbacks {
  /** Run on a CPU coming online. */
  startup?(cpu: number): void;
  /** Run on a CPU going offline. */
  teardown?(cpu: number): void;
}

/**
 * The fixed, single-owner states the model knows, in the order they run at startup
 * (include/linux/cpuhotplug.h): `CPUHP_AP_KVM_ONLINE` comes before the dynamic states, and
 * `CPUHP_AP_ACTIVE` (the scheduler: threads leave a CPU before anything else is torn down) last.
 */
export const CPUHP_FIXED_STATES = {
  /** KVM's state; a second owner gets EBUSY (`cpuhp_store_callbacks`). */
  CPUHP_AP_KVM_ONLINE: 10,
  /** The scheduler's activation state. */
  CPUHP_AP_ACTIVE: 1000,
} as const;

/** A fixed state name. */
export type CpuhpFixedState = keyof typeof CPUHP_FIXED_STATES;

/** `CPUHP_AP_ONLINE_DYN`: ask for a dynamic state. */
export const CPUHP_AP_ONLINE_DYN = 'CPUHP_AP_ONLINE_DYN';
const DYN_FIRST = 100;
/** `CPUHP_AP_ONLINE_DYN_END - CPUHP_AP_ONLINE_DYN`: 40 dynamic states. */
const DYN_COUNT = 40;

interface State {
  readonly order: number;
  readonly name: string;
  readonly slot: string;
  readonly cbs: CpuhpCallbacks;
}

/** Options of {@link Cpuhp.setup}. */
export interface CpuhpSetupOptions {
  /** The slot: a fixed state, or `CPUHP_AP_ONLINE_DYN` (default) for a dynamic one. */
  readonly slot?: CpuhpFixedState | typeof CPUHP_AP_ONLINE_DYN;
  /** Run startup on every online CPU now and teardown on removal (`cpuhp_setup_state`); false = `_nocalls`. Default true. */
  readonly invoke?: boolean;
}

/** The hotplug state machine of a host. */
export class Cpuhp {
  readonly #host: Host;
  #states: State[] = [];

  /** @internal */
  constructor(host: Host) {
    this.#host = host;
  }

  /**
   * `cpuhp_setup_state`: install a state.
   * @throws {@link KernelError} EBUSY (fixed slot taken), ENOSPC (no dynamic slot left), or the first
   * startup failure (after rolling back the CPUs already done).
   */
  setup(name: string, cbs: CpuhpCallbacks, opts: CpuhpSetupOptions = {}): Unsubscribe {
    // One kernel operation (the startups may enable CPUs): listeners see the state installed or not at all.
    return this.#host.events.op(() => this.#setup(name, cbs, opts));
  }

  #setup(name: string, cbs: CpuhpCallbacks, opts: CpuhpSetupOptions): Unsubscribe {
    const slot = opts.slot ?? CPUHP_AP_ONLINE_DYN;
    const invoke = opts.invoke ?? true;
    let order: number;
    if (slot === CPUHP_AP_ONLINE_DYN) {
      order = -1;
      for (let o = DYN_FIRST; o < DYN_FIRST + DYN_COUNT; o++) {
        if (!this.#states.some((s) => s.order === o)) {
          order = o;
          break;
        }
      }
      if (order < 0) throw new KernelError('ENOSPC', 'cpuhp_setup_state', 'no dynamic hotplug state left');
    } else {
      order = CPUHP_FIXED_STATES[slot];
      if (order === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `unknown cpuhp slot ${String(slot)}`);
      const taken = this.#states.find((s) => s.order === order);
      if (taken !== undefined) {
        throw new KernelError('EBUSY', 'cpuhp_setup_state', `${slot} is already taken by "${taken.name}"`);
      }
    }
    const state: State = { order, name, slot, cbs };
    if (invoke && cbs.startup !== undefined) {
      const done: number[] = [];
      for (const cpu of this.#host.cpus) {
        if (!cpu.online) continue;
        try {
          cbs.startup(cpu.id);
          done.push(cpu.id);
        } catch (e) {
          // cpuhp_rollback_install: the CPUs already done are torn down in ascending order (for_each_present_cpu).
          for (const c of done) cbs.teardown?.(c);
          throw e;
        }
      }
    }
    this.#states = [...this.#states, state].sort((a, b) => a.order - b.order);
    return makeUndo(() =>
      this.#host.events.op(() => {
        // cpuhp_remove_state: teardown on every online CPU, then free the slot.
        if (invoke && cbs.teardown !== undefined) {
          for (const cpu of this.#host.cpus) if (cpu.online) cbs.teardown(cpu.id);
        }
        this.#states = this.#states.filter((s) => s !== state);
      }),
    );
  }

  /** The installed states in startup order (name and slot). */
  states(): Array<{ readonly name: string; readonly slot: string }> {
    return this.#states.map((s) => ({ name: s.name, slot: s.slot }));
  }

  /** @internal Run the startups for `cpu`; roll back and rethrow on failure. */
  runStartup(cpu: number): void {
    const done: State[] = [];
    for (const s of this.#states) {
      try {
        s.cbs.startup?.(cpu);
        done.push(s);
      } catch (e) {
        for (const d of done.reverse()) d.cbs.teardown?.(cpu);
        throw e;
      }
    }
  }

  /** @internal Run the teardowns for `cpu` in reverse order. */
  runTeardown(cpu: number): void {
    for (let i = this.#states.length - 1; i >= 0; i--) this.#states[i]?.cbs.teardown?.(cpu);
  }
}
