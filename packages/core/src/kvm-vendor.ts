/**
 * The vendor-ops interface between the KVM module (`@vac/kvm`) and its folded-in vendor code — the model's
 * `struct kvm_x86_ops`. It lives in the core so that the vendor packages need not import KVM: KVM defines the
 * generic vCPU life cycle and run loop, the vendors only answer these calls.
 *
 * @module
 */
import type { Host } from './host/host.js';
import type { ParamSpecs, ParamValues } from './host/params.js';
import type { VacPort, VcpuTag } from './vac/handle.js';

/** What a vendor gets when a KVM module sets it up (`hardware_setup`). */
export interface KvmVendorEnv<P extends ParamSpecs> {
  /** The host. */
  readonly host: Host;
  /** The module name (`kvm0`). */
  readonly module: string;
  /** The vendor's parameter values. */
  readonly params: ParamValues<P>;
  /** The module's VAC handle (in legacy mode: a private stand-in with the same shape). */
  readonly vac: VacPort;
  /** Record a warning. */
  warn(message: string, cpu?: number): void;
}

/**
 * An ID a VM or vCPU holds that no other live VM or vCPU of any module may hold at the same time (a TLB tag that
 * is unique host-wide, an encryption key slot): the cross-module checks compare them.
 */
export interface UniqueId {
  /** What it is, as messages name it (`'VPID'`). */
  readonly kind: string;
  /** Its value. */
  readonly value: number;
}

/** The command of `KVM_MEMORY_ENCRYPT_OP`, as KVM hands it to the vendor (its fields, after KVM copied them in). */
export interface MemEncryptCommand {
  /** The vendor's command number. */
  readonly id: number;
  /** The command's data (a user pointer, or a value). */
  readonly data: number | bigint;
  /** The firmware's error code, written back to user space. */
  error: number;
  /** An fd the command names (the firmware device). */
  readonly fd: number;
}

/** A VM, as its vendor sees it. */
export interface VendorVm {
  /**
   * Whether `KVM_MEMORY_ENCRYPT_OP` is served at all (memory encryption enabled in this module). When false the
   * ioctl is ENOTTY before its argument is read (`kvm_arch_vm_ioctl` → `kvm_x86_ops.mem_enc_ioctl`).
   */
  readonly memEncrypt: boolean;
  /**
   * `KVM_MEMORY_ENCRYPT_OP` (`kvm_x86_ops.mem_enc_ioctl`). `hasVcpus` tells whether vCPUs exist already.
   * @returns the ioctl result; throws a KernelError (ENOTTY when the vendor has no memory encryption)
   */
  memEncryptOp(cmd: MemEncryptCommand, hasVcpus: boolean): number;
  /** The VM's memory encryption, as the vendor names it (`'none'` when it has none). */
  readonly encryption: string;
  /** IDs of this VM that must be unique host-wide while it lives (checked across modules). */
  uniqueIds(): readonly UniqueId[];
  /** `kvm_arch_destroy_vm` vendor part. */
  destroy(): void;
  /**
   * `kvm_x86_ops.vm_move_enc_context_from` after KVM found `source` to be another VM (of this module, or — beyond
   * the RFC, when VAC mediates — of another): take its encryption context; the caller then marks the source dead.
   * Absent when the vendor has none (KVM_ENABLE_CAP answers EINVAL). `vcpus` are the two VMs' online vCPU counts.
   * @throws KernelError EINVAL (Linux's checks), EPERM (VAC refuses a cross-module hand-over)
   */
  moveEncContextFrom?(source: VendorVm, vcpus: { readonly dst: number; readonly src: number }): void;
  /**
   * `kvm_x86_ops.vm_copy_enc_context_from`: become a mirror of `source`'s encryption context (same ASID, which
   * `source` keeps). `dstHasVcpus`: vCPUs were created on this VM.
   * @throws KernelError EINVAL
   */
  copyEncContextFrom?(source: VendorVm, dstHasVcpus: boolean): void;
  /**
   * Beyond the RFC: whether a move may take the context of another module's VM, VAC handing it over (VAC's
   * `cross_module_moves`). When not true, another module's VM file is EBADF, as `file_is_kvm` makes it.
   */
  readonly crossModuleEncContext?: boolean;
}

