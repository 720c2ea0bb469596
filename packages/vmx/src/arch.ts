/**
 * Architectural numbers of Intel VMX used by the model, under their Linux names.
 *
 * Sources: Intel SDM Vol. 3C (ch. 24–31 and appendix A), Vol. 4 (MSR list); Linux
 * `arch/x86/include/asm/msr-index.h`, `arch/x86/include/asm/vmx.h`, `arch/x86/include/asm/cpufeatures.h`.
 *
 * @module
 */

/** CR4.VMXE, bit 13: VMX enable (`X86_CR4_VMXE`; Intel SDM Vol. 3 §2.5). */
export const CR4_VMXE = 1 << 13;

/**
 * MSR numbers (Linux `msr-index.h` names). The model implements exactly these on an Intel CPU; any other
 * MSR faults (#GP) on `rdmsr_safe` / `wrmsr_safe`.
 */
export const INTEL_MSR = {
  /** IA32_FEATURE_CONTROL (SDM Vol. 4 table 2-2): lock bit, VMX inside/outside SMX. */
  MSR_IA32_FEAT_CTL: 0x3a,
  /** IA32_ARCH_CAPABILITIES (read-only): which speculative-execution bugs the CPU is not affected by. */
  MSR_IA32_ARCH_CAPABILITIES: 0x10a,
  /** IA32_FLUSH_CMD (write-only): writing {@link L1D_FLUSH} flushes the L1 data cache (the L1TF mitigation). */
  MSR_IA32_FLUSH_CMD: 0x10b,
  /** IA32_VMX_BASIC (read-only): VMCS revision identifier (bits 30:0) and VMCS region size (bits 44:32). */
  MSR_IA32_VMX_BASIC: 0x480,
  /** IA32_VMX_PROCBASED_CTLS (read-only): allowed settings of the primary processor-based controls. */
  MSR_IA32_VMX_PROCBASED_CTLS: 0x482,
  /** IA32_VMX_PROCBASED_CTLS2 (read-only): allowed settings of the secondary controls (EPT bit 1, VPID bit 5). */
  MSR_IA32_VMX_PROCBASED_CTLS2: 0x48b,
  /** IA32_VMX_EPT_VPID_CAP (read-only): EPT and VPID capabilities (INVEPT and INVVPID types). */
  MSR_IA32_VMX_EPT_VPID_CAP: 0x48c,
  /** IA32_EFER. */
  MSR_EFER: 0xc0000080,
  /** IA32_STAR: SYSCALL/SYSRET segment selectors (a user-return MSR of KVM's VMX half). */
  MSR_STAR: 0xc0000081,
  /** IA32_LSTAR: the 64-bit SYSCALL entry point (a user-return MSR). */
  MSR_LSTAR: 0xc0000082,
  /** IA32_CSTAR: the compatibility-mode SYSCALL entry point (a user-return MSR). */
  MSR_CSTAR: 0xc0000083,
  /** IA32_FMASK (Linux `MSR_SYSCALL_MASK`): RFLAGS bits cleared by SYSCALL (a user-return MSR). */
  MSR_SYSCALL_MASK: 0xc0000084,
  /** IA32_TSC_AUX: the RDTSCP/RDPID value; Linux stores the CPU (and node) number there (a user-return MSR). */
  MSR_TSC_AUX: 0xc0000103,
} as const;

/** IA32_FEATURE_CONTROL bits (Linux `FEAT_CTL_*`, `msr-index.h`). */
export const FEAT_CTL = {
  /** Bit 0: the MSR is locked until reset; writes fault (#GP) and VMXON requires it. */
  FEAT_CTL_LOCKED: 1 << 0,
  /** Bit 1: VMX allowed inside SMX operation (TXT). */
  FEAT_CTL_VMX_ENABLED_INSIDE_SMX: 1 << 1,
  /** Bit 2: VMX allowed outside SMX operation (what KVM needs). */
  FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX: 1 << 2,
} as const;

/** CPUID feature bits the model sets (Linux `cpufeatures.h` names). */
export const CPUID_BIT = {
  /** CPUID.1:ECX bit 5 (`X86_FEATURE_VMX`). */
  VMX: 1 << 5,
  /** CPUID.(EAX=7,ECX=0):EDX bit 10 (`X86_FEATURE_MD_CLEAR`): VERW clears CPU buffers (MDS mitigation). */
  MD_CLEAR: 1 << 10,
  /** CPUID.(EAX=7,ECX=0):EDX bit 28 (`X86_FEATURE_FLUSH_L1D`): IA32_FLUSH_CMD exists. */
  FLUSH_L1D: 1 << 28,
  /** CPUID.(EAX=7,ECX=0):EDX bit 29 (`X86_FEATURE_ARCH_CAPABILITIES`): IA32_ARCH_CAPABILITIES exists. */
  ARCH_CAPABILITIES: 1 << 29,
  /** CPUID.80000001H:EDX bit 27 (`X86_FEATURE_RDTSCP`): RDTSCP and IA32_TSC_AUX exist. */
  RDTSCP: 1 << 27,
} as const;

