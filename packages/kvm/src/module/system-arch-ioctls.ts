/**
 * The x86 ioctls of /dev/kvmX (arch/x86/kvm/x86.c `kvm_arch_dev_ioctl`): the MSR lists, feature MSRs, the
 * supported and emulated CPUID, the MCE capabilities and the system attributes.
 *
 * The list ioctls answer E2BIG when the caller's buffer is too small. `KVM_GET_MSR_INDEX_LIST` and
 * `KVM_GET_MSR_FEATURE_INDEX_LIST` write the needed count into `nmsrs` first (so the caller can retry with that
 * size); `KVM_GET_SUPPORTED_CPUID` / `KVM_GET_EMULATED_CPUID` leave `nent` as it was (the caller grows its buffer
 * and retries), as a real 6.18 kernel was checked to do.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import {
  KVM_GET_DEVICE_ATTR,
  KVM_GET_EMULATED_CPUID,
  KVM_GET_MSRS,
  KVM_GET_MSR_FEATURE_INDEX_LIST,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_SUPPORTED_CPUID,
  KVM_HAS_DEVICE_ATTR,
  KVM_X86_GET_MCE_CAP_SUPPORTED,
} from '../abi/constants.js';
import { KVM_X86_XCOMP_GUEST_SUPP, MAX_IO_MSRS } from '../abi/constants-x86.js';
import { copyFlexToUser, copyFromUser, copyToUser, isRealUint8Array, userAccess, type FlexCodec } from '../abi/codec.js';
import type { kvm_cpuid_entry2, kvm_msr_entry } from '../abi/structs.js';
import {
  KVM_CPUID2_CODEC,
  KVM_DEVICE_ATTR_CODEC,
  KVM_MSRS_CODEC,
  KVM_MSR_LIST_CODEC,
  U64_POINTER_CODEC,
  type kvm_cpuid2_header,
  type kvm_msr_list_header,
} from '../abi/structs-x86.js';
import type { SystemFile } from './files.js';
import type { IoctlDef } from './ioctl-table.js';
import { userBuffer } from './user-memory.js';
import { x86Caps, type X86Caps } from './x86-caps.js';
import { guestPermOf } from './guest-fpu.js';
import { MsrEntries, readEntriesOneByOne, writeEntriesOneByOne, type MsrEntryAccess } from './msr-entries.js';

/**
 * `msr_io`: copy the header (EFAULT), refuse MAX_IO_MSRS or more (E2BIG), copy the entries (EFAULT), read (`writeback`)
 * or write each through `access` until one fails, copy the entries back when `writeback` (EFAULT). KVM_GET_MSRS
 * ignores what the entries' data hold. On the C bytes the entries are processed in place in the kernel's copy.
 * @returns how many were processed
 */
export function msrIo(arg: unknown, op: string, access: MsrEntryAccess, writeback: boolean): number {
  if (isRealUint8Array(arg)) return msrIoBytes(arg, op, access, writeback);
  const h = userAccess(op, () => KVM_MSRS_CODEC.copyInHeader(arg));
  if (h.nmsrs >= MAX_IO_MSRS) throw new KernelError('E2BIG', op, `${h.nmsrs} MSRs: at most ${MAX_IO_MSRS - 1} per call`);
  const entries = userAccess(op, () => KVM_MSRS_CODEC.copyInEntries(arg, h.nmsrs));
  let i = 0;
  for (; i < entries.length; i++) {
    const e = entries[i] as kvm_msr_entry;
    if (writeback) {
      const d = access.read(e.index);
      if (d === undefined) break;
      e.data = d;
    } else if (!access.write(e.index, e.data)) {
      break;
    }
  }
  if (writeback) {
    userAccess(op, () => {
      KVM_MSRS_CODEC.checkEntriesWritable(arg, entries.length);
      KVM_MSRS_CODEC.copyOutEntries(entries, arg);
    });
  }
  return i;
}

/** {@link msrIoBytes}' copy of the entries (room for the most a batch takes), and whether a batch is using it. */
const scratch = new MsrEntries(new Uint8Array(16 * (MAX_IO_MSRS - 1)));
let scratchInUse = false;

/**
 * {@link msrIo} on the C bytes of `struct kvm_msrs` (what a C VMM passes): the same steps, with the kernel's copy
 * of the entries taken at once and written back at once, and no object per entry.
 */
