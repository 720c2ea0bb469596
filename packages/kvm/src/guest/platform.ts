/**
 * What the guest CPU asks of its vCPU: the CPUID table (`KVM_SET_CPUID2`), the MSRs (`KVM_GET/SET_MSRS`) and the
 * time-stamp counter. `cpuid`, `rdmsr`, `wrmsr` and `rdtsc` in the interpreter go through a {@link GuestPlatform}
 * the caller of `runGuest` passes, so the state behind them lives with the vCPU, not in the interpreter.
 *
 * {@link CpuidTable} answers `cpuid` from a list of `struct kvm_cpuid_entry2` the way KVM's `kvm_cpuid()`
 * (arch/x86/kvm/cpuid.c) does; {@link defaultGuestPlatform} is a vCPU with no CPUID table, no MSRs and a TSC that
 * advances by one per read, for callers of `runGuest` that have no vCPU behind them.
 *
 * @module
 */

/**
 * The vCPU state behind `cpuid`, `rdmsr`/`wrmsr` and `rdtsc`. Implementations must not call `runGuest`.
 */
export interface GuestPlatform {
  /**
   * `cpuid` with EAX = `fn`, ECX = `index`: writes EAX, EBX, ECX, EDX into `out[0..3]` (32-bit values). The
   * interpreter zero-extends each into its 64-bit register.
   */
  cpuid(fn: number, index: number, out: Uint32Array): void;
  /**
   * `rdmsr`: the MSR's value, `undefined` when reading it raises #GP, or `null` when the access goes to user space
   * (KVM_CAP_X86_USER_SPACE_MSR): the run then stops before the instruction with `GuestExitReason.X86Rdmsr`,
   * and executing it again asks the platform again (which then answers with what user space gave). `executed`: as for
   * {@link GuestPlatform.tsc} (IA32_TIME_STAMP_COUNTER reads the TSC that far into the run).
   */
  rdmsr(msr: number, executed?: number): bigint | undefined | null;
  /**
   * `wrmsr`: false when writing `value` (a `__u64`) to the MSR raises #GP; true when it was written; `null` when the
   * access goes to user space (as for {@link GuestPlatform.rdmsr}, with `GuestExitReason.X86Wrmsr`). `executed`: as
   * for {@link GuestPlatform.tsc} (a write to IA32_TIME_STAMP_COUNTER moves the offset from the TSC that far on).
   */
  wrmsr(msr: number, value: bigint, executed?: number): boolean | null;
  /**
   * Whether the vCPU is in System Management Mode (`is_smm`): then `rsm` ends the run with `GuestExitReason.Rsm` for
   * the caller to leave SMM; otherwise (and when absent) `rsm` raises #UD.
   */
  inSmm?(): boolean;
  /**
   * The guest completed an IRET: the processor unblocks NMIs (SDM Vol. 3A §6.7.1; VMX clears the NMI blocking of the
   * interruptibility state, SVM's `iret_interception` ends `nmi_masked`). Returns true when the run must end after it
   * — an NMI that waited for the IRET can now be injected (the NMI-window exit). Absent: nothing happens.
   */
  iret?(): boolean;
  /**
   * `rdtsc`: the guest's TSC, a `__u64` (IA32_TIME_STAMP_COUNTER as the guest sees it). `executed`: the instructions
   * the run completed before this one — the host's clock moves only after a run (`SimClock.advanceInstructions`), so a
   * platform on that clock adds them, and two `rdtsc`s of one run read different values, as on a real vCPU.
   */
  tsc(executed?: number): bigint;
  /**
   * A `mov cr0` that sets CR0.PG (`value`, past the architectural checks): false when the vCPU refuses it and the
   * instruction raises #GP — KVM's `kvm_set_cr0` loads the PAE PDPTEs then and faults when they cannot be loaded
   * (not RAM, a reserved bit in a present entry). Absent: allowed.
   */
  cr0PagingAllowed?(value: number): boolean;
  /**
   * Whether the vCPU has a request pending that the host must process before the guest's next instruction
   * (`kvm_request_pending`), asked after a `wrmsr` the platform accepted: when true, `runGuest` ends after that
   * instruction (returning `Budget`), as the WRMSR's VM exit in Linux goes through `vcpu_enter_guest`'s requests
   * (kvmclock's `KVM_REQ_CLOCK_UPDATE` writes the pvclock structure the guest reads right after). Absent: never.
   */
  requestPending?(): boolean;
  /**
   * Whether a `pause` ends the run (`runGuest` returns `Budget` after it) so the host can run another vCPU: the
   * model's form of pause-loop exiting (VMX PLE / SVM pause filter → `kvm_vcpu_on_spin`). A vCPU spinning on a lock
   * another vCPU must release would otherwise spin through whole time slices, the other never running at the moment
   * the lock is free. Absent: never.
   */
  pauseExits?(): boolean;
  /**
   * The vCPU's x87/SSE state in the FXSAVE layout (at least 512 bytes): FCW, FSW, the abridged FTW, FOP, FIP, FDP,
   * MXCSR at 24, MXCSR_MASK at 28, ST0–7 from 32, XMM0–7 from 160 — and, from 576 bytes on, the XSAVE header whose
   * XSTATE_BV (byte 512) says whether x87 and SSE are live or in their init configuration (x87-state.ts). Under
   * KVM it is the image `KVM_GET/SET_FPU` and `KVM_GET/SET_XSAVE` read and write, so the guest and the VMM see the
   * same state. Without it the x87 and FXSAVE-family instructions end in an emulation failure.
   */
  readonly fxState?: Uint8Array;
}

