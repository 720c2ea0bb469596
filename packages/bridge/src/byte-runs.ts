/**
 * Finding the bytes that changed between two copies of a buffer — what the bridge sends or writes back after
 * the model ran (a vCPU's kvm_run, guest pages, memory an ioctl argument points to). Equal stretches are
 * skipped with native comparisons (`Buffer.equals`, a `memcmp`) a chunk at a time, so a compare costs little
 * where nothing changed; only a chunk that differs is walked byte by byte.
 *
 * @module
 */

/** Bytes compared natively at a time before a chunk is walked byte by byte. */
const CHUNK = 256;

function bufferOver(bytes: Uint8Array, from: number, to: number): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from);
}

/**
 * Call `each(start, end)` for every run `[start, end)` of bytes in `[from, to)` where `cur` differs from `old`,
 * in order. With `joinGap` > 0, runs fewer than `joinGap` equal bytes apart are reported as one (fewer, larger
 * pieces where the bytes between them may be sent again harmlessly); with 0 (the default) every run is exact, so
 * a byte that did not change is never written (another writer's byte in between survives).
 * @param cur - the bytes now
 * @param old - the bytes as they were (the same length as `cur` over `[from, to)`)
 */
export function forEachChangedRun(cur: Uint8Array, old: Uint8Array, from: number, to: number, each: (start: number, end: number) => void, joinGap = 0): void {
  if (to <= from || bufferOver(cur, from, to).equals(bufferOver(old, from, to))) return;
  let runStart = -1;
  let lastChanged = -1;
  for (let c = from; c < to; c += CHUNK) {
    const ce = Math.min(c + CHUNK, to);
    if (bufferOver(cur, c, ce).equals(bufferOver(old, c, ce))) continue;
    for (let i = c; i < ce; i++) {
      if (cur[i] === old[i]) continue;
      if (runStart >= 0 && i - lastChanged - 1 >= (joinGap > 0 ? joinGap : 1)) {
        each(runStart, lastChanged + 1);
        runStart = -1;
      }
      if (runStart < 0) runStart = i;
      lastChanged = i;
    }
  }
  if (runStart >= 0) each(runStart, lastChanged + 1);
}
