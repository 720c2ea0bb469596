/**
 * The GSI routing table (virt/kvm/irqchip.c `kvm_set_irq_routing`, arch/x86/kvm/irq_comm.c
 * `kvm_set_routing_entry`): which irqchip pins and MSIs each GSI drives, the default table
 * KVM_CREATE_IRQCHIP installs (GSI 0-15 to the PIC and the IOAPIC, 16-23 to the IOAPIC), and the chip/pin →
 * GSI map that ack and mask notifiers use.
 *
 * Validation follows Linux in order, and a rejected table leaves the old one in place (it is built aside and
 * swapped in only when complete, as Linux does with RCU). Hyper-V SINT entries are accepted and kept but
 * never deliver (no SynIC is modelled: `kvm_hv_synic_set_irq` fails with EINVAL); Xen event channels are
 * refused with EINVAL, as by a kernel without CONFIG_KVM_XEN.
 *
 * @module
 */

import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IOAPIC_NUM_PINS, KVM_NR_IRQCHIPS } from '../abi/constants.js';
import { KernelError, UsageError } from '@vac/core';
import {
  KVM_IRQ_ROUTING_HV_SINT,
  KVM_IRQ_ROUTING_IRQCHIP,
  KVM_IRQ_ROUTING_MSI,
  KVM_IRQCHIP_NUM_PINS,
  KVM_MAX_IRQ_ROUTES,
  KVM_MSI_VALID_DEVID,
  PIC_NUM_PINS,
} from './constants.js';
import { checkUint } from './errors.js';
import { msiRouteInvalid } from './msi.js';

/** One entry of `struct kvm_irq_routing` as user space passes it (the union members it uses, by type). */
export interface kvm_irq_routing_entry {
  gsi: number;
  type: number;
  flags: number;
  /** `u.irqchip` for KVM_IRQ_ROUTING_IRQCHIP. */
  irqchip?: { irqchip: number; pin: number };
  /** `u.msi` for KVM_IRQ_ROUTING_MSI. */
  msi?: { address_lo: number; address_hi: number; data: number; devid: number };
  /** `u.hv_sint` for KVM_IRQ_ROUTING_HV_SINT. */
  hv_sint?: { vcpu: number; sint: number };
}

/** A routing entry as the kernel keeps it (`struct kvm_kernel_irq_routing_entry`). */
export type KernelRoute =
  | { readonly gsi: number; readonly type: 'irqchip'; readonly irqchip: number; readonly pin: number }
  | { readonly gsi: number; readonly type: 'msi'; readonly address_lo: number; readonly address_hi: number; readonly data: number; readonly flags: number; readonly devid: number }
  | { readonly gsi: number; readonly type: 'hv_sint'; readonly vcpu: number; readonly sint: number };

/** Which irqchips are in the kernel (decides which irqchip routes are valid). */
export interface RoutingChips {
  readonly picInKernel: boolean;
  readonly ioapicInKernel: boolean;
  readonly x2apicFormat: boolean;
}

/** An immutable routing table (`struct kvm_irq_routing_table`). */
export class RoutingTable {
  /** `nr_rt_entries`: one more than the highest GSI. */
  readonly nrRtEntries: number;
  readonly #map: Map<number, KernelRoute[]>;
  readonly #chip: number[][];

  private constructor(nrRtEntries: number, map: Map<number, KernelRoute[]>, chip: number[][]) {
    this.nrRtEntries = nrRtEntries;
    this.#map = map;
    this.#chip = chip;
  }

  /** The routes of `gsi` in the order `kvm_set_irq` runs them (`kvm_irq_map_gsi`). */
  routes(gsi: number): readonly KernelRoute[] {
    if (gsi >= this.nrRtEntries) return [];
    return this.#map.get(gsi) ?? [];
  }

  /** `kvm_irq_map_chip_pin`: the GSI that routes to `irqchip`/`pin`, or -1. */
  gsiOf(irqchip: number, pin: number): number {
    return this.#chip[irqchip]?.[pin] ?? -1;
  }

