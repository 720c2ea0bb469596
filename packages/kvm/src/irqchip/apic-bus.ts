/**
 * Delivery of interrupt messages to the VM's local APICs: `kvm_irq_delivery_to_apic` with KVM's optimized
 * APIC map (`kvm_recalculate_apic_map`, `__kvm_irq_delivery_to_apic_fast`) and the slow path it falls back to
 * (`kvm_apic_match_dest` over every vCPU), lowest-priority arbitration by vector hashing (KVM's default
 * `vector_hashing=1`), and the broadcast rules of xAPIC and x2APIC (arch/x86/kvm/lapic.c, irq_comm.c).
 *
 * Both paths are modelled because they differ observably: e.g. a physical MSI to an APIC ID no vCPU has is
 * counted 0 by the map (checked on a real /dev/kvm: KVM_SIGNAL_MSI returns 0), and lowest-priority logical
 * delivery hashes over the destination bits on the fast path but over matching vCPUs on the slow one.
 *
 * @module
 */

import { copyLapicIrq, isLowestPriority, type LapicIrq } from './apic-irq.js';
import {
  APIC_BROADCAST,
  APIC_DEST_ALLBUT,
  APIC_DEST_ALLINC,
  APIC_DEST_NOSHORT,
  APIC_DEST_PHYSICAL,
  APIC_DEST_SELF,
  APIC_DFR,
  APIC_DFR_CLUSTER,
  APIC_DFR_FLAT,
  APIC_DM_FIXED,
  APIC_LDR,
  X2APIC_BROADCAST,
} from './constants.js';
import type { KvmLapic } from './lapic.js';

/** `enum kvm_apic_logical_mode`. */
type LogicalMode = 'sw-disabled' | 'xapic-flat' | 'xapic-cluster' | 'x2apic' | 'map-disabled';

/** `struct kvm_apic_map`. */
interface ApicMap {
  maxApicId: number;
  logicalMode: LogicalMode;
  phys: Map<number, KvmLapic>;
  flat: (KvmLapic | undefined)[];
  cluster: (KvmLapic | undefined)[][];
}

/** VM-wide options of the APIC bus (KVM_CAP_X2APIC_API flags). */
export interface ApicBusOptions {
  /** KVM_X2APIC_API_USE_32BIT_IDS: `kvm->arch.x2apic_format`. */
  readonly x2apicFormat?: boolean;
  /** KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK. */
  readonly broadcastQuirkDisabled?: boolean;
}

/** The local APICs of one VM and the rules that route messages between them. */
export class ApicBus {
  readonly x2apicFormat: boolean;
  readonly broadcastQuirkDisabled: boolean;
  readonly #lapics: KvmLapic[] = [];
  #map: ApicMap | null | undefined;

  constructor(options: ApicBusOptions = {}) {
    this.x2apicFormat = options.x2apicFormat ?? false;
    this.broadcastQuirkDisabled = options.broadcastQuirkDisabled ?? false;
  }

  /** The APICs in vCPU creation order (`kvm_for_each_vcpu`). */
  get lapics(): readonly KvmLapic[] {
    return this.#lapics;
  }

  /** Add a vCPU's APIC (KVM_CREATE_VCPU). */
  add(lapic: KvmLapic): void {
    this.#lapics.push(lapic);
    this.#map = undefined;
  }

  /** `apic_map_dirty = DIRTY`: the map is recomputed before its next use, as `kvm_recalculate_apic_map` does. */
  mapChanged(): void {
    this.#map = undefined;
  }

