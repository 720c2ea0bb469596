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
  /** The vendor's short name: the directory of its Linux code (`arch/x86/kvm/<name>/`). */
  readonly name: string;
  /** The vendor's module parameters (kvm_intel's / kvm_amd's, with their Linux names). */
  readonly params: P;
  /** Whether this vendor runs on the host (`kvm_is_<vendor>_supported`). */
  usable(host: Host): boolean;
  /** `hardware_setup` within one module. @throws KernelError to fail the module load */
  setup(env: KvmVendorEnv<P>): VendorModule;
}
