/**
 * The vendor-ops interface between the KVM module (`@vac/kvm`) and its folded-in vendor code
 * (`@vac/vmx`, `@vac/svm`) — the model's `struct kvm_x86_ops`. It lives in the core so that the vendor
 * packages need not import KVM: KVM defines the generic vCPU life cycle and run loop, the vendors only
 * answer these calls.
 *
 * @module
 */
import type { ErrnoCode } from './errors.js';
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

/** A VM, as its vendor sees it. */
export interface VendorVm {
  /**
   * Whether `KVM_MEMORY_ENCRYPT_OP` is served at all (SEV enabled in this module). When false the ioctl is
   * ENOTTY before its argument is read (`kvm_arch_vm_ioctl` / `svm_mem_enc_ioctl`).
   */
  readonly memEncrypt: boolean;
  /**
   * `KVM_MEMORY_ENCRYPT_OP` (`svm_mem_enc_ioctl`). `hasVcpus` tells whether vCPUs exist already.
   * @returns the ioctl result; throws a KernelError (ENOTTY when the vendor has no memory encryption)
   */
  memEncryptOp(cmd: { readonly id: number; readonly data: number | bigint; error: number; readonly sev_fd: number }, hasVcpus: boolean): number;
  /** Whether the VM is an SEV / SEV-ES guest. */
  readonly encryption: 'none' | 'sev' | 'sev-es';
  /** `kvm_arch_destroy_vm` vendor part (frees the SEV ASID). */
  destroy(): void;
}

/** A vCPU, as its vendor sees it. */
export interface VendorVcpu {
  /** `vcpu_load` on `cpu` (VMX: VMCS migration + VMPTRLD; SVM: note the CPU). */
  load(cpu: number): void;
  /** `vcpu_put` from `cpu`. */
  put(cpu: number): void;
  /**
   * Everything before one VM entry on `cpu` (VMX: L1D flush per `vmentry_l1d_flush`, TLB flush when the
   * vCPU has VPID 0; SVM: `pre_svm_run` — new ASID after a CPU change or a stale generation, SEV ASID).
   */
  prepareEntry(cpu: number): void;
  /**
   * The VM entry instruction (VMLAUNCH/VMRESUME, VMRUN). `undefined` when the CPU accepted it, else the
   * hardware's failure reason for `KVM_EXIT_FAIL_ENTRY.hardware_entry_failure_reason`.
   */
  enter(cpu: number): bigint | undefined;
  /** The VM exit that ends one pass of guest execution entered with {@link VendorVcpu.enter}. */
  exit(cpu: number): void;
  /** The TLB tag in use: a VPID or the current ASID (0 = none). */
  tlbTag(): { readonly kind: 'vpid' | 'asid'; readonly value: number };
  /** Per-vCPU counters (entries, L1D flushes, TLB flushes, …). */
  readonly stats: Readonly<Record<string, number>>;
  /** `vcpu_free` vendor part (VPID, VMCS / VMCB, ASID bookkeeping). */
  free(): void;
}

/** A vendor set up inside one KVM module. */
export interface VendorModule {
  /** Vendor answers to `KVM_CHECK_EXTENSION` (cap → value); generic caps are KVM's. */
  readonly extensions: ReadonlyMap<number, number>;
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
  /** `'vmx'` or `'svm'`. */
  readonly name: 'vmx' | 'svm';
  /** The vendor's module parameters (kvm_intel's / kvm_amd's, with their Linux names). */
  readonly params: P;
  /** Whether this vendor runs on the host (`kvm_is_vmx_supported` / `kvm_is_svm_supported`). */
  usable(host: Host): boolean;
  /** `hardware_setup` within one module. @throws KernelError to fail the module load */
  setup(env: KvmVendorEnv<P>): VendorModule;
}

/** An errno a vendor may hand back from a failed setup, for messages. */
export type VendorSetupError = ErrnoCode;