  /** `kvm_apic_mda`: the broadcast quirk rewrites 0xff to the x2APIC broadcast for a non-IPI to an x2APIC. */
  #mda(dest: number, source: KvmLapic | undefined, target: KvmLapic): number {
    if (!this.broadcastQuirkDisabled && source === undefined && dest === APIC_BROADCAST && target.x2apicMode) {
      return X2APIC_BROADCAST;
    }
    return dest >>> 0;
  }

  /** `kvm_apic_match_dest`. */
  matchDest(target: KvmLapic, source: KvmLapic | undefined, shorthand: number, dest: number, destMode: number): boolean {
    const mda = this.#mda(dest, source, target);
    switch (shorthand) {
      case APIC_DEST_NOSHORT:
        return destMode === APIC_DEST_PHYSICAL ? matchPhysical(target, mda) : matchLogical(target, mda);
      case APIC_DEST_SELF:
        return target === source;
      case APIC_DEST_ALLINC:
        return true;
      case APIC_DEST_ALLBUT:
        return target !== source;
      default:
        return false;
    }
  }

  /** `kvm_recalculate_apic_map`; `null` where Linux fails to build it (aliased physical IDs). */
  #buildMap(): ApicMap | null {
    let maxApicId = 255;
    for (const a of this.#lapics) if (a.hwEnabled) maxApicId = Math.max(maxApicId, a.x2apicId);
    const map: ApicMap = {
      maxApicId,
      logicalMode: 'sw-disabled',
      phys: new Map(),
      flat: new Array<KvmLapic | undefined>(8).fill(undefined),
      cluster: Array.from({ length: 16 }, () => new Array<KvmLapic | undefined>(4).fill(undefined)),
    };
    for (const a of this.#lapics) {
      if (!a.hwEnabled) continue;
      // kvm_recalculate_phys_map
      if (this.x2apicFormat) {
        if (a.x2apicMode || a.x2apicId > 0xff) map.phys.set(a.x2apicId, a);
        if (!a.x2apicMode && !map.phys.has(a.xapicId)) map.phys.set(a.xapicId, a);
      } else {
        const id = a.x2apicMode ? a.x2apicId : a.xapicId;
        if (map.phys.has(id)) return null;
        map.phys.set(id, a);
      }
      // kvm_recalculate_logical_map
      if (map.logicalMode === 'map-disabled' || !a.swEnabled) continue;
      let ldr = a.regs.get(APIC_LDR);
      if (ldr === 0) continue;
      let mode: LogicalMode;
      if (a.x2apicMode) {
        mode = 'x2apic';
      } else {
        ldr >>>= 24;
        mode = a.regs.get(APIC_DFR) === APIC_DFR_FLAT ? 'xapic-flat' : 'xapic-cluster';
      }
      if (map.logicalMode === 'sw-disabled') map.logicalMode = mode;
      else if (map.logicalMode !== mode) {
        map.logicalMode = 'map-disabled';
        continue;
      }
      if (a.x2apicMode) continue;
      const dest = logicalDest(map, ldr);
      if (dest === undefined || dest.mask === 0) continue;
      const idx = 31 - Math.clz32(dest.mask & -dest.mask);
      if ((dest.mask & (dest.mask - 1)) !== 0 || dest.cluster[idx] !== undefined) map.logicalMode = 'map-disabled';
      else dest.cluster[idx] = a;
    }
    return map;
  }

  #currentMap(): ApicMap | null {
    // A VM without vCPUs has no map yet (`kvm->arch.apic_map` is NULL until the first LAPIC recalculates it):
    // delivery takes the slow path, which finds no APIC (-1; checked on a real /dev/kvm: KVM_SIGNAL_MSI → EPERM).
    if (this.#lapics.length === 0) return null;
    if (this.#map === undefined) this.#map = this.#buildMap();
    return this.#map;
  }

  /** `kvm_apic_is_broadcast_dest`. */
  #isBroadcast(src: KvmLapic | undefined, irq: LapicIrq, map: ApicMap): boolean {
    if (this.broadcastQuirkDisabled) {
      return (irq.destId === APIC_BROADCAST && map.logicalMode !== 'x2apic') || irq.destId >>> 0 === X2APIC_BROADCAST;
    }
    const x2apicIpi = src !== undefined && src.x2apicMode;
    return irq.destId >>> 0 === (x2apicIpi ? X2APIC_BROADCAST : APIC_BROADCAST);
  }

  /** `kvm_apic_map_get_dest_lapic`: the destinations by the map, or `undefined` when the map cannot say. */
  #mapDest(src: KvmLapic | undefined, irq: LapicIrq): (KvmLapic | undefined)[] | undefined {
    if (irq.shorthand !== APIC_DEST_NOSHORT) return undefined;
    const map = this.#currentMap();
    if (map === null || this.#isBroadcast(src, irq, map)) return undefined;
    if (irq.destMode === APIC_DEST_PHYSICAL) {
      return irq.destId >>> 0 > map.maxApicId ? [] : [map.phys.get(irq.destId >>> 0)];
    }
    const dest = logicalDest(map, irq.destId >>> 0);
    if (dest === undefined) return undefined;
    const chosen: (KvmLapic | undefined)[] = [];
    const bits: number[] = [];
    for (let i = 0; i < 16; i++) if (dest.mask & (1 << i)) bits.push(i);
    if (!isLowestPriority(irq)) {
      for (const i of bits) chosen.push(dest.cluster[i]);
      return chosen;
    }
    if (bits.length === 0) return [];
    const lowest = bits[irq.vector % bits.length] as number;
    return dest.cluster[lowest] === undefined ? [] : [dest.cluster[lowest]];
  }

  /**
   * `kvm_irq_delivery_to_apic(kvm, src, irq, rtc)`: deliver and return how many APICs took it (-1 if none
   * was addressed at all on the slow path). `src` is the sending APIC for IPIs, `undefined` for the IOAPIC and
   * MSIs; `rtc` collects vCPU id → vector for the IOAPIC's RTC EOI tracking.
   */
  deliver(src: KvmLapic | undefined, irqIn: LapicIrq, rtc?: Map<number, number>): number {
    const irq = copyLapicIrq(irqIn);
    if (irq.shorthand === APIC_DEST_SELF) return src === undefined ? 0 : src.acceptIrq(irq, rtc);
    const fast = this.#mapDest(src, irq);
    if (fast !== undefined) {
      let r = 0;
      for (const a of fast) if (a !== undefined) r += a.acceptIrq(irq, rtc);
      return r;
    }
    if (irq.destMode === APIC_DEST_PHYSICAL && irq.destId === 0xff && isLowestPriority(irq)) {
      irq.deliveryMode = APIC_DM_FIXED; // "apic: phys broadcast and lowest prio"
    }
    let r = -1;
    const candidates: KvmLapic[] = [];
    for (const a of this.#lapics) {
      if (!a.hwEnabled) continue;
      if (!this.matchDest(a, src, irq.shorthand, irq.destId, irq.destMode)) continue;
      if (!isLowestPriority(irq)) {
        if (r < 0) r = 0;
        r += a.acceptIrq(irq, rtc);
      } else if (a.swEnabled) {
        candidates.push(a);
      }
    }
    if (candidates.length > 0) {
      const lowest = candidates[irq.vector % candidates.length] as KvmLapic;
      r = lowest.acceptIrq(irq, rtc);
    }
    return r;
  }
}

