/**
 * The argument structures of the interrupt ioctls (include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h) as
 * {@link StructCodec}s: `kvm_irq_level`, `kvm_pit_config`, `kvm_pit_state` / `kvm_pit_state2`, `kvm_irqchip`,
 * `kvm_lapic_state`, `kvm_irq_routing` (with its entries), `kvm_irqfd`, `kvm_msi` and `kvm_reinject_control`, with
 * their `make…` constructors (zeroed, overridden by `init`). Their JavaScript values are the irqchip models' own types (`irqchip/state/`), so what an
 * ioctl copies in is what the device takes.
 *
 * Two C unions are resolved by a field beside them, as the kernel reads them: `kvm_irqchip.chip` by `chip_id` (an
 * object argument holds `{ pic }`, `{ ioapic }` or the raw `{ dummy }` bytes; the ioctl re-reads the bytes by
 * `chip_id`), and `kvm_irq_routing_entry.u` by `type` (`irqchip`, `msi` or `hv_sint` beside `gsi`/`type`/`flags`).
 *
 * @module
 */
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from './constants.js';
import {
  FlexCodec,
  UserFault,
  bytes,
  defineStruct,
  nested,
  s32,
  s64,
  tuple,
  u16,
  u32,
  u64,
  u8,
  type FieldKind,
  type StructCodec,
} from './codec.js';
import { KVM_LAYOUTS, cStruct, type CLayout } from './layout.js';
import { KVM_IRQ_ROUTING_HV_SINT, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI } from '../irqchip/constants.js';
import type { kvm_irq_routing_entry } from '../irqchip/routing.js';
import { KVM_PIC_STATE_FIELDS, type kvm_pic_state } from '../irqchip/state/pic-state.js';
import type { kvm_ioapic_state } from '../irqchip/state/ioapic-state.js';
import type { kvm_pit_channel_state, kvm_pit_state, kvm_pit_state2 } from '../irqchip/state/pit-state.js';
import type { kvm_lapic_state } from '../irqchip/state/lapic-state.js';
import { decodeKvmIrqchip, type kvm_irqchip } from '../irqchip/state/irqchip-state.js';

/** A field kind standing for a member whose C type is an aggregate (`union …`) of the same size. */
function asAggregate<T>(kind: FieldKind<T>, layout: CLayout, count?: number): FieldKind<T> {
  return { ...kind, c: layout, count, cName: `union ${layout.name}${count === undefined ? '' : `[${count}]`}` };
}

/** The value of own data property `key` of `obj`, or a fault. */
function own(obj: unknown, key: string, path: string): unknown {
  if (typeof obj !== 'object' || obj === null) throw new UserFault(`${path} must be an object`);
  const d = Object.getOwnPropertyDescriptor(obj, key);
  if (d === undefined) throw new UserFault(`${path}.${key} is missing`);
  if (d.get !== undefined || d.set !== undefined) throw new UserFault(`${path}.${key} is an accessor, not a data property`);
  return d.value;
}

/* ---- struct kvm_irq_level ------------------------------------------------------------------------------- */

/** `struct kvm_irq_level` as KVM_IRQ_LINE reads it: the GSI and the level. */
export interface kvm_irq_level {
  /** The GSI (`irq`, the union's input member). */ irq: number;
  /** The level: 0 low, anything else high. */ level: number;
}

/**
 * `struct kvm_irq_level` as KVM_IRQ_LINE_STATUS writes it back: `status` over `irq` (one union: `irq` then reads the
 * same 32 bits unsigned).
 */
export interface kvm_irq_level_status {
  /** The union's bits read as `irq`. */ irq: number;
  /** What `kvm_set_irq` answered (the union's output member). */ status: number;
  /** The level, as given. */ level: number;
}

/** KVM_IRQ_LINE's and KVM_IRQ_LINE_STATUS's argument. */
export const KVM_IRQ_LEVEL_CODEC: StructCodec<kvm_irq_level> = defineStruct<kvm_irq_level>(KVM_LAYOUTS.kvm_irq_level, { irq: u32, level: u32 });
/** KVM_IRQ_LINE_STATUS's result (same bytes, `status` read as signed). */
export const KVM_IRQ_LEVEL_STATUS_CODEC: StructCodec<kvm_irq_level_status> = defineStruct<kvm_irq_level_status>(KVM_LAYOUTS.kvm_irq_level, {
  irq: u32,
  status: s32,
  level: u32,
});

