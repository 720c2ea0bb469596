/**
 * Every conversion between the bytes of an ioctl argument (as the VMM's C code laid them out) and the
 * argument the model's ioctl handlers take. This is the one module to change when `@vac/kvm` moves to its
 * schema-driven codec: the table below maps a request to its struct's decode/encode, and everything else in
 * the bridge only moves bytes.
 *
 * The rules, by the request's `_IOC` direction and size (`include/uapi/asm-generic/ioctl.h`):
 * - `_IO` (no data): the argument is the `unsigned long` value itself (a number, or a bigint above 2^53).
 * - a request with a codec: `decode` turns the input bytes into the struct object the model expects; after
 *   the call, `encode` turns the object (which the model filled in or changed) back into the bytes copied to
 *   the VMM (`copyOut`).
 * - any other request with data: the model gets the raw bytes (a `Uint8Array` copy). A model handler that
 *   knows the request and takes a struct object answers EFAULT (a malformed argument), one that does not
 *   know it answers EINVAL/ENOTTY — always the model's own answer. A `_IOR`/`_IOWR` request's bytes are
 *   copied back after a success (a handler may fill a byte buffer in).
 * - an argument pointer the library could not read: the model gets `undefined` (what a bad pointer is to
 *   the model: its struct checks answer EFAULT), except for pure "get" requests whose handler only writes:
 *   those run, and the copy-out fails in the library with EFAULT, as `copy_to_user` does.
 *
 * @module
 */
import {
  _IOC_DIR,
  _IOC_READ,
  KVM_CLEAR_DIRTY_LOG,
  KVM_ENABLE_CAP,
  KVM_GET_DEVICE_ATTR,
  KVM_GET_DIRTY_LOG,
  KVM_GET_REGS,
  KVM_HAS_DEVICE_ATTR,
  KVM_SET_DEVICE_ATTR,
  KVM_X86_SET_MSR_FILTER,
  KVM_GET_SREGS,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  decodeKvmEnableCap,
  decodeKvmRegs,
  decodeKvmSevCmd,
  decodeKvmSregs,
  decodeKvmUserspaceMemoryRegion,
  encodeKvmEnableCap,
  encodeKvmRegs,
  encodeKvmSevCmd,
  encodeKvmSregs,
  encodeKvmUserspaceMemoryRegion,
  makeKvmRegs,
  makeKvmSregs,
  sizeofKvm,
  type kvm_enable_cap,
  type kvm_regs,
  type kvm_sev_cmd,
  type kvm_sregs,
  type kvm_userspace_memory_region,
} from '@vac/kvm';

