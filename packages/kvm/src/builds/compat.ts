/**
 * What can move between two KVM modules, decided the way a VMM decides it: from what each module's `/dev/kvmX`
 * answers (KVM_CHECK_EXTENSION, KVM_GET_MSR_INDEX_LIST, KVM_GET_SUPPORTED_CPUID, the XSAVE size) against the VM's
 * saved state ({@link saveVm}) and the capabilities its VMM enabled. {@link canMove} says every reason a move
 * would fail or silently lose state, in the order the move meets them, and whether the way back is open;
 * {@link moveVm} makes the move — keeping the source VM until the target holds the same state — and fails at the
 * step {@link canMove} names. Nothing here reaches into a module: it is user-space code over the ABI.
 *
 * @module
 */
import { O_RDWR, UsageError, isUsageError, type Mapping, type Process } from '@vac/core';
import {
  KVM_CAP_DISABLE_QUIRKS,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_X2APIC_API,
  KVM_CAP_X86_DISABLE_EXITS,
  KVM_CAP_XSAVE,
  KVM_CAP_XSAVE2,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_ENABLE_CAP,
  KVM_GET_SUPPORTED_CPUID,
} from '../abi/constants.js';
import { KVM_CPUID_ENTRY2_CODEC, makeKvmEnableCap, type kvm_cpuid_entry2, type kvm_userspace_memory_region } from '../abi/structs.js';
import { KVM_CPUID2_CODEC, makeKvmCpuid2 } from '../abi/structs-x86.js';
import { msrIndexList, restoreVm, saveVm, type RestoredVm, type SavedVcpu, type SavedVm, type VmHandle } from '../vmm.js';
import { msrListSet, savedCpuid, savedMsrs, savedXcr0, savedXstateBv } from '../vmm-vcpu.js';

/** What a VMM learns of one module through its system fd. */
export interface ModuleFacts {
  /** The device it was asked through (`/dev/kvm1`). */
  readonly devPath: string;
  /** KVM_CHECK_EXTENSION on the system fd, for every capability number 0 … {@link MAX_PROBED_CAP}. */
  readonly caps: ReadonlyMap<number, number>;
  /** KVM_GET_MSR_INDEX_LIST. */
  readonly msrIndexList: readonly number[];
  /** KVM_GET_SUPPORTED_CPUID. */
  readonly supportedCpuid: readonly kvm_cpuid_entry2[];
  /** The XSAVE area user space must pass: KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2), 4096 with only KVM_CAP_XSAVE, 0 without. */
  readonly xsaveSize: number;
  /** The XCR0 bits KVM lets a guest have: CPUID 0xD.0 EDX:EAX of KVM_GET_SUPPORTED_CPUID (0 without the leaf). */
  readonly supportedXcr0: bigint;
}

/** The highest capability number {@link probeModule} asks about. */
export const MAX_PROBED_CAP = 260;

/**
 * Ask a module what {@link canMove} needs: open `devPath`, KVM_CHECK_EXTENSION of every capability up to
 * {@link MAX_PROBED_CAP}, KVM_GET_MSR_INDEX_LIST, KVM_GET_SUPPORTED_CPUID (growing the buffer on E2BIG), close.
 *
 * @throws `KernelError` from `open` or an ioctl (ENOENT when there is no such device, EACCES, …)
 */
export function probeModule(proc: Process, devPath: string): ModuleFacts {
  const sys = proc.open(devPath, O_RDWR);
  try {
    const caps = new Map<number, number>();
    for (let c = 0; c <= MAX_PROBED_CAP; c++) caps.set(c, proc.ioctl(sys, KVM_CHECK_EXTENSION, c));
    const list = msrIndexList(proc, sys);
    const cpuid = makeKvmCpuid2(256);
    proc.ioctl(sys, KVM_GET_SUPPORTED_CPUID, cpuid);
    const supportedCpuid = cpuid.entries.slice(0, cpuid.nent);
    const xsave2 = caps.get(KVM_CAP_XSAVE2) ?? 0;
    const xsaveSize = xsave2 > 0 ? xsave2 : (caps.get(KVM_CAP_XSAVE) ?? 0) > 0 ? 4096 : 0;
    const d = supportedCpuid.find((e) => e.function === 0xd && e.index === 0);
    const supportedXcr0 = d === undefined ? 0n : BigInt(d.eax >>> 0) | (BigInt(d.edx >>> 0) << 32n);
    return { devPath, caps, msrIndexList: list, supportedCpuid, xsaveSize, supportedXcr0 };
  } finally {
    proc.close(sys);
  }
}