/* ---- struct kvm_pit_config, kvm_pit_state, kvm_pit_state2 ------------------------------------------------ */

/** `struct kvm_pit_config` (KVM_CREATE_PIT2). */
export interface kvm_pit_config {
  /** `KVM_PIT_SPEAKER_DUMMY` or 0 (other bits are kept as given, as Linux does). */ flags: number;
}

/** KVM_CREATE_PIT2's argument. */
export const KVM_PIT_CONFIG_CODEC: StructCodec<kvm_pit_config> = defineStruct<kvm_pit_config>(KVM_LAYOUTS.kvm_pit_config, { flags: u32 });

/** One PIT channel. */
export const KVM_PIT_CHANNEL_STATE_CODEC: StructCodec<kvm_pit_channel_state> = defineStruct<kvm_pit_channel_state>(KVM_LAYOUTS.kvm_pit_channel_state, {
  count: u32,
  latched_count: u16,
  count_latched: u8,
  status_latched: u8,
  status: u8,
  read_state: u8,
  write_state: u8,
  write_latch: u8,
  rw_mode: u8,
  mode: u8,
  bcd: u8,
  gate: u8,
  count_load_time: s64,
});

const channels = tuple(nested(KVM_PIT_CHANNEL_STATE_CODEC), 3) as FieldKind<unknown> as FieldKind<kvm_pit_state['channels']>;

/** KVM_GET_PIT / KVM_SET_PIT's argument. */
export const KVM_PIT_STATE_CODEC: StructCodec<kvm_pit_state> = defineStruct<kvm_pit_state>(KVM_LAYOUTS.kvm_pit_state, { channels });
/** KVM_GET_PIT2 / KVM_SET_PIT2's argument (`reserved` written as zero). */
export const KVM_PIT_STATE2_CODEC: StructCodec<kvm_pit_state2> = defineStruct<kvm_pit_state2>(KVM_LAYOUTS.kvm_pit_state2, { channels, flags: u32 });

/* ---- struct kvm_irqchip ------------------------------------------------------------------------------------ */

/** One 8259 (`struct kvm_pic_state`). */
export const KVM_PIC_STATE_CODEC: StructCodec<kvm_pic_state> = defineStruct<kvm_pic_state>(
  KVM_LAYOUTS.kvm_pic_state,
  Object.fromEntries(KVM_PIC_STATE_FIELDS.map((k) => [k, u8])) as { [K in keyof kvm_pic_state]: FieldKind<number> },
);

const IOAPIC = KVM_LAYOUTS.kvm_ioapic_state;

/** The IOAPIC (`struct kvm_ioapic_state`); each redirection entry is its `__u64 bits`. */
export const KVM_IOAPIC_STATE_CODEC: StructCodec<kvm_ioapic_state> = defineStruct<kvm_ioapic_state>(IOAPIC, {
  base_address: u64,
  ioregsel: u32,
  id: u32,
  irr: u32,
  redirtbl: asAggregate(tuple(u64, 24), IOAPIC.member('redirtbl').type as CLayout, 24),
});

const CHIP = KVM_LAYOUTS.kvm_irqchip.member('chip').type as CLayout;
const DUMMY = bytes(512) as FieldKind<unknown> as FieldKind<Uint8Array>;

