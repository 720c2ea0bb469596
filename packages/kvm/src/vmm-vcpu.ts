/**
 * Saving and restoring one vCPU through the ABI, as a VMM does to move a VM (QEMU's `kvm_arch_get_registers` and
 * `kvm_arch_put_registers`): the state is kept as the C structures the GET ioctls filled, one `Uint8Array` per
 * ioctl, and handed back to the SET ioctls as they are — no object per structure, no bigint per register, as a C VMM
 * keeps its `struct kvm_regs`. {@link parseSavedVcpu} gives the decoded form to callers that want to read it, and
 * {@link savedVcpuOf} turns a decoded form (perhaps edited) back into the structures.
 *
 * User-space code like the rest of the VMM helpers (`vmm.ts`): it never reaches into the module.
 *
 * @module
 */
import { UsageError, isKernelError, type Process } from '@vac/core';
import {
  KVM_CAP_NESTED_STATE,
  KVM_CAP_SREGS2,
  KVM_CAP_XCRS,
  KVM_CAP_XSAVE2,
  KVM_CHECK_EXTENSION,
  KVM_GET_CPUID2,
  KVM_GET_DEBUGREGS,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_GET_MSRS,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_NESTED_STATE,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_SREGS2,
  KVM_GET_TSC_KHZ,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_GET_XSAVE2,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_LAPIC,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_NESTED_STATE,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_SREGS2,
  KVM_SET_TSC_KHZ,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  KVM_X86_SETUP_MCE,
} from './abi/constants.js';
import { KVM_NESTED_STATE_CODEC, type kvm_nested_state } from './abi/structs-nested.js';
import { KVM_CPUID_ENTRY2_CODEC, KVM_REGS_CODEC, KVM_SREGS_CODEC, type kvm_cpuid_entry2, type kvm_msr_entry, type kvm_regs, type kvm_sregs } from './abi/structs.js';
import {
  KVM_CPUID2_CODEC,
  KVM_DEBUGREGS_CODEC,
  KVM_SREGS2_CODEC,
  KVM_VCPU_EVENTS_CODEC,
  KVM_XCRS_CODEC,
  KVM_XCR_CODEC,
  KVM_XSAVE_CODEC,
  type kvm_debugregs,
  type kvm_sregs2,
  type kvm_vcpu_events,
  type kvm_xcrs,
  type kvm_xsave,
} from './abi/structs-x86.js';
import { argBytes } from './vmm-args.js';

/**
 * Everything KVM holds of one vCPU, as a VMM saves it to move the VM (QEMU's `kvm_arch_get_registers`): its CPUID,
 * TSC frequency, registers, system registers, FPU/XSAVE area, XCRs, pending events, MP state, debug registers,
 * machine-check setup, every MSR KVM lists, the in-kernel LAPIC and the nested state. Each structure is kept as the C
 * bytes its GET ioctl wrote (little-endian, at the offsets of `include/uapi/linux/kvm.h` and
 * `arch/x86/include/uapi/asm/kvm.h`), which {@link restoreVcpu} passes to the matching SET ioctl as they are. Plain
 * data: it can be kept, compared, cloned or sent elsewhere. {@link parseSavedVcpu} decodes it. The structures are
 * views of one buffer, which other saves may share (each save its own bytes of it): to send one save's bytes alone,
 * or to transfer a buffer, copy them (`slice()`).
 */
export interface SavedVcpu {
  /** The vCPU id. */
  readonly id: number;
  /** KVM_GET_TSC_KHZ. */
  readonly tscKhz: number;
  /** KVM_GET_MP_STATE's `mp_state`. */
  readonly mpState: number;
  /** MCG_CAP (what KVM_X86_SETUP_MCE set), restored before the machine-check MSRs. */
  readonly mcgCap: bigint;
  /** KVM_GET_CPUID2: `struct kvm_cpuid2` with its `nent` entries (what the VMM set). */
  readonly cpuid: Uint8Array;
  /** KVM_GET_REGS: `struct kvm_regs`. */
  readonly regs: Uint8Array;
  /** KVM_GET_SREGS2: `struct kvm_sregs2` (with the PDPTRs of PAE paging), or `undefined` where KVM lacks it. */
  readonly sregs2: Uint8Array | undefined;
  /** KVM_GET_SREGS: `struct kvm_sregs`, where KVM lacks KVM_GET_SREGS2. */
  readonly sregs: Uint8Array | undefined;
  /**
   * KVM_GET_XSAVE: `struct kvm_xsave` (the legacy FXSAVE area and, with XSAVE, the extended state); or, where
   * KVM_CAP_XSAVE2 answers more than its 4096 bytes (AMX permitted to the process), KVM_GET_XSAVE2's area of that size.
   */
  readonly xsave: Uint8Array;
  /** KVM_GET_XCRS: `struct kvm_xcrs`, where KVM has them (KVM_CAP_XCRS). */
  readonly xcrs: Uint8Array | undefined;
  /** KVM_GET_VCPU_EVENTS: `struct kvm_vcpu_events`. */
  readonly events: Uint8Array;
  /** KVM_GET_DEBUGREGS: `struct kvm_debugregs`. */
  readonly debugregs: Uint8Array;
  /**
   * KVM_GET_MSRS: `struct kvm_msrs` with every MSR the vCPU reads — KVM_GET_MSR_INDEX_LIST's, then the
   * machine-check banks of `mcgCap` — in that order (`nmsrs` of them; one the vCPU does not read is left out).
   */
  readonly msrs: Uint8Array;
  /** KVM_GET_LAPIC: `struct kvm_lapic_state`, where the vCPU has an in-kernel LAPIC (a full or split irqchip). */
  readonly lapic?: Uint8Array | undefined;
  /**
   * KVM_GET_NESTED_STATE: `struct kvm_nested_state`, its header's `size` bytes, where KVM has it
   * (KVM_CAP_NESTED_STATE). The model's guests never run a nested guest, so it is the "no nested guest" header.
   */
  readonly nestedState?: Uint8Array | undefined;
}

