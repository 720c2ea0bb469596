/**
 * Architectural numbers of AMD SVM that the model uses: MSR numbers and bits, CPUID leaves and bits, VMCB
 * `TLB_CONTROL` encodings, VMCB clean bits and `#VMEXIT` codes.
 *
 * Names are Linux's (`arch/x86/include/asm/msr-index.h`, `arch/x86/include/asm/svm.h`,
 * `arch/x86/include/uapi/asm/svm.h`, `arch/x86/kvm/svm/svm.h`); values are from the AMD64 Architecture
 * Programmer's Manual (APM) Vol. 2 ch. 15 and Vol. 3 appendix E (CPUID). MSR values are `bigint`, like
 * `Cpu.msrs`; CPUID bits are `number`, like `CpuidRegs`.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------------------
// MSRs (msr-index.h)
// ---------------------------------------------------------------------------------------------------------

/** `MSR_EFER` (0xC0000080): Extended Feature Enable Register; bit 12 is SVME. */
export const MSR_EFER = 0xc0000080;
/** `MSR_STAR` (0xC0000081): SYSCALL target CS/SS and legacy EIP. */
export const MSR_STAR = 0xc0000081;
/** `MSR_LSTAR` (0xC0000082): 64-bit SYSCALL entry point. */
export const MSR_LSTAR = 0xc0000082;
/** `MSR_CSTAR` (0xC0000083): compatibility-mode SYSCALL entry point. */
export const MSR_CSTAR = 0xc0000083;
/** `MSR_SYSCALL_MASK` (0xC0000084, "SFMASK"): RFLAGS bits cleared by SYSCALL. */
export const MSR_SYSCALL_MASK = 0xc0000084;
/** `MSR_FS_BASE` (0xC0000100). */
export const MSR_FS_BASE = 0xc0000100;
/** `MSR_GS_BASE` (0xC0000101). */
export const MSR_GS_BASE = 0xc0000101;
/** `MSR_KERNEL_GS_BASE` (0xC0000102): the value SWAPGS exchanges with GS.base. */
export const MSR_KERNEL_GS_BASE = 0xc0000102;
/** `MSR_TSC_AUX` (0xC0000103): the value RDTSCP/RDPID return (Linux: `(node << 12) | cpu`). */
export const MSR_TSC_AUX = 0xc0000103;
/** `MSR_AMD64_TSC_RATIO` (0xC0000104): TSC scaling ratio, present with the TscRateMsr feature. */
export const MSR_AMD64_TSC_RATIO = 0xc0000104;
/** `MSR_IA32_PAT` (0x277): page attribute table. */
export const MSR_IA32_PAT = 0x277;
/** `MSR_AMD64_SYSCFG` (0xC0010010): system configuration; bit 23 enables memory encryption (SME/SEV). */
export const MSR_AMD64_SYSCFG = 0xc0010010;
/** `MSR_VM_CR` (0xC0010114): SVM control; bit 3 LOCK, bit 4 SVMDIS (APM Vol. 2 §15.30.1). */
export const MSR_VM_CR = 0xc0010114;
/** `MSR_VM_HSAVE_PA` (0xC0010117): physical address of the host save area VMRUN uses (APM §15.30.4). */
export const MSR_VM_HSAVE_PA = 0xc0010117;
/** `MSR_AMD64_OSVW_ID_LENGTH` (0xC0010140): number of valid OS-visible-workaround status bits. */
export const MSR_AMD64_OSVW_ID_LENGTH = 0xc0010140;
/** `MSR_AMD64_OSVW_STATUS` (0xC0010141): OS-visible-workaround status bits. */
export const MSR_AMD64_OSVW_STATUS = 0xc0010141;

/** `EFER_SCE` (bit 0): SYSCALL enable. */
export const EFER_SCE = 1n << 0n;
/** `EFER_LME` (bit 8): long mode enable. */
export const EFER_LME = 1n << 8n;
/** `EFER_LMA` (bit 10): long mode active. */
export const EFER_LMA = 1n << 10n;
/** `EFER_NX` (bit 11): no-execute enable. */
export const EFER_NX = 1n << 11n;
/** `EFER_SVME` (bit 12, `_EFER_SVME`): SVM enable. VMRUN, VMLOAD, VMSAVE, STGI, CLGI, … are #UD without it. */
export const EFER_SVME = 1n << 12n;
/** EFER of a running 64-bit Linux host: SCE | LME | LMA | NX (0xD01). */
export const EFER_HOST_DEFAULT = EFER_SCE | EFER_LME | EFER_LMA | EFER_NX;

