/**
 * The in-kernel IOAPIC, Linux's `struct kvm_ioapic` (arch/x86/kvm/ioapic.c): 24 pins, the redirection table
 * behind IOREGSEL/IOWIN at 0xfec00000, the ID/version/arbitration registers, edge and level pins with remote
 * IRR, masked pins, delivery to the local APICs, the EOI broadcast (`kvm_ioapic_update_eoi`) with KVM's
 * interrupt-storm brake, the resampling of a pending level pin when it is unmasked, and the RTC (GSI 8) EOI
 * tracking that makes KVM_IRQ_LINE_STATUS report coalesced RTC interrupts.
 *
 * @module
 */

import { KVM_IOAPIC_NUM_PINS } from '../abi/constants.js';
import { busIrq, destModeOf, type LapicIrq } from './apic-irq.js';
import {

  APIC_SPIV,
  APIC_SPIV_DIRECTED_EOI,
  IOAPIC_DEFAULT_BASE_ADDRESS,
  IOAPIC_EDGE_TRIG,
  IOAPIC_EOI_STORM_DELAY_NS,
  IOAPIC_LEVEL_TRIG,
  IOAPIC_MEM_LENGTH,
  IOAPIC_REG_APIC_ID,
  IOAPIC_REG_ARB_ID,
  IOAPIC_REG_SELECT,
  IOAPIC_REG_VERSION,
  IOAPIC_REG_WINDOW,
  IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT,
  IOAPIC_VERSION_ID,
  RTC_GSI,
} from './constants.js';
import { checkUint } from './errors.js';
import type { KvmLapic } from './lapic.js';
import { LineStates } from './line-state.js';
import {
  assertKvmIoapicState,
  IOAPIC_REDIR_FIELDS,
  copyKvmIoapicState,
  ioapicField,
  makeKvmIoapicState,
  withIoapicField,
  type kvm_ioapic_state,
} from './state/ioapic-state.js';
import { DeviceClock, SimTimer } from './time.js';

/** What the IOAPIC needs from the VM. */
export interface IoapicHooks {
  /** `kvm_irq_delivery_to_apic(kvm, NULL, irq, rtc)`. */
  deliver(irq: LapicIrq, rtc: Map<number, number> | undefined): number;
  /** `kvm_apic_match_dest(vcpu, NULL, APIC_DEST_NOSHORT, dest, destMode)`. */
  matchDest(lapic: KvmLapic, dest: number, destMode: number): boolean;
  /** The VM's local APICs. */
  lapics(): readonly KvmLapic[];
  /** `kvm_notify_acked_irq(kvm, KVM_IRQCHIP_IOAPIC, pin)`. */
  ackedIrq(pin: number): void;
  /** `kvm_fire_mask_notifiers(kvm, KVM_IRQCHIP_IOAPIC, pin, masked)`. */
  maskChanged(pin: number, masked: boolean): void;
  /** `kvm_notify_irqfd_resampler(kvm, KVM_IRQCHIP_IOAPIC, pin)`: true if a resampling irqfd took it. */
  notifyResampler(pin: number): boolean;
}

const PIN_MASK_ALL = 0xffffff;

/** A redirection entry's mask bit (`IOAPIC_REDIR_FIELDS.mask`): what a reset sets on every pin. */
const REDIR_MASKED = 1n << IOAPIC_REDIR_FIELDS.mask.shift;

/** The vector, trigger-mode, mask and remote-IRR bits of an entry's low 32 bits (what every line change and EOI reads). */
const LOW_VECTOR = Number((1n << IOAPIC_REDIR_FIELDS.vector.bits) - 1n) << Number(IOAPIC_REDIR_FIELDS.vector.shift);
const LOW_TRIG_LEVEL = 1 << Number(IOAPIC_REDIR_FIELDS.trig_mode.shift);
const LOW_MASKED = 1 << Number(IOAPIC_REDIR_FIELDS.mask.shift);
const LOW_REMOTE_IRR = 1 << Number(IOAPIC_REDIR_FIELDS.remote_irr.shift);