/** {@link SavedVcpu} decoded: each structure as its object form (what the object form of each GET ioctl gives). */
export interface ParsedSavedVcpu {
  /** The vCPU id. */
  readonly id: number;
  /** KVM_GET_CPUID2's entries. */
  readonly cpuid: readonly kvm_cpuid_entry2[];
  /** KVM_GET_TSC_KHZ. */
  readonly tscKhz: number;
  /** KVM_GET_REGS. */
  readonly regs: kvm_regs;
  /** KVM_GET_SREGS2, or `undefined` where KVM lacks it. */
  readonly sregs2: kvm_sregs2 | undefined;
  /** KVM_GET_SREGS, where KVM lacks KVM_GET_SREGS2. */
  readonly sregs: kvm_sregs | undefined;
  /** KVM_GET_XSAVE. */
  readonly xsave: kvm_xsave;
  /** KVM_GET_XCRS, where KVM has them. */
  readonly xcrs: kvm_xcrs | undefined;
  /** KVM_GET_VCPU_EVENTS. */
  readonly events: kvm_vcpu_events;
  /** KVM_GET_MP_STATE. */
  readonly mpState: number;
  /** KVM_GET_DEBUGREGS. */
  readonly debugregs: kvm_debugregs;
  /** MCG_CAP. */
  readonly mcgCap: bigint;
  /** Every saved MSR, in the saved order. */
  readonly msrs: readonly kvm_msr_entry[];
  /** KVM_GET_LAPIC's register page (0x400 bytes), where the vCPU has an in-kernel LAPIC. */
  readonly lapic?: Uint8Array | undefined;
  /** KVM_GET_NESTED_STATE's header, where KVM has it. */
  readonly nestedState?: kvm_nested_state | undefined;
}

const MSR_IA32_MCG_CAP = 0x179;
const MSR_IA32_APICBASE = 0x1b;
const MSR_IA32_MC0_CTL = 0x400;
const MSR_IA32_MC0_CTL2 = 0x280;
const MCG_CMCI_P = 1n << 10n;
/** `MAX_IO_MSRS` (arch/x86/kvm/x86.c): KVM_GET/SET_MSRS take fewer entries than this per call. */
const MAX_IO_MSRS = 256;
/** `sizeof(struct kvm_msrs)` (the header before the entries) and `sizeof(struct kvm_msr_entry)`. */
const MSRS_HEADER = 8;
const MSR_ENTRY = 16;
/** `sizeof(struct kvm_lapic_state)`: `char regs[KVM_APIC_REG_SIZE]`. */
const LAPIC_STATE_BYTES = 0x400;
/** `sizeof(struct kvm_cpuid2)` (the header) and `sizeof(struct kvm_cpuid_entry2)`. */
const CPUID_HEADER = KVM_CPUID2_CODEC.entriesOffset;
const CPUID_ENTRY = KVM_CPUID_ENTRY2_CODEC.size;
/** The entries KVM_GET_CPUID2 gets room for (`KVM_MAX_CPUID_ENTRIES`). */
const CPUID_ROOM = 256;

/**
 * The MSR indices KVM lists on `sys` (KVM_GET_MSR_INDEX_LIST; its E2BIG gives the count): what {@link saveVcpu}
 * saves besides the machine-check banks. A VMM asks once (QEMU's `kvm_get_supported_msrs`) and passes the list to
 * every {@link saveVcpu}.
 *
 * @example
 * ```ts
 * import { O_RDWR, createHost } from '@vac/core';
 * import { kvm, msrIndexList } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const msrs = msrIndexList(proc, proc.open('/dev/kvm0', O_RDWR));
 * console.log(msrs.length, msrs.includes(0x10)); // IA32_TSC is among them
 * ```
 */
export function msrIndexList(proc: Process, sys: number): number[] {
  // The C bytes of `struct kvm_msr_list` (`nmsrs`, then the `__u32` indices), as QEMU's kvm_get_supported_msrs
  // passes them: first with room for none (E2BIG writes the count), then with room for all.
  const head = argBytes(4);
  try {
    proc.ioctl(sys, KVM_GET_MSR_INDEX_LIST, head);
  } catch (e) {
    if (!isKernelError(e, 'E2BIG')) throw e;
  }
  const room = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
  const list = argBytes(4 + 4 * room);
  new DataView(list.buffer, list.byteOffset, 4).setUint32(0, room, true);
  proc.ioctl(sys, KVM_GET_MSR_INDEX_LIST, list);
  const dv = new DataView(list.buffer, list.byteOffset, list.byteLength);
  const n = Math.min(dv.getUint32(0, true), room);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = dv.getUint32(4 + 4 * i, true);
  return out;
}

