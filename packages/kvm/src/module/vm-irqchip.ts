/**
 * A VM's in-kernel irqchip in the host: the device models of `irqchip/` (a {@link KvmIrqchip}: PIC pair, IOAPIC,
 * LAPICs, PIT, routing) on the host's simulated clock, with the VM's irqfds. KVM_CREATE_IRQCHIP and
 * KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) make one (`kvm->arch.irqchip_mode`); it lives until the VM is destroyed.
 *
 * Time: the devices take `host.clock.now`. One clock timer per VM is armed for the earliest device deadline
 * (the PIT's period, a LAPIC timer, the IOAPIC's EOI-storm brake); when the clock reaches it — guest execution, a
 * scheduler tick, a halted vCPU's wait — the devices run their expiries (`KvmIrqchip.advance`), which may raise
 * IRQ 0 and kick vCPUs. Every operation that can move a deadline ends with {@link VmIrqchip.sync}.
 *
 * @module
 */
import type { ClockTimer, SimClock } from '@vac/core';
import { KvmIrqchip } from '../irqchip/irqchip.js';
import { SimTimer } from '../irqchip/time.js';
import { Irqfds } from './irqfd.js';
import type { Vm } from './vm.js';

/** The in-kernel irqchip of one VM. */
export class VmIrqchip {
  /** The device models. */
  readonly chip: KvmIrqchip;
  /** The VM's irqfds (KVM_IRQFD). */
  readonly irqfds: Irqfds;
  readonly #clock: SimClock;
  readonly #timer: ClockTimer;
  /** {@link SimTimer.changes} when {@link VmIrqchip.sync} last armed the clock timer (-1: not since it fired). */
  #syncedChanges = -1;
  /** The deadline it armed it for, in ns (`Infinity` for none). */
  #syncedAt = Infinity;

  /** @internal Made by KVM_CREATE_IRQCHIP or KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP). */
  constructor(vm: Vm, chip: KvmIrqchip) {
    this.chip = chip;
    this.#clock = vm.instance.host.clock;
    this.#timer = this.#clock.timer((now) => {
      // The clock disarmed the timer to fire it: the next sync arms it again whatever changed.
      this.#syncedChanges = -1;
      chip.advance(now);
      this.sync();
    });
    this.irqfds = new Irqfds(this);
  }

  /** `irqchip_kernel`: the PIC and IOAPIC are in the kernel (not split). */
  get full(): boolean {
    return this.chip.mode === 'kernel';
  }

  /** The host's simulated time (ns). */
  get now(): bigint {
    return this.#clock.now;
  }

  /**
   * Bring the clock timer to the devices' earliest deadline; a deadline already reached (a timer programmed in the
   * past) runs now.
   */
  sync(): void {
    // No device timer changed since the last sync, whose deadline is still ahead: the devices' earliest deadline is
    // the one the clock timer holds, so the loop below would only set it again (this runs after every operation).
    if (SimTimer.changes === this.#syncedChanges && this.#clock.nowNs < this.#syncedAt) return;
    const chip = this.chip;
    for (let i = 0; i < 1000; i++) {
      const d = chip.nextDeadline();
      if (d !== undefined && d <= this.#clock.now) {
        chip.advance(this.#clock.now);
        continue;
      }
      this.#timer.set(d);
      this.#syncedChanges = SimTimer.changes;
      this.#syncedAt = d === undefined ? Infinity : Number(d);
      return;
    }
    throw new Error('irqchip deadlines keep falling in the past');
  }

  /** Run `fn` on the devices at the current time, then {@link VmIrqchip.sync}. */
  op<T>(fn: (now: bigint) => T): T {
    try {
      return fn(this.#clock.now);
    } finally {
      this.sync();
    }
  }

  /**
   * {@link VmIrqchip.op} of a guest OUT the devices may own (`KvmIrqchip.pioWrite`), without a closure per access:
   * `kernel_pio` runs on every port write of a guest with an in-kernel irqchip (the PIC's EOI of every interrupt).
   */
  pioWrite(port: number, len: number, value: number): boolean {
    try {
      return this.chip.pioWrite(port, len, value, this.#clock.now);
    } finally {
      this.sync();
    }
  }

  /** {@link VmIrqchip.op} of a guest IN the devices may own (`KvmIrqchip.pioRead`), without a closure per access. */
  pioRead(port: number, len: number): number | undefined {
    try {
      return this.chip.pioRead(port, len, this.#clock.now);
    } finally {
      this.sync();
    }
  }

  /** {@link VmIrqchip.op} of `KvmIrqchip.setIrq` (KVM_IRQ_LINE, an irqfd), without a closure per call. */
  setIrq(source: number, gsi: number, level: boolean, lineStatus: boolean): number {
    try {
      return this.chip.setIrq(source, gsi, level, lineStatus);
    } finally {
      this.sync();
    }
  }

  /**
   * A plain copy of the devices' state (for `host.snapshot()`): the mode, the PICs, the IOAPIC, the PIT, the routing
   * table, each LAPIC's register page (hex) and the number of irqfds.
   */
  snapshot(): unknown {
    const c = this.chip;
    const now = this.#clock.now;
    const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return {
      mode: c.mode,
      pic: c.pic === undefined ? undefined : [c.pic.getState(0), c.pic.getState(1)],
      ioapic: c.ioapic?.getState(),
      pit: c.pit === undefined ? undefined : { state: c.pit.getState2(), reinject: c.pit.reinject, pending: c.pit.pending },
      routing: [...c.routing.entries()],
      lapics: c.vcpus.map((v) => hex(v.lapic.getState(now))),
      irqfds: this.irqfds.size,
    };
  }

  /** `kvm_destroy_vm`'s irqchip part: the irqfds go (`kvm_irqfd_release`), the timer is removed. */
  destroy(): void {
    this.irqfds.releaseAll();
    this.#timer.remove();
  }
}
