/**
 * `struct kvm_pit_channel_state`, `struct kvm_pit_state` (KVM_GET/SET_PIT, 72 bytes) and
 * `struct kvm_pit_state2` (KVM_GET/SET_PIT2, 112 bytes), arch/x86/include/uapi/asm/kvm.h. KVM copies the
 * channels to and from its own state raw (`kvm_vm_ioctl_get_pit2` / `kvm_vm_ioctl_set_pit2`, i8254.c), then
 * reloads each channel's count; `count_load_time` is the kernel's monotonic time of the load in ns — here
 * simulated ns (channel 0's stays as SET left it, since loading channel 0 does not update it: checked on a real
 * /dev/kvm, whose channel 0 reads 0 after creation).
 *
 * @module
 */

import { KVM_LAYOUTS } from '../../abi/layout.js';
import { UsageError } from '@vac/core';

/** `struct kvm_pit_channel_state`. */
export interface kvm_pit_channel_state {
  /** Initial count (`__u32`: 0x10000 stands for a written 0). */ count: number;
  /** Latched counter value. */ latched_count: number;
  /** Access mode of the latched count still to read (0: none). */ count_latched: number;
  /** A status byte is latched. */ status_latched: number;
  /** The latched status byte. */ status: number;
  /** Read access state (RW_STATE_*). */ read_state: number;
  /** Write access state. */ write_state: number;
  /** Low byte written in 16-bit access mode. */ write_latch: number;
  /** Access mode of the control word (1 LSB, 2 MSB, 3 LSB then MSB). */ rw_mode: number;
  /** Counter mode 0-5 (0xff: not programmed). */ mode: number;
  /** BCD counting (stored, not modelled — as in KVM). */ bcd: number;
  /** Gate input. */ gate: number;
  /** When the count was loaded (`__s64` ns). */ count_load_time: bigint;
}

/** `struct kvm_pit_state`. */
export interface kvm_pit_state {
  channels: [kvm_pit_channel_state, kvm_pit_channel_state, kvm_pit_channel_state];
}

/** `struct kvm_pit_state2` (`reserved` written as zero). */
export interface kvm_pit_state2 extends kvm_pit_state {
  /** KVM_PIT_FLAGS_HPET_LEGACY, KVM_PIT_FLAGS_SPEAKER_DATA_ON (any other bits are kept as given). */
  flags: number;
}

const CH = KVM_LAYOUTS.kvm_pit_channel_state;
const U8_FIELDS = [
  'count_latched', 'status_latched', 'status', 'read_state', 'write_state', 'write_latch', 'rw_mode', 'mode', 'bcd', 'gate',
] as const satisfies readonly (keyof kvm_pit_channel_state)[];
const S64_MIN = -(1n << 63n);
const S64_MAX = (1n << 63n) - 1n;

/** `sizeof(struct kvm_pit_state)`. */
export const KVM_PIT_STATE_SIZE = KVM_LAYOUTS.kvm_pit_state.size;
/** `sizeof(struct kvm_pit_state2)`. */
export const KVM_PIT_STATE2_SIZE = KVM_LAYOUTS.kvm_pit_state2.size;

/** A channel with everything zero, overridden by `init`. */
export function makeKvmPitChannelState(init: Partial<kvm_pit_channel_state> = {}): kvm_pit_channel_state {
  const c = { count: init.count ?? 0, latched_count: init.latched_count ?? 0, count_load_time: init.count_load_time ?? 0n } as kvm_pit_channel_state;
  for (const f of U8_FIELDS) c[f] = init[f] ?? 0;
  return c;
}

/** A `kvm_pit_state2` with everything zero, overridden by `init` (channels copied). */
export function makeKvmPitState2(init: Partial<kvm_pit_state2> = {}): kvm_pit_state2 {
  const ch = init.channels;
  return {
    channels: [makeKvmPitChannelState(ch?.[0]), makeKvmPitChannelState(ch?.[1]), makeKvmPitChannelState(ch?.[2])],
    flags: init.flags ?? 0,
  };
}

/** An independent copy of a `kvm_pit_state2`. */
export function copyKvmPitState2(s: kvm_pit_state2): kvm_pit_state2 {
  return makeKvmPitState2(s);
}