/** `SVM_VM_CR_SVM_LOCK_MASK` (bit 3): VM_CR.LOCK — when set, writes to LOCK and SVMDIS are ignored. */
export const SVM_VM_CR_SVM_LOCK_MASK = 1n << 3n;
/** `SVM_VM_CR_SVM_DIS_MASK` (bit 4, `1 << SVM_VM_CR_SVM_DISABLE`): VM_CR.SVMDIS — EFER.SVME is must-be-zero. */
export const SVM_VM_CR_SVM_DIS_MASK = 1n << 4n;

/** `SVM_TSC_RATIO_DEFAULT` (0x0100000000): ratio 1.0 in the 8.32 fixed-point `MSR_AMD64_TSC_RATIO`. */
export const SVM_TSC_RATIO_DEFAULT = 0x0100000000n;

// ---------------------------------------------------------------------------------------------------------
// CPUID
// ---------------------------------------------------------------------------------------------------------

/** CPUID leaf 0x80000000: EAX = highest extended leaf. */
export const CPUID_EXT_MAX = 0x80000000;
/** CPUID leaf 0x80000001: extended features; ECX bit 2 = SVM. */
export const CPUID_EXT_FEATURES = 0x80000001;
/** CPUID leaf 0x80000008: EAX[7:0] = physical address bits (MAXPHYADDR). */
export const CPUID_EXT_ADDR_SIZES = 0x80000008;
/** `SVM_CPUID_FUNC` (0x8000000A): SVM revision (EAX), number of ASIDs (EBX), SVM features (EDX). */
export const SVM_CPUID_FUNC = 0x8000000a;
/** CPUID leaf 0x8000001F: memory encryption (SME/SEV) capabilities and the SEV ASID range. */
export const SEV_CPUID_FUNC = 0x8000001f;

/** `X86_FEATURE_SVM`: CPUID 0x80000001 ECX bit 2. */
export const CPUID_80000001_ECX_SVM = 1 << 2;

/**
 * CPUID 0x8000000A EDX: SVM feature bits (APM Vol. 3 appendix E.4.9; Linux `X86_FEATURE_*` in word 15).
 */
export const SVM_FEATURE = {
  /** Bit 0, `X86_FEATURE_NPT`: nested paging. */
  NPT: 1 << 0,
  /** Bit 1, `X86_FEATURE_LBRV`: LBR virtualization. */
  LBRV: 1 << 1,
  /** Bit 2, `X86_FEATURE_SVML`: SVM lock (VM_CR.LOCK can be unlocked with a key). */
  SVML: 1 << 2,
  /** Bit 3, `X86_FEATURE_NRIPS`: next-RIP save on #VMEXIT. */
  NRIPS: 1 << 3,
  /** Bit 4, `X86_FEATURE_TSCRATEMSR`: `MSR_AMD64_TSC_RATIO` exists. */
  TSCRATEMSR: 1 << 4,
  /** Bit 5, `X86_FEATURE_VMCBCLEAN`: VMCB clean bits are honoured. */
  VMCBCLEAN: 1 << 5,
  /** Bit 6, `X86_FEATURE_FLUSHBYASID`: TLB_CONTROL 3 and 7 flush one ASID. */
  FLUSHBYASID: 1 << 6,
  /** Bit 7, `X86_FEATURE_DECODEASSISTS`. */
  DECODEASSISTS: 1 << 7,
  /** Bit 10, `X86_FEATURE_PAUSEFILTER`. */
  PAUSEFILTER: 1 << 10,
  /** Bit 12, `X86_FEATURE_PFTHRESHOLD`. */
  PFTHRESHOLD: 1 << 12,
  /** Bit 13, `X86_FEATURE_AVIC`: advanced virtual interrupt controller. */
  AVIC: 1 << 13,
  /** Bit 15, `X86_FEATURE_V_VMSAVE_VMLOAD`. */
  V_VMSAVE_VMLOAD: 1 << 15,
  /** Bit 16, `X86_FEATURE_VGIF`: virtual GIF. */
  VGIF: 1 << 16,
} as const;

