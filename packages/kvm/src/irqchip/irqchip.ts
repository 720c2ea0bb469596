/**
 * One VM's in-kernel interrupt controllers wired together, as KVM_CREATE_IRQCHIP (or
 * KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)) and KVM_CREATE_PIT2 leave them: the PIC pair and the IOAPIC (full
 * mode only), the local APICs on their bus, the GSI routing table, IRQ source ids, ack and mask notifiers, and
 * the PIT. This is the interface the VM's ioctls and the run loop use: raise/lower a GSI (`setIrq`), inject an
 * MSI, port and MMIO accesses, per-vCPU "is there an interrupt / which vector" (`VcpuInterrupts`), and simulated
 * time (`advance`, `nextDeadline`).
 *
 * Work Linux hands to kernel threads (the PIT's `pit_do_work`) runs when the outermost call into this object
 * returns, so it never re-enters a device mid-operation and the order stays deterministic.
 *
 * @module
 */

import { KernelError } from '@vac/core';
import { KVM_IRQCHIP_IOAPIC } from '../abi/constants.js';
import { ApicBus } from './apic-bus.js';
import { APIC_BUS_CYCLE_NS_DEFAULT, APIC_DEST_NOSHORT, APIC_LVT0, APIC_TMR, IOAPIC_LEVEL_TRIG, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, KVM_MAX_IRQ_ROUTES, KVM_MAX_IRQ_SOURCE_IDS, KVM_MSI_VALID_DEVID, KVM_USERSPACE_IRQ_SOURCE_ID } from './constants.js';
import { checkUint } from './errors.js';
import { KvmIoapic } from './ioapic.js';
import { KvmLapic, type LapicOptions, type LapicVcpu } from './lapic.js';
import { msiRouteInvalid, msiToLapicIrq, type MsiMessage } from './msi.js';
import { KvmPic } from './pic.js';
import { KvmPit } from './pit.js';
import { VcpuInterrupts, type IrqchipMode } from './vcpu-interrupts.js';
import { RoutingTable, type KernelRoute, type kvm_irq_routing_entry } from './routing.js';
import { DeviceClock, earliest } from './time.js';

/** `kvm->arch.irqchip_mode` once an irqchip exists. */


/** VM-wide options. */
export interface IrqchipOptions {
  /** KVM_X2APIC_API_USE_32BIT_IDS. */
  readonly x2apicFormat?: boolean;
  /** KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK. */
  readonly broadcastQuirkDisabled?: boolean;
  /** Per-LAPIC options (quirks, ICR layout, bus cycle). */
  readonly lapic?: LapicOptions;
  /** Split mode: the guest EOIed a level vector of the user-space IOAPIC (KVM_REQ_IOAPIC_EOI_EXIT → KVM_EXIT_IOAPIC_EOI). */
  readonly ioapicEoiExit?: (vcpuId: number, vector: number) => void;
}

/** `struct kvm_msi` (KVM_SIGNAL_MSI). */
export interface kvm_msi extends MsiMessage {
  flags: number;
  devid: number;
}

/** A registered notifier; calling it (or disposing it) unregisters. */
export type Unregister = (() => void) & Disposable;

/** Runs nothing (a `run` that only drains the queued work). */
function nothing(): undefined {
  return undefined;
}

function unregisterer(fn: () => void): Unregister {
  const u = (): void => fn();
  return Object.assign(u, { [Symbol.dispose]: u });
}

/** One VM's in-kernel irqchip. */
export class KvmIrqchip {
  readonly mode: IrqchipMode;
  readonly bus: ApicBus;
  /**
   * `kvm->arch.apic_bus_cycle_ns`: the LAPIC timer's bus cycle of the vCPUs created from now on (KVM_ENABLE_CAP(
   * KVM_CAP_X86_APIC_BUS_CYCLES_NS), taken only before the first vCPU).
   */
  apicBusCycleNs: number = APIC_BUS_CYCLE_NS_DEFAULT;
  readonly pic: KvmPic | undefined;
  readonly ioapic: KvmIoapic | undefined;
  #pit: KvmPit | undefined;
  #pitSource = -1;
  #pitNotifiers: Unregister[] = [];
  readonly #options: IrqchipOptions;
  readonly #vcpus: VcpuInterrupts[] = [];
  #routing: RoutingTable;
  /** `kvm->arch.nr_reserved_ioapic_pins` (split mode). */
  readonly nrReservedIoapicPins: number;
  #irqSources = (1n << BigInt(KVM_USERSPACE_IRQ_SOURCE_ID)) | (1n << BigInt(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID));
  readonly #ackNotifiers = new Map<number, Set<() => void>>();
  readonly #maskNotifiers = new Map<number, Set<(masked: boolean) => void>>();
  readonly #resamplers = new Map<number, () => void>();
  #vapicsInNmiMode = 0;
  readonly #work: (() => void)[] = [];
  #depth = 0;
  readonly #clock = new DeviceClock();

