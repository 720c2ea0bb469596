/**
 * Power management: syscore ops (kernel/power, drivers/base/syscore.c) and the reboot notifier chain
 * (kernel/reboot.c).
 *
 * `syscore_suspend` runs the ops in reverse registration order on the boot CPU after the other CPUs went
 * offline; `syscore_resume` runs them in registration order; `syscore_shutdown` in reverse order.
 *
 * The order of a suspend (kernel/power/suspend.c): `suspend_prepare` freezes the tasks (the freezers below, then
 * the scheduler stops every thread where it is), `suspend_enter` takes the non-boot CPUs down
 * (`freeze_secondary_cpus`) and runs `syscore_suspend`; on the way back `syscore_resume`, the CPUs come up
 * (`thaw_secondary_cpus`), and only then `suspend_finish` thaws the tasks. Frozen tasks are not on a runqueue
 * while their CPUs go down, so they keep their CPU affinity across the suspend (see `Scheduler.thaw`).
 *
 * @module
 */
import { makeUndo, type Unsubscribe } from '../events.js';

/** `struct syscore_ops`. `suspend` may throw to abort the suspend. */
export interface SyscoreOps {
  /** A name for messages. */
  readonly name: string;
  /** Runs on the boot CPU, last thing before sleeping. */
  suspend?(): void;
  /** Runs on the boot CPU, first thing after waking. */
  resume?(): void;
  /** Runs at reboot / power-off. */
  shutdown?(): void;
}

/** A reboot notifier (`register_reboot_notifier`); higher priority runs first. */
export interface RebootNotifier {
  /** A name for messages. */
  readonly name: string;
  /** Priority (default 0). */
  readonly priority?: number;
  /** Called with the reason. */
  notify(reason: 'restart' | 'halt' | 'power-off'): void;
}

/**
 * A task freezer participant: what must stop before a suspend (kernel/power/process.c
 * `freeze_processes`: every task is sent a fake signal; a vCPU thread leaves KVM_RUN and guest mode).
 */
export interface Freezer {
  /** A name for messages. */
  readonly name: string;
  /** Stop: leave guest mode on every CPU (runs before the scheduler freezes the threads). */
  freeze(): void;
  /** Continue after resume (runs after the scheduler thawed the threads). */
  thaw?(): void;
}

/** The syscore list, the reboot notifier chain and the task freezers. */
export class PowerHooks {
  // Each list is replaced (frozen), never changed in place: callers get the list itself and cannot alter it.
  #syscore: readonly SyscoreOps[] = Object.freeze([]);
  #reboot: readonly RebootNotifier[] = Object.freeze([]);
  #freezers: readonly Freezer[] = Object.freeze([]);

  /** Register a task-freezer participant (run first at suspend, last at resume). */
  registerFreezer(f: Freezer): Unsubscribe {
    this.#freezers = Object.freeze([...this.#freezers, f]);
    return makeUndo(() => {
      this.#freezers = Object.freeze(this.#freezers.filter((x) => x !== f));
    });
  }

  /** Registered freezers, in registration order. */
  freezers(): readonly Freezer[] {
    return this.#freezers;
  }

  /** `register_syscore_ops`. */
  registerSyscore(ops: SyscoreOps): Unsubscribe {
    this.#syscore = Object.freeze([...this.#syscore, ops]);
    return makeUndo(() => {
      this.#syscore = Object.freeze(this.#syscore.filter((o) => o !== ops));
    });
  }

  /** `register_reboot_notifier`. */
  registerRebootNotifier(n: RebootNotifier): Unsubscribe {
    const prio = (x: RebootNotifier): number => x.priority ?? 0;
    // notifier_chain_register: insert before the first entry of lower priority.
    const i = this.#reboot.findIndex((x) => prio(x) < prio(n));
    this.#reboot = Object.freeze(i < 0 ? [...this.#reboot, n] : [...this.#reboot.slice(0, i), n, ...this.#reboot.slice(i)]);
    return makeUndo(() => {
      this.#reboot = Object.freeze(this.#reboot.filter((x) => x !== n));
    });
  }

  /** Registered syscore ops, in registration order. */
  syscore(): readonly SyscoreOps[] {
    return this.#syscore;
  }

  /** Registered reboot notifiers, in call order. */
  rebootNotifiers(): readonly RebootNotifier[] {
    return this.#reboot;
  }
}