/** A capability the VMM enabled on the VM (KVM_ENABLE_CAP on the VM fd), which it enables again on the target. */
export interface EnabledCap {
  /** The capability. */
  readonly cap: number;
  /** `args[0]`, the flags (the other three args are 0). */
  readonly flags: bigint;
}

/** A VM as a move needs it: its saved state and what its VMM set up that the state does not hold. */
export interface MovableVm {
  /** {@link saveVm}'s result. */
  readonly saved: SavedVm;
  /** The capabilities the VMM enabled on the VM, in the order it enabled them (before any vCPU). */
  readonly enabledCaps?: readonly EnabledCap[];
}

/** The steps of a move, in the order {@link moveVm} takes them. */
export const MOVE_STEPS = ['KVM_ENABLE_CAP', 'cpuid-check', 'KVM_SET_XSAVE', 'KVM_SET_XCRS', 'KVM_SET_MSRS'] as const;

/** One step of a move. `cpuid-check` is the VMM's check of the guest CPUID against the target's supported CPUID, before KVM_SET_CPUID2. */
export type MoveStep = (typeof MOVE_STEPS)[number];

/** One thing that stands in a move's way. */
export interface MoveReason {
  /** `fails`: the move stops at `step`; `loses-state`: it goes through but the guest loses something; `note`: harmless now. */
  readonly kind: 'fails' | 'loses-state' | 'note';
  /** Where the move meets it. */
  readonly step: MoveStep;
  /** What it is, in words. */
  readonly detail: string;
}

/** Whether the way back is open after a move. */
export interface Rollback {
  /** `true`: the VM can come back as it went; `false`: it cannot; `'conditional'`: only while none of `hazards` happens. */
  readonly possible: boolean | 'conditional';
  /** Why it cannot come back (the reverse move's failures). */
  readonly reasons: readonly MoveReason[];
  /** What, once it happens on the target, closes the way back (the target offers what the source lacks). */
  readonly hazards: readonly string[];
}

/** {@link canMove}'s answer. */
export interface MoveVerdict {
  /** No reason of kind `fails` or `loses-state`. */
  readonly ok: boolean;
  /** Every reason, in move order. */
  readonly reasons: readonly MoveReason[];
  /** The way back. */
  readonly rollback: Rollback;
}

/** Capabilities whose KVM_ENABLE_CAP flags must be a subset of KVM_CHECK_EXTENSION's answer. */
const FLAG_CAPS: ReadonlySet<number> = new Set([KVM_CAP_DISABLE_QUIRKS2, KVM_CAP_X86_DISABLE_EXITS, KVM_CAP_X2APIC_API]);

/**
 * What the target does with flags it does not offer. KVM_CAP_X86_DISABLE_EXITS: EINVAL from 6.14 (c829ccd4d9dc);
 * 6.12 takes the call and leaves those exits on, so a move would lose them silently — {@link moveVm} checks the
 * offer first and refuses either way.
 */
function flagsRefusal(cap: number): string {
  return cap === KVM_CAP_X86_DISABLE_EXITS ? 'EINVAL from 6.14; before, ignored silently' : 'EINVAL';
}

/**
 * The CPUID feature words a guest's features live in: function, index, register. The XSAVE components of leaf 0xD.0
 * (EDX:EAX) are among them, as QEMU's FEAT_XSAVE_XCR0_LO / _HI words are.
 */