/** IA32_ARCH_CAPABILITIES bits (Linux `ARCH_CAP_*`, `msr-index.h`). */
export const ARCH_CAP = {
  /** Bit 0: not affected by Meltdown/L1TF (rogue data cache load). */
  ARCH_CAP_RDCL_NO: 1 << 0,
  /** Bit 1: enhanced IBRS. */
  ARCH_CAP_IBRS_ALL: 1 << 1,
  /** Bit 2: RSB alternate. */
  ARCH_CAP_RSBA: 1 << 2,
  /** Bit 3: no L1D flush needed on VM entry (a nested hypervisor tells its guest it flushes itself). */
  ARCH_CAP_SKIP_VMENTRY_L1DFLUSH: 1 << 3,
  /** Bit 4: not affected by speculative store bypass. */
  ARCH_CAP_SSB_NO: 1 << 4,
  /** Bit 5: not affected by MDS. */
  ARCH_CAP_MDS_NO: 1 << 5,
  /** Bit 6: no machine check on page-size change (iTLB multihit). */
  ARCH_CAP_PSCHANGE_MC_NO: 1 << 6,
  /** Bit 7: IA32_TSX_CTRL exists. */
  ARCH_CAP_TSX_CTRL_MSR: 1 << 7,
  /** Bit 8: not affected by TSX async abort. */
  ARCH_CAP_TAA_NO: 1 << 8,
} as const;

/** IA32_FLUSH_CMD bit 0 (Linux `L1D_FLUSH`): writeback and invalidate the L1 data cache. */
export const L1D_FLUSH = 1;

/** Primary processor-based control: bit 31, "activate secondary controls" (Linux name). */
export const CPU_BASED_ACTIVATE_SECONDARY_CONTROLS = 0x8000_0000;

/** Secondary processor-based controls the model knows (Linux `SECONDARY_EXEC_*`, `vmx.h`). */
export const SECONDARY_EXEC = {
  /** Bit 0: virtualize APIC accesses. */
  SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES: 1 << 0,
  /** Bit 1: enable EPT. */
  SECONDARY_EXEC_ENABLE_EPT: 1 << 1,
  /** Bit 2: descriptor-table exiting. */
  SECONDARY_EXEC_DESC: 1 << 2,
  /** Bit 3: enable RDTSCP. */
  SECONDARY_EXEC_ENABLE_RDTSCP: 1 << 3,
  /** Bit 4: virtualize x2APIC mode. */
  SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE: 1 << 4,
  /** Bit 5: enable VPID. */
  SECONDARY_EXEC_ENABLE_VPID: 1 << 5,
  /** Bit 6: WBINVD exiting. */
  SECONDARY_EXEC_WBINVD_EXITING: 1 << 6,
  /** Bit 7: unrestricted guest (needs EPT). */
  SECONDARY_EXEC_UNRESTRICTED_GUEST: 1 << 7,
} as const;

/**
 * IA32_VMX_EPT_VPID_CAP, low dword (EPT part; Linux reads it into `vmx_capability.ept`, names from `vmx.h`).
 */
export const VMX_EPT_CAP = {
  /** Bit 0: execute-only translations. */
  VMX_EPT_EXECUTE_ONLY_BIT: 1 << 0,
  /** Bit 6: 4-level page walk. */
  VMX_EPT_PAGE_WALK_4_BIT: 1 << 6,
  /** Bit 7: 5-level page walk. */
  VMX_EPT_PAGE_WALK_5_BIT: 1 << 7,
  /** Bit 8: EPT paging structures may be uncacheable. */
  VMX_EPTP_UC_BIT: 1 << 8,
  /** Bit 14: EPT paging structures may be write-back. */
  VMX_EPTP_WB_BIT: 1 << 14,
  /** Bit 16: 2 MiB EPT pages. */
  VMX_EPT_2MB_PAGE_BIT: 1 << 16,
  /** Bit 17: 1 GiB EPT pages. */
  VMX_EPT_1GB_PAGE_BIT: 1 << 17,
  /** Bit 20: INVEPT is supported. */
  VMX_EPT_INVEPT_BIT: 1 << 20,
  /** Bit 21: accessed and dirty flags for EPT. */
  VMX_EPT_AD_BIT: 1 << 21,
  /** Bit 25: single-context INVEPT. */
  VMX_EPT_EXTENT_CONTEXT_BIT: 1 << 25,
  /** Bit 26: all-context (global) INVEPT. */
  VMX_EPT_EXTENT_GLOBAL_BIT: 1 << 26,
} as const;

/**
 * IA32_VMX_EPT_VPID_CAP, high dword (VPID part; Linux reads it into `vmx_capability.vpid`, so bit n here is
 * MSR bit n + 32).
 */
