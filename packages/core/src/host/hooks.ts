/**
 * The kernel hooks that have exactly one owner, and how Linux treats a second one (docs/spec.md §1):
 *
 * - perf guest-info callbacks (`perf_register_guest_info_callbacks`, kernel/events/core.c): a second
 *   registration WARNs and is ignored; unregistering callbacks that are not the registered ones WARNs.
 * - the posted-interrupt wakeup handler (`kvm_set_posted_intr_wakeup_handler`, arch/x86/kernel/irq.c):
 *   the last writer wins, nothing is checked.
 * - the emergency virtualization-disable callback (`cpu_emergency_register_virt_callback`,
 *   arch/x86/kernel/reboot.c): a second registration WARNs and is ignored.
 *
 * The host also lets a user inject the hardware events that reach these hooks: a PMI, a posted-interrupt
 * wakeup IPI, an NMI.
 *
 * @module
 */
import { makeUndo, type Unsubscribe } from '../events.js';
import type { Host } from './host.js';

/** `PERF_GUEST_ACTIVE`: the PMI hit while a guest was running. */
export const PERF_GUEST_ACTIVE = 0x01;
/** `PERF_GUEST_USER`: … and the guest was in user mode. */
export const PERF_GUEST_USER = 0x02;

/** `struct perf_guest_info_callbacks`, with the CPU made explicit (the kernel calls them on that CPU). */
export interface PerfGuestCallbacks {
  /** Who registered them (for messages). */
  readonly name: string;
  /** `state()`: 0 for a host PMI, else `PERF_GUEST_ACTIVE` (| `PERF_GUEST_USER`). */
  state(cpu: number): number;
  /** `get_ip()`: the guest's RIP. */
  getIp(cpu: number): bigint;
  /** `handle_intel_pt_intr()` (optional). */
  handleIntelPtIntr?(cpu: number): number;
  /**
   * Not in Linux: called once for each PMI perf took for a guest (after `state()` said so and `getIp()`): the
   * NMI-induced VM exit is accounted here, once, since `state()` is a pure question perf may ask several times per
   * sample. Returns who the PMI was attributed to, for the model's reports.
   */
  attribute?(cpu: number): string | undefined;
}

/** What perf saw for one injected PMI. */
export interface PmiResult {
  /** The CPU it was raised on. */
  readonly cpu: number;
  /** The perf guest state (0 = host PMI). */
  readonly state: number;
  /** The guest RIP when the state is non-zero. */
  readonly ip: bigint | undefined;
  /** Whose callbacks answered (`undefined` when none are registered). */
  readonly callbacks: string | undefined;
  /** Who the PMI was attributed to (a KVM module and vCPU), if anyone. */
  readonly attributedTo: string | undefined;
}

/** A posted-interrupt wakeup handler; returns what it woke, for reports. */
export type PostedIntrWakeupHandler = (cpu: number) => readonly string[];

/** The emergency virtualization-disable callback (called on every CPU by the crash path). */
export type EmergencyVirtCallback = (cpu: number) => void;

/** An NMI handler that may claim an NMI (e.g. an NMI-induced VM exit); returns the claimant or undefined. */
export type NmiHandler = (cpu: number) => string | undefined;

/** The single-owner hooks of a host. */
export class KernelHooks {
  readonly #host: Host;
  #perf: PerfGuestCallbacks | undefined;
  #piWakeup: PostedIntrWakeupHandler | undefined;
  #emergency: EmergencyVirtCallback | undefined;
  #nmiHandlers: NmiHandler[] = [];

  /** @internal */
  constructor(host: Host) {
    this.#host = host;
  }

  /**
   * `perf_register_guest_info_callbacks`: WARN and ignore if callbacks are already registered.
   * @returns the undo, `perf_unregister_guest_info_callbacks(cbs)` (which WARNs if the registration was ignored, as
   * the module that registered second does on Linux when it unloads)
   */
  registerPerfGuestCallbacks(cbs: PerfGuestCallbacks): Unsubscribe {
    if (this.#perf !== undefined) {
      this.#host.warn({ source: 'perf', message: `perf_register_guest_info_callbacks: ${cbs.name}: callbacks of ${this.#perf.name} already registered, ignored` });
    } else {
      this.#perf = cbs;
    }
    return makeUndo(() => this.unregisterPerfGuestCallbacks(cbs));
  }