/** A vCPU, as its vendor sees it. */
export interface VendorVcpu {
  /** `vcpu_load` on `cpu`. */
  load(cpu: number): void;
  /** `vcpu_put` from `cpu`. */
  put(cpu: number): void;
  /** Everything before one VM entry on `cpu` (mitigations, TLB tag bookkeeping). */
  prepareEntry(cpu: number): void;
  /**
   * The VM entry instruction. `undefined` when the CPU accepted it, else the hardware's failure reason for
   * `KVM_EXIT_FAIL_ENTRY.hardware_entry_failure_reason`.
   */
  enter(cpu: number): bigint | undefined;
  /** The VM exit that ends one pass of guest execution entered with {@link VendorVcpu.enter}. */
  exit(cpu: number): void;
  /** The TLB tag in use, by the vendor's name for it (value 0 = none). */
  tlbTag(): { readonly kind: string; readonly value: number };
  /** IDs of this vCPU that must be unique host-wide while it lives (checked across modules). */
  uniqueIds(): readonly UniqueId[];
  /** Per-vCPU counters (entries, L1D flushes, TLB flushes, …). */
  readonly stats: Readonly<Record<string, number>>;
  /** `vcpu_free` vendor part. */
  free(): void;
}

/**
 * A CPUID feature word, named by leaf (hex), sub-leaf when the leaf has them, and register — the words of KVM's
 * `kvm_cpu_caps[]` (arch/x86/kvm/reverse_cpuid.h), e.g. `'1.ecx'`, `'7.0.ebx'`, `'80000001.edx'`.
 */
export type CpuidWord =
  | '1.ecx'
  | '1.edx'
  | '7.0.ebx'
  | '7.0.ecx'
  | '7.0.edx'
  | '7.1.eax'
  | 'd.1.eax'
  | '80000001.ecx'
  | '80000001.edx'
  | '80000007.edx'
  | '80000008.ebx'
  | '8000000a.edx'
  | '8000001f.eax'
  | '80000021.eax';

/** KVM's supported CPUID features as a vendor may edit them (`kvm_cpu_cap_set` / `kvm_cpu_cap_clear`). */
export interface CpuCapsEditor {
  /** `kvm_cpu_cap_set`: advertise feature `bit` of `word`. */
  set(word: CpuidWord, bit: number): void;
  /** `kvm_cpu_cap_clear`: do not advertise it. */
  clear(word: CpuidWord, bit: number): void;
  /** `kvm_cpu_cap_has`. */
  has(word: CpuidWord, bit: number): boolean;
  /** `boot_cpu_has` on the host's boot CPU (raw CPUID). */
  hostHas(word: CpuidWord, bit: number): boolean;
}

/** A vendor MSR of a vCPU (`vmx_get_msr`/`vmx_set_msr`, `svm_get_msr`/`svm_set_msr`): its reset value and which writes it takes. */
export interface VendorMsrSpec {
  /** The value after `kvm_vcpu_reset` / vCPU creation. */
  readonly reset: bigint;
  /**
   * Whether a write of `value` is accepted; `hostInitiated` for KVM_SET_MSRS (the guest's WRMSR otherwise).
   * A refused write leaves the MSR as it was (Linux: the MSR handler returns 1).
   */
  accepts(value: bigint, hostInitiated: boolean): boolean;
  /** What an accepted write stores (e.g. the page-aligned part); the value itself when absent. */
  normalize?(value: bigint): bigint;
}

/**
 * The vendor's answers to the generic x86 code beyond running vCPUs (`kvm_x86_ops` members and the parts of
 * `vmx_hardware_setup` / `svm_hardware_setup` that fill `kvm_caps`), so that @vac/kvm has no `if (vendor === …)`.
 */
