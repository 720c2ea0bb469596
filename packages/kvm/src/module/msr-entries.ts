/**
 * The kernel's copy of the entries of one KVM_GET_MSRS / KVM_SET_MSRS (`msr_io`'s `memdup_user` of the
 * `struct kvm_msr_entry` array: `__u32 index; __u32 reserved; __u64 data;`, 16 bytes each), read and written through
 * typed-array views of its own buffer: an entry's data as a bigint (one `BigUint64Array` element) or as its two 32-bit
 * words. Node 20's `DataView.getBigUint64` / `setBigUint64` cost 25–90 ns each, an element of a `BigUint64Array`
 * 3–20 ns; on a big-endian host the views would not read little-endian C bytes, so there the `DataView` is used.
 * {@link MsrEntryAccess} is what a batch does with them (a vCPU's MSRs, or the feature MSRs of /dev/kvmX).
 *
 * @module
 */

/** Whether this host stores typed-array elements little-endian (as the C structures are). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** `n` entries of `struct kvm_msr_entry` in a buffer of their own. */
export class MsrEntries {
  /** The entries' bytes (offset 0 of their own buffer). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  private readonly dv: DataView;

  /** @param bytes - the entries, at offset 0 of a buffer of their own (a multiple of 16 bytes) */
  constructor(bytes: Uint8Array<ArrayBuffer>) {
    this.bytes = bytes;
    const n = bytes.byteLength >>> 3;
    this.u32 = new Uint32Array(bytes.buffer, 0, 2 * n);
    this.u64 = new BigUint64Array(bytes.buffer, 0, n);
    this.dv = new DataView(bytes.buffer, 0, bytes.byteLength);
  }

  /** Entry `i`'s `index`. */
  index(i: number): number {
    return LITTLE_ENDIAN ? (this.u32[4 * i] as number) : this.dv.getUint32(16 * i, true);
  }

  /** Entry `i`'s `data`. */
  data(i: number): bigint {
    return LITTLE_ENDIAN ? (this.u64[2 * i + 1] as bigint) : this.dv.getBigUint64(16 * i + 8, true);
  }

  /** Set entry `i`'s `data` (modulo 2⁶⁴, as `setBigUint64`). */
  setData(i: number, value: bigint): void {
    if (LITTLE_ENDIAN) this.u64[2 * i + 1] = value;
    else this.dv.setBigUint64(16 * i + 8, value, true);
  }

  /** The low 32 bits of entry `i`'s `data`. */
  low(i: number): number {
    return LITTLE_ENDIAN ? (this.u32[4 * i + 2] as number) : this.dv.getUint32(16 * i + 8, true);
  }

  /** The high 32 bits of entry `i`'s `data`. */
  high(i: number): number {
    return LITTLE_ENDIAN ? (this.u32[4 * i + 3] as number) : this.dv.getUint32(16 * i + 12, true);
  }

  /** Set entry `i`'s `data` from its two 32-bit words. */
  setWords(i: number, low: number, high: number): void {
    if (LITTLE_ENDIAN) {
      this.u32[4 * i + 2] = low;
      this.u32[4 * i + 3] = high;
    } else {
      this.dv.setUint32(16 * i + 8, low, true);
      this.dv.setUint32(16 * i + 12, high, true);
    }
  }
}

/**
 * The accesses of one KVM_GET_MSRS / KVM_SET_MSRS batch (`msr_io`'s `do_msr`): one MSR at a time for the object form,
 * and on the kernel's copy of the C entries, entries 0, 1, … in order until one fails.
 */
export interface MsrEntryAccess {
  /** A read (KVM_GET_MSRS): the MSR's value, or `undefined` when the read fails. */
  read(index: number): bigint | undefined;
  /** A write (KVM_SET_MSRS): whether the MSR took `data`. */
  write(index: number, data: bigint): boolean;
  /**
   * {@link MsrEntryAccess.read} of entries 0, 1, … of `entries` into their data, stopping at the first that fails (its
   * data left as it was): how many were read.
   */
  readEntries(entries: MsrEntries, n: number): number;
  /** {@link MsrEntryAccess.write} of entries 0, 1, … of `entries`, stopping at the first refused: how many were written. */
  writeEntries(entries: MsrEntries, n: number): number;
}

/** {@link MsrEntryAccess.readEntries} through `read`, one entry at a time. */
export function readEntriesOneByOne(access: MsrEntryAccess, entries: MsrEntries, n: number): number {
  let i = 0;
  for (; i < n; i++) {
    const d = access.read(entries.index(i));
    if (d === undefined) break;
    entries.setData(i, d);
  }
  return i;
}

/** {@link MsrEntryAccess.writeEntries} through `write`, one entry at a time. */
export function writeEntriesOneByOne(access: MsrEntryAccess, entries: MsrEntries, n: number): number {
  let i = 0;
  while (i < n && access.write(entries.index(i), entries.data(i))) i++;
  return i;
}