/** CPUID 0x8000001F EAX: memory-encryption feature bits (APM Vol. 3 appendix E.4.17). */
export const SEV_FEATURE = {
  /** Bit 0, `X86_FEATURE_SME`: secure memory encryption. */
  SME: 1 << 0,
  /** Bit 1, `X86_FEATURE_SEV`: secure encrypted virtualization. */
  SEV: 1 << 1,
  /** Bit 3, `X86_FEATURE_SEV_ES`: SEV with encrypted register state. */
  SEV_ES: 1 << 3,
} as const;

// ---------------------------------------------------------------------------------------------------------
// VMCB
// ---------------------------------------------------------------------------------------------------------

/** `TLB_CONTROL_DO_NOTHING` (0): no flush on VMRUN. */
export const TLB_CONTROL_DO_NOTHING = 0;
/** `TLB_CONTROL_FLUSH_ALL_ASID` (1): flush every TLB entry, all ASIDs (used on an ASID generation rollover). */
export const TLB_CONTROL_FLUSH_ALL_ASID = 1;
/** `TLB_CONTROL_FLUSH_ASID` (3): flush this guest's ASID (needs FlushByAsid). */
export const TLB_CONTROL_FLUSH_ASID = 3;
/** `TLB_CONTROL_FLUSH_ASID_LOCAL` (7): flush this guest's non-global entries (needs FlushByAsid). */
export const TLB_CONTROL_FLUSH_ASID_LOCAL = 7;

/** A VMCB `TLB_CONTROL` encoding (APM §15.16.1; the other values are reserved). */
export type TlbControl =
  | typeof TLB_CONTROL_DO_NOTHING
  | typeof TLB_CONTROL_FLUSH_ALL_ASID
  | typeof TLB_CONTROL_FLUSH_ASID
  | typeof TLB_CONTROL_FLUSH_ASID_LOCAL;

/**
 * `VMCB_ALL_CLEAN_MASK` (`arch/x86/kvm/svm/svm.h`): clean bits 0 … 11 (intercepts … AVIC) plus bit 31
 * (`VMCB_SW`) = 0x80000FFF.
 */
export const VMCB_ALL_CLEAN_MASK = 0x80000fff;
/** `VMCB_ALWAYS_DIRTY_MASK`: `VMCB_INTR` (bit 3) and `VMCB_CR2` (bit 9) are written before every VMRUN. */
export const VMCB_ALWAYS_DIRTY_MASK = (1 << 3) | (1 << 9);
/** What `vmcb_mark_all_clean()` writes after a run: `VMCB_ALL_CLEAN_MASK & ~VMCB_ALWAYS_DIRTY_MASK` (0x80000DF7). */
export const VMCB_CLEAN_AFTER_RUN = (VMCB_ALL_CLEAN_MASK & ~VMCB_ALWAYS_DIRTY_MASK) >>> 0;

/** `#VMEXIT` codes (`arch/x86/include/uapi/asm/svm.h`) the model produces. */
export const SVM_EXIT = {
  /** `SVM_EXIT_INTR` (0x60): physical interrupt (e.g. the IPI that disables SVM on a CPU running a guest). */
  INTR: 0x060,
  /** `SVM_EXIT_NMI` (0x61): physical NMI (e.g. the crash path's NMI shootdown). */
  NMI: 0x061,
  /** `SVM_EXIT_HLT` (0x78). */
  HLT: 0x078,
  /** `SVM_EXIT_IOIO` (0x7B): IN/OUT. */
  IOIO: 0x07b,
  /** `SVM_EXIT_SHUTDOWN` (0x7F): triple fault. */
  SHUTDOWN: 0x07f,
  /** `SVM_EXIT_VMRUN` (0x80). */
  VMRUN: 0x080,
  /** `SVM_EXIT_NPF` (0x400): nested page fault. */
  NPF: 0x400,
  /** `SVM_EXIT_ERR` (-1), the APM's `VMEXIT_INVALID`: VMRUN failed its consistency checks. */
  ERR: -1,
} as const;