// ---- the save area -----------------------------------------------------------------------------------------

/**
 * Where {@link saveVcpu} has the GET ioctls write, one structure after the other, then copied out once into the
 * result: reused between saves (making a `Uint8Array` of its own costs 1–3 µs per structure, see `vmm-args.ts`).
 */
class SaveArea {
  buffer: ArrayBuffer;
  view: DataView;

  constructor(bytes: number) {
    this.buffer = new ArrayBuffer(bytes);
    this.view = new DataView(this.buffer);
  }

  /** Room for `n` bytes at `at` (the area grown, keeping what is there), zeroed. */
  room(at: number, n: number): Uint8Array<ArrayBuffer> {
    if (at + n > this.buffer.byteLength) {
      const bigger = new ArrayBuffer(Math.max(at + n, 2 * this.buffer.byteLength));
      new Uint8Array(bigger).set(new Uint8Array(this.buffer, 0, at));
      this.buffer = bigger;
      this.view = new DataView(bigger);
    }
    const b = new Uint8Array(this.buffer, at, n);
    b.fill(0);
    return b;
  }
}

const sharedArea = new SaveArea(32 * 1024);
/** Whether a save is using {@link sharedArea} (a save made meanwhile, from an event listener, gets its own). */
let sharedInUse = false;

/**
 * Save one vCPU. The vCPU must not be running (no thread inside KVM_RUN) and must have no I/O waiting for its
 * completion (see `saveVm`, which completes it first). Each GET ioctl writes its C structure, which the result keeps
 * as bytes.
 *
 * @param proc the VMM process
 * @param sys its `/dev/kvmX` fd (for the capabilities)
 * @param fd the vCPU fd
 * @param id the vCPU id
 * @param msrs the MSRs to save ({@link msrIndexList}; asked of `sys` when not given)
 * @throws `KernelError` from the first failing ioctl
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, parseSavedVcpu, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4], regs: { rax: 42n } });
 * const saved = saveVcpu(proc, vm.sys, vm.vcpus[0]!.fd, 0);
 * console.log(saved.regs.length, parseSavedVcpu(saved).regs.rax); // 144 42n: struct kvm_regs, decoded on request
 * ```
 */
export function saveVcpu(proc: Process, sys: number, fd: number, id: number, msrs: readonly number[] = msrIndexList(proc, sys)): SavedVcpu {
  const hasSregs2 = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;
  const hasXcrs = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
  const nestedMax = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE);
  // QEMU's kvm_get_xsave: KVM_GET_XSAVE2 into KVM_CAP_XSAVE2 bytes when that is more than struct kvm_xsave.
  const xsave2 = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  const xsaveSize = xsave2 > KVM_XSAVE_CODEC.size ? xsave2 : 0;
  if (sharedInUse) return saveInto(new SaveArea(32 * 1024), proc, fd, id, msrs, hasSregs2, hasXcrs, nestedMax, xsaveSize);
  sharedInUse = true;
  try {
    return saveInto(sharedArea, proc, fd, id, msrs, hasSregs2, hasXcrs, nestedMax, xsaveSize);
  } finally {
    sharedInUse = false;
  }
}

/**
 * Where saves keep their bytes: consecutive saves' structures are cut from one 64 KiB `ArrayBuffer` (as Node's
 * `Buffer.allocUnsafe` cuts small buffers from a pool), since an `ArrayBuffer` of its own costs about 1 µs to make
 * whatever its size — the largest single cost of a save's own work. A save larger than half the slab (an AMX-sized
 * XSAVE2 area) gets a buffer of its own. A saved vCPU kept alone keeps its slab alive: at most 64 KiB for ~10 KiB.
 */
const SLAB_BYTES = 64 * 1024;
let slab = new ArrayBuffer(0);
let slabUsed = 0;

/** A copy of `src` kept for a {@link SavedVcpu}: a view of the current slab (a new slab when it is full). */
function keptCopy(src: Uint8Array): Uint8Array {
  const n = src.length;
  if (n > SLAB_BYTES / 2) return src.slice();
  if (slabUsed + n > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, n);
  out.set(src);
  slabUsed += (n + 7) & ~7; // the next save 8-byte aligned, as a fresh buffer is
  return out;
}

/** The GET ioctl `req` into `size` bytes of `area` at `at`; where the next structure goes. */
function getInto(area: SaveArea, proc: Process, fd: number, req: number, at: number, size: number): number {
  proc.ioctl(fd, req, area.room(at, size));
  return at + size;
}

/** `n` bytes of `all` at `o`. */
function part(all: Uint8Array, o: number, n: number): Uint8Array {
  return all.subarray(o, o + n);
}