function msrIoBytes(arg: Uint8Array, op: string, access: MsrEntryAccess, writeback: boolean): number {
  if (arg.length < 8) throw new KernelError('EFAULT', op, `struct kvm_msrs: ${arg.length} bytes, the header is 8`);
  const n = ((arg[0] as number) | ((arg[1] as number) << 8) | ((arg[2] as number) << 16) | ((arg[3] as number) << 24)) >>> 0; // nmsrs, little-endian
  if (n >= MAX_IO_MSRS) throw new KernelError('E2BIG', op, `${n} MSRs: at most ${MAX_IO_MSRS - 1} per call`);
  const size = 16 * n;
  if (arg.length < 8 + size) throw new KernelError('EFAULT', op, `struct kvm_msrs: ${arg.length} bytes, ${n} entries need ${8 + size}`);
  // memdup_user: the kernel's own copy, in a buffer reused between calls (a Uint8Array of its own over 64 bytes costs
  // 1–3 µs to make); a batch made while one is being processed (from an event listener) gets a fresh one.
  const entries = scratchInUse ? new MsrEntries(new Uint8Array(16 * (MAX_IO_MSRS - 1))) : scratch;
  const copy = entries.bytes;
  copy.set(new Uint8Array(arg.buffer, arg.byteOffset + 8, size)); // a view made directly (subarray's species lookup costs more)
  const shared = entries === scratch;
  if (shared) scratchInUse = true;
  try {
    if (!writeback) return access.writeEntries(entries, n);
    const i = access.readEntries(entries, n);
    arg.set(copy.subarray(0, size), 8);
    return i;
  } finally {
    if (shared) scratchInUse = false;
  }
}

/** KVM_GET_MSRS on /dev/kvmX (`do_get_feature_msr`): a feature MSR's value; an MSR KVM only advertises reads 0. */
class FeatureMsrAccess implements MsrEntryAccess {
  constructor(private readonly caps: X86Caps) {}

  read(index: number): bigint | undefined {
    // kvm_get_feature_msr → kvm_do_msr_access: an MSR that is no feature MSR but that KVM advertises
    // (KVM_GET_MSR_INDEX_LIST) reads as 0; any other ends the batch.
    return this.caps.featureMsr(index) ?? (this.caps.advertisedMsrs.has(index) ? 0n : undefined);
  }

  write(): boolean {
    return false; // no KVM_SET_MSRS on /dev/kvmX
  }

  readEntries(entries: MsrEntries, n: number): number {
    return readEntriesOneByOne(this, entries, n);
  }

  writeEntries(entries: MsrEntries, n: number): number {
    return writeEntriesOneByOne(this, entries, n);
  }
}

/** The MSR-list protocol: write the count, E2BIG if it does not fit, then the indices. */
function msrList(list: readonly number[], arg: unknown, op: string): number {
  const codec: FlexCodec<kvm_msr_list_header, number> = KVM_MSR_LIST_CODEC;
  const h = userAccess(op, () => codec.copyInHeader(arg));
  const n = h.nmsrs;
  if (n < list.length) {
    copyToUser(codec.header, { nmsrs: list.length }, arg, op);
    // The way a VMM learns the count (QEMU's kvm_get_supported_msrs asks with nmsrs = 0 first): an answer of normal
    // operation, made without a stack trace (5 µs in Node 20).
    throw KernelError.withoutStack('E2BIG', op, `room for ${n} MSRs, ${list.length} needed (written to nmsrs)`);
  }
  copyFlexToUser(codec, { nmsrs: list.length }, list, arg, op);
  return 0;
}

/** KVM_GET_SUPPORTED_CPUID / KVM_GET_EMULATED_CPUID (`kvm_dev_ioctl_get_cpuid`). */
function getCpuid(arg: unknown, op: string, build: (max: number) => kvm_cpuid_entry2[] | undefined): number {
  const codec: FlexCodec<kvm_cpuid2_header, kvm_cpuid_entry2> = KVM_CPUID2_CODEC;
  const h = userAccess(op, () => codec.copyInHeader(arg));
  if (h.nent < 1) throw new KernelError('E2BIG', op, 'nent must be at least 1');
  const entries = build(h.nent);
  if (entries === undefined) throw new KernelError('E2BIG', op, `${h.nent} entries are not enough`);
  copyFlexToUser(codec, { nent: entries.length }, entries, arg, op);
  return 0;
}