/** `kvm_apic_match_physical_addr`. */
function matchPhysical(target: KvmLapic, mda: number): boolean {
  if (mda === (target.x2apicMode ? X2APIC_BROADCAST : APIC_BROADCAST)) return true;
  if (target.x2apicMode || mda > 0xff) return mda === target.x2apicId;
  return mda === target.xapicId;
}

/** `kvm_apic_match_logical_addr`. */
function matchLogical(target: KvmLapic, mda: number): boolean {
  if (mda === (target.x2apicMode ? X2APIC_BROADCAST : APIC_BROADCAST)) return true;
  let logicalId = target.regs.get(APIC_LDR);
  if (target.x2apicMode) return logicalId >>> 16 === mda >>> 16 && (logicalId & mda & 0xffff) !== 0;
  logicalId >>>= 24;
  switch (target.regs.get(APIC_DFR)) {
    case APIC_DFR_FLAT:
      return (logicalId & mda) !== 0;
    case APIC_DFR_CLUSTER:
      return logicalId >> 4 === mda >> 4 && (logicalId & mda & 0xf) !== 0;
    default:
      return false;
  }
}

/** `kvm_apic_map_get_logical_dest`: the cluster and the bit mask in it that `dest` names. */
function logicalDest(map: ApicMap, dest: number): { cluster: (KvmLapic | undefined)[]; mask: number } | undefined {
  switch (map.logicalMode) {
    case 'sw-disabled':
      return { cluster: map.flat, mask: 0 };
    case 'x2apic': {
      const offset = (dest >>> 16) * 16;
      if (offset > map.maxApicId) return { cluster: [], mask: 0 };
      const size = Math.min(map.maxApicId - offset + 1, 16);
      const cluster = Array.from({ length: 16 }, (_, i) => map.phys.get(offset + i));
      return { cluster, mask: dest & (0xffff >> (16 - size)) };
    }
    case 'xapic-flat':
      return { cluster: map.flat, mask: dest & 0xff };
    case 'xapic-cluster':
      return { cluster: map.cluster[(dest >> 4) & 0xf] ?? [], mask: dest & 0xf };
    default:
      return undefined;
  }
}
