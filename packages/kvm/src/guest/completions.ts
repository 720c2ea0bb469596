/**
 * The completions of an exit to user space, run at the start of the next KVM_RUN (the
 * `complete_userspace_io` callbacks of arch/x86/kvm/x86.c).
 *
 * @module
 */

import { GuestCpuState, GuestPending } from './cpu-state.js';

export function linearRip(state: GuestCpuState): number {
  return (state.csBase + state.eip) >>> 0;
}

export function littleEndian(bytes: Uint8Array, len: number): number {
  let v = 0;
  for (let i = len - 1; i >= 0; i--) v = v * 256 + (bytes[i] ?? 0);
  return v;
}

/**
 * Completes a port read: like KVM's `complete_fast_pio_in`, loads the first `size` bytes of `data` into
 * AL/AX (merging) or EAX (zero-extending the whole register) and skips the `in` — unless RIP no longer
 * points at it (user space changed RIP), in which case the data is dropped. Returns whether the data was
 * loaded. Does nothing (returns false) when no port read is pending.
 */
export function completeIn(state: GuestCpuState, data: Uint8Array): boolean {
  if (state.pending !== GuestPending.PioIn) return false;
  state.pending = GuestPending.None;
  if (linearRip(state) !== state.pendingLinearRip) return false;
  const size = state.pendingSize;
  const v = littleEndian(data, size);
  if (size === 1) state.eax = state.eax - (state.eax & 0xff) + v;
  else if (size === 2) state.eax = state.eax - (state.eax & 0xffff) + v;
  else {
    state.eax = v;
    state.raxHigh = 0;
  }
  state.eip = state.pendingNextRip;
  return true;
}

/**
 * Completes a port write: like KVM's `complete_fast_pio_out`, skips the `out` if RIP still points at it.
 * Returns whether RIP was advanced.
 */
export function completeOut(state: GuestCpuState): boolean {
  if (state.pending !== GuestPending.PioOut) return false;
  state.pending = GuestPending.None;
  if (linearRip(state) !== state.pendingLinearRip) return false;
  state.eip = state.pendingNextRip;
  return true;
}

/**
 * Completes an MMIO read: stores the first `len` bytes of `data` as the value of the pending read, for the
 * re-execution of the instruction on the next run (KVM: `complete_emulated_mmio` then re-emulation with
 * the read cache). Returns false when no MMIO read is pending.
 */
export function completeMmioRead(state: GuestCpuState, data: Uint8Array): boolean {
  if (state.pending !== GuestPending.MmioRead) return false;
  state.pending = GuestPending.None;
  const v = littleEndian(data, state.pendingSize);
  if (state.mmioCacheCount === 0) {
    state.mmioCacheGpa0 = state.pendingGpa;
    state.mmioCacheLen0 = state.pendingSize;
    state.mmioCacheValue0 = v;
    state.mmioCacheCount = 1;
  } else {
    state.mmioCacheGpa1 = state.pendingGpa;
    state.mmioCacheLen1 = state.pendingSize;
    state.mmioCacheValue1 = v;
    state.mmioCacheCount = 2;
  }
  return true;
}

/**
 * Runs whichever completion is pending ({@link completeIn}, {@link completeOut} or
 * {@link completeMmioRead}) with `data` as user space's answer. {@link runGuest} calls this itself, with
 * the exit record's `data`, when a completion is still pending at entry.
 */
export function completePending(state: GuestCpuState, data: Uint8Array): void {
  switch (state.pending) {
    case GuestPending.PioIn: completeIn(state, data); return;
    case GuestPending.PioOut: completeOut(state); return;
    case GuestPending.MmioRead: completeMmioRead(state, data); return;
    default: return;
  }
}