  private constructor(mode: IrqchipMode, options: IrqchipOptions, nrReservedIoapicPins: number) {
    this.mode = mode;
    this.#options = options;
    this.nrReservedIoapicPins = nrReservedIoapicPins;
    this.bus = new ApicBus({
      ...(options.x2apicFormat !== undefined ? { x2apicFormat: options.x2apicFormat } : {}),
      ...(options.broadcastQuirkDisabled !== undefined ? { broadcastQuirkDisabled: options.broadcastQuirkDisabled } : {}),
    });
    if (mode === 'kernel') {
      // The hooks are methods, not arrows: under tsx (the tests, the benchmarks) every arrow assigned to a property
      // is also given its name at run time (`__name`, an `Object.defineProperty`), per VM.
      const self = this;
      this.pic = new KvmPic({
        ackedIrq(chip, irq) {
          self.#notifyAcked(chip, irq);
        },
        maskChanged(chip, irq, masked) {
          self.#fireMask(chip, irq, masked);
        },
        // The first vCPU whose LAPIC takes PIC interrupts is kicked (loops: no callback per PIC operation).
        wakeup() {
          self.#firstPicVcpu()?.lapic.vcpu.kick();
        },
        anyVcpuAcceptsPicIntr() {
          return self.#firstPicVcpu() !== undefined;
        },
      });
      this.ioapic = new KvmIoapic({
        deliver(irq, rtc) {
          return self.bus.deliver(undefined, irq, rtc);
        },
        matchDest(l, dest, dm) {
          return self.bus.matchDest(l, undefined, APIC_DEST_NOSHORT, dest, dm);
        },
        lapics() {
          return self.bus.lapics;
        },
        ackedIrq(pin) {
          self.#notifyAcked(KVM_IRQCHIP_IOAPIC, pin);
        },
        maskChanged(pin, masked) {
          self.#fireMask(KVM_IRQCHIP_IOAPIC, pin, masked);
        },
        notifyResampler(pin) {
          return self.#notifyResampler(KVM_IRQCHIP_IOAPIC, pin);
        },
      });
      this.#routing = RoutingTable.defaultTable(this.#chips());
    } else {
      this.pic = undefined;
      this.ioapic = undefined;
      this.#routing = RoutingTable.empty(this.#chips());
    }
  }

  /** KVM_CREATE_IRQCHIP: PIC, IOAPIC, default routing. */
  static createKernel(options: IrqchipOptions = {}): KvmIrqchip {
    return new KvmIrqchip('kernel', options, 0);
  }

  /**
   * KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, pins): LAPICs only, an empty routing table; `pins` GSIs are reserved
   * for the user-space IOAPIC's MSI routes (EINVAL above KVM_MAX_IRQ_ROUTES).
   */
  static createSplit(nrReservedIoapicPins: number, options: IrqchipOptions = {}): KvmIrqchip {
    checkUint(nrReservedIoapicPins, 0xffffffff, 'KVM_CAP_SPLIT_IRQCHIP args[0]');
    if (nrReservedIoapicPins > KVM_MAX_IRQ_ROUTES) throw new KernelError('EINVAL', 'kvm_vm_ioctl_enable_cap', 'more reserved IOAPIC pins than KVM_MAX_IRQ_ROUTES');
    return new KvmIrqchip('split', options, nrReservedIoapicPins);
  }