function validateChannel(x: unknown, where: string): string | undefined {
  if (typeof x !== 'object' || x === null) return `${where} must be an object`;
  const o = x as Record<string, unknown>;
  const u = (k: string, max: number, c: string): string | undefined => {
    const v = o[k];
    return typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max ? `${where}.${k} must be an integer in 0..${String(max)} (${c})` : undefined;
  };
  const p = u('count', 0xffffffff, '__u32') ?? u('latched_count', 0xffff, '__u16');
  if (p !== undefined) return p;
  for (const f of U8_FIELDS) {
    const q = u(f, 0xff, '__u8');
    if (q !== undefined) return q;
  }
  const t = o['count_load_time'];
  if (typeof t !== 'bigint' || t < S64_MIN || t > S64_MAX) return `${where}.count_load_time must be a bigint in the __s64 range`;
  return undefined;
}

/** The first shape problem of `x` as a `kvm_pit_state` (`withFlags`: as a `kvm_pit_state2`), or `undefined`. */
export function validateKvmPitState(x: unknown, withFlags = true): string | undefined {
  const name = withFlags ? 'kvm_pit_state2' : 'kvm_pit_state';
  if (typeof x !== 'object' || x === null) return `${name} must be an object`;
  const o = x as Record<string, unknown>;
  const ch = o['channels'];
  if (!Array.isArray(ch) || ch.length !== 3) return `${name}.channels must be an array of 3 channels`;
  for (let i = 0; i < 3; i++) {
    const p = validateChannel(ch[i] as unknown, `${name}.channels[${String(i)}]`);
    if (p !== undefined) return p;
  }
  if (withFlags) {
    const f = o['flags'];
    if (typeof f !== 'number' || !Number.isInteger(f) || f < 0 || f > 0xffffffff) return `${name}.flags must be a __u32`;
  }
  return undefined;
}

/** Throws a `UsageError` naming the first shape problem. */
export function assertKvmPitState(x: unknown, withFlags = true): asserts x is kvm_pit_state2 {
  const p = validateKvmPitState(x, withFlags);
  if (p !== undefined) throw new UsageError('ERR_INVALID_ARG', p);
}

function encodeChannel(c: kvm_pit_channel_state, view: DataView, at: number): void {
  view.setUint32(at + CH.offsetOf('count'), c.count, true);
  view.setUint16(at + CH.offsetOf('latched_count'), c.latched_count, true);
  for (const f of U8_FIELDS) view.setUint8(at + CH.offsetOf(f), c[f]);
  for (let i = CH.offsetOf('gate') + 1; i < CH.offsetOf('count_load_time'); i++) view.setUint8(at + i, 0);
  view.setBigInt64(at + CH.offsetOf('count_load_time'), c.count_load_time, true);
}

function decodeChannel(view: DataView, at: number): kvm_pit_channel_state {
  const c = makeKvmPitChannelState({
    count: view.getUint32(at + CH.offsetOf('count'), true),
    latched_count: view.getUint16(at + CH.offsetOf('latched_count'), true),
    count_load_time: view.getBigInt64(at + CH.offsetOf('count_load_time'), true),
  });
  for (const f of U8_FIELDS) c[f] = view.getUint8(at + CH.offsetOf(f));
  return c;
}

/** Write `s` as a C `struct kvm_pit_state2` (`withFlags` false: `struct kvm_pit_state`) at `offset`. */
export function encodeKvmPitState(s: kvm_pit_state2 | kvm_pit_state, view: DataView, offset = 0, withFlags = true): void {
  s.channels.forEach((c, i) => encodeChannel(c, view, offset + i * CH.size));
  if (!withFlags) return;
  const L = KVM_LAYOUTS.kvm_pit_state2;
  view.setUint32(offset + L.offsetOf('flags'), 'flags' in s ? s.flags : 0, true);
  for (let i = 0; i < 9; i++) view.setUint32(offset + L.offsetOf('reserved') + 4 * i, 0, true);
}

/** Read a C `struct kvm_pit_state2` (`withFlags` false: a `struct kvm_pit_state`, flags 0) at `offset`. */
export function decodeKvmPitState(view: DataView, offset = 0, withFlags = true): kvm_pit_state2 {
  return {
    channels: [decodeChannel(view, offset), decodeChannel(view, offset + CH.size), decodeChannel(view, offset + 2 * CH.size)],
    flags: withFlags ? view.getUint32(offset + KVM_LAYOUTS.kvm_pit_state2.offsetOf('flags'), true) : 0,
  };
}