const FEATURE_WORDS: ReadonlyArray<readonly [number, number, 'eax' | 'ebx' | 'ecx' | 'edx']> = [
  [1, 0, 'ecx'], [1, 0, 'edx'], [7, 0, 'ebx'], [7, 0, 'ecx'], [7, 0, 'edx'], [7, 1, 'eax'], [0xd, 0, 'eax'], [0xd, 0, 'edx'], [0xd, 1, 'eax'],
  [0x80000001, 0, 'ecx'], [0x80000001, 0, 'edx'], [0x80000007, 0, 'edx'], [0x80000008, 0, 'ebx'],
  [0x8000000a, 0, 'edx'], [0x80000021, 0, 'eax'], [0x40000001, 0, 'eax'],
];

/** The entry of `entries` for leaf `fn`, subleaf `index`. */
function leaf(entries: readonly kvm_cpuid_entry2[], fn: number, index: number): kvm_cpuid_entry2 | undefined {
  for (const e of entries) if (e.function === fn && e.index === index) return e;
  return undefined;
}

function word(entries: readonly kvm_cpuid_entry2[], fn: number, index: number, reg: 'eax' | 'ebx' | 'ecx' | 'edx'): number {
  const e = leaf(entries, fn, index);
  return e === undefined ? 0 : e[reg] >>> 0;
}

/** The {@link FEATURE_WORDS} of a module's supported CPUID, in order: found once per list (a VMM passes the same probed facts to move after move). */
const featureWordsOf = new WeakMap<readonly kvm_cpuid_entry2[], Uint32Array>();
function featureWords(entries: readonly kvm_cpuid_entry2[]): Uint32Array {
  let w = featureWordsOf.get(entries);
  if (w === undefined) {
    w = Uint32Array.from(FEATURE_WORDS, ([fn, index, reg]) => word(entries, fn, index, reg));
    featureWordsOf.set(entries, w);
  }
  return w;
}

/** Where a register lies in a `struct kvm_cpuid_entry2`. */
const REG_AT = { eax: KVM_CPUID_ENTRY2_CODEC.offsetOf('eax'), ebx: KVM_CPUID_ENTRY2_CODEC.offsetOf('ebx'), ecx: KVM_CPUID_ENTRY2_CODEC.offsetOf('ecx'), edx: KVM_CPUID_ENTRY2_CODEC.offsetOf('edx') } as const;
const FN_AT = KVM_CPUID_ENTRY2_CODEC.offsetOf('function');
const INDEX_AT = KVM_CPUID_ENTRY2_CODEC.offsetOf('index');
const ENTRIES_AT = KVM_CPUID2_CODEC.entriesOffset;

