/**
 * `kvm_cpu_caps`: the CPUID features KVM can offer a guest (arch/x86/kvm/cpuid.c `kvm_set_cpu_caps`), per
 * feature word — the features KVM knows (`F()`), masked by what the kernel and the raw host CPUID have, plus the
 * features KVM emulates whatever the host has (`EMULATED_F()`) — then edited by the vendor
 * (`vmx_set_cpu_caps` / `svm_set_cpu_caps`, through {@link VendorArch.setCpuCaps}).
 *
 * The simulated kernel uses every feature its CPU has, so "the kernel's capabilities" are the raw CPUID here.
 *
 * @module
 */
import type { Cpu, CpuCapsEditor, CpuidWord, VendorArch } from '@vac/core';

/** Where a feature word lives: leaf, sub-leaf, register. */
interface WordPlace {
  readonly leaf: number;
  readonly index: number;
  readonly reg: 'eax' | 'ebx' | 'ecx' | 'edx';
}

/** The place of each word of {@link CpuidWord}. */
export const WORD_PLACE: Readonly<Record<CpuidWord, WordPlace>> = {
  '1.ecx': { leaf: 1, index: 0, reg: 'ecx' },
  '1.edx': { leaf: 1, index: 0, reg: 'edx' },
  '7.0.ebx': { leaf: 7, index: 0, reg: 'ebx' },
  '7.0.ecx': { leaf: 7, index: 0, reg: 'ecx' },
  '7.0.edx': { leaf: 7, index: 0, reg: 'edx' },
  '7.1.eax': { leaf: 7, index: 1, reg: 'eax' },
  'd.1.eax': { leaf: 0xd, index: 1, reg: 'eax' },
  '80000001.ecx': { leaf: 0x80000001, index: 0, reg: 'ecx' },
  '80000001.edx': { leaf: 0x80000001, index: 0, reg: 'edx' },
  '80000007.edx': { leaf: 0x80000007, index: 0, reg: 'edx' },
  '80000008.ebx': { leaf: 0x80000008, index: 0, reg: 'ebx' },
  '8000000a.edx': { leaf: 0x8000000a, index: 0, reg: 'edx' },
  '8000001f.eax': { leaf: 0x8000001f, index: 0, reg: 'eax' },
  '80000021.eax': { leaf: 0x80000021, index: 0, reg: 'eax' },
};

const bits = (...b: number[]): number => b.reduce((m, x) => (m | (2 ** x)) >>> 0, 0);

/** One word of `kvm_set_cpu_caps`: `F()` features, `EMULATED_F()` features, `PASSTHROUGH_F()` / `SYNTHESIZED_F()`. */
interface WordSpec {
  readonly features: number;
  readonly emulated: number;
  readonly passthrough: number;
}

/**
 * The `kvm_cpu_cap_init` lists (Linux 6.12 `kvm_set_cpu_caps`), as bit masks. VENDOR_F features (VMX, SVM, DS,
 * MPX, INTEL_PT, WAITPKG, the 0x8000000A and SEV bits) are not in the masks: the vendor adds them.
 */
