/**
 * A logical CPU of the simulated host: online state, CPUID leaves, MSRs and CR4.
 *
 * The vendor hardware model (`@vac/vmx`, `@vac/svm`) fills in the virtualization parts when the host is
 * created and keeps its own per-CPU state (VMXON region, current VMCS, EFER.SVME side effects).
 *
 * @module
 */

/** The four output registers of one CPUID leaf. */
export interface CpuidRegs {
  /** EAX */
  readonly eax: number;
  /** EBX */
  readonly ebx: number;
  /** ECX */
  readonly ecx: number;
  /** EDX */
  readonly edx: number;
}

/** CR4 bit numbers used by the model (Intel SDM Vol. 3 §2.5). */
export const CR4 = {
  /** CR4.VMXE, bit 13: VMX enable (`X86_CR4_VMXE`). */
  VMXE: 1 << 13,
} as const;

/**
 * A hook a hardware model may install to give an MSR side effects or to refuse a write (#GP).
 * Return `false` to make the write fault.
 */
export type MsrWriteHook = (cpu: Cpu, msr: number, value: bigint) => boolean;

/** One logical CPU. */
export class Cpu {
  /** The CPU number (0 … N-1). */
  readonly id: number;
  /** Whether the CPU is online (cpuhp state "active"). */
  online = true;
  /** The CR4 register (only the bits the model uses are meaningful). */
  cr4 = 0;
  /** CPUID leaves by leaf number (sub-leaf 0). A missing leaf reads as zeros. */
  readonly cpuid = new Map<number, CpuidRegs>();
  /** Implemented MSRs and their values; accessing a missing one faults (#GP). */
  readonly msrs = new Map<number, bigint>();
  /** Write hooks by MSR number, installed by the hardware model. */
  readonly msrWriteHooks = new Map<number, MsrWriteHook>();

  /**
   * @param id - the CPU number
   */
  constructor(id: number) {
    this.id = id;
  }

  /** Execute CPUID for `leaf` (sub-leaf 0). */
  readCpuid(leaf: number): CpuidRegs {
    return this.cpuid.get(leaf) ?? ZERO_LEAF;
  }

  /** `rdmsr_safe`: the MSR's value, or `undefined` when reading it faults (#GP). */
  rdmsrSafe(msr: number): bigint | undefined {
    return this.msrs.get(msr);
  }

  /** `wrmsr_safe`: write an MSR; `false` when the write faults (#GP: unimplemented, or refused by the hardware). */
  wrmsrSafe(msr: number, value: bigint): boolean {
    if (!this.msrs.has(msr)) return false;
    const hook = this.msrWriteHooks.get(msr);
    if (hook !== undefined && !hook(this, msr, value)) return false;
    this.msrs.set(msr, value);
    return true;
  }
}

const ZERO_LEAF: CpuidRegs = Object.freeze({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