/** `kvm_irqchip.chip`: `{ pic }`, `{ ioapic }` or `{ dummy }` (512 raw bytes, what `decode` gives). */
const chipUnion: FieldKind<kvm_irqchip['chip']> = {
  cName: `union ${CHIP.name}`,
  size: CHIP.size,
  c: CHIP,
  count: undefined,
  zero: () => ({ dummy: new Uint8Array(512) }),
  clone: (v) => ('pic' in v ? { pic: KVM_PIC_STATE_CODEC.clone(v.pic) } : 'ioapic' in v ? { ioapic: KVM_IOAPIC_STATE_CODEC.clone(v.ioapic) } : { dummy: v.dummy.slice() }),
  problem(v, path) {
    if (typeof v !== 'object' || v === null) return `${path} must be an object holding pic, ioapic or dummy`;
    if ('pic' in v) return KVM_PIC_STATE_CODEC.problem((v as { pic: unknown }).pic, `${path}.pic`);
    if ('ioapic' in v) return KVM_IOAPIC_STATE_CODEC.problem((v as { ioapic: unknown }).ioapic, `${path}.ioapic`);
    if ('dummy' in v) return DUMMY.problem((v as { dummy: unknown }).dummy, `${path}.dummy`);
    return `${path} must hold pic, ioapic or dummy`;
  },
  copyIn(v, path) {
    if (typeof v !== 'object' || v === null) throw new UserFault(`${path} must be an object holding pic, ioapic or dummy`);
    if (Object.getOwnPropertyDescriptor(v, 'pic') !== undefined) return { pic: KVM_PIC_STATE_CODEC.copyIn(own(v, 'pic', path), `${path}.pic`) };
    if (Object.getOwnPropertyDescriptor(v, 'ioapic') !== undefined) return { ioapic: KVM_IOAPIC_STATE_CODEC.copyIn(own(v, 'ioapic', path), `${path}.ioapic`) };
    return { dummy: DUMMY.copyIn(own(v, 'dummy', path), `${path}.dummy`) };
  },
  copyOut(v, holder, key) {
    // The union as the variant `chip_id` chose: a fresh object (the other variants' bytes are the same memory).
    holder[key] = chipUnion.clone(v);
  },
  checkOut() {},
  encode(v, view, o) {
    new Uint8Array(view.buffer, view.byteOffset + o, 512).fill(0);
    if ('pic' in v) KVM_PIC_STATE_CODEC.encode(v.pic, view, o);
    else if ('ioapic' in v) KVM_IOAPIC_STATE_CODEC.encode(v.ioapic, view, o);
    else DUMMY.encode(v.dummy, view, o);
  },
  decode: (view, o) => ({ dummy: DUMMY.decode(view, o) }),
};

/** KVM_GET_IRQCHIP / KVM_SET_IRQCHIP's argument (`pad` written as zero). */
export const KVM_IRQCHIP_CODEC: StructCodec<kvm_irqchip> = defineStruct<kvm_irqchip>(KVM_LAYOUTS.kvm_irqchip, {
  chip_id: u32,
  chip: chipUnion,
} as never);

/** The union of a copied-in `kvm_irqchip` read as the kernel reads it: by `chip_id`, from its bytes. */
export function resolveKvmIrqchip(s: kvm_irqchip): kvm_irqchip {
  const b = KVM_IRQCHIP_CODEC.toBytes(s);
  return decodeKvmIrqchip(new DataView(b.buffer));
}

/** Which chips `kvm_irqchip.chip_id` names. */
export const KVM_IRQCHIP_IDS = [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC] as const;

/* ---- struct kvm_lapic_state -------------------------------------------------------------------------------- */

/** KVM_GET_LAPIC / KVM_SET_LAPIC's argument: the 1 KiB register page. */
export const KVM_LAPIC_STATE_CODEC: StructCodec<kvm_lapic_state> = defineStruct<kvm_lapic_state>(KVM_LAYOUTS.kvm_lapic_state, { regs: bytes(0x400) } as never);

/* ---- struct kvm_irq_routing -------------------------------------------------------------------------------- */

const ENTRY = KVM_LAYOUTS.kvm_irq_routing_entry;
const U = ENTRY.member('u').offset;

function u32In(v: unknown, path: string): number {
  return u32.copyIn(v, path);
}