  /** Every route, GSI by GSI. */
  *entries(): Iterable<KernelRoute> {
    for (const list of [...this.#map.entries()].sort((a, b) => a[0] - b[0])) yield* list[1];
  }

  /**
   * `kvm_set_irq_routing`: build a table from user entries, or throw the `KernelError` Linux returns (EINVAL
   * for a GSI ≥ KVM_MAX_IRQ_ROUTES, bad flags, a second route of a GSI to the same irqchip or beside a non-irqchip
   * route, an irqchip not in the kernel, a pin out of range, an unknown type, an invalid x2APIC-format MSI).
   */
  static build(entries: readonly kvm_irq_routing_entry[], chips: RoutingChips): RoutingTable {
    if (!Array.isArray(entries)) throw new UsageError('ERR_INVALID_ARG', 'routing entries must be an array');
    let max = 0;
    for (const ue of entries) {
      checkEntryShape(ue);
      if (ue.gsi >= KVM_MAX_IRQ_ROUTES) throw fail(`GSI ${String(ue.gsi)} ≥ KVM_MAX_IRQ_ROUTES`);
      max = Math.max(max, ue.gsi);
    }
    const map = new Map<number, KernelRoute[]>();
    const chip = Array.from({ length: KVM_NR_IRQCHIPS }, () => new Array<number>(KVM_IRQCHIP_NUM_PINS).fill(-1));
    for (const ue of entries) {
      if (ue.type === KVM_IRQ_ROUTING_MSI ? ue.flags & ~KVM_MSI_VALID_DEVID : ue.flags) {
        throw fail(`GSI ${String(ue.gsi)}: flags ${String(ue.flags)} not valid for type ${String(ue.type)}`);
      }
      const list = map.get(ue.gsi) ?? [];
      for (const ei of list) {
        if (ei.type !== 'irqchip' || ue.type !== KVM_IRQ_ROUTING_IRQCHIP || ue.irqchip?.irqchip === ei.irqchip) {
          throw fail(`GSI ${String(ue.gsi)} is already routed to that irqchip or to a non-irqchip target`);
        }
      }
      const e = kernelRoute(ue, chips);
      if (e.type === 'irqchip') (chip[e.irqchip] as number[])[e.pin] = e.gsi;
      list.unshift(e); // hlist_add_head
      map.set(ue.gsi, list);
    }
    // kvm_set_irq walks the hlist into an array and then runs it from the end: insertion order.
    for (const [gsi, list] of map) map.set(gsi, list.reverse());
    return new RoutingTable(max + 1, map, chip);
  }

  /**
   * The table KVM_CREATE_IRQCHIP installs (`kvm_setup_default_irq_routing`). A table is immutable and the default
   * one has no MSI routes (the only entries `x2apicFormat` decides on), so every VM with both chips in the kernel
   * shares one, built at the first KVM_CREATE_IRQCHIP.
   */
  static defaultTable(chips: RoutingChips): RoutingTable {
    if (!chips.picInKernel || !chips.ioapicInKernel) return RoutingTable.build(DEFAULT_ROUTING, chips);
    return (defaultShared ??= RoutingTable.build(DEFAULT_ROUTING, chips));
  }

  /** The empty table of a split irqchip (`kvm_setup_empty_irq_routing`): one, shared (nothing in it depends on `chips`). */
  static empty(chips: RoutingChips): RoutingTable {
    return (emptyShared ??= RoutingTable.build([], chips));
  }
}

/** The default table with both chips in the kernel, once built ({@link RoutingTable.defaultTable}). */
let defaultShared: RoutingTable | undefined;
/** The empty table, once built ({@link RoutingTable.empty}). */
let emptyShared: RoutingTable | undefined;

function fail(message: string): KernelError {
  return new KernelError('EINVAL', 'kvm_set_irq_routing', message);
}

function checkEntryShape(ue: kvm_irq_routing_entry): void {
  if (typeof ue !== 'object' || ue === null) throw new UsageError('ERR_INVALID_ARG', 'routing entry must be an object');
  for (const k of ['gsi', 'type', 'flags'] as const) {
    checkUint(ue[k], 0xffffffff, `kvm_irq_routing_entry.${k}`);
  }
}

/** `kvm_set_routing_entry` (x86). */
function kernelRoute(ue: kvm_irq_routing_entry, chips: RoutingChips): KernelRoute {
  switch (ue.type) {
    case KVM_IRQ_ROUTING_IRQCHIP: {
      const u = ue.irqchip ?? { irqchip: 0, pin: 0 };
      let maxPin: number;
      let delta = 0;
      switch (u.irqchip) {
        case KVM_IRQCHIP_PIC_SLAVE:
        case KVM_IRQCHIP_PIC_MASTER:
          if (u.irqchip === KVM_IRQCHIP_PIC_SLAVE) delta = 8;
          if (!chips.picInKernel) throw fail('no in-kernel PIC');
          maxPin = PIC_NUM_PINS;
          break;
        case KVM_IRQCHIP_IOAPIC:
          if (!chips.ioapicInKernel) throw fail('no in-kernel IOAPIC');
          maxPin = KVM_IOAPIC_NUM_PINS;
          break;
        default:
          throw fail(`unknown irqchip ${String(u.irqchip)}`);
      }
      const pin = (u.pin + delta) >>> 0;
      if (pin >= maxPin) throw fail(`pin ${String(u.pin)} out of range for irqchip ${String(u.irqchip)}`);
      return { gsi: ue.gsi, type: 'irqchip', irqchip: u.irqchip, pin };
    }
    case KVM_IRQ_ROUTING_MSI: {
      const m = ue.msi ?? { address_lo: 0, address_hi: 0, data: 0, devid: 0 };
      if (msiRouteInvalid(m, chips.x2apicFormat)) throw fail('x2APIC-format MSI with address_hi bits 0-7 set');
      return { gsi: ue.gsi, type: 'msi', address_lo: m.address_lo, address_hi: m.address_hi, data: m.data, flags: ue.flags, devid: m.devid };
    }
    case KVM_IRQ_ROUTING_HV_SINT: {
      const h = ue.hv_sint ?? { vcpu: 0, sint: 0 };
      return { gsi: ue.gsi, type: 'hv_sint', vcpu: h.vcpu, sint: h.sint };
    }
    default:
      throw fail(`unknown routing type ${String(ue.type)}`);
  }
}

/** `default_routing[]`: `ROUTING_ENTRY2(0..15)` (IOAPIC then PIC), `ROUTING_ENTRY1(16..23)`. */
export const DEFAULT_ROUTING: readonly kvm_irq_routing_entry[] = Array.from({ length: KVM_IOAPIC_NUM_PINS }, (_, irq) => {
  const ioapic: kvm_irq_routing_entry = { gsi: irq, type: KVM_IRQ_ROUTING_IRQCHIP, flags: 0, irqchip: { irqchip: KVM_IRQCHIP_IOAPIC, pin: irq } };
  if (irq >= 16) return [ioapic];
  const pic: kvm_irq_routing_entry = {
    gsi: irq,
    type: KVM_IRQ_ROUTING_IRQCHIP,
    flags: 0,
    irqchip: { irqchip: irq < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, pin: irq % 8 },
  };
  return [ioapic, pic];
}).flat();