/** The {@link FEATURE_WORDS} of a saved vCPU's CPUID, read off its `struct kvm_cpuid2` bytes (the first entry of each leaf, as {@link leaf}). */
function savedFeatureWords(saved: SavedVcpu): Uint32Array {
  const b = saved.cpuid;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = Math.min(dv.getUint32(0, true), Math.floor((b.byteLength - ENTRIES_AT) / KVM_CPUID_ENTRY2_CODEC.size));
  const out = new Uint32Array(FEATURE_WORDS.length);
  FEATURE_WORDS.forEach(([fn, index, reg], k) => {
    for (let i = 0, at = ENTRIES_AT; i < n; i++, at += KVM_CPUID_ENTRY2_CODEC.size) {
      if (dv.getUint32(at + FN_AT, true) === fn && dv.getUint32(at + INDEX_AT, true) === index) {
        out[k] = dv.getUint32(at + REG_AT[reg], true);
        return;
      }
    }
  });
  return out;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;
const MCE_FIRST = 0x400;
const MCE_LAST = 0x47f;
const MCE_CTL2_FIRST = 0x280;
const MCE_CTL2_LAST = 0x29f;
/** The machine-check bank MSRs, which {@link saveVcpu} saves from MCG_CAP, not from the MSR list. */
function isMceBank(msr: number): boolean {
  return (msr >= MCE_FIRST && msr <= MCE_LAST) || (msr >= MCE_CTL2_FIRST && msr <= MCE_CTL2_LAST);
}

/** Where the last of the components in `bv` ends in the standard format, by the offsets and sizes of leaf 0xD (576 at least). */
function xstateExtent(bv: bigint, cpuid: readonly kvm_cpuid_entry2[]): number {
  let end = 576;
  // The bits as two 32-bit halves: a test per component without a bigint each.
  const halves = [Number(bv & 0xffff_ffffn), Number((bv >> 32n) & 0xffff_ffffn)] as const;
  for (let i = 2; i < 64; i++) {
    if (((halves[i >> 5] as number) & (1 << (i & 31))) === 0) continue;
    const e = leaf(cpuid, 0xd, i);
    if (e !== undefined) end = Math.max(end, (e.ebx >>> 0) + (e.eax >>> 0));
  }
  return end;
}

/** What both directions of {@link canMove} read of the saved state, decoded once: vCPU 0's CPUID, the XSAVE and XCR0 bits of all. */
interface SavedFacts {
  /** vCPU 0's {@link FEATURE_WORDS}. */
  readonly cpuidWords: Uint32Array | undefined;
  readonly xstateBv: bigint;
  readonly xcr0: bigint;
}

function savedFacts(saved: SavedVm): SavedFacts {
  const v0 = saved.vcpus[0];
  return {
    cpuidWords: v0 === undefined ? undefined : savedFeatureWords(v0),
    xstateBv: saved.vcpus.reduce((m, v) => m | savedXstateBv(v), 0n),
    xcr0: saved.vcpus.reduce((m, v) => m | savedXcr0(v), 0n),
  };
}

/** `sizeof(struct kvm_msrs)` (the header, `nmsrs` first) and `sizeof(struct kvm_msr_entry)` (`index` at 0, `data` at 8). */
const MSRS_HEADER = 8;
const MSR_ENTRY = 16;

/**
 * Each saved MSR of `saved` that is not a machine-check bank and not in `listed`, read off the `struct kvm_msrs`
 * bytes (only these are decoded: a move between builds with the same list decodes none).
 */
function unlistedMsrs(saved: SavedVcpu, listed: ReadonlySet<number>, each: (index: number, data: bigint) => void): void {
  const dv = new DataView(saved.msrs.buffer, saved.msrs.byteOffset, saved.msrs.byteLength);
  const n = dv.getUint32(0, true);
  for (let i = 0, at = MSRS_HEADER; i < n; i++, at += MSR_ENTRY) {
    const index = dv.getUint32(at, true);
    if (!isMceBank(index) && !listed.has(index)) each(index, dv.getBigUint64(at + 8, true));
  }
}

/** What the module answers KVM_CHECK_EXTENSION(`cap`) with. */
function answer(f: ModuleFacts, cap: number): number {
  return f.caps.get(cap) ?? 0;
}

/** The reasons one direction of a move meets, in move order. */
function reasonsFor(vm: MovableVm, sf: SavedFacts, from: ModuleFacts, to: ModuleFacts): MoveReason[] {
  const out: MoveReason[] = [];
  // 1. The VMM's KVM_ENABLE_CAP calls, replayed on the target VM.
  for (const { cap, flags } of vm.enabledCaps ?? []) {
    const have = answer(to, cap);
    if (cap === KVM_CAP_DISABLE_QUIRKS) {
      // The old interface ignores quirks it does not know: the quirk stays on, silently.
      const kept = flags & ~BigInt(answer(to, KVM_CAP_DISABLE_QUIRKS2));
      if (kept !== 0n) out.push({ kind: 'loses-state', step: 'KVM_ENABLE_CAP', detail: `KVM_CAP_DISABLE_QUIRKS ${hex(flags)}: the target does not know quirks ${hex(kept)} and leaves them on without an error` });
      continue;
    }
    if (have === 0) {
      out.push({ kind: 'fails', step: 'KVM_ENABLE_CAP', detail: `capability ${cap} (enabled with ${hex(flags)}): the target does not have it` });
    } else if (FLAG_CAPS.has(cap) && (flags & ~BigInt(have >>> 0)) !== 0n) {
      out.push({ kind: 'fails', step: 'KVM_ENABLE_CAP', detail: `capability ${cap} with ${hex(flags)}: the target offers only ${hex(have)} (${flagsRefusal(cap)})` });
    }
  }
  const v0 = vm.saved.vcpus[0];
  const guest = sf.cpuidWords;
  if (v0 === undefined || guest === undefined) return out;
  // 2. CPUID: features the guest sees that the source's KVM supports and the target's does not.
  const fromWords = featureWords(from.supportedCpuid);
  const toWords = featureWords(to.supportedCpuid);
  for (let k = 0; k < FEATURE_WORDS.length; k++) {
    const [fn, index, reg] = FEATURE_WORDS[k] as (typeof FEATURE_WORDS)[number];
    const lost = (guest[k] as number) & (fromWords[k] as number) & ~(toWords[k] as number);
    if (lost !== 0) out.push({ kind: 'fails', step: 'cpuid-check', detail: `CPUID ${hex(fn)}.${index}.${reg} bits ${hex(lost >>> 0)}: the guest has them, the target's KVM_GET_SUPPORTED_CPUID does not offer them` });
  }
  // 3. XSAVE: state components the target does not support, an area larger than the target's.
  const bv = sf.xstateBv;
  const xcr0 = sf.xcr0;
  const missingBv = bv & ~3n & ~to.supportedXcr0;
  if (missingBv !== 0n) out.push({ kind: 'fails', step: 'KVM_SET_XSAVE', detail: `XSTATE_BV ${hex(bv)}: the target does not support components ${hex(missingBv)} (EINVAL)` });
  else {
    // The area the saved components need (their offsets and sizes in the source's leaf 0xD), against what the target
    // takes: KVM_SET_XSAVE reads the target vCPU's uabi_size bytes, at most KVM_CAP_XSAVE2's answer.
    const needed = xstateExtent(bv, from.supportedCpuid);
    if (needed > to.xsaveSize) out.push({ kind: 'fails', step: 'KVM_SET_XSAVE', detail: `the XSAVE area is ${needed} bytes (XSTATE_BV ${hex(bv)}), the target takes ${to.xsaveSize}` });
  }
  const missingXcr0 = xcr0 & ~to.supportedXcr0 & ~1n;
  if (missingXcr0 !== 0n) out.push({ kind: 'fails', step: 'KVM_SET_XCRS', detail: `XCR0 ${hex(xcr0)}: the target does not support ${hex(missingXcr0)} (EINVAL)` });
  // 4. MSRs: saved ones the target does not list are not restored (a VMM restores what the target lists).
  const targetList = msrListSet(to.msrIndexList);
  for (const v of vm.saved.vcpus) {
    unlistedMsrs(v, targetList, (index, data) => {
      if (data !== 0n) out.push({ kind: 'loses-state', step: 'KVM_SET_MSRS', detail: `vCPU ${v.id}: MSR ${hex(index)} = ${hex(data)} is not in the target's KVM_GET_MSR_INDEX_LIST: its value would be lost` });
      else if (v === v0) out.push({ kind: 'note', step: 'KVM_SET_MSRS', detail: `MSR ${hex(index)} is not in the target's list; it is 0, so nothing is lost` });
    });
  }
  return out;
}

/**
 * Whether `vm` can move from the module described by `from` to the one described by `to` ({@link probeModule}),
 * and back. Reasons come in the order {@link moveVm} meets them ({@link MOVE_STEPS}):
 *
 * - `KVM_ENABLE_CAP`: a capability the VMM enabled that the target does not have, or flags it does not offer
 *   (KVM_CAP_DISABLE_QUIRKS2, KVM_CAP_X86_DISABLE_EXITS, KVM_CAP_X2APIC_API: EINVAL); the old KVM_CAP_DISABLE_QUIRKS
 *   with quirks the target does not know loses them silently;
 * - `cpuid-check`: a CPUID feature the guest has, the source's KVM supports and the target's does not;
 * - `KVM_SET_XSAVE` / `KVM_SET_XCRS`: state components or XCR0 bits the target does not support, a larger area;
 * - `KVM_SET_MSRS`: a saved MSR, not 0, that the target does not list (lost).
 *
 * The way back: the reverse move of the same state, and the hazards — what the target offers and the source does
 * not (MSRs, CPUID features, capability flags), which closes the way back once the guest or the VMM uses it.
 */
export function canMove(vm: MovableVm, from: ModuleFacts, to: ModuleFacts): MoveVerdict {
  checkMovable(vm);
  checkFacts(from, 'from');
  checkFacts(to, 'to');
  const sf = savedFacts(vm.saved);
  const reasons = reasonsFor(vm, sf, from, to);
  const ok = reasons.every((r) => r.kind === 'note');
  const back = reasonsFor(vm, sf, to, from).filter((r) => r.kind !== 'note');
  const hazards: string[] = [];
  const sourceList = msrListSet(from.msrIndexList);
  const extra = to.msrIndexList.filter((m) => !sourceList.has(m));
  if (extra.length > 0) hazards.push(`the guest writes MSR ${extra.map(hex).join(', ')} (the target lists them, the source does not)`);
  const fromWords = featureWords(from.supportedCpuid);
  const toWords = featureWords(to.supportedCpuid);
  for (let k = 0; k < FEATURE_WORDS.length; k++) {
    const [fn, index, reg] = FEATURE_WORDS[k] as (typeof FEATURE_WORDS)[number];
    const more = (toWords[k] as number) & ~(fromWords[k] as number);
    if (more !== 0) hazards.push(`the VMM gives the guest CPUID ${hex(fn)}.${index}.${reg} bits ${hex(more >>> 0)} (the target offers them, the source does not)`);
  }
  for (const cap of FLAG_CAPS) {
    const more = (to.caps.get(cap) ?? 0) & ~(from.caps.get(cap) ?? 0);
    if (more !== 0) hazards.push(`the VMM enables capability ${cap} with flags ${hex(more >>> 0)} (the target offers them, the source does not)`);
  }
  const possible = back.length > 0 ? false : hazards.length > 0 ? 'conditional' : true;
  return { ok, reasons, rollback: { possible, reasons: back, hazards } };
}

function checkMovable(vm: unknown): asserts vm is MovableVm {
  const v = vm as Partial<MovableVm> | null;
  if (typeof v !== 'object' || v === null || typeof v.saved !== 'object' || v.saved === null || !Array.isArray(v.saved.vcpus)) {
    throw new UsageError('ERR_INVALID_ARG', 'canMove: vm must be { saved: SavedVm (saveVm\'s result), enabledCaps? }');
  }
  if (v.enabledCaps !== undefined && (!Array.isArray(v.enabledCaps) || !v.enabledCaps.every((c) => typeof c?.cap === 'number' && typeof c.flags === 'bigint'))) {
    throw new UsageError('ERR_INVALID_ARG', 'canMove: enabledCaps must be an array of { cap: number, flags: bigint }');
  }
}

function checkFacts(f: unknown, name: string): asserts f is ModuleFacts {
  const x = f as Partial<ModuleFacts> | null;
  if (typeof x !== 'object' || x === null || !(x.caps instanceof Map) || !Array.isArray(x.msrIndexList) || !Array.isArray(x.supportedCpuid) || typeof x.xsaveSize !== 'number' || typeof x.supportedXcr0 !== 'bigint') {
    throw new UsageError('ERR_INVALID_ARG', `canMove: ${name} must be ModuleFacts (probeModule's result)`);
  }
}

/** Thrown by {@link moveVm}: the move stopped at `step`; the source VM is as it was. */
export class MoveError extends UsageError {
  /** The step it stopped at. */
  readonly step: MoveStep;
  /** The underlying error (the kernel's, when an ioctl failed). */
  override readonly cause: unknown;

  /**
   * @param step where the move stopped
   * @param message what went wrong
   * @param cause the error behind it
   */
  constructor(step: MoveStep, message: string, cause?: unknown) {
    super('ERR_INVALID_STATE', `moveVm: ${step}: ${message}`);
    this.name = 'MoveError';
    this.step = step;
    this.cause = cause;
  }
}

/** A VM to move: its handle, its memory slots and the capabilities its VMM enabled. */
export interface MoveSource {
  /** The VM's fds (its vCPUs stopped). */
  readonly handle: VmHandle;
  /** Its memory slots (the same user memory is registered with the target VM). */
  readonly slots: readonly kvm_userspace_memory_region[];
  /** The capabilities its VMM enabled, in order. */
  readonly enabledCaps?: readonly EnabledCap[];
  /**
   * Whether the VMM created the in-kernel irqchip (KVM_CREATE_IRQCHIP) when `handle` does not say: the target gets
   * one with the same state (PICs, IOAPIC, PIT, LAPICs), as {@link saveVm} and {@link restoreVm} carry it.
   */
  readonly irqchip?: boolean;
  /** The source vCPUs' `kvm_run` mappings, unmapped once the move succeeds (they hold the old VM). */
  readonly runMappings?: readonly Mapping[];
}

/** A VM made by {@link moveVm}. */
export interface MovedVm {
  /** The target VM's handle. */
  readonly handle: VmHandle;
  /** Its vCPUs' `kvm_run` mappings (in vCPU order). */
  readonly runMappings: readonly Mapping[];
  /** The state it was moved with. */
  readonly saved: SavedVm;
}

/** The step of a restore's failure: the ioctl the kernel refused, or the saved MSR KVM refused; `undefined` for anything else. */
function stepOf(e: unknown): MoveStep | undefined {
  const op = (e as { op?: unknown }).op;
  if (op === 'KVM_SET_XSAVE' || op === 'KVM_SET_XCRS' || op === 'KVM_SET_MSRS') return op;
  if (isUsageError(e, 'ERR_INVALID_STATE')) return 'KVM_SET_MSRS'; // restoreVcpu: KVM refused a saved MSR
  return undefined;
}

/**
 * Move a stopped VM to the module at `devPath` as a VMM does it, keeping the source until the target holds the
 * same state:
 *
 * 1. save it ({@link saveVm}: kvmclock, the irqchip, every vCPU);
 * 2. restore it on the target ({@link restoreVm}: a new VM with the same memory slots, its irqchip and PIT, then
 *    `KVM_ENABLE_CAP` of each capability the VMM had enabled — flags the target's KVM_CHECK_EXTENSION does not
 *    offer, or the kernel's errno, stop the move — and the
 *    `cpuid-check`: the guest CPUID's feature words must be within the target's KVM_GET_SUPPORTED_CPUID where the
 *    guest has them from KVM (a VMM's "enforce"): bits the target's KVM does not offer stop the move; then every
 *    vCPU, the devices' state and kvmclock, with the saved MSRs the target does not list left out, as QEMU does);
 *    the kernel's errno stops the move at its ioctl;
 * 3. the target saved again and compared: a saved MSR that did not arrive stops the move at `KVM_SET_MSRS`.
 *
 * On success the source's fds are closed (its vCPU mappings unmapped) and the target's handle returned; on failure
 * the target's are, and the source runs on.
 *
 * @throws MoveError naming the step; `KernelError` from opening the target or saving the source
 */
export function moveVm(proc: Process, source: MoveSource, devPath: string): MovedVm {
  const irqchip = source.irqchip === true && source.handle.irqchip === undefined ? { mode: 'kernel' as const } : source.handle.irqchip;
  const saved = saveVm(proc, irqchip === undefined ? source.handle : { ...source.handle, irqchip });
  const from = new Set(msrIndexList(proc, source.handle.sys));
  const fdsBefore = new Set(proc.fds().map((f) => f.fd));
  const mapsBefore = new Set(proc.mappings().map((m) => m.addr));
  try {
    let restored: RestoredVm;
    try {
      restored = restoreVm(proc, devPath, saved, { slots: source.slots, configure: (p, sys, vm) => configureTarget(p, sys, vm, source, saved, devPath) });
    } catch (e) {
      const step = e instanceof MoveError ? undefined : stepOf(e);
      if (step === undefined) throw e;
      throw new MoveError(step, (e as Error).message, e);
    }
    const handle: VmHandle = irqchip === undefined ? { sys: restored.sys, vm: restored.vm, vcpus: restored.vcpus } : { sys: restored.sys, vm: restored.vm, vcpus: restored.vcpus, irqchip };
    const again = saveVm(proc, handle);
    for (const v of saved.vcpus) {
      const back = again.vcpus.find((x) => x.id === v.id);
      const now = new Map(back === undefined ? [] : savedMsrs(back).map((m) => [m.index, m.data]));
      for (const m of savedMsrs(v)) {
        if (!from.has(m.index) && !isMceBank(m.index)) continue;
        if ((now.get(m.index) ?? 0n) !== m.data) throw new MoveError('KVM_SET_MSRS', `vCPU ${v.id}: MSR ${hex(m.index)} = ${hex(m.data)} did not arrive (the target has ${hex(now.get(m.index) ?? 0n)})`);
      }
    }
    for (const m of source.runMappings ?? []) proc.munmap(m.addr, m.length);
    closeVm(proc, source.handle);
    return { handle, runMappings: restored.vcpus.map((v) => v.runMapping), saved };
  } catch (e) {
    // Give back what the target took: the mappings and fds the process did not have before.
    for (const m of proc.mappings()) if (!mapsBefore.has(m.addr)) proc.munmap(m.addr, m.length);
    for (const f of proc.fds().reverse()) if (!fdsBefore.has(f.fd)) proc.close(f.fd);
    throw e;
  }
}

/** {@link moveVm}'s part of the restore before the vCPUs exist: the VMM's capabilities, then the `cpuid-check`. */
function configureTarget(proc: Process, sys: number, vm: number, source: MoveSource, saved: SavedVm, devPath: string): void {
  for (const { cap, flags } of source.enabledCaps ?? []) {
    // A careful VMM asks first: before 6.14 KVM_CAP_X86_DISABLE_EXITS takes exits it does not offer and leaves them
    // on (the other flag capabilities always refuse them with EINVAL, which stops the move below).
    if (cap === KVM_CAP_X86_DISABLE_EXITS) {
      const offered = BigInt(proc.ioctl(sys, KVM_CHECK_EXTENSION, cap) >>> 0);
      if ((flags & ~offered) !== 0n) throw new MoveError('KVM_ENABLE_CAP', `capability ${cap} with ${hex(flags)}: ${devPath} offers only ${hex(offered)}`);
    }
    try {
      proc.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [flags, 0n, 0n, 0n] }));
    } catch (e) {
      throw new MoveError('KVM_ENABLE_CAP', `capability ${cap} with ${hex(flags)}: ${(e as Error).message}`, e);
    }
  }
  const target = makeKvmCpuid2(256);
  proc.ioctl(sys, KVM_GET_SUPPORTED_CPUID, target);
  const supported = target.entries.slice(0, target.nent);
  const sourceSupported = makeKvmCpuid2(256);
  proc.ioctl(source.handle.sys, KVM_GET_SUPPORTED_CPUID, sourceSupported);
  for (const v of saved.vcpus) {
    const cpuid = savedCpuid(v);
    for (const [fn, index, reg] of FEATURE_WORDS) {
      const fromKvm = word(cpuid, fn, index, reg) & word(sourceSupported.entries.slice(0, sourceSupported.nent), fn, index, reg);
      const missing = fromKvm & ~word(supported, fn, index, reg);
      if (missing !== 0) throw new MoveError('cpuid-check', `vCPU ${v.id}: CPUID ${hex(fn)}.${index}.${reg} bits ${hex(missing >>> 0)} are not supported by ${devPath}`);
    }
  }
}

/** Close a VM's fds: its vCPUs, the VM, the system fd. */
function closeVm(proc: Process, h: VmHandle): void {
  for (const v of h.vcpus) proc.close(v.fd);
  proc.close(h.vm);
  proc.close(h.sys);
}