/**
 * {@link saveVcpu}'s GET ioctls, each writing into `area`, and the result copied out of it; `xsaveSize` is
 * KVM_GET_XSAVE2's size, or 0 for KVM_GET_XSAVE.
 */
function saveInto(area: SaveArea, proc: Process, fd: number, id: number, msrs: readonly number[], hasSregs2: boolean, hasXcrs: boolean, nestedMax: number, xsaveSize: number): SavedVcpu {
  // Each structure at `at`, then `at` past it: [offset, length] per structure, copied out at the end. (No closures
  // here: a save is on the hot path of a move, and each closure made per call costs.)
  let at = 0;
  const cpuidAt = at;
  const cpuidArg = area.room(at, CPUID_HEADER + CPUID_ROOM * CPUID_ENTRY);
  area.view.setUint32(cpuidAt, CPUID_ROOM, true);
  proc.ioctl(fd, KVM_GET_CPUID2, cpuidArg);
  const cpuidLen = CPUID_HEADER + area.view.getUint32(cpuidAt, true) * CPUID_ENTRY;
  at += cpuidLen;
  const regsAt = at;
  at = getInto(area, proc, fd, KVM_GET_REGS, at, KVM_REGS_CODEC.size);
  const sregsSize = hasSregs2 ? KVM_SREGS2_CODEC.size : KVM_SREGS_CODEC.size;
  const sregsAt = at;
  at = getInto(area, proc, fd, hasSregs2 ? KVM_GET_SREGS2 : KVM_GET_SREGS, at, sregsSize);
  const xsaveLen = xsaveSize > 0 ? xsaveSize : KVM_XSAVE_CODEC.size;
  const xsaveAt = at;
  at = getInto(area, proc, fd, xsaveSize > 0 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, at, xsaveLen);
  const xcrsAt = hasXcrs ? at : -1;
  if (hasXcrs) at = getInto(area, proc, fd, KVM_GET_XCRS, at, KVM_XCRS_CODEC.size);
  const eventsAt = at;
  at = getInto(area, proc, fd, KVM_GET_VCPU_EVENTS, at, KVM_VCPU_EVENTS_CODEC.size);
  const mpAt = at;
  at = getInto(area, proc, fd, KVM_GET_MP_STATE, at, 4);
  const mpState = area.view.getUint32(mpAt, true);
  const debugAt = at;
  at = getInto(area, proc, fd, KVM_GET_DEBUGREGS, at, KVM_DEBUGREGS_CODEC.size);
  const mcgCap = readMsr(proc, fd, MSR_IA32_MCG_CAP) ?? 0n;
  const tscKhz = proc.ioctl(fd, KVM_GET_TSC_KHZ, 0);
  const msrsAt = at;
  at = readMsrsInto(area, proc, fd, msrs, mcgCap, at);
  const lapicAt = at;
  let lapicLen = 0;
  try {
    proc.ioctl(fd, KVM_GET_LAPIC, area.room(at, LAPIC_STATE_BYTES));
    lapicLen = LAPIC_STATE_BYTES;
  } catch (e) {
    if (!isKernelError(e, 'EINVAL')) throw e; // no in-kernel LAPIC
  }
  at += lapicLen;
  const nestedAt = at;
  let nestedLen = 0;
  if (nestedMax > 0) {
    // QEMU's kvm_get_nested_state: a buffer of KVM_CAP_NESTED_STATE bytes, `size` its length; KVM writes how much it used.
    const b = area.room(at, nestedMax);
    area.view.setUint32(at + 4, nestedMax, true);
    proc.ioctl(fd, KVM_GET_NESTED_STATE, b);
    nestedLen = Math.min(nestedMax, area.view.getUint32(at + 4, true));
  }
  at += nestedLen;
  const all = keptCopy(new Uint8Array(area.buffer, 0, at));
  return {
    id,
    tscKhz,
    mpState,
    mcgCap,
    cpuid: part(all, cpuidAt, cpuidLen),
    regs: part(all, regsAt, KVM_REGS_CODEC.size),
    sregs2: hasSregs2 ? part(all, sregsAt, sregsSize) : undefined,
    sregs: hasSregs2 ? undefined : part(all, sregsAt, sregsSize),
    xsave: part(all, xsaveAt, xsaveLen),
    xcrs: hasXcrs ? part(all, xcrsAt, KVM_XCRS_CODEC.size) : undefined,
    events: part(all, eventsAt, KVM_VCPU_EVENTS_CODEC.size),
    debugregs: part(all, debugAt, KVM_DEBUGREGS_CODEC.size),
    msrs: part(all, msrsAt, lapicAt - msrsAt),
    lapic: lapicLen > 0 ? part(all, lapicAt, lapicLen) : undefined,
    nestedState: nestedLen > 0 ? part(all, nestedAt, nestedLen) : undefined,
  };
}

/** KVM_GET_MSRS of one MSR, or `undefined` when the vCPU does not read it. */
function readMsr(proc: Process, fd: number, index: number): bigint | undefined {
  const b = argBytes(MSRS_HEADER + MSR_ENTRY);
  const dv = new DataView(b.buffer, 0, b.byteLength);
  dv.setUint32(0, 1, true);
  dv.setUint32(MSRS_HEADER, index, true);
  return proc.ioctl(fd, KVM_GET_MSRS, b) === 1 ? dv.getBigUint64(MSRS_HEADER + 8, true) : undefined;
}

