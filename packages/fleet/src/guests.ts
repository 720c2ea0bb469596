/**
 * Guest programs for moving and upgrade scenarios: small real-mode programs whose output shows, byte for byte,
 * whether a move lost or repeated anything.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { Asm16, asm16 } from '@vac/kvm';

/** Options of {@link countingGuest}. */
export interface CountingGuestOptions {
  /** Where the code is loaded and runs from (guest-physical). Default 0x1000. */
  readonly origin?: number;
  /** Where the 16-bit counter lives, as an offset from `origin`. Default 0x800. */
  readonly counterOffset?: number;
  /** The port it prints on. Default 0x3f8 (COM1). */
  readonly port?: number;
  /** Iterations of the spin loop between two counts (1 … 65535): the guest's pace. Default 100. */
  readonly busy?: number;
  /** Halt after printing this count (1 … 65535); without it the guest counts for ever. */
  readonly upTo?: number;
}

function u16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw new UsageError('ERR_OUT_OF_RANGE', `countingGuest: ${what} must be an integer in [1, 65535], got ${String(v)}`);
  return v;
}

/** Programs assembled so far, by their options (at most `ASSEMBLED_MAX`; the caller gets a copy). */
const assembled = new Map<string, readonly number[]>();
const ASSEMBLED_MAX = 1024;

/**
 * A guest that counts in its own memory and prints each count on a port (a 16-bit `out`), spinning `busy` times
 * between two counts; with `upTo` it halts after that count. Its output is 1, 2, 3, … as 16-bit little-endian
 * values, so a move that lost or repeated an instruction shows as a gap or a repeat.
 *
 *     mov dx, port
 *     top:  inc word [counter] ; mov ax, [counter] ; out dx, ax
 *           mov cx, busy ; wait: loop wait
 *           cmp ax, upTo ; jne top ; hlt        (or jmp top)
 */
export function countingGuest(options: CountingGuestOptions = {}): number[] {
  const { origin = 0x1000, counterOffset = 0x800, port = 0x3f8, busy = 100, upTo } = options;
  // A fleet host assembles one per VM, with a few dozen distinct paces: each program is assembled once per process.
  const key = `${origin}:${counterOffset}:${port}:${busy}:${String(upTo)}`;
  let code = assembled.get(key);
  if (code === undefined) {
    code = assemble(origin, counterOffset, port, busy, upTo);
    if (assembled.size < ASSEMBLED_MAX) assembled.set(key, code);
  }
  return [...code];
}

function assemble(origin: number, counterOffset: number, port: number, busy: number, upTo: number | undefined): number[] {
  const counter = origin + counterOffset;
  const a = asm16({ org: origin })
    .mov('dx', port)
    .label('top').inc(Asm16.word(counter)).mov('ax', Asm16.mem(counter)).out('dx', 'ax')
    .mov('cx', u16(busy, 'busy')).label('wait').loop('wait');
  if (upTo === undefined) a.jmp('top');
  else a.cmp('ax', u16(upTo, 'upTo')).jne('top').hlt();
  return a.bytes();
}

/** The 16-bit little-endian values of a guest's port output (what {@link countingGuest} printed). */
export function words(output: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < output.length; i += 2) out.push((output[i] ?? 0) | ((output[i + 1] ?? 0) << 8));
  return out;
}