/** The IOAPIC of one VM. */
export class KvmIoapic {
  readonly #hooks: IoapicHooks;
  readonly #lines = new LineStates(KVM_IOAPIC_NUM_PINS);
  readonly #clock = new DeviceClock();
  /** The uapi-visible part (`base_address` … `redirtbl`). */
  readonly #s: kvm_ioapic_state;
  /** The low 32 bits of each redirection entry, kept by `#setEntry` and `setState`: a line change reads them without a bigint. */
  readonly #low = new Uint32Array(KVM_IOAPIC_NUM_PINS);
  #irrDelivered = 0;
  readonly #irqEoi = new Array<number>(KVM_IOAPIC_NUM_PINS).fill(0);
  /** `rtc_status.pending_eoi` and `rtc_status.dest_map` (vCPU id → vector). */
  #rtcPendingEoi = 0;
  readonly #rtcDestMap = new Map<number, number>();
  /** `eoi_inject`: the delayed re-injection after an EOI storm. */
  readonly #eoiInject = new SimTimer();

  /** `kvm_ioapic_init`: every pin masked, base 0xfec00000. */
  constructor(hooks: IoapicHooks) {
    this.#hooks = hooks;
    this.#s = makeKvmIoapicState();
    this.#reset();
  }

  /** `kvm_ioapic_reset`. */
  #reset(): void {
    this.#eoiInject.cancel();
    for (let i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
      const e = this.#entry(i);
      if ((e & REDIR_MASKED) === 0n) this.#setEntry(i, e | REDIR_MASKED); // the mask bit set, the rest kept
    }
    this.#s.base_address = BigInt(IOAPIC_DEFAULT_BASE_ADDRESS);
    this.#s.ioregsel = 0;
    this.#s.irr = 0;
    this.#irrDelivered = 0;
    this.#s.id = 0;
    this.#irqEoi.fill(0);
    this.#rtcReset();
  }

  #entry(pin: number): bigint {
    return this.#s.redirtbl[pin] ?? 0n;
  }

  #setEntry(pin: number, bits: bigint): void {
    this.#s.redirtbl[pin] = bits;
    this.#low[pin] = Number(BigInt.asUintN(32, bits));
  }

  /** `rtc_irq_eoi_tracking_reset`. */
  #rtcReset(): void {
    this.#rtcPendingEoi = 0;
    this.#rtcDestMap.clear();
  }

  /** `__rtc_irq_eoi_tracking_restore_one`. */
  #rtcRestoreOne(lapic: KvmLapic): void {
    const e = this.#entry(RTC_GSI);
    if (!this.#hooks.matchDest(lapic, ioapicField(e, 'dest_id'), destModeOf(ioapicField(e, 'dest_mode') === 1))) return;
    const vector = ioapicField(e, 'vector');
    const now = lapic.pendingEoi(vector);
    const was = this.#rtcDestMap.has(lapic.vcpu.vcpuId);
    if (now === was) return;
    if (now) {
      this.#rtcDestMap.set(lapic.vcpu.vcpuId, vector);
      this.#rtcPendingEoi++;
    } else {
      this.#rtcDestMap.delete(lapic.vcpu.vcpuId);
      this.#rtcPendingEoi--;
      if (this.#rtcPendingEoi < 0) this.#rtcRestoreAll();
    }
  }

  /** `kvm_rtc_eoi_tracking_restore_all`. */
  #rtcRestoreAll(): void {
    this.#rtcReset();
    for (const l of this.#hooks.lapics()) this.#rtcRestoreOne(l);
  }

  /** `kvm_rtc_eoi_tracking_restore_one`: after KVM_SET_LAPIC of `lapic`. */
  rtcRestore(lapic: KvmLapic): void {
    this.#rtcRestoreOne(lapic);
  }

  /** `ioapic_service`: deliver pin `irq` if it is unmasked and not waiting for an EOI; returns the count or -1. */
  #service(irq: number, lineStatus: boolean): number {
    const low = this.#low[irq] as number;
    const trig = (low & LOW_TRIG_LEVEL) !== 0 ? IOAPIC_LEVEL_TRIG : IOAPIC_EDGE_TRIG;
    if ((low & LOW_MASKED) !== 0 || (trig === IOAPIC_LEVEL_TRIG && (low & LOW_REMOTE_IRR) !== 0)) return -1;
    const e = this.#entry(irq);
    const msg = busIrq({
      destId: ioapicField(e, 'dest_id'),
      vector: ioapicField(e, 'vector'),
      destMode: destModeOf(ioapicField(e, 'dest_mode') === 1),
      trigMode: trig === IOAPIC_LEVEL_TRIG ? 1 : 0,
      deliveryMode: ioapicField(e, 'delivery_mode') << 8,
      level: true,
      msiRedirHint: false,
    });
    if (trig === IOAPIC_EDGE_TRIG) this.#irrDelivered |= 1 << irq;
    let ret: number;
    if (irq === RTC_GSI && lineStatus) {
      ret = this.#hooks.deliver(msg, this.#rtcDestMap);
      this.#rtcPendingEoi = ret < 0 ? 0 : ret;
    } else {
      ret = this.#hooks.deliver(msg, undefined);
    }
    if (ret && trig === IOAPIC_LEVEL_TRIG) this.#setEntry(irq, withIoapicField(this.#entry(irq), 'remote_irr', 1));
    return ret;
  }

  /** `ioapic_set_irq`. */
  #setIrq(irq: number, level: 0 | 1, lineStatus: boolean): number {
    const mask = 1 << irq;
    if (!level) {
      this.#s.irr &= ~mask & PIN_MASK_ALL;
      return 1;
    }
    if (irq === RTC_GSI && lineStatus && this.#rtcPendingEoi > 0) return 0;
    const old = this.#s.irr;
    this.#s.irr |= mask;
    if (((this.#low[irq] as number) & LOW_TRIG_LEVEL) === 0) {
      // An edge pin (IOAPIC_EDGE_TRIG).
      this.#irrDelivered &= ~mask;
      if (old === this.#s.irr) return 0;
    }
    return this.#service(irq, lineStatus);
  }

  /**
   * `kvm_ioapic_set_irq`: set `source`'s level on `pin` and return what KVM_IRQ_LINE_STATUS counts: a falling
   * line 1; a rising one 0 when coalesced (an edge already pending, a level pin with remote IRR, an RTC
   * interrupt not yet EOIed), -1 when masked, else the number of APICs that took it.
   */
  setIrq(pin: number, source: number, level: boolean, lineStatus: boolean): number {
    checkUint(pin, KVM_IOAPIC_NUM_PINS - 1, 'IOAPIC pin');
    return this.#setIrq(pin, this.#lines.set(pin, source, level), lineStatus);
  }

  /** `kvm_ioapic_clear_all`. */
  clearSource(source: number): void {
    this.#lines.clearSource(source);
  }

  /** The vectors whose EOI this IOAPIC wants from `lapic` (`kvm_ioapic_scan_entry`). */
  handlesVector(lapic: KvmLapic, vector: number, hasAckNotifier: (pin: number) => boolean): boolean {
    const rtc = this.#rtcDestMap.get(lapic.vcpu.vcpuId);
    if (rtc === vector) return true;
    for (let i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
      const low = this.#low[i] as number;
      if ((low & LOW_VECTOR) !== vector) continue;
      if ((low & LOW_TRIG_LEVEL) === 0 && !hasAckNotifier(i) && i !== RTC_GSI) continue;
      const e = this.#entry(i);
      const dm = destModeOf(ioapicField(e, 'dest_mode') === 1);
      if (this.#hooks.matchDest(lapic, ioapicField(e, 'dest_id'), dm) || lapic.pendingEoi(vector)) return true;
    }
    return false;
  }

  /**
   * `kvm_ioapic_update_eoi`: `lapic` EOIed `vector` (`trigMode` from its TMR). Pins with that vector are
   * acked; level pins drop remote IRR and, if still asserted and unmasked, are delivered again — except that
   * the 10000th successive re-delivery is postponed by 10 ms (`IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT`).
   */
  updateEoi(lapic: KvmLapic, vector: number, trigMode: 0 | 1, now: bigint): void {
    this.#clock.see(now);
    const id = lapic.vcpu.vcpuId;
    if (this.#rtcDestMap.get(id) === vector) {
      this.#rtcDestMap.delete(id);
      this.#rtcPendingEoi--;
      if (this.#rtcPendingEoi < 0) this.#rtcRestoreAll();
    }
    for (let i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
      if (((this.#low[i] as number) & LOW_VECTOR) !== vector) continue;
      this.#hooks.ackedIrq(i);
      if (trigMode !== IOAPIC_LEVEL_TRIG || lapic.regs.get(APIC_SPIV) & APIC_SPIV_DIRECTED_EOI) continue;
      this.#setEntry(i, withIoapicField(this.#entry(i), 'remote_irr', 0));
      if (!ioapicField(this.#entry(i), 'mask') && this.#s.irr & (1 << i)) {
        const n = (this.#irqEoi[i] ?? 0) + 1;
        this.#irqEoi[i] = n;
        if (n === IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT) {
          if (!this.#eoiInject.armed) this.#eoiInject.start(now + IOAPIC_EOI_STORM_DELAY_NS);
          this.#irqEoi[i] = 0;
        } else {
          this.#service(i, false);
        }
      } else {
        this.#irqEoi[i] = 0;
      }
    }
  }

  /** When the postponed re-delivery runs, if one is scheduled. */
  nextDeadline(): bigint | undefined {
    return this.#eoiInject.deadline();
  }

  /** Run the postponed re-delivery if due (`kvm_ioapic_eoi_inject_work`). */
  advance(now: bigint): void {
    this.#clock.see(now);
    if (this.#eoiInject.takeDue(now) === undefined) return;
    for (let i = 0; i < KVM_IOAPIC_NUM_PINS; i++) {
      const e = this.#entry(i);
      if (ioapicField(e, 'trig_mode') !== IOAPIC_LEVEL_TRIG) continue;
      if (this.#s.irr & (1 << i) && !ioapicField(e, 'remote_irr')) this.#service(i, false);
    }
  }

  /** The MMIO base (`ioapic->base_address`; KVM_SET_IRQCHIP can move it). */
  get baseAddress(): bigint {
    return this.#s.base_address;
  }

  /** `ioapic_in_range`. */
  inRange(address: bigint): boolean {
    return address >= this.#s.base_address && address < this.#s.base_address + BigInt(IOAPIC_MEM_LENGTH);
  }

  /** `ioapic_read_indirect`. */
  #readIndirect(): number {
    switch (this.#s.ioregsel) {
      case IOAPIC_REG_VERSION:
        return (((KVM_IOAPIC_NUM_PINS - 1) & 0xff) << 16) | (IOAPIC_VERSION_ID & 0xff);
      case IOAPIC_REG_APIC_ID:
      case IOAPIC_REG_ARB_ID:
        return ((this.#s.id & 0xf) << 24) >>> 0;
      default: {
        const index = ((this.#s.ioregsel - 0x10) >>> 1) >>> 0;
        const content = index < KVM_IOAPIC_NUM_PINS ? this.#entry(index) : (1n << 64n) - 1n;
        return Number(this.#s.ioregsel & 1 ? (content >> 32n) & 0xffffffffn : content & 0xffffffffn);
      }
    }
  }

  /** `ioapic_write_indirect`. */
  #writeIndirect(val: number): void {
    switch (this.#s.ioregsel) {
      case IOAPIC_REG_VERSION:
      case IOAPIC_REG_ARB_ID:
        return;
      case IOAPIC_REG_APIC_ID:
        this.#s.id = (val >>> 24) & 0xf;
        return;
      default:
        break;
    }
    const index = ((this.#s.ioregsel - 0x10) >>> 1) >>> 0;
    if (index >= KVM_IOAPIC_NUM_PINS) return;
    const before = this.#entry(index);
    let e = this.#s.ioregsel & 1
      ? (before & 0xffffffffn) | (BigInt(val >>> 0) << 32n)
      : (before & ~0xffffffffn) | BigInt(val >>> 0);
    e = withIoapicField(e, 'remote_irr', ioapicField(before, 'remote_irr'));
    e = withIoapicField(e, 'delivery_status', ioapicField(before, 'delivery_status'));
    // An edge pin has no remote IRR (guests use this as an EOI on IOAPICs without an EOI register).
    if (ioapicField(e, 'trig_mode') === IOAPIC_EDGE_TRIG) e = withIoapicField(e, 'remote_irr', 0);
    this.#setEntry(index, e);
    const maskAfter = ioapicField(e, 'mask');
    if (ioapicField(before, 'mask') !== maskAfter) this.#hooks.maskChanged(index, maskAfter === 1);
    if (
      ioapicField(e, 'trig_mode') === IOAPIC_LEVEL_TRIG &&
      this.#s.irr & (1 << index) &&
      !maskAfter &&
      !ioapicField(e, 'remote_irr')
    ) {
      if (this.#hooks.notifyResampler(index)) this.#s.irr &= ~(1 << index) & PIN_MASK_ALL;
      else this.#service(index, false);
    }
  }

  /**
   * A guest MMIO read (`ioapic_mmio_read`): `undefined` outside the window (not this device's); IOREGSEL at
   * offset 0x00, IOWIN at 0x10, 0 elsewhere; `len` 1, 2, 4 (or 8: the 32-bit value zero-extended).
   */
  mmioRead(address: bigint, len: number): number | undefined {
    if (!this.inRange(address)) return undefined;
    const off = Number(address & 0xffn);
    let result = 0;
    if (off === IOAPIC_REG_SELECT) result = this.#s.ioregsel;
    else if (off === IOAPIC_REG_WINDOW) result = this.#readIndirect();
    if (len === 1) return result & 0xff;
    if (len === 2) return result & 0xffff;
    return result >>> 0;
  }

  /** A guest MMIO write (`ioapic_mmio_write`); `false` outside the window. Lengths other than 1, 2, 4, 8 are ignored. */
  mmioWrite(address: bigint, len: number, value: number): boolean {
    if (!this.inRange(address)) return false;
    let data: number;
    if (len === 8 || len === 4) data = value >>> 0;
    else if (len === 2) data = value & 0xffff;
    else if (len === 1) data = value & 0xff;
    else return true;
    const off = Number(address & 0xffn);
    if (off === IOAPIC_REG_SELECT) this.#s.ioregsel = data & 0xff;
    else if (off === IOAPIC_REG_WINDOW) this.#writeIndirect(data);
    return true;
  }

  /** KVM_GET_IRQCHIP for chip 2 (`kvm_get_ioapic`): edge pins already delivered do not show in `irr`. */
  getState(): kvm_ioapic_state {
    const s = copyKvmIoapicState(this.#s);
    s.irr = (s.irr & ~this.#irrDelivered) >>> 0;
    return s;
  }

  /**
   * KVM_SET_IRQCHIP for chip 2 (`kvm_set_ioapic`): copy everything in raw, then raise every pin of `irr` again
   * as a line-status injection (RTC tracking rebuilt around it).
   */
  setState(state: kvm_ioapic_state): void {
    assertKvmIoapicState(state);
    const copy = copyKvmIoapicState(state);
    Object.assign(this.#s, copy);
    for (let i = 0; i < KVM_IOAPIC_NUM_PINS; i++) this.#low[i] = Number(BigInt.asUintN(32, this.#entry(i)));
    this.#s.irr = 0;
    this.#irrDelivered = 0;
    this.#rtcReset();
    for (let i = 0; i < KVM_IOAPIC_NUM_PINS; i++) if (copy.irr & (1 << i)) this.#setIrq(i, 1, true);
    this.#rtcRestoreAll();
  }

  /** Whether `pin`'s redirection entry is masked. */
  isMasked(pin: number): boolean {
    return ioapicField(this.#entry(pin), 'mask') === 1;
  }

  /** The redirection entry of `pin` (`redirtbl[pin].bits`). */
  entry(pin: number): bigint {
    return this.#entry(pin);
  }

}
