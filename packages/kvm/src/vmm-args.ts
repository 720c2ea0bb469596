/**
 * The argument buffers of the VMM helpers' state ioctls (`saveVcpu`, `restoreVcpu` in `vmm-vcpu.ts`, `saveVm`,
 * `restoreVm` in `vmm.ts`): one buffer, reused, as a C VMM reuses its `struct kvm_msrs` between calls.
 *
 * A `Uint8Array` of more than 64 bytes gets its memory outside V8's heap, and making one costs 1–3 µs (10 KiB for
 * KVM_GET_CPUID2's 256 entries: 3.4 µs) — more than most of the ioctls it is passed to; a save and restore of one
 * vCPU passed about twenty of them. Each call here hands out a zeroed view of the same memory instead (so the kernel
 * sees exactly what a fresh buffer held), valid until the next call: the helpers decode what they read (the decoded
 * values are copies) before they ask for another. Nothing outside the helpers gets these views.
 *
 * @module
 */
import type { StructCodec } from './abi/codec.js';

let memory = new ArrayBuffer(16 * 1024);

/** `n` zero bytes, valid until the next call. */
export function argBytes(n: number): Uint8Array<ArrayBuffer> {
  if (n > memory.byteLength) memory = new ArrayBuffer(Math.max(n, 2 * memory.byteLength));
  const b = new Uint8Array(memory, 0, n);
  b.fill(0);
  return b;
}

/** The C bytes of `v` (as `codec.toBytes`), valid until the next call. */
export function structArg<T extends object>(codec: StructCodec<T>, v: T): Uint8Array<ArrayBuffer> {
  const b = argBytes(codec.size);
  codec.encode(v, new DataView(memory, 0, codec.size), 0);
  return b;
}