/** How one request's argument is converted. */
export interface IoctlCodec {
  /** The struct's C name. */
  readonly struct: string;
  /** `sizeof` the struct. */
  readonly size: number;
  /** Whether the kernel reads the argument (`copy_from_user`); false for requests that only write it. */
  readonly reads: boolean;
  /** Bytes → the object the model takes (`undefined` input: the model's fresh object for a pure "get"). */
  readonly decode: (bytes: Uint8Array | undefined) => unknown;
  /** The object after the call → bytes for the VMM, or `undefined` when nothing is copied back. */
  readonly encode: (arg: unknown) => Uint8Array | undefined;
  /** Whether the struct is copied back when the call fails (e.g. `kvm_sev_cmd.error`). */
  readonly copyOutOnError: boolean;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function codec<T>(
  struct: Parameters<typeof sizeofKvm>[0],
  opts: {
    reads: boolean;
    fresh?: () => T;
    decode: (v: DataView) => T;
    encode?: (x: T, v: DataView) => void;
    copyOutOnError?: boolean;
  },
): IoctlCodec {
  const size = sizeofKvm(struct);
  const enc = opts.encode;
  return {
    struct,
    size,
    reads: opts.reads,
    decode: (bytes) => (bytes === undefined ? opts.fresh?.() : opts.decode(view(bytes))),
    encode:
      enc === undefined
        ? () => undefined
        : (arg) => {
            const out = new Uint8Array(size);
            enc(arg as T, view(out));
            return out;
          },
    copyOutOnError: opts.copyOutOnError ?? false,
  };
}

/** The requests whose argument is a struct the model takes as an object. */
export const CODECS: ReadonlyMap<number, IoctlCodec> = new Map<number, IoctlCodec>([
  [KVM_GET_REGS, codec<kvm_regs>('kvm_regs', { reads: false, fresh: () => makeKvmRegs(), decode: () => makeKvmRegs(), encode: encodeKvmRegs })],
  [KVM_SET_REGS, codec<kvm_regs>('kvm_regs', { reads: true, decode: decodeKvmRegs })],
  [KVM_GET_SREGS, codec<kvm_sregs>('kvm_sregs', { reads: false, fresh: () => makeKvmSregs(), decode: () => makeKvmSregs(), encode: encodeKvmSregs })],
  [KVM_SET_SREGS, codec<kvm_sregs>('kvm_sregs', { reads: true, decode: decodeKvmSregs })],
  [KVM_SET_USER_MEMORY_REGION, codec<kvm_userspace_memory_region>('kvm_userspace_memory_region', { reads: true, decode: decodeKvmUserspaceMemoryRegion })],
  [KVM_ENABLE_CAP, codec<kvm_enable_cap>('kvm_enable_cap', { reads: true, decode: decodeKvmEnableCap })],
  [KVM_MEMORY_ENCRYPT_OP, codec<kvm_sev_cmd>('kvm_sev_cmd', { reads: true, decode: decodeKvmSevCmd, encode: encodeKvmSevCmd, copyOutOnError: true })],
]);

/** The argument of one ioctl, ready for `Process.ioctl`, and how to turn it back into bytes. */
export interface DecodedArg {
  /** What the model's handler receives. */
  readonly arg: unknown;
  /** The bytes to copy back to the VMM after the call (`ok` = the call succeeded). */
  readonly out: (ok: boolean) => Uint8Array | undefined;
}

/**
 * Decode an ioctl argument.
 * @param request - the 32-bit request
 * @param value - the `unsigned long` the VMM passed (a pointer for requests with data)
 * @param input - the bytes at the pointer, or `undefined` when they could not be read
 * @param hasData - whether the request moves data (`_IOC_DIR` ≠ 0)
 */
export function decodeArg(request: number, value: bigint, input: Uint8Array | undefined, hasData: boolean): DecodedArg {
  if (!hasData) {
    const arg = value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
    return { arg, out: () => undefined };
  }
  const c = CODECS.get(request);
  // With the argument's bytes in hand, the model takes the C structure itself (its ioctls accept a Uint8Array):
  // no object is built and encoded again. The codec is for what bytes cannot do — a pure get whose pointer the
  // library could not read (the get still runs; the copy back then fails, as Linux's copy_to_user does), a struct
  // copied back even when the call fails.
  if (c !== undefined && (input === undefined || c.copyOutOnError)) {
    if (input === undefined && c.reads) return { arg: undefined, out: () => undefined };
    const arg = c.decode(input === undefined ? undefined : input.subarray(0, c.size));
    return { arg, out: (ok) => (ok || c.copyOutOnError ? c.encode(arg) : undefined) };
  }
  if (input === undefined) return { arg: undefined, out: () => undefined };
  const raw = new Uint8Array(input); // a plain Uint8Array of its own, copied (not a Buffer over the message)
  const readsBack = (_IOC_DIR(request) & _IOC_READ) !== 0;
  // What the handler wrote before failing is what the VMM sees (copy_to_user happens before the error: e.g. E2BIG with the
  // needed count in KVM_GET_MSR_INDEX_LIST's nmsrs). Unwritten bytes are the input, so copying them back changes nothing.
  return { arg: raw, out: () => (readsBack ? raw : undefined) };
}

/** A piece of VMM memory an argument points to, beyond the argument itself. */
export interface UserPointer {
  /** The VMM's address. */
  readonly addr: number;
  /** How many bytes the kernel may read or write there. */
  readonly size: number;
}

/** `struct kvm_device_attr { u32 flags; u32 group; u64 attr; u64 addr; }`: the value at `addr` (a u64 for every x86 attribute). */
function deviceAttrPointer(input: Uint8Array): UserPointer[] {
  if (input.length < 24) return [];
  return [{ addr: Number(view(input).getBigUint64(16, true)), size: 8 }];
}

/** `KVM_MSR_FILTER_MAX_RANGES` and `KVM_MSR_FILTER_MAX_BITMAP_SIZE` (uapi/asm/kvm.h). */
const MSR_FILTER_RANGES = 16;
const MSR_FILTER_MAX_BITMAP = 0x600;

/**
 * `struct kvm_msr_filter { u32 flags; struct kvm_msr_filter_range ranges[16]; }`, each range
 * `{ u32 flags; u32 nmsrs; u32 base; u8 *bitmap; }` (24 bytes from offset 8): the bitmap of each range with
 * MSRs, `BITS_TO_LONGS(nmsrs) * sizeof(long)` bytes as `kvm_add_msr_filter` copies it.
 */
function msrFilterPointers(input: Uint8Array): UserPointer[] {
  const out: UserPointer[] = [];
  const v = view(input);
  for (let i = 0; i < MSR_FILTER_RANGES && 8 + 24 * (i + 1) <= input.length; i++) {
    const o = 8 + 24 * i;
    const nmsrs = v.getUint32(o + 4, true);
    if (nmsrs === 0) continue;
    const size = Math.min(Math.ceil(nmsrs / 64) * 8, MSR_FILTER_MAX_BITMAP);
    out.push({ addr: Number(v.getBigUint64(o + 16, true)), size });
  }
  return out;
}

/** The size in bytes of a memslot of the VM (`slot`: address space << 16 | id), or `undefined` when there is none. */
export type SlotSize = (slot: number) => number | undefined;

/**
 * `struct kvm_dirty_log { u32 slot; u32 pad; void *dirty_bitmap; }`: the bitmap, `kvm_dirty_bitmap_bytes` of the
 * slot (one bit per page, in longs), in either address space (1: SMM). No such slot gives no range (the model answers).
 */
function dirtyLogPointer(input: Uint8Array, slotSize: SlotSize): UserPointer[] {
  if (input.length < 16) return [];
  const v = view(input);
  const slot = v.getUint32(0, true);
  const size = slotSize(slot);
  if (size === undefined) return [];
  return [{ addr: Number(v.getBigUint64(8, true)), size: Math.ceil(size / PAGE / 64) * 8 }];
}

/** `struct kvm_clear_dirty_log { u32 slot; u32 num_pages; u64 first_page; void *dirty_bitmap; }`: `ALIGN(num_pages, 64) / 8` bytes. */
function clearDirtyLogPointer(input: Uint8Array): UserPointer[] {
  if (input.length < 24) return [];
  const v = view(input);
  return [{ addr: Number(v.getBigUint64(16, true)), size: Math.ceil(v.getUint32(4, true) / 64) * 8 }];
}

/** The guest page size the dirty bitmaps count in. */
const PAGE = 4096;

/** The requests whose argument holds pointers to more of the VMM's memory, and where they point. */
const POINTERS: ReadonlyMap<number, (input: Uint8Array, slotSize: SlotSize) => UserPointer[]> = new Map([
  [KVM_GET_DEVICE_ATTR, deviceAttrPointer],
  [KVM_SET_DEVICE_ATTR, deviceAttrPointer],
  [KVM_HAS_DEVICE_ATTR, deviceAttrPointer],
  [KVM_X86_SET_MSR_FILTER, msrFilterPointers],
  [KVM_GET_DIRTY_LOG, dirtyLogPointer],
  [KVM_CLEAR_DIRTY_LOG, clearDirtyLogPointer],
]);

/**
 * The VMM memory an ioctl's argument points to (to show the model for the call), from the argument's bytes.
 * @param slotSize - the sizes of the VM's memslots (for the dirty bitmaps)
 * @returns the ranges, empty for a request without such pointers
 */
export function userPointers(request: number, input: Uint8Array | undefined, slotSize: SlotSize = () => undefined): UserPointer[] {
  const f = POINTERS.get(request);
  return f === undefined || input === undefined ? [] : f(input, slotSize);
}

/** `kvm_userspace_memory_region` from the input bytes of KVM_SET_USER_MEMORY_REGION (for the memory mirror). */
export function decodeMemoryRegion(input: Uint8Array): kvm_userspace_memory_region {
  return decodeKvmUserspaceMemoryRegion(view(input));
}

/** The bytes of a `kvm_userspace_memory_region` (tests). */
export function encodeMemoryRegion(r: kvm_userspace_memory_region): Uint8Array {
  const out = new Uint8Array(sizeofKvm('kvm_userspace_memory_region'));
  encodeKvmUserspaceMemoryRegion(r, view(out));
  return out;
}

/** The bytes of a `kvm_regs` (tests, the bench). */
export function encodeRegs(r: kvm_regs): Uint8Array {
  const out = new Uint8Array(sizeofKvm('kvm_regs'));
  encodeKvmRegs(r, view(out));
  return out;
}

/** A `kvm_regs` from its bytes (tests, the bench). */
export function decodeRegs(bytes: Uint8Array): kvm_regs {
  return decodeKvmRegs(view(bytes));
}

/** The bytes of a `kvm_enable_cap` (tests). */
export function encodeEnableCap(c: kvm_enable_cap): Uint8Array {
  const out = new Uint8Array(sizeofKvm('kvm_enable_cap'));
  encodeKvmEnableCap(c, view(out));
  return out;
}