/**
 * The indices of the MSRs a save reads from the `start`th on, `count` of them, into the entries of `dv`'s
 * `struct kvm_msrs`: the listed ones, then each bank's CTL, STATUS, ADDR, MISC, then each bank's CTL2.
 */
function writeSavedMsrIndices(dv: DataView, listed: readonly number[], banks: number, start: number, count: number): void {
  let i = start;
  let at = MSRS_HEADER;
  const end = start + count;
  for (; i < end && i < listed.length; i++, at += MSR_ENTRY) dv.setUint32(at, listed[i] as number, true);
  for (; i < end && i < listed.length + 4 * banks; i++, at += MSR_ENTRY) dv.setUint32(at, MSR_IA32_MC0_CTL + i - listed.length, true);
  for (; i < end; i++, at += MSR_ENTRY) dv.setUint32(at, MSR_IA32_MC0_CTL2 + i - listed.length - 4 * banks, true);
}

/**
 * KVM_GET_MSRS of `listed` and then of the machine-check banks of `mcgCap`, in batches of at most 255, written as one
 * `struct kvm_msrs` at `at` of the save area; a batch stops at the first MSR the vCPU does not read, which is left
 * out. @returns the end of the structure in `area`
 */
function readMsrsInto(area: SaveArea, proc: Process, fd: number, listed: readonly number[], mcgCap: bigint, at: number): number {
  const banks = Number(mcgCap & 0xffn);
  const cmci = (mcgCap & MCG_CMCI_P) !== 0n;
  const total = listed.length + 4 * banks + (cmci ? banks : 0);
  area.room(at, MSRS_HEADER + total * MSR_ENTRY);
  let kept = 0;
  let start = 0;
  while (start < total) {
    const count = Math.min(MAX_IO_MSRS - 1, total - start);
    const b = argBytes(MSRS_HEADER + count * MSR_ENTRY);
    const dv = new DataView(b.buffer, 0, b.byteLength);
    dv.setUint32(0, count, true);
    writeSavedMsrIndices(dv, listed, banks, start, count);
    const n = proc.ioctl(fd, KVM_GET_MSRS, b);
    new Uint8Array(area.buffer, at + MSRS_HEADER + kept * MSR_ENTRY, n * MSR_ENTRY).set(b.subarray(MSRS_HEADER, MSRS_HEADER + n * MSR_ENTRY));
    kept += n;
    start += n === count ? n : n + 1; // skip the one it could not read
  }
  area.view.setUint32(at, kept, true);
  return at + MSRS_HEADER + kept * MSR_ENTRY;
}

// ---- restoring ---------------------------------------------------------------------------------------------

/**
 * Restore a vCPU saved by {@link saveVcpu} into a vCPU of the same configuration, in the order KVM needs (QEMU's
 * `kvm_arch_init_vcpu`, `kvm_apic_put` and `kvm_arch_put_registers`): CPUID and TSC frequency first (a vCPU that has
 * run takes only the CPUID it has), then the machine-check setup, the in-kernel LAPIC (the APIC base, then
 * KVM_SET_LAPIC), the system registers and nested state, the general registers, the FPU/XSAVE area and XCRs, the
 * MSRs (the TSC among them, which KVM synchronizes across the VM's vCPUs, then IA32_TSC_DEADLINE), the events, the
 * MP state and the debug registers. Each SET ioctl gets the saved structure's bytes as they are.
 *
 * @throws `KernelError` from the first failing ioctl; `UsageError` `ERR_INVALID_STATE` when KVM refuses one of the
 *   saved MSRs (the state does not fit this module: another CPU model, another configuration)
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, parseSavedVcpu, restoreVcpu, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * host.modprobe(kvm({ postfix: '1' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const a = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4], regs: { rax: 42n } });
 * const b = createRealModeVm(proc, '/dev/kvm1', { code: [0xf4] });
 * restoreVcpu(proc, b.vcpus[0]!.fd, saveVcpu(proc, a.sys, a.vcpus[0]!.fd, 0));
 * console.log(parseSavedVcpu(saveVcpu(proc, b.sys, b.vcpus[0]!.fd, 0)).regs.rax); // 42n, now on kvm1
 * ```
 */
export function restoreVcpu(proc: Process, fd: number, saved: SavedVcpu): void {
  restoreVcpuSetup(proc, fd, saved);
  restoreLapic(proc, fd, saved);
  restoreVcpuRegisters(proc, fd, saved);
}

/** QEMU's `kvm_init_vcpu` part: CPUID, TSC frequency, machine-check setup. */
export function restoreVcpuSetup(proc: Process, fd: number, saved: SavedVcpu): void {
  proc.ioctl(fd, KVM_SET_CPUID2, saved.cpuid);
  if (proc.ioctl(fd, KVM_GET_TSC_KHZ, 0) !== saved.tscKhz) proc.ioctl(fd, KVM_SET_TSC_KHZ, saved.tscKhz);
  if (saved.mcgCap !== 0n) proc.ioctl(fd, KVM_X86_SETUP_MCE, [saved.mcgCap]);
}