export interface VendorArch {
  /** `kvm_caps.has_tsc_control` (VMX: TSC scaling in the secondary controls; SVM: `tsc_scaling` and TscRateMsr). */
  readonly tscControl: boolean;
  /** `allow_smaller_maxphyaddr` (KVM_CAP_SMALLER_MAXPHYADDR). */
  readonly smallerMaxPhyAddr: boolean;
  /** `tdp_enabled` (EPT or NPT in use). */
  readonly tdp: boolean;
  /** `kvm_caps.has_bus_lock_exit` (VMX bus-lock detection). */
  readonly busLockExit: boolean;
  /** `kvm_caps.has_notify_vmexit` (VMX notify VM exits). */
  readonly notifyVmexit: boolean;
  /**
   * `kvm_pmu_ops.EVENTSEL_EVENT`: the event-select bits of a PMU event (Intel `ARCH_PERFMON_EVENTSEL_EVENT`, 0xff;
   * AMD `AMD64_EVENTSEL_EVENT`, also bits 32–35), what a masked PMU event filter entry may hold.
   */
  readonly pmuEventselEvent: bigint;
  /** MCG_CAP bits the vendor adds to `kvm_caps.supported_mce_cap` (VMX: MCG_LMCE_P, MCG_CMCI_P). */
  readonly mceCapExtra: bigint;
  /**
   * IA32_ARCH_CAPABILITIES bits the vendor's mitigations add for guests (`kvm_get_arch_capabilities`: VMX sets
   * ARCH_CAP_SKIP_VMENTRY_L1DFLUSH unless `l1tf_vmx_mitigation` is "never").
   */
  readonly archCapabilitiesExtra: bigint;
  /**
   * `kvm_x86_ops.has_emulated_msr(kvm, msr)`: whether KVM emulates `msr` for guests of this vendor — for any VM
   * (`vm` undefined: the MSR lists) or for that VM (KVM_CHECK_EXTENSION(KVM_CAP_X86_SMM) on its fd: no SMBASE for
   * an SEV-ES guest).
   */
  hasEmulatedMsr(msr: number, vm?: VendorVm): boolean;
  /** `kvm_x86_ops.get_feature_msr`: the value of a feature MSR the vendor answers, else `undefined`. */
  featureMsr(msr: number): bigint | undefined;
  /** `vmx_set_cpu_caps` / `svm_set_cpu_caps`: the vendor's edits of KVM's supported CPUID features. */
  setCpuCaps(caps: CpuCapsEditor): void;
  /** The vendor's own MSRs of a vCPU, by index. */
  readonly vcpuMsrs: ReadonlyMap<number, VendorMsrSpec>;
  /**
   * The descriptor type of TR after reset (`vmx_vcpu_reset`: 11, a busy 32-bit TSS; `init_vmcb` →
   * `init_sys_seg(&save->tr, SEG_TYPE_BUSY_TSS16)`: 3).
   */
  readonly resetTrType: number;
  /**
   * The interrupt shadow as the vendor keeps it (`get_interrupt_shadow` after `set_interrupt_shadow`): VMX keeps
   * STI and MOV-SS blocking apart; SVM has one shadow bit, reported as MOV-SS.
   */
  normalizeInterruptShadow(shadow: number): number;
  /**
   * Whether INIT unblocks NMIs (`vmx_vcpu_reset` zeroes the interruptibility state, its NMI blocking included, at INIT
   * too; `svm_vcpu_reset` clears `nmi_masked` only at a full reset, `__svm_vcpu_reset`, so an INIT leaves it).
   */
  readonly initUnblocksNmi: boolean;
  /** The MXCSR_MASK the CPU's FXSAVE reports (`mxcsr_feature_mask`: Intel 0xffff; AMD adds bit 17, MM). */
  readonly fxsaveMxcsrMask: number;
  /**
   * `kvm_x86_ops.x2apic_icr_is_split`: whether an x2APIC-mode LAPIC keeps its ICR as two 32-bit registers, ICR and
   * ICR2, as AMD's x2AVIC does (svm.c: true), or as one 64-bit register at 0x300 (vmx main.c: false). It shows in
   * KVM_GET_LAPIC: `kvm_apic_state_fixup` copies the destination into ICR2 only when the ICR is not split, and
   * leaves the upper half of the 64-bit register at 0x304.
   */
  readonly x2apicIcrIsSplit: boolean;
  /**
   * The vendor's `kvm_x86_nested_ops.get_state` / `set_state` (KVM_GET/SET_NESTED_STATE, KVM_CAP_NESTED_STATE), or
   * `undefined` for a vendor without them (the cap is 0 and both ioctls EINVAL, as in Linux).
   */
  readonly nestedState?: VendorNestedState;
  /**
   * VM types Linux offers besides `KVM_X86_DEFAULT_VM` (`kvm_caps.supported_vm_types`: `KVM_X86_SEV_VM` and
   * `KVM_X86_SEV_ES_VM` when SEV and SEV-ES are enabled), as a bit mask. The model creates default VMs only (SEV
   * guests start from one, with KVM_SEV_INIT), so KVM_CAP_VM_TYPES answers without them; the value documents the
   * difference.
   */
  readonly linuxExtraVmTypes: number;
  /**
   * The vendor's System Management Mode hooks (`kvm_x86_ops.smi_allowed`, `enter_smm`, `leave_smm`); `undefined`
   * for a vendor without any, which gets KVM's generic answers (an SMI is taken outside SMM; nothing of the vendor's
   * in the save state).
   */
  readonly smm?: VendorSmm;
}