  /** The first vCPU whose LAPIC accepts PIC interrupts (LINT0 in ExtINT mode, `kvm_apic_accept_pic_intr`). */
  #firstPicVcpu(): VcpuInterrupts | undefined {
    const vcpus = this.#vcpus;
    for (let i = 0; i < vcpus.length; i++) {
      const v = vcpus[i] as VcpuInterrupts;
      if (v.lapic.acceptsPicIntr()) return v;
    }
    return undefined;
  }

  #chips(): { picInKernel: boolean; ioapicInKernel: boolean; x2apicFormat: boolean } {
    return { picInKernel: this.mode === 'kernel', ioapicInKernel: this.mode === 'kernel', x2apicFormat: this.bus.x2apicFormat };
  }

  /**
   * Run `fn` as one top-level operation, then the work it queued.
   * @internal
   */
  run<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      this.endRun();
    }
  }

  /**
   * Open a {@link KvmIrqchip.run} bracket without a closure (the hot operations: a guest port access, a line change,
   * an interrupt acknowledged); close it with {@link KvmIrqchip.endRun} in a `finally`.
   * @internal
   */
  beginRun(): void {
    this.#depth++;
  }

  /**
   * The end of a {@link KvmIrqchip.run} bracket: at the outermost one, the queued work runs.
   * @internal
   */
  endRun(): void {
    this.#depth--;
    if (this.#depth === 0) {
      while (this.#work.length > 0) {
        this.#depth++;
        try {
          (this.#work.shift() as () => void)();
        } finally {
          this.#depth--;
        }
      }
    }
  }

  /* ---- vCPUs --------------------------------------------------------------------------------------------- */

  /** KVM_CREATE_VCPU with an irqchip: the vCPU's LAPIC (`kvm_create_lapic` + reset). */
  addVcpu(vcpu: LapicVcpu): VcpuInterrupts {
    const self = this;
    const lapic = new KvmLapic(
      vcpu,
      {
        // Methods, not arrows (no `__name` per vCPU under tsx; see the constructor).
        sendIpi(src, irq) {
          self.bus.deliver(src, irq);
        },
        eoi(src, vector, now) {
          self.#sendEoi(src, vector, now);
        },
        mapChanged() {
          self.bus.mapChanged();
        },
        nmiWatchdogChanged(d) {
          self.#vapicsInNmiMode += d;
        },
        ioapicInKernel() {
          return self.mode === 'kernel';
        },
        // The bus's, fixed when the irqchip is made: a value, not a getter (a literal with a getter has a hidden class
        // of its own per object, which V8 keeps until a full collection, and with it the vCPU's whole interrupt state).
        x2apicFormat: this.bus.x2apicFormat,
      },
      { ...this.#options.lapic, busCycleNs: this.apicBusCycleNs },
    );
    this.bus.add(lapic);
    const v = new VcpuInterrupts(this, lapic);
    this.#vcpus.push(v);
    return v;
  }

  /** The vCPUs in creation order. */
  get vcpus(): readonly VcpuInterrupts[] {
    return this.#vcpus;
  }

  /** KVM_SET_LAPIC of `v` at `now` (see `KvmLapic.setState`), with the IOAPIC's RTC tracking brought up to date. */
  setLapicState(v: VcpuInterrupts, page: Uint8Array, now: bigint): void {
    this.run(() => {
      v.lapic.setState(page, now);
      this.ioapic?.rtcRestore(v.lapic);
    });
  }

  /** `kvm_ioapic_send_eoi`. */
  #sendEoi(lapic: KvmLapic, vector: number, now: bigint): void {
    if (!this.#handlesVector(lapic, vector)) return;
    if (this.mode === 'split') {
      this.#options.ioapicEoiExit?.(lapic.vcpu.vcpuId, vector);
      return;
    }
    const trig = lapic.regs.testVector(APIC_TMR, vector) ? IOAPIC_LEVEL_TRIG : 0;
    this.ioapic?.updateEoi(lapic, vector, trig as 0 | 1, now);
  }

  /** The vCPU's `ioapic_handled_vectors` bit for `vector`, computed as `vcpu_scan_ioapic` would now. */
  #handlesVector(lapic: KvmLapic, vector: number): boolean {
    if (this.mode === 'kernel') {
      return (this.ioapic as KvmIoapic).handlesVector(lapic, vector, (pin) => this.#hasAckNotifier(this.#routing.gsiOf(KVM_IRQCHIP_IOAPIC, pin)));
    }
    const pins = Math.min(this.#routing.nrRtEntries, this.nrReservedIoapicPins);
    for (let gsi = 0; gsi < pins; gsi++) {
      for (const e of this.#routing.routes(gsi)) {
        if (e.type !== 'msi') continue;
        const irq = msiToLapicIrq(e, this.bus.x2apicFormat);
        if (irq.vector !== vector || !irq.trigMode) continue;
        if (this.bus.matchDest(lapic, undefined, APIC_DEST_NOSHORT, irq.destId, irq.destMode) || lapic.pendingEoi(vector)) return true;
      }
    }
    return false;
  }

  /* ---- GSIs, routing, MSIs ------------------------------------------------------------------------------- */

  /** The current routing table. */
  get routing(): RoutingTable {
    return this.#routing;
  }

  /** KVM_SET_GSI_ROUTING's table swap (`kvm_set_irq_routing`); throws EINVAL and keeps the old table on a bad entry. */
  setGsiRouting(entries: readonly kvm_irq_routing_entry[]): void {
    if (entries.length > KVM_MAX_IRQ_ROUTES) throw new KernelError('EINVAL', 'kvm_set_irq_routing', 'more entries than KVM_MAX_IRQ_ROUTES');
    this.#routing = RoutingTable.build(entries, this.#chips());
  }

  /**
   * `kvm_set_irq(kvm, source, gsi, level, lineStatus)`: drive every route of `gsi` and return what
   * KVM_IRQ_LINE_STATUS reports: -1 if no route took it (unrouted, or every pin masked), 0 if coalesced, else
   * the sum of the routes' counts.
   */
  setIrq(source: number, gsi: number, level: boolean, lineStatus = true): number {
    checkUint(source, KVM_MAX_IRQ_SOURCE_IDS - 1, 'IRQ source id');
    checkUint(gsi, 0xffffffff, 'GSI');
    this.#depth++;
    try {
      let ret = -1;
      const routes = this.#routing.routes(gsi);
      for (let i = 0; i < routes.length; i++) {
        const r = this.#setRoute(routes[i] as KernelRoute, source, level, lineStatus);
        if (r < 0) continue;
        ret = r + (ret < 0 ? 0 : ret);
      }
      return ret;
    } finally {
      this.endRun();
    }
  }

  #setRoute(e: KernelRoute, source: number, level: boolean, lineStatus: boolean): number {
    switch (e.type) {
      case 'irqchip':
        if (e.irqchip === KVM_IRQCHIP_IOAPIC) return (this.ioapic as KvmIoapic).setIrq(e.pin, source, level, lineStatus);
        return (this.pic as KvmPic).setIrq(e.pin, source, level);
      case 'msi':
        return this.#setMsi(e, level);
      default:
        return level ? -22 : -1; // kvm_hv_set_sint without a SynIC: -EINVAL
    }
  }

  /** `kvm_set_msi`. */
  #setMsi(msg: MsiMessage, level: boolean): number {
    if (msiRouteInvalid(msg, this.bus.x2apicFormat)) return -22;
    if (!level) return -1;
    return this.bus.deliver(undefined, msiToLapicIrq(msg, this.bus.x2apicFormat));
  }

  /**
   * KVM_SIGNAL_MSI (`kvm_send_userspace_msi`): EINVAL for flags other than KVM_MSI_VALID_DEVID; otherwise the
   * delivery count (0 when the destination APIC is absent or software-disabled, -1 when nothing matched on the
   * slow path, -EINVAL for an invalid x2APIC-format address).
   */
  signalMsi(msi: kvm_msi): number {
    checkUint(msi.flags, 0xffffffff, 'kvm_msi.flags');
    if (msi.flags & ~KVM_MSI_VALID_DEVID) throw new KernelError('EINVAL', 'kvm_send_userspace_msi', 'unknown kvm_msi flags');
    return this.run(() => this.#setMsi(msi, true));
  }

  /** `kvm_request_irq_source_id`: the lowest free id (0 and 1 are KVM's); EFAULT when all 64 are taken. */
  requestIrqSourceId(): number {
    for (let i = 0; i < KVM_MAX_IRQ_SOURCE_IDS; i++) {
      if (!(this.#irqSources & (1n << BigInt(i)))) {
        this.#irqSources |= 1n << BigInt(i);
        return i;
      }
    }
    throw new KernelError('EFAULT', 'kvm_request_irq_source_id', 'exhaust allocatable IRQ sources');
  }

  /** `kvm_free_irq_source_id`: release and drop the source from every pin. */
  freeIrqSourceId(id: number): void {
    checkUint(id, KVM_MAX_IRQ_SOURCE_IDS - 1, 'IRQ source id');
    this.#irqSources &= ~(1n << BigInt(id));
    this.ioapic?.clearSource(id);
    this.pic?.clearSource(id);
  }

  /* ---- notifiers ----------------------------------------------------------------------------------------- */

  /** `kvm_register_irq_ack_notifier` on `gsi`. */
  registerAckNotifier(gsi: number, fn: () => void): Unregister {
    const set = this.#ackNotifiers.get(gsi) ?? new Set();
    set.add(fn);
    this.#ackNotifiers.set(gsi, set);
    return unregisterer(() => set.delete(fn));
  }

  /** `kvm_register_irq_mask_notifier` on `gsi`. */
  registerMaskNotifier(gsi: number, fn: (masked: boolean) => void): Unregister {
    const set = this.#maskNotifiers.get(gsi) ?? new Set();
    set.add(fn);
    this.#maskNotifiers.set(gsi, set);
    return unregisterer(() => set.delete(fn));
  }

  /** A resampling irqfd's resampler on `gsi` (what `kvm_notify_irqfd_resampler` finds). */
  registerResampler(gsi: number, fn: () => void): Unregister {
    this.#resamplers.set(gsi, fn);
    return unregisterer(() => {
      if (this.#resamplers.get(gsi) === fn) this.#resamplers.delete(gsi);
    });
  }

  #hasAckNotifier(gsi: number): boolean {
    return gsi !== -1 && (this.#ackNotifiers.get(gsi)?.size ?? 0) > 0;
  }

  /** `kvm_notify_acked_irq`. */
  #notifyAcked(irqchip: number, pin: number): void {
    const gsi = this.#routing.gsiOf(irqchip, pin);
    if (gsi === -1) return;
    const list = this.#ackNotifiers.get(gsi);
    if (list === undefined) return;
    for (const fn of [...list]) fn();
  }

  /** `kvm_fire_mask_notifiers`. */
  #fireMask(irqchip: number, pin: number, masked: boolean): void {
    const gsi = this.#routing.gsiOf(irqchip, pin);
    if (gsi === -1) return;
    const list = this.#maskNotifiers.get(gsi);
    if (list === undefined) return;
    for (const fn of [...list]) fn(masked);
  }

  /** `kvm_notify_irqfd_resampler`. */
  #notifyResampler(irqchip: number, pin: number): boolean {
    const gsi = this.#routing.gsiOf(irqchip, pin);
    const fn = gsi === -1 ? undefined : this.#resamplers.get(gsi);
    if (fn === undefined) return false;
    fn();
    return true;
  }

  /* ---- PIT ----------------------------------------------------------------------------------------------- */

  /** The PIT, once created. */
  get pit(): KvmPit | undefined {
    return this.#pit;
  }

  /**
   * KVM_CREATE_PIT2's device (`kvm_create_pit`) at `now`: ENOENT without an in-kernel PIC, EEXIST when one
   * exists, EFAULT when no IRQ source id is left.
   */
  createPit(configFlags: number, now: bigint): KvmPit {
    if (this.#pit !== undefined) throw new KernelError('EEXIST', 'kvm_vm_ioctl(KVM_CREATE_PIT2)', 'the VM has a PIT');
    if (this.mode !== 'kernel') throw new KernelError('ENOENT', 'kvm_vm_ioctl(KVM_CREATE_PIT2)', 'no in-kernel PIC');
    checkUint(configFlags, 0xffffffff, 'kvm_pit_config.flags');
    const source = this.requestIrqSourceId();
    const self = this;
    const pit = new KvmPit(
      {
        // Methods, not arrows (no `__name` per VM under tsx; see the constructor).
        setIrq0(level) {
          self.setIrq(source, 0, level, false);
        },
        nmiWatchdog() {
          if (self.#vapicsInNmiMode > 0) for (const v of self.#vcpus) v.lapic.localDeliver(APIC_LVT0);
        },
        ioapicInKernel() {
          return self.mode === 'kernel';
        },
        queueWork(w) {
          self.#work.push(w);
          if (self.#depth === 0) self.run(nothing);
        },
      },
      configFlags,
      now,
    );
    this.#pit = pit;
    this.#pitSource = source;
    this.#pitReinjectNotifiers(true);
    return pit;
  }

  /** KVM_REINJECT_CONTROL (`kvm_vm_ioctl_reinject`): ENXIO without a PIT. */
  setPitReinject(reinject: boolean): void {
    const pit = this.#pit;
    if (pit === undefined) throw new KernelError('ENXIO', 'kvm_vm_ioctl_reinject', 'no PIT');
    pit.setReinject(reinject);
    this.#pitReinjectNotifiers(reinject);
  }

  /** The PIT's IRQ source id (-1 without a PIT). */
  get pitIrqSourceId(): number {
    return this.#pitSource;
  }

  #pitReinjectNotifiers(on: boolean): void {
    for (const u of this.#pitNotifiers) u();
    this.#pitNotifiers = [];
    const pit = this.#pit;
    if (!on || pit === undefined) return;
    this.#pitNotifiers = [this.registerAckNotifier(0, () => pit.ackIrq()), this.registerMaskNotifier(0, (m) => pit.maskChanged(m))];
  }

  /* ---- guest accesses and time --------------------------------------------------------------------------- */

  /** A guest OUT the in-kernel devices own (PIC, ELCR, PIT, speaker); `false` when none does (exit to user space). */
  pioWrite(port: number, len: number, value: number, now: bigint): boolean {
    this.#clock.see(now);
    this.#depth++;
    try {
      if (this.pic?.ioWrite(port, value, len)) return true;
      const pit = this.#pit;
      if (pit === undefined) return false;
      if (pit.ioWrite(port, value, now)) return true;
      if (pit.ownsSpeakerPort(port)) {
        pit.speakerWrite(value, now);
        return true;
      }
      return false;
    } finally {
      this.endRun();
    }
  }

  /** A guest IN the in-kernel devices own; `undefined` when none does. */
  pioRead(port: number, len: number, now: bigint): number | undefined {
    this.#clock.see(now);
    this.#depth++;
    try {
      const p = this.pic?.ioRead(port, len);
      if (p !== undefined) return p;
      const pit = this.#pit;
      if (pit === undefined) return undefined;
      const v = pit.ioRead(port, now);
      if (v !== undefined) return v;
      return pit.ownsSpeakerPort(port) ? pit.speakerRead(now) : undefined;
    } finally {
      this.endRun();
    }
  }

  /** A guest MMIO read by `v`: its LAPIC page first, then the IOAPIC window; `undefined` when neither owns it. */
  mmioRead(v: VcpuInterrupts, address: bigint, len: number, now: bigint): number | undefined {
    return this.run(() => v.lapic.mmioRead(address, len, now) ?? this.ioapic?.mmioRead(address, len));
  }

  /** A guest MMIO write by `v`; `false` when no in-kernel device owns the address. */
  mmioWrite(v: VcpuInterrupts, address: bigint, len: number, value: number, now: bigint): boolean {
    return this.run(() => v.lapic.mmioWrite(address, len, value, now) || (this.ioapic?.mmioWrite(address, len, value) ?? false));
  }

  /** The earliest time any timer of this VM (PIT, LAPIC timers, IOAPIC storm brake) is due. */
  nextDeadline(): bigint | undefined {
    // `earliest` over the PIT, the IOAPIC and every LAPIC, written out: this runs after every irqchip operation.
    let min = this.#pit?.nextDeadline();
    const io = this.ioapic?.nextDeadline();
    if (io !== undefined && (min === undefined || io < min)) min = io;
    const vcpus = this.#vcpus;
    for (let i = 0; i < vcpus.length; i++) {
      const d = (vcpus[i] as VcpuInterrupts).lapic.nextDeadline();
      if (d !== undefined && (min === undefined || d < min)) min = d;
    }
    return min;
  }

  /** The timed devices with their next deadlines. */
  #timed(): { at: bigint | undefined; advance: (t: bigint) => void }[] {
    const list: { at: bigint | undefined; advance: (t: bigint) => void }[] = [];
    const pit = this.#pit;
    if (pit !== undefined) list.push({ at: pit.nextDeadline(), advance: (t) => pit.advance(t) });
    const io = this.ioapic;
    if (io !== undefined) list.push({ at: io.nextDeadline(), advance: (t) => io.advance(t) });
    for (const v of this.#vcpus) list.push({ at: v.lapic.nextDeadline(), advance: (t) => v.lapic.advance(t) });
    return list;
  }

  /**
   * Run every expiry due by `now`, in time order across devices: the device due first runs up to the next
   * other device's deadline (so its own repeated expiries are taken in one go), then the work it queued runs,
   * and so on.
   */
  advance(now: bigint): void {
    this.#clock.see(now);
    for (;;) {
      const timed = this.#timed();
      let first: (typeof timed)[number] | undefined;
      for (const d of timed) if (d.at !== undefined && d.at <= now && (first === undefined || d.at < (first.at as bigint))) first = d;
      if (first === undefined) break;
      const others = earliest(...timed.filter((d) => d !== first).map((d) => d.at));
      const until = others !== undefined && others < now ? others : now;
      this.run(() => first.advance(until));
    }
    this.run(() => {
      for (const d of this.#timed()) d.advance(now);
    });
  }

  /** `vapics_in_nmi_mode`: LAPICs whose LINT0 is an unmasked NMI (the PIT's NMI watchdog target). */
  get vapicsInNmiMode(): number {
    return this.#vapicsInNmiMode;
  }
}