/**
 * QEMU's `kvm_apic_put`: the APIC base first (`kvm_put_apicbase`: KVM_SET_LAPIC reads the x2APIC ID in the mode the
 * base selects, `kvm_apic_state_fixup`), then the register page (the timer restarts from the saved current count).
 */
export function restoreLapic(proc: Process, fd: number, saved: SavedVcpu): void {
  if (saved.lapic === undefined) return;
  const sregs = saved.sregs2 ?? saved.sregs;
  if (sregs !== undefined) {
    const baseAt = saved.sregs2 !== undefined ? KVM_SREGS2_CODEC.offsetOf('apic_base') : KVM_SREGS_CODEC.offsetOf('apic_base');
    const b = argBytes(MSRS_HEADER + MSR_ENTRY);
    const dv = new DataView(b.buffer, 0, b.byteLength);
    dv.setUint32(0, 1, true);
    dv.setUint32(MSRS_HEADER, MSR_IA32_APICBASE, true);
    b.set(sregs.subarray(baseAt, baseAt + 8), MSRS_HEADER + 8);
    if (proc.ioctl(fd, KVM_SET_MSRS, b) !== 1) {
      const base = new DataView(sregs.buffer, sregs.byteOffset + baseAt, 8).getBigUint64(0, true);
      throw new UsageError('ERR_INVALID_STATE', `restoreVcpu: KVM refused APIC base 0x${base.toString(16)}`);
    }
  }
  proc.ioctl(fd, KVM_SET_LAPIC, saved.lapic);
}

/** QEMU's `kvm_arch_put_registers` (KVM_PUT_FULL_STATE). */
export function restoreVcpuRegisters(proc: Process, fd: number, saved: SavedVcpu): void {
  if (saved.sregs2 !== undefined) proc.ioctl(fd, KVM_SET_SREGS2, saved.sregs2);
  if (saved.sregs !== undefined) proc.ioctl(fd, KVM_SET_SREGS, saved.sregs);
  // kvm_put_nested_state, after the system registers (SVM takes a nested state only with EFER.SVME set).
  if (saved.nestedState !== undefined) proc.ioctl(fd, KVM_SET_NESTED_STATE, saved.nestedState);
  proc.ioctl(fd, KVM_SET_REGS, saved.regs);
  proc.ioctl(fd, KVM_SET_XSAVE, saved.xsave);
  if (saved.xcrs !== undefined) proc.ioctl(fd, KVM_SET_XCRS, saved.xcrs);
  writeMsrs(proc, fd, saved.msrs);
  // kvm_put_vcpu_events, then kvm_put_mp_state (an INIT/SIPI state with an in-kernel LAPIC), then the debug registers.
  proc.ioctl(fd, KVM_SET_VCPU_EVENTS, saved.events);
  const mp = argBytes(4);
  new DataView(mp.buffer, 0, 4).setUint32(0, saved.mpState, true);
  proc.ioctl(fd, KVM_SET_MP_STATE, mp);
  proc.ioctl(fd, KVM_SET_DEBUGREGS, saved.debugregs);
}

/**
 * KVM_SET_MSRS of a saved `struct kvm_msrs` (in batches of at most 255). A batch stops at the first MSR KVM refuses:
 * one that already holds the saved value needs no write (an MSR KVM only takes with an in-kernel LAPIC, say, at its
 * reset value); any other cannot be restored here.
 */
function writeMsrs(proc: Process, fd: number, msrs: Uint8Array): void {
  const dv = new DataView(msrs.buffer, msrs.byteOffset, msrs.byteLength);
  const total = dv.getUint32(0, true);
  let start = 0;
  while (start < total) {
    const count = Math.min(MAX_IO_MSRS - 1, total - start);
    let arg = msrs;
    if (start !== 0 || count !== total) {
      arg = argBytes(MSRS_HEADER + count * MSR_ENTRY);
      new DataView(arg.buffer, 0, 4).setUint32(0, count, true);
      arg.set(msrs.subarray(MSRS_HEADER + start * MSR_ENTRY, MSRS_HEADER + (start + count) * MSR_ENTRY), MSRS_HEADER);
    }
    const n = proc.ioctl(fd, KVM_SET_MSRS, arg);
    if (n < count) {
      const bad = MSRS_HEADER + (start + n) * MSR_ENTRY;
      const index = dv.getUint32(bad, true);
      const data = dv.getBigUint64(bad + 8, true);
      if (readMsr(proc, fd, index) !== data) throw new UsageError('ERR_INVALID_STATE', `restoreVcpu: KVM refused MSR 0x${index.toString(16)} = 0x${data.toString(16)}`);
    }
    start += n === count ? n : n + 1;
  }
}

// ---- the MSRs of a saved vCPU --------------------------------------------------------------------------------

/** The number of MSRs in a saved `struct kvm_msrs`. */
export function savedMsrCount(saved: SavedVcpu): number {
  return new DataView(saved.msrs.buffer, saved.msrs.byteOffset, saved.msrs.byteLength).getUint32(0, true);
}

