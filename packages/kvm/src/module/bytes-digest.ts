/**
 * A short fingerprint of a byte area, for snapshots: a FPU image, a `kvm_run` page or a bitmap becomes one string
 * (its length and a 53-bit hash of its contents) instead of thousands of numbers, so that taking and comparing
 * snapshots of many vCPUs stays cheap. Two areas with the same fingerprint hold the same bytes, but for a collision
 * of a 53-bit hash.
 *
 * @module
 */

/** `bytes` as `"<length>:<hash>"` (cyrb53, two 32-bit multiply-xorshift lanes). */
export function bytesDigest(bytes: Uint8Array): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    h1 = Math.imul(h1 ^ b, 2654435761);
    h2 = Math.imul(h2 ^ b, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return `${bytes.length}:${(4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16)}`;
}