/** What the vendor's SMM hooks look at of a vCPU. */
export interface SmmVcpu {
  /** `is_smm(vcpu)`: the vCPU is in System Management Mode. */
  readonly inSmm: boolean;
  /** `guest_cpuid_has(vcpu, X86_FEATURE_LM)`: the save state is in the 64-bit (AMD64) layout, else the 32-bit one. */
  readonly longMode: boolean;
  /** `guest_cpu_cap_has(vcpu, feature)`: the guest's CPUID has the feature and KVM supports it. */
  guestHas(word: CpuidWord, bit: number): boolean;
}

/**
 * The vendor half of SMM (arch/x86/kvm/vmx/vmx.c `vmx_smi_allowed` / `vmx_enter_smm` / `vmx_leave_smm`, svm/svm.c
 * `svm_smi_allowed` / `svm_enter_smm` / `svm_leave_smm`). KVM's generic part (arch/x86/kvm/smm.c) builds and loads the
 * save state; the vendor adds what only it knows — the nested guest a vCPU may be running when the SMI comes.
 */
export interface VendorSmm {
  /**
   * `smi_allowed(vcpu, for_injection)` as Linux answers it: negative (-EBUSY: try again after the next entry), 0 (the
   * SMI waits: blocked), or 1 (it can be taken now).
   */
  smiAllowed(vcpu: SmmVcpu, forInjection: boolean): number;
  /**
   * `enter_smm`: the vendor's part after the save state is built (`smram`: the 512 bytes that go to SMBASE + 0xFE00,
   * in which it may fill its own fields). Returns why it failed (Linux kills the VM), `undefined` when it did not.
   */
  enterSmm(vcpu: SmmVcpu, smram: Uint8Array): string | undefined;
  /**
   * `leave_smm`: the vendor's part of RSM, before the state is loaded from `smram` (what was read from SMBASE +
   * 0xFE00). Returns why it failed (RSM then ends in a shutdown), `undefined` when it did not.
   */
  leaveSmm(vcpu: SmmVcpu, smram: Uint8Array): string | undefined;
}

/** What the nested-state ops look at of a vCPU. */
export interface NestedStateVcpu {
  /** The guest's EFER (SVM: EFER.SVME says whether it may be in SVM operation). */
  readonly efer: bigint;
}