/** The saved MSRs, decoded. */
export function savedMsrs(saved: SavedVcpu): kvm_msr_entry[] {
  const dv = new DataView(saved.msrs.buffer, saved.msrs.byteOffset, saved.msrs.byteLength);
  const n = dv.getUint32(0, true);
  const out: kvm_msr_entry[] = [];
  for (let i = 0; i < n; i++) out.push({ index: dv.getUint32(MSRS_HEADER + MSR_ENTRY * i, true), data: dv.getBigUint64(MSRS_HEADER + MSR_ENTRY * i + 8, true) });
  return out;
}

/** `struct kvm_msrs` of `entries`. */
function msrsStruct(entries: readonly kvm_msr_entry[]): Uint8Array {
  const b = new Uint8Array(MSRS_HEADER + MSR_ENTRY * entries.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    dv.setUint32(MSRS_HEADER + MSR_ENTRY * i, e.index, true);
    dv.setBigUint64(MSRS_HEADER + MSR_ENTRY * i + 8, e.data, true);
  });
  return b;
}

/** `list` as a set, made once per list: a VMM passes the same probed KVM_GET_MSR_INDEX_LIST to restore after restore. */
const listedSets = new WeakMap<readonly number[], ReadonlySet<number>>();

/** The set of the indices in `list` (the same set for the same array). */
export function msrListSet(list: readonly number[]): ReadonlySet<number> {
  let set = listedSets.get(list);
  if (set === undefined) {
    set = new Set(list);
    listedSets.set(list, set);
  }
  return set;
}

/**
 * `saved` with only the MSRs a restore sends (QEMU's `kvm_put_msrs`): those `listed` (the target's
 * KVM_GET_MSR_INDEX_LIST) and the machine-check banks `saved.mcgCap` gives (MCi_CTL/STATUS/ADDR/MISC, and MCi_CTL2
 * with CMCI); `saved` itself when that is all of them. The indices of the others are added to `dropped`.
 */
export function restorableMsrs(saved: SavedVcpu, listed: ReadonlySet<number>, dropped: Set<number>): SavedVcpu {
  // The bank ranges of MCG_CAP, found once (not a bigint operation per MSR).
  const banks = Number(saved.mcgCap & 0xffn);
  const ctl2Banks = (saved.mcgCap & MCG_CMCI_P) !== 0n ? banks : 0;
  const dv = new DataView(saved.msrs.buffer, saved.msrs.byteOffset, saved.msrs.byteLength);
  const n = dv.getUint32(0, true);
  let kept: number[] | undefined;
  for (let i = 0; i < n; i++) {
    const index = dv.getUint32(MSRS_HEADER + MSR_ENTRY * i, true);
    const bank = (index >= MSR_IA32_MC0_CTL && index < MSR_IA32_MC0_CTL + 4 * banks) || (index >= MSR_IA32_MC0_CTL2 && index < MSR_IA32_MC0_CTL2 + ctl2Banks);
    if (bank || listed.has(index)) {
      kept?.push(i);
      continue;
    }
    dropped.add(index);
    // The first one left out: the entries before it are all kept.
    kept ??= Array.from({ length: i }, (_, j) => j);
  }
  if (kept === undefined) return saved;
  const b = new Uint8Array(MSRS_HEADER + MSR_ENTRY * kept.length);
  new DataView(b.buffer).setUint32(0, kept.length, true);
  kept.forEach((i, j) => b.set(saved.msrs.subarray(MSRS_HEADER + MSR_ENTRY * i, MSRS_HEADER + MSR_ENTRY * (i + 1)), MSRS_HEADER + MSR_ENTRY * j));
  return { ...saved, msrs: b };
}

// ---- the decoded form ----------------------------------------------------------------------------------------

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** The saved CPUID entries, decoded. */
export function savedCpuid(saved: SavedVcpu): kvm_cpuid_entry2[] {
  return KVM_CPUID2_CODEC.decode(viewOf(saved.cpuid)).entries;
}

/** XSTATE_BV of the saved XSAVE area (the XSAVE header's first 8 bytes, at 512). */
export function savedXstateBv(saved: SavedVcpu): bigint {
  return viewOf(saved.xsave).getBigUint64(512, true);
}

/** The saved XCR0 (0 without saved XCRs, or when they do not list XCR0). */
export function savedXcr0(saved: SavedVcpu): bigint {
  if (saved.xcrs === undefined) return 0n;
  // Read off the bytes: the first of the 16 `struct kvm_xcr` entries that names XCR0, as the decoded array's `find`.
  const dv = viewOf(saved.xcrs);
  for (let i = 0, at = XCRS_AT; i < 16; i++, at += KVM_XCR_CODEC.size) if (dv.getUint32(at + XCR_AT, true) === 0) return dv.getBigUint64(at + XCR_VALUE_AT, true);
  return 0n;
}

/** Where the entries of `struct kvm_xcrs` start, and an entry's `xcr` and `value`. */
const XCRS_AT = KVM_XCRS_CODEC.offsetOf('xcrs');
const XCR_AT = KVM_XCR_CODEC.offsetOf('xcr');
const XCR_VALUE_AT = KVM_XCR_CODEC.offsetOf('value');