  /** `perf_unregister_guest_info_callbacks`: WARN and ignore if `cbs` are not the registered ones. */
  unregisterPerfGuestCallbacks(cbs: PerfGuestCallbacks): void {
    if (this.#perf !== cbs) {
      this.#host.warn({ source: 'perf', message: `perf_unregister_guest_info_callbacks: ${cbs.name}: not the registered callbacks, ignored` });
      return;
    }
    this.#perf = undefined;
  }

  /** The registered perf guest callbacks' owner name, if any. */
  get perfGuestCallbacks(): string | undefined {
    return this.#perf?.name;
  }

  /**
   * `kvm_set_posted_intr_wakeup_handler`: the last writer wins; `undefined` restores the dummy handler.
   * @returns the undo: `kvm_set_posted_intr_wakeup_handler(NULL)`, whoever wrote last (as a module does at unload)
   */
  setPostedIntrWakeupHandler(h: PostedIntrWakeupHandler | undefined): Unsubscribe {
    this.#piWakeup = h;
    return makeUndo(() => {
      this.#piWakeup = undefined;
    });
  }

  /** Whether a (non-dummy) posted-interrupt wakeup handler is installed. */
  get hasPostedIntrWakeupHandler(): boolean {
    return this.#piWakeup !== undefined;
  }

  /**
   * `cpu_emergency_register_virt_callback`: WARN and ignore if one is registered.
   * @returns the undo, `cpu_emergency_unregister_virt_callback(cb)` (which WARNs if the registration was ignored)
   */
  registerEmergencyVirtCallback(cb: EmergencyVirtCallback): Unsubscribe {
    if (this.#emergency !== undefined) {
      this.#host.warn({ source: 'kernel', message: 'cpu_emergency_register_virt_callback: a callback is already registered, ignored' });
    } else {
      this.#emergency = cb;
    }
    return makeUndo(() => this.unregisterEmergencyVirtCallback(cb));
  }

  /** `cpu_emergency_unregister_virt_callback`: WARN and ignore if `cb` is not the registered one. */
  unregisterEmergencyVirtCallback(cb: EmergencyVirtCallback): void {
    if (this.#emergency !== cb) {
      this.#host.warn({ source: 'kernel', message: 'cpu_emergency_unregister_virt_callback: not the registered callback, ignored' });
      return;
    }
    this.#emergency = undefined;
  }

  /** How many NMI handlers are registered. */
  get nmiHandlerCount(): number {
    return this.#nmiHandlers.length;
  }

  /** Whether an emergency callback is registered. */
  get hasEmergencyVirtCallback(): boolean {
    return this.#emergency !== undefined;
  }

  /** `register_nmi_handler(NMI_LOCAL, …)`: NMI handlers are a chain; every one is asked. */
  registerNmiHandler(h: NmiHandler): Unsubscribe {
    this.#nmiHandlers = [...this.#nmiHandlers, h];
    return makeUndo(() => {
      this.#nmiHandlers = this.#nmiHandlers.filter((x) => x !== h);
    });
  }

  /** @internal Used by the crash path. */
  runEmergency(cpu: number): void {
    this.#emergency?.(cpu);
  }

  /**
   * Inject a PMI on `cpu`: perf asks the registered guest callbacks whether a guest was running there,
   * and if so for the guest RIP.
   */
  raisePmi(cpu: number): PmiResult {
    this.#host.checkCpu(cpu);
    const cbs = this.#perf;
    if (cbs === undefined) return { cpu, state: 0, ip: undefined, callbacks: undefined, attributedTo: undefined };
    const ev = this.#host.events;
    ev.enter();
    try {
      const state = cbs.state(cpu);
      const ip = state !== 0 ? cbs.getIp(cpu) : undefined;
      const attributedTo = state !== 0 ? cbs.attribute?.(cpu) : undefined;
      return { cpu, state, ip, callbacks: cbs.name, attributedTo };
    } finally {
      ev.leave();
    }
  }

  /** Inject a posted-interrupt wakeup IPI (`POSTED_INTR_WAKEUP_VECTOR`) on `cpu`. Returns what was woken. */
  raisePostedIntrWakeup(cpu: number): readonly string[] {
    this.#host.checkCpu(cpu);
    const h = this.#piWakeup;
    return h === undefined ? [] : this.#host.events.op(() => h(cpu));
  }

  /** Inject an NMI on `cpu`; returns every handler's claim (e.g. the KVM instance whose guest it interrupted). */
  raiseNmi(cpu: number): readonly string[] {
    this.#host.checkCpu(cpu);
    return this.#host.events.op(() => {
      const claims: string[] = [];
      for (const h of this.#nmiHandlers) {
        const c = h(cpu);
        if (c !== undefined) claims.push(c);
      }
      return claims;
    });
  }
}