/**
 * The header of `struct kvm_nested_state` as the vendor reads and fills it: `flags`, `size` and the bytes of the
 * `hdr` union (120), whose member the vendor knows (`kvm_vmx_nested_state_hdr`, `kvm_svm_nested_state_hdr`).
 */
export interface NestedStateHeader {
  /** `KVM_STATE_NESTED_*`. */
  readonly flags: number;
  /** The size of the whole state. */
  readonly size: number;
  /** The 120 bytes of the `hdr` union. */
  readonly hdr: Uint8Array;
}

/**
 * The vendor half of KVM_GET/SET_NESTED_STATE (`vmx_get_nested_state` / `vmx_set_nested_state`,
 * `svm_get_nested_state` / `svm_set_nested_state`). Guests of the model never enter VMX or SVM operation (no
 * VMXON/VMRUN), so the only state a vCPU has is "no nested guest", with no data after the header; the generic part
 * (the buffer size, E2BIG, the flags every vendor refuses, the format) is KVM's.
 */
export interface VendorNestedState {
  /** `KVM_STATE_NESTED_FORMAT_VMX` (0) or `KVM_STATE_NESTED_FORMAT_SVM` (1). */
  readonly format: number;
  /** `get_state(NULL, …)`, KVM_CAP_NESTED_STATE: the header plus the largest data (VMX two vmcs12 pages, SVM a VMCB). */
  readonly maxSize: number;
  /**
   * `get_state` of a vCPU outside VMX/SVM operation: its flags and `hdr` bytes (the size is the header's). The answer
   * may be shared between calls: the caller copies it and never writes to it.
   */
  current(vcpu: NestedStateVcpu): { readonly flags: number; readonly hdr: Uint8Array };
  /**
   * `set_state`'s checks after the generic ones: why `state` is refused (EINVAL, the vCPU unchanged), or `undefined`
   * when it is the state of a vCPU outside VMX/SVM operation, which loading leaves as it is.
   */
  refuse(vcpu: NestedStateVcpu, state: NestedStateHeader): string | undefined;
}

/** A vendor set up inside one KVM module. */
export interface VendorModule {
  /** Vendor answers to `KVM_CHECK_EXTENSION` (cap → value); generic caps are KVM's. */
  readonly extensions: ReadonlyMap<number, number>;
  /**
   * The vendor's answers to the generic x86 code (capabilities, MSRs, CPUID). A vendor without any (a plug-in that
   * only runs vCPUs) gets KVM's generic ones: no TSC scaling, no vendor MSRs, nothing added.
   */
  readonly arch?: VendorArch;
  /**
   * The user-return MSR slots the vendor registered through VAC (`kvm_add_user_return_msr`), with the value
   * the guest's MSR holds; KVM writes them at `vcpu_load` (`prepare_switch_to_guest`).
   */
  readonly userReturn: ReadonlyArray<{ readonly slot: number; readonly value: bigint }>;
  /** `vm_init` vendor part. */
  createVm(vm: { readonly id: number; readonly tag: VcpuTag }): VendorVm;
  /** `vcpu_create` vendor part. @throws KernelError (e.g. ENOMEM under fault injection) */
  createVcpu(vm: VendorVm, tag: VcpuTag): VendorVcpu;
  /** `hardware_unsetup`. */
  teardown(): void;
}

/** A vendor's KVM half (`kvm_x86_ops` + `kvm_x86_init_ops`), folded into every KVM module. */
export interface KvmVendorOps<P extends ParamSpecs = ParamSpecs> {
  /** The vendor's short name: the directory of its Linux code (`arch/x86/kvm/<name>/`). */
  readonly name: string;
  /** The vendor's module parameters (kvm_intel's / kvm_amd's, with their Linux names). */
  readonly params: P;
  /** Whether this vendor runs on the host (`kvm_is_<vendor>_supported`). */
  usable(host: Host): boolean;
  /** `hardware_setup` within one module. @throws KernelError to fail the module load */
  setup(env: KvmVendorEnv<P>): VendorModule;
}