/** KVM_GET_DEVICE_ATTR / KVM_HAS_DEVICE_ATTR on /dev/kvm (`kvm_x86_dev_get_attr`): group 0, attribute KVM_X86_XCOMP_GUEST_SUPP. */
function deviceAttr(f: SystemFile, arg: unknown, proc: Process, op: string, get: boolean): number {
  const attr = copyFromUser(KVM_DEVICE_ATTR_CODEC, arg, op);
  if (attr.group !== 0 || attr.attr !== BigInt(KVM_X86_XCOMP_GUEST_SUPP)) throw new KernelError('ENXIO', op, `no attribute ${attr.group}/${attr.attr}`);
  if (!get) return 0;
  const value = x86Caps(f.inst).supportedXcr0;
  userAccess(op, () => {
    const buf = userBuffer(proc, attr.addr, 8, op);
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, value, true);
  });
  return 0;
}

/** The x86 system ioctls. */
export const SYSTEM_ARCH_IOCTLS: readonly IoctlDef<SystemFile>[] = [
  {
    name: 'KVM_GET_MSR_INDEX_LIST',
    request: KVM_GET_MSR_INDEX_LIST,
    arg: { dir: 'inout', codec: KVM_MSR_LIST_CODEC, flex: { header: 'inout', entries: 'out' } },
    run: (f, arg) => msrList(x86Caps(f.inst).msrIndexList, arg, 'KVM_GET_MSR_INDEX_LIST'),
  },
  {
    name: 'KVM_GET_MSR_FEATURE_INDEX_LIST',
    request: KVM_GET_MSR_FEATURE_INDEX_LIST,
    arg: { dir: 'inout', codec: KVM_MSR_LIST_CODEC, flex: { header: 'inout', entries: 'out' } },
    run: (f, arg) => msrList(x86Caps(f.inst).featureMsrs, arg, 'KVM_GET_MSR_FEATURE_INDEX_LIST'),
  },
  {
    name: 'KVM_GET_MSRS',
    request: KVM_GET_MSRS,
    arg: { dir: 'inout', codec: KVM_MSRS_CODEC, flex: { header: 'in', entries: 'inout' } },
    // msr_io(NULL, argp, do_get_feature_msr, 1)
    run: (f, arg) => msrIo(arg, 'KVM_GET_MSRS', new FeatureMsrAccess(x86Caps(f.inst)), true),
  },
  {
    name: 'KVM_GET_SUPPORTED_CPUID',
    request: KVM_GET_SUPPORTED_CPUID,
    arg: { dir: 'inout', codec: KVM_CPUID2_CODEC, flex: { header: 'inout', entries: 'out' } },
    // Leaf 0xD offers what the calling process may give its guests (kvm_get_filtered_xcr0).
    run: (f, arg, proc) => getCpuid(arg, 'KVM_GET_SUPPORTED_CPUID', (n) => x86Caps(f.inst).supportedCpuid(n, guestPermOf(f.inst, proc))),
  },
  {
    name: 'KVM_GET_EMULATED_CPUID',
    request: KVM_GET_EMULATED_CPUID,
    arg: { dir: 'inout', codec: KVM_CPUID2_CODEC, flex: { header: 'inout', entries: 'out' } },
    run: (f, arg) => getCpuid(arg, 'KVM_GET_EMULATED_CPUID', (n) => x86Caps(f.inst).emulatedCpuid(n)),
  },
  {
    name: 'KVM_X86_GET_MCE_CAP_SUPPORTED',
    request: KVM_X86_GET_MCE_CAP_SUPPORTED,
    arg: { dir: 'out', codec: U64_POINTER_CODEC },
    run(f, arg) {
      copyToUser(U64_POINTER_CODEC, [x86Caps(f.inst).supportedMceCap], arg, 'KVM_X86_GET_MCE_CAP_SUPPORTED');
      return 0;
    },
  },
  {
    name: 'KVM_GET_DEVICE_ATTR',
    request: KVM_GET_DEVICE_ATTR,
    arg: { dir: 'in', codec: KVM_DEVICE_ATTR_CODEC },
    run: (f, arg, proc) => deviceAttr(f, arg, proc, 'KVM_GET_DEVICE_ATTR', true),
  },
  {
    name: 'KVM_HAS_DEVICE_ATTR',
    request: KVM_HAS_DEVICE_ATTR,
    arg: { dir: 'in', codec: KVM_DEVICE_ATTR_CODEC },
    run: (f, arg, proc) => deviceAttr(f, arg, proc, 'KVM_HAS_DEVICE_ATTR', false),
  },
];