export const VMX_VPID_CAP = {
  /** MSR bit 32: INVVPID is supported. */
  VMX_VPID_INVVPID_BIT: 1 << 0,
  /** MSR bit 40: individual-address INVVPID. */
  VMX_VPID_EXTENT_INDIVIDUAL_ADDR_BIT: 1 << 8,
  /** MSR bit 41: single-context INVVPID. */
  VMX_VPID_EXTENT_SINGLE_CONTEXT_BIT: 1 << 9,
  /** MSR bit 42: all-context INVVPID. */
  VMX_VPID_EXTENT_GLOBAL_CONTEXT_BIT: 1 << 10,
  /** MSR bit 43: single-context-retaining-globals INVVPID. */
  VMX_VPID_EXTENT_SINGLE_NON_GLOBAL_BIT: 1 << 11,
} as const;

/** INVEPT types (register operand; Linux `VMX_EPT_EXTENT_*`). */
export const INVEPT_TYPE = {
  /** 1: single-context — mappings of one EPTP. */
  'single-context': 1,
  /** 2: global — mappings of every EPTP. */
  global: 2,
} as const;

/** An INVEPT type by name. */
export type InveptType = keyof typeof INVEPT_TYPE;

/** INVVPID types (register operand; Linux `VMX_VPID_EXTENT_*`). */
export const INVVPID_TYPE = {
  /** 0: one linear address of one VPID. */
  'individual-address': 0,
  /** 1: every mapping of one VPID. */
  'single-context': 1,
  /** 2: every mapping of every VPID except 0. */
  'all-context': 2,
  /** 3: every non-global mapping of one VPID. */
  'single-context-retaining-globals': 3,
} as const;

/** An INVVPID type by name. */
export type InvvpidType = keyof typeof INVVPID_TYPE;

/**
 * VM-instruction error numbers (SDM Vol. 3C §31.4, table 31-1; Linux `enum vm_instruction_error_number` in
 * `vmx.h`). A `VMfailValid` writes one of these to the current VMCS's VM-instruction error field.
 */
export const VMXERR = {
  /** 1: VMCALL executed in VMX root operation. */
  VMXERR_VMCALL_IN_VMX_ROOT_OPERATION: 1,
  /** 2: VMCLEAR with invalid physical address. */
  VMXERR_VMCLEAR_INVALID_ADDRESS: 2,
  /** 3: VMCLEAR with VMXON pointer. */
  VMXERR_VMCLEAR_VMXON_POINTER: 3,
  /** 4: VMLAUNCH with non-clear VMCS. */
  VMXERR_VMLAUNCH_NONCLEAR_VMCS: 4,
  /** 5: VMRESUME with non-launched VMCS. */
  VMXERR_VMRESUME_NONLAUNCHED_VMCS: 5,
  /** 6: VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME). */
  VMXERR_VMRESUME_AFTER_VMXOFF: 6,
  /** 7: VM entry with invalid control field(s). */
  VMXERR_ENTRY_INVALID_CONTROL_FIELD: 7,
  /** 8: VM entry with invalid host-state field(s). */
  VMXERR_ENTRY_INVALID_HOST_STATE_FIELD: 8,
  /** 9: VMPTRLD with invalid physical address. */
  VMXERR_VMPTRLD_INVALID_ADDRESS: 9,
  /** 10: VMPTRLD with VMXON pointer. */
  VMXERR_VMPTRLD_VMXON_POINTER: 10,
  /** 11: VMPTRLD with incorrect VMCS revision identifier. */
  VMXERR_VMPTRLD_INCORRECT_VMCS_REVISION_ID: 11,
  /** 12: VMREAD/VMWRITE from/to unsupported VMCS component. */
  VMXERR_UNSUPPORTED_VMCS_COMPONENT: 12,
  /** 13: VMWRITE to read-only VMCS component. */
  VMXERR_VMWRITE_READ_ONLY_VMCS_COMPONENT: 13,
  /** 15: VMXON executed in VMX root operation. */
  VMXERR_VMXON_IN_VMX_ROOT_OPERATION: 15,
  /** 26: VM entry with events blocked by MOV SS. */
  VMXERR_ENTRY_EVENTS_BLOCKED_BY_MOV_SS: 26,
  /** 28: invalid operand to INVEPT/INVVPID. */
  VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID: 28,
} as const;

/** A VM-instruction error number. */
export type VmInstructionError = (typeof VMXERR)[keyof typeof VMXERR];

/** The SDM's wording of each {@link VMXERR} number (table 31-1), for messages. */
export const VMXERR_MESSAGE: Readonly<Record<VmInstructionError, string>> = {
  1: 'VMCALL executed in VMX root operation',
  2: 'VMCLEAR with invalid physical address',
  3: 'VMCLEAR with VMXON pointer',
  4: 'VMLAUNCH with non-clear VMCS',
  5: 'VMRESUME with non-launched VMCS',
  6: 'VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)',
  7: 'VM entry with invalid control field(s)',
  8: 'VM entry with invalid host-state field(s)',
  9: 'VMPTRLD with invalid physical address',
  10: 'VMPTRLD with VMXON pointer',
  11: 'VMPTRLD with incorrect VMCS revision identifier',
  12: 'VMREAD/VMWRITE from/to unsupported VMCS component',
  13: 'VMWRITE to read-only VMCS component',
  15: 'VMXON executed in VMX root operation',
  26: 'VM entry with events blocked by MOV SS',
  28: 'Invalid operand to INVEPT/INVVPID',
};