/** One `struct kvm_irq_routing_entry`, its union read by `type`. */
const routingEntry: FieldKind<kvm_irq_routing_entry> = {
  cName: 'struct kvm_irq_routing_entry',
  size: ENTRY.size,
  c: ENTRY,
  count: undefined,
  zero: () => ({ gsi: 0, type: 0, flags: 0 }),
  clone: (v) => ({
    gsi: v.gsi,
    type: v.type,
    flags: v.flags,
    ...(v.irqchip !== undefined ? { irqchip: { ...v.irqchip } } : {}),
    ...(v.msi !== undefined ? { msi: { ...v.msi } } : {}),
    ...(v.hv_sint !== undefined ? { hv_sint: { ...v.hv_sint } } : {}),
  }),
  problem(v, path) {
    if (typeof v !== 'object' || v === null) return `${path} must be an object`;
    for (const k of ['gsi', 'type', 'flags']) {
      const p = u32.problem((v as Record<string, unknown>)[k], `${path}.${k}`);
      if (p !== undefined) return p;
    }
    return undefined;
  },
  copyIn(v, path) {
    const e: kvm_irq_routing_entry = { gsi: u32In(own(v, 'gsi', path), `${path}.gsi`), type: u32In(own(v, 'type', path), `${path}.type`), flags: u32In(own(v, 'flags', path), `${path}.flags`) };
    if (e.type === KVM_IRQ_ROUTING_IRQCHIP) {
      const c = own(v, 'irqchip', path);
      e.irqchip = { irqchip: u32In(own(c, 'irqchip', `${path}.irqchip`), `${path}.irqchip.irqchip`), pin: u32In(own(c, 'pin', `${path}.irqchip`), `${path}.irqchip.pin`) };
    } else if (e.type === KVM_IRQ_ROUTING_MSI) {
      const m = own(v, 'msi', path);
      const f = (k: string): number => u32In(own(m, k, `${path}.msi`), `${path}.msi.${k}`);
      e.msi = { address_lo: f('address_lo'), address_hi: f('address_hi'), data: f('data'), devid: f('devid') };
    } else if (e.type === KVM_IRQ_ROUTING_HV_SINT) {
      const h = own(v, 'hv_sint', path);
      e.hv_sint = { vcpu: u32In(own(h, 'vcpu', `${path}.hv_sint`), `${path}.hv_sint.vcpu`), sint: u32In(own(h, 'sint', `${path}.hv_sint`), `${path}.hv_sint.sint`) };
    }
    return e;
  },
  copyOut(v, holder, key) {
    holder[key] = routingEntry.clone(v);
  },
  checkOut() {},
  encode(v, view, o) {
    new Uint8Array(view.buffer, view.byteOffset + o, ENTRY.size).fill(0);
    view.setUint32(o, v.gsi, true);
    view.setUint32(o + 4, v.type, true);
    view.setUint32(o + 8, v.flags, true);
    const at = o + U;
    if (v.irqchip !== undefined) {
      view.setUint32(at, v.irqchip.irqchip, true);
      view.setUint32(at + 4, v.irqchip.pin, true);
    } else if (v.msi !== undefined) {
      [v.msi.address_lo, v.msi.address_hi, v.msi.data, v.msi.devid].forEach((x, i) => view.setUint32(at + 4 * i, x, true));
    } else if (v.hv_sint !== undefined) {
      view.setUint32(at, v.hv_sint.vcpu, true);
      view.setUint32(at + 4, v.hv_sint.sint, true);
    }
  },
  decode(view, o) {
    const e: kvm_irq_routing_entry = { gsi: view.getUint32(o, true), type: view.getUint32(o + 4, true), flags: view.getUint32(o + 8, true) };
    const at = o + U;
    const w = (i: number): number => view.getUint32(at + 4 * i, true);
    if (e.type === KVM_IRQ_ROUTING_IRQCHIP) e.irqchip = { irqchip: w(0), pin: w(1) };
    else if (e.type === KVM_IRQ_ROUTING_MSI) e.msi = { address_lo: w(0), address_hi: w(1), data: w(2), devid: w(3) };
    else if (e.type === KVM_IRQ_ROUTING_HV_SINT) e.hv_sint = { vcpu: w(0), sint: w(1) };
    return e;
  },
};

/** The fixed part of `struct kvm_irq_routing`. */
export interface kvm_irq_routing_header {
  /** Number of entries. */ nr: number;
  /** Must be 0. */ flags: number;
}

/** KVM_SET_GSI_ROUTING's argument: `{ nr, flags, entries }`. */
export const KVM_IRQ_ROUTING_CODEC: FlexCodec<kvm_irq_routing_header, kvm_irq_routing_entry> = new FlexCodec(
  defineStruct<kvm_irq_routing_header>(KVM_LAYOUTS.kvm_irq_routing, { nr: u32, flags: u32 }),
  'nr',
  'entries',
  routingEntry,
);

/* ---- struct kvm_irqfd, kvm_msi, kvm_interrupt, kvm_reinject_control ------------------------------------------ */

/** `struct kvm_irqfd` (KVM_IRQFD). */
export interface kvm_irqfd {
  /** The eventfd. */ fd: number;
  /** The GSI it raises. */ gsi: number;
  /** `KVM_IRQFD_FLAG_DEASSIGN`, `KVM_IRQFD_FLAG_RESAMPLE`. */ flags: number;
  /** With RESAMPLE: the eventfd signalled when the guest acknowledges the interrupt. */ resamplefd: number;
}

/** KVM_IRQFD's argument. */
export const KVM_IRQFD_CODEC: StructCodec<kvm_irqfd> = defineStruct<kvm_irqfd>(KVM_LAYOUTS.kvm_irqfd, { fd: u32, gsi: u32, flags: u32, resamplefd: u32 });