/** A fresh FXSAVE image as `fpstate_init_fx` leaves it: FCW 0x37f, MXCSR 0x1f80 (MXCSR_DEFAULT), MXCSR_MASK 0xffff. */
export function initialFxState(): Uint8Array {
  const image = new Uint8Array(512);
  const dv = new DataView(image.buffer);
  dv.setUint16(0, 0x37f, true);
  dv.setUint32(24, 0x1f80, true);
  dv.setUint32(28, 0xffff, true);
  return image;
}

/** `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` (sic, `<asm/kvm.h>`): the entry applies only to its `index`. */
export const KVM_CPUID_FLAG_SIGNIFICANT_INDEX = 1;

/** One CPUID entry, the fields of `struct kvm_cpuid_entry2` that answer `cpuid`. */
export interface CpuidEntry {
  /** Leaf (EAX on input). */
  readonly function: number;
  /** Sub-leaf (ECX on input); compared only with {@link KVM_CPUID_FLAG_SIGNIFICANT_INDEX}. */
  readonly index: number;
  /** `KVM_CPUID_FLAG_*`. */
  readonly flags: number;
  /** Output EAX. */
  readonly eax: number;
  /** Output EBX. */
  readonly ebx: number;
  /** Output ECX. */
  readonly ecx: number;
  /** Output EDX. */
  readonly edx: number;
}

/** "AuthenticAMD" and "HygonGenuine" in EBX, EDX, ECX of leaf 0 (`is_guest_vendor_amd/hygon`). */
const AMD_LIKE: readonly (readonly [number, number, number])[] = [
  [0x68747541, 0x69746e65, 0x444d4163],
  [0x6f677948, 0x6e65476e, 0x656e6975],
];

/**
 * A CPUID table answering as KVM's `kvm_cpuid()` does (arch/x86/kvm/cpuid.c): the entry for (leaf, sub-leaf)
 * if there is one; otherwise, unless leaf 0 names an AMD or Hygon vendor, a leaf beyond its class's maximum
 * (basic 0, hypervisor 0x4000_00xx, extended 0x8000_0000, Centaur 0xc000_0000) answers as the maximum basic
 * leaf with the same sub-leaf (`get_out_of_range_cpuid_entry`, Intel's documented behaviour); else zeros.
 * Leaves 0xb and 0x1f without an entry for the sub-leaf still echo ECX[7:0] and take EDX from sub-leaf 1.
 * The run-time bits KVM patches in (OSXSAVE, APIC, …) are the table owner's to keep current.
 */
export class CpuidTable {
  readonly #entries: readonly CpuidEntry[];

  /** @param entries - the table, as `KVM_SET_CPUID2` received it */
  constructor(entries: readonly CpuidEntry[]) {
    this.#entries = entries.map((e) => ({ ...e }));
  }

  /** The entries (copies). */
  get entries(): readonly CpuidEntry[] {
    return this.#entries.map((e) => ({ ...e }));
  }

  #find(fn: number, index: number): CpuidEntry | undefined {
    for (const e of this.#entries) {
      if (e.function !== fn) continue;
      if ((e.flags & KVM_CPUID_FLAG_SIGNIFICANT_INDEX) !== 0 && e.index !== index) continue;
      return e;
    }
    return undefined;
  }

  /** Answers `cpuid` (see the class notes) into `out[0..3]`. */
  lookup(fn: number, index: number, out: Uint32Array): void {
    fn >>>= 0;
    index >>>= 0;
    let entry = this.#find(fn, index);
    if (entry === undefined) {
      const basic = this.#find(0, 0);
      if (basic !== undefined && !AMD_LIKE.some(([b, d, c]) => basic.ebx === b && basic.edx === d && basic.ecx === c)) {
        const classLeaf = fn >= 0x4000_0000 && fn <= 0x4fff_ffff ? (fn & 0xffff_ff00) >>> 0 : fn >= 0xc000_0000 ? 0xc000_0000 : (fn & 0x8000_0000) >>> 0;
        const cls = this.#find(classLeaf, 0);
        if (cls === undefined || fn > cls.eax >>> 0) entry = this.#find(basic.eax >>> 0, index);
      }
    }
    if (entry !== undefined) {
      out[0] = entry.eax;
      out[1] = entry.ebx;
      out[2] = entry.ecx;
      out[3] = entry.edx;
      return;
    }
    out[0] = out[1] = out[2] = out[3] = 0;
    if (fn === 0xb || fn === 0x1f) {
      const one = this.#find(fn, 1);
      if (one !== undefined) {
        out[2] = index & 0xff;
        out[3] = one.edx;
      }
    }
  }
}

const EMPTY_CPUID = new CpuidTable([]);

/**
 * A {@link GuestPlatform} with no vCPU behind it: `cpuid` answers zeros (KVM with no `KVM_SET_CPUID2`), every
 * `rdmsr`/`wrmsr` raises #GP, the TSC starts at 0 and advances by one per `rdtsc`, and the FPU/SSE state is
 * {@link initialFxState}'s. Each call makes a
 * new one (the TSC is per platform).
 */
export function defaultGuestPlatform(): GuestPlatform {
  let tsc = 0n;
  return {
    cpuid: (fn, index, out) => EMPTY_CPUID.lookup(fn, index, out),
    rdmsr: () => undefined,
    wrmsr: () => false,
    tsc: () => tsc++,
    fxState: initialFxState(),
  };
}