/**
 * Decode a {@link SavedVcpu}: each structure's object form, as the object form of its GET ioctl gives it.
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, parseSavedVcpu, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4] });
 * const v = parseSavedVcpu(saveVcpu(proc, vm.sys, vm.vcpus[0]!.fd, 0));
 * console.log(v.regs.rip.toString(16), v.msrs.some((m) => m.index === 0x10)); // '1000' true: IA32_TSC was saved
 * ```
 */
export function parseSavedVcpu(saved: SavedVcpu): ParsedSavedVcpu {
  return {
    id: saved.id,
    cpuid: savedCpuid(saved),
    tscKhz: saved.tscKhz,
    regs: KVM_REGS_CODEC.decode(viewOf(saved.regs)),
    sregs2: saved.sregs2 === undefined ? undefined : KVM_SREGS2_CODEC.decode(viewOf(saved.sregs2)),
    sregs: saved.sregs === undefined ? undefined : KVM_SREGS_CODEC.decode(viewOf(saved.sregs)),
    xsave: parsedXsave(saved.xsave),
    xcrs: saved.xcrs === undefined ? undefined : KVM_XCRS_CODEC.decode(viewOf(saved.xcrs)),
    events: KVM_VCPU_EVENTS_CODEC.decode(viewOf(saved.events)),
    mpState: saved.mpState,
    debugregs: KVM_DEBUGREGS_CODEC.decode(viewOf(saved.debugregs)),
    mcgCap: saved.mcgCap,
    msrs: savedMsrs(saved),
    lapic: saved.lapic?.slice(),
    nestedState: saved.nestedState === undefined ? undefined : KVM_NESTED_STATE_CODEC.decode(viewOf(saved.nestedState)),
  };
}

/**
 * The {@link SavedVcpu} of a decoded form (from {@link parseSavedVcpu}, perhaps edited): each structure's C bytes.
 * A nested state is its header alone (`size` 128), as the model's KVM saves it.
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, parseSavedVcpu, restoreVcpu, saveVcpu, savedVcpuOf } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4] });
 * const fd = vm.vcpus[0]!.fd;
 * const v = parseSavedVcpu(saveVcpu(proc, vm.sys, fd, 0));
 * restoreVcpu(proc, fd, savedVcpuOf({ ...v, regs: { ...v.regs, rax: 7n } }));
 * console.log(parseSavedVcpu(saveVcpu(proc, vm.sys, fd, 0)).regs.rax); // 7n
 * ```
 */
export function savedVcpuOf(p: ParsedSavedVcpu): SavedVcpu {
  return {
    id: p.id,
    tscKhz: p.tscKhz,
    mpState: p.mpState,
    mcgCap: p.mcgCap,
    cpuid: KVM_CPUID2_CODEC.toBytes({ nent: p.cpuid.length }, p.cpuid),
    regs: KVM_REGS_CODEC.toBytes(p.regs),
    sregs2: p.sregs2 === undefined ? undefined : KVM_SREGS2_CODEC.toBytes(p.sregs2),
    sregs: p.sregs === undefined ? undefined : KVM_SREGS_CODEC.toBytes(p.sregs),
    xsave: xsaveBytes(p.xsave),
    xcrs: p.xcrs === undefined ? undefined : KVM_XCRS_CODEC.toBytes(p.xcrs),
    events: KVM_VCPU_EVENTS_CODEC.toBytes(p.events),
    debugregs: KVM_DEBUGREGS_CODEC.toBytes(p.debugregs),
    msrs: msrsStruct(p.msrs),
    lapic: p.lapic === undefined ? undefined : lapicStruct(p.lapic),
    nestedState: p.nestedState === undefined ? undefined : KVM_NESTED_STATE_CODEC.toBytes(p.nestedState),
  };
}

/** `struct kvm_lapic_state` of a register page (0x400 bytes; a shorter one zero-filled, a longer one refused). */
function lapicStruct(regs: Uint8Array): Uint8Array {
  if (regs.length > LAPIC_STATE_BYTES) throw new UsageError('ERR_INVALID_ARG', `savedVcpuOf: the LAPIC page is ${regs.length} bytes, struct kvm_lapic_state ${LAPIC_STATE_BYTES}`);
  const b = new Uint8Array(LAPIC_STATE_BYTES);
  b.set(regs);
  return b;
}

/** A saved XSAVE area decoded: `struct kvm_xsave`, or a KVM_GET_XSAVE2 area as a `region` of all its words. */
function parsedXsave(bytes: Uint8Array): kvm_xsave {
  if (bytes.length <= KVM_XSAVE_CODEC.size) return KVM_XSAVE_CODEC.decode(viewOf(bytes));
  return { region: new Uint32Array(bytes.slice().buffer) };
}

/** {@link parsedXsave} back to C bytes: a `region` of more than 1024 words is a KVM_GET_XSAVE2 area. */
function xsaveBytes(x: kvm_xsave): Uint8Array {
  if (x.region.length <= KVM_XSAVE_CODEC.size / 4) return KVM_XSAVE_CODEC.toBytes(x);
  return new Uint8Array(x.region.buffer.slice(x.region.byteOffset, x.region.byteOffset + 4 * x.region.length));
}