/** `struct kvm_msi` (KVM_SIGNAL_MSI). */
export interface kvm_msi {
  /** Address, low 32 bits. */ address_lo: number;
  /** Address, high 32 bits. */ address_hi: number;
  /** Data. */ data: number;
  /** `KVM_MSI_VALID_DEVID`. */ flags: number;
  /** Device id (with the flag). */ devid: number;
}

/** KVM_SIGNAL_MSI's argument. */
export const KVM_MSI_CODEC: StructCodec<kvm_msi> = defineStruct<kvm_msi>(KVM_LAYOUTS.kvm_msi, { address_lo: u32, address_hi: u32, data: u32, flags: u32, devid: u32 });

/** `struct kvm_reinject_control` (KVM_REINJECT_CONTROL): `__u8 pit_reinject; __u8 reserved[31];`. */
export interface kvm_reinject_control {
  /** 0: ticks the guest has not acknowledged are dropped; otherwise reinjected. */ pit_reinject: number;
}

/** The layout of `struct kvm_reinject_control` (32 bytes). */
export const KVM_REINJECT_CONTROL_LAYOUT: CLayout = cStruct('kvm_reinject_control', [
  { name: 'pit_reinject', type: 'u8' },
  { name: 'reserved', type: 'u8', count: 31 },
]);

/** KVM_REINJECT_CONTROL's argument. */
export const KVM_REINJECT_CONTROL_CODEC: StructCodec<kvm_reinject_control> = defineStruct<kvm_reinject_control>(KVM_REINJECT_CONTROL_LAYOUT, { pit_reinject: u8 });

/* ---- constructors ------------------------------------------------------------------------------------------- */

/** A `kvm_irq_level`, zeroed and overridden by `init`. */
export function makeKvmIrqLevel(init: Partial<kvm_irq_level> = {}): kvm_irq_level {
  return KVM_IRQ_LEVEL_CODEC.make(init);
}

/** A `kvm_pit_config`, zeroed and overridden by `init`. */
export function makeKvmPitConfig(init: Partial<kvm_pit_config> = {}): kvm_pit_config {
  return KVM_PIT_CONFIG_CODEC.make(init);
}

/** A `kvm_pit_state`, zeroed and overridden by `init`. */
export function makeKvmPitState(init: Partial<kvm_pit_state> = {}): kvm_pit_state {
  return KVM_PIT_STATE_CODEC.make(init);
}

/** A `kvm_irqchip`, zeroed (the union as `dummy` bytes) and overridden by `init`. */
export function makeKvmIrqchip(init: Partial<kvm_irqchip> = {}): kvm_irqchip {
  return KVM_IRQCHIP_CODEC.make(init);
}

/** A `kvm_irq_routing` with `entries` (`nr` their count). */
export function makeKvmIrqRouting(entries: readonly kvm_irq_routing_entry[] = []): kvm_irq_routing_header & { entries: kvm_irq_routing_entry[] } {
  return KVM_IRQ_ROUTING_CODEC.make({ nr: entries.length, flags: 0 }, entries) as unknown as kvm_irq_routing_header & { entries: kvm_irq_routing_entry[] };
}

/** A `kvm_irqfd`, zeroed and overridden by `init`. */
export function makeKvmIrqfd(init: Partial<kvm_irqfd> = {}): kvm_irqfd {
  return KVM_IRQFD_CODEC.make(init);
}

/** A `kvm_msi`, zeroed and overridden by `init`. */
export function makeKvmMsi(init: Partial<kvm_msi> = {}): kvm_msi {
  return KVM_MSI_CODEC.make(init);
}

/** A `kvm_reinject_control`, zeroed and overridden by `init`. */
export function makeKvmReinjectControl(init: Partial<kvm_reinject_control> = {}): kvm_reinject_control {
  return KVM_REINJECT_CONTROL_CODEC.make(init);
}

export { makeKvmLapicState, type kvm_lapic_state } from '../irqchip/state/lapic-state.js';
export { makeKvmPitState2, makeKvmPitChannelState, type kvm_pit_state, type kvm_pit_state2, type kvm_pit_channel_state } from '../irqchip/state/pit-state.js';
export type { kvm_irqchip } from '../irqchip/state/irqchip-state.js';
export type { kvm_pic_state } from '../irqchip/state/pic-state.js';
export type { kvm_ioapic_state } from '../irqchip/state/ioapic-state.js';
export type { kvm_irq_routing_entry } from '../irqchip/routing.js';