const KVM_FEATURES: Readonly<Record<CpuidWord, WordSpec>> = {
  // XMM3 PCLMULQDQ SSSE3 FMA CX16 PDCM PCID XMM4_1 XMM4_2 MOVBE POPCNT AES XSAVE AVX F16C RDRAND;
  // emulated: X2APIC, TSC_DEADLINE_TIMER, HYPERVISOR.
  '1.ecx': { features: bits(0, 1, 9, 12, 13, 15, 17, 19, 20, 22, 23, 25, 26, 28, 29, 30), emulated: bits(21, 24, 31), passthrough: 0 },
  // FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFLUSH MMX FXSR XMM XMM2 SELFSNOOP
  '1.edx': { features: bits(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 23, 24, 25, 26, 27), emulated: 0, passthrough: 0 },
  // FSGSBASE SGX BMI1 HLE AVX2 FDP_EXCPTN_ONLY SMEP BMI2 ERMS INVPCID RTM ZERO_FCS_FDS AVX512F AVX512DQ RDSEED ADX SMAP
  // AVX512IFMA CLFLUSHOPT CLWB AVX512PF AVX512ER AVX512CD SHA_NI AVX512BW AVX512VL; emulated: TSC_ADJUST.
  '7.0.ebx': { features: bits(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 16, 17, 18, 19, 20, 21, 23, 24, 26, 27, 28, 29, 30, 31), emulated: bits(1), passthrough: 0 },
  // AVX512VBMI LA57(passthrough) PKU RDPID AVX512_VPOPCNTDQ UMIP AVX512_VBMI2 GFNI VAES VPCLMULQDQ AVX512_VNNI
  // AVX512_BITALG CLDEMOTE MOVDIRI MOVDIR64B SGX_LC BUS_LOCK_DETECT
  '7.0.ecx': { features: bits(1, 2, 3, 6, 8, 9, 10, 11, 12, 14, 16, 22, 24, 25, 27, 28, 30), emulated: 0, passthrough: bits(16) },
  // AVX512_4VNNIW AVX512_4FMAPS FSRM AVX512_VP2INTERSECT MD_CLEAR SERIALIZE TSXLDTRK AMX_BF16 AVX512_FP16 AMX_TILE
  // AMX_INT8 SPEC_CTRL INTEL_STIBP FLUSH_L1D SPEC_CTRL_SSBD; emulated: ARCH_CAPABILITIES.
  '7.0.edx': { features: bits(2, 3, 4, 8, 10, 14, 16, 22, 23, 24, 25, 26, 27, 28, 29, 31), emulated: bits(29), passthrough: 0 },
  // SHA512 SM3 SM4 AVX_VNNI AVX512_BF16 CMPCCXADD FZRM FSRS FSRC WRMSRNS AMX_FP16 AVX_IFMA LAM
  '7.1.eax': { features: bits(0, 1, 2, 4, 5, 7, 10, 11, 12, 19, 21, 23, 26), emulated: 0, passthrough: 0 },
  // XSAVEOPT XSAVEC XGETBV1 XSAVES XFD
  'd.1.eax': { features: bits(0, 1, 2, 3, 4), emulated: 0, passthrough: 0 },
  // LAHF_LM CMP_LEGACY CR8_LEGACY ABM SSE4A MISALIGNSSE 3DNOWPREFETCH OSVW XOP FMA4 TBM TOPOEXT
  '80000001.ecx': { features: bits(0, 1, 4, 5, 6, 7, 8, 9, 11, 16, 21, 22), emulated: 0, passthrough: 0 },
  // the 0x1.EDX aliases (FPU … PSE36, MMX, FXSR) SYSCALL NX MMXEXT FXSR_OPT GBPAGES RDTSCP LM 3DNOWEXT 3DNOW
  '80000001.edx': { features: bits(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 20, 22, 23, 24, 25, 26, 27, 29, 30, 31), emulated: 0, passthrough: 0 },
  // CONSTANT_TSC (invariant TSC)
  '80000007.edx': { features: bits(8), emulated: 0, passthrough: 0 },
  // CLZERO XSAVEERPTR WBNOINVD AMD_IBPB AMD_IBRS AMD_STIBP AMD_STIBP_ALWAYS_ON AMD_SSBD VIRT_SSBD AMD_SSB_NO AMD_PSFD
  '80000008.ebx': { features: bits(0, 2, 9, 12, 14, 15, 17, 24, 25, 26, 28), emulated: 0, passthrough: 0 },
  '8000000a.edx': { features: 0, emulated: 0, passthrough: 0 },
  // SME_COHERENT (SME, SEV, SEV_ES are vendor features)
  '8000001f.eax': { features: bits(10), emulated: 0, passthrough: 0 },
  // NO_NESTED_DATA_BP LFENCE_RDTSC NULL_SEL_CLR_BASE AUTOIBRS; emulated: NO_SMM_CTL_MSR
  '80000021.eax': { features: bits(0, 2, 6, 8, 9), emulated: bits(9), passthrough: 0 },
};

/** A host's raw CPUID as KVM reads it (`cpuid_count`): a sub-leaf the CPU does not describe reads as zeros. */
export function hostCpuid(cpu: Cpu, leaf: number, index: number): { eax: number; ebx: number; ecx: number; edx: number } {
  const base = leaf >= 0x80000000 ? 0x80000000 : leaf >= 0x40000000 ? -1 : 0;
  if (base >= 0 && (cpu.readCpuid(base).eax >>> 0) < leaf) return { eax: 0, ebx: 0, ecx: 0, edx: 0 };
  const r = cpu.readCpuid(leaf, index);
  return { eax: r.eax >>> 0, ebx: r.ebx >>> 0, ecx: r.ecx >>> 0, edx: r.edx >>> 0 };
}

/** The raw host value of a feature word (`raw_cpuid_get`). */
function rawWord(cpu: Cpu, word: CpuidWord): number {
  const p = WORD_PLACE[word];
  return hostCpuid(cpu, p.leaf, p.index)[p.reg];
}

/**
 * `kvm_set_cpu_caps` then the vendor's edits: KVM's supported features per word.
 * @param boot - the host's boot CPU
 * @param vendor - the vendor half
 */
export function computeCpuCaps(boot: Cpu, vendor: VendorArch): Readonly<Record<CpuidWord, number>> {
  const caps = {} as Record<CpuidWord, number>;
  for (const word of Object.keys(KVM_FEATURES) as CpuidWord[]) {
    const spec = KVM_FEATURES[word];
    const raw = rawWord(boot, word);
    // kvm_cpu_caps[leaf] = F() & kernel caps, | passthrough, & raw, | emulated
    caps[word] = ((((spec.features & raw) | spec.passthrough) & raw) | spec.emulated) >>> 0;
  }
  // The AMD aliases of 0x1.EDX in 0x80000001.EDX exist only where the host has them (AMD); Intel leaves them clear.
  const editor: CpuCapsEditor = {
    set: (w, b) => {
      caps[w] = (caps[w] | (2 ** b)) >>> 0;
    },
    clear: (w, b) => {
      caps[w] = (caps[w] & ~(2 ** b)) >>> 0;
    },
    has: (w, b) => (caps[w] & (2 ** b)) !== 0,
    hostHas: (w, b) => (rawWord(boot, w) & (2 ** b)) !== 0,
  };
  // PKU needs TDP and OSPKE on the host (the model's kernel does not set CR4.PKE).
  editor.clear('7.0.ecx', 3);
  vendor.setCpuCaps(editor);
  return caps;
}
