/**
 * `vmxKvmOps`: kvm_intel folded into every KVM module (RFC patch 02) — the VMX answers to the generic KVM
 * code's vendor calls (`KvmVendorOps` of `@vac/core`, the model's `struct kvm_x86_ops`).
 *
 * - `usable(host)`: Intel hardware with VMX usable on CPU 0 (`kvm_is_vmx_supported`).
 * - `setup(env)`: `kvm_x86_vendor_init` → `vmx_check_processor_compat` on every online CPU, then
 *   `vmx_hardware_setup` within one module: which features the module runs with ({@link VmxKvmConfig}), its
 *   L1TF VM-entry mitigation, and its user-return MSRs registered through VAC (shared slots).
 * - The returned {@link VmxKvmModule} creates VMs ({@link VmxVm}) and vCPUs ({@link VmxVcpu}): VPIDs from
 *   VAC's host-wide space, VMCSs on the loaded-VMCS lists every module shares.
 *
 * Everything a module decides is its own: two modules on one host may run with different `vpid`, `ept` or
 * `vmentry_l1d_flush` and their vCPUs behave differently side by side on the same CPU, while VPIDs stay unique
 * and VMCSs are VMCLEARed wherever they were last loaded, whichever module they belong to.
 *
 * @module
 */
import { KernelError, UsageError, isKernelError } from '@vac/core';
import type { Cpu, Host, KvmVendorEnv, KvmVendorOps, VcpuTag, VendorArch, VendorModule, VendorVm } from '@vac/core';
import { vmxArch } from './kvm-vmx-arch.js';
import { CPU_BASED_ACTIVATE_SECONDARY_CONTROLS, INTEL_MSR, SECONDARY_EXEC, VMX_EPT_CAP } from './arch.js';
import { isIntelHardware } from './hardware.js';
import type { IntelHardware } from './hardware.js';
import { L1TF_MSG_L1D, selectL1tfMitigation } from './kvm-vmx-l1tf.js';
import type { L1dFlushMethod, L1tfVmxMitigation } from './kvm-vmx-l1tf.js';
import { vmxParams } from './kvm-vmx-params.js';
import type { VmxParams } from './kvm-vmx-params.js';
import { VmxVcpu } from './kvm-vmx-vcpu.js';
import { VmxVm } from './kvm-vmx-vm.js';
import { VPIDS } from './vac-vpids.js';
import type { VmxModuleContext } from './kvm-vmx-state.js';

// Architectural numbers this file needs that `arch.ts` does not list (SDM Vol. 3C appendix A; Linux names
// from `msr-index.h` and `vmx.h`).
/** IA32_TSX_CTRL (`MSR_IA32_TSX_CTRL`): in `vmx_uret_msrs_list`; the CPU model does not implement it. */
const MSR_IA32_TSX_CTRL = 0x122;
/** IA32_VMX_PINBASED_CTLS (`MSR_IA32_VMX_PINBASED_CTLS`). */
const MSR_IA32_VMX_PINBASED_CTLS = 0x481;
/** Primary processor-based control bit 21 (`CPU_BASED_TPR_SHADOW`). */
const CPU_BASED_TPR_SHADOW = 1 << 21;
/** Secondary control bit 8 (`SECONDARY_EXEC_APIC_REGISTER_VIRT`). */
const SECONDARY_EXEC_APIC_REGISTER_VIRT = 1 << 8;
/** Secondary control bit 9 (`SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY`). */
const SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY = 1 << 9;
/** Secondary control bit 17 (`SECONDARY_EXEC_ENABLE_PML`). */
const SECONDARY_EXEC_ENABLE_PML = 1 << 17;
/** Pin-based control bit 6 (`PIN_BASED_VMX_PREEMPTION_TIMER`). */
const PIN_BASED_VMX_PREEMPTION_TIMER = 1 << 6;
/** Pin-based control bit 7 (`PIN_BASED_POSTED_INTR`). */
const PIN_BASED_POSTED_INTR = 1 << 7;


/**
 * `vmx_uret_msrs_list` (`vmx_setup_user_return_msrs`, `vmx.c`, x86-64), in Linux's order. Each goes through
 * `kvm_add_user_return_msr` (VAC); one the CPU does not implement fails the probe and is skipped, silently,
 * as in Linux.
 */
const VMX_URET_MSRS: readonly number[] = [
  INTEL_MSR.MSR_SYSCALL_MASK,
  INTEL_MSR.MSR_LSTAR,
  INTEL_MSR.MSR_CSTAR,
  INTEL_MSR.MSR_EFER,
  INTEL_MSR.MSR_TSC_AUX,
  INTEL_MSR.MSR_STAR,
  MSR_IA32_TSX_CTRL,
];

/**
 * What one module runs with after `vmx_hardware_setup` (`vmx.c`): each feature is its parameter AND what the
 * boot CPU's VMX capability MSRs allow, with Linux's dependencies (no EPT → no unrestricted guest, no EPT A/D,
 * no PML).
 */
export interface VmxKvmConfig {
  /**
   * `enable_vpid`: `vpid` and the CPU has the "enable VPID" control, INVVPID, and single-context or
   * all-context INVVPID.
   */
  readonly vpid: boolean;
  /** `enable_ept`: `ept` and the CPU has EPT with 4-level walks, WB paging structures and global INVEPT. */
  readonly ept: boolean;
  /** `enable_ept_ad_bits`: `eptad`, EPT on, and the EPT A/D capability. */
  readonly eptad: boolean;
  /** `enable_unrestricted_guest`: `unrestricted_guest`, EPT on, and the "unrestricted guest" control. */
  readonly unrestrictedGuest: boolean;
  /** `flexpriority_enabled`: `flexpriority`, TPR shadow and "virtualize APIC accesses". */
  readonly flexpriority: boolean;
  /**
   * `enable_apicv`: `enable_apicv` and APIC-register virtualization, virtual-interrupt delivery and posted
   * interrupts (the model's CPUs offer none of them, so it is off).
   */
  readonly apicv: boolean;
  /** `enable_pml`: `pml`, EPT with A/D bits, and the PML control (absent from the model's CPUs: off). */
  readonly pml: boolean;
  /** `enable_preemption_timer`: `preemption_timer` and the pin-based control (absent from the model: off). */
  readonly preemptionTimer: boolean;
  /** `nested`, as given. */
  readonly nested: boolean;
  /** `cpu_has_vmx_invvpid_global`: all-context INVVPID exists (used by `vmx_flush_tlb_all` without EPT). */
  readonly invvpidAllContext: boolean;
  /** `l1tf_vmx_mitigation`: the L1TF VM-entry flush mode in effect. */
  readonly l1tf: L1tfVmxMitigation;
  /** How L1D flushes are done (`'none'` when the mode never flushes). */
  readonly l1dFlushMethod: L1dFlushMethod;
  /** `boot_cpu_has_bug(X86_BUG_L1TF)`. */
  readonly l1tfAffected: boolean;
  /** `error_on_inconsistent_vmcs_config`, as given. */
  readonly errorOnInconsistentVmcsConfig: boolean;
  /** `dump_invalid_vmcs`, as given. */
  readonly dumpInvalidVmcs: boolean;
}

/** A user-return MSR the module registered through VAC: the MSR and the (possibly shared) slot. */
export interface VmxUserReturnMsr {
  /** The MSR number. */
  readonly msr: number;
  /** Its slot in VAC's `kvm_uret_msrs_list` (the same for every module that registered it). */
  readonly slot: number;
}

/** The allowed-1 settings (high dword) of a VMX capability MSR of `cpu`, 0 when the MSR does not exist. */
function allowed1(cpu: Cpu, msr: number): number {
  return Number(((cpu.rdmsrSafe(msr) ?? 0n) >> 32n) & 0xffff_ffffn);
}

/** The boot CPU. */
function bootCpu(host: Host): Cpu {
  const boot = host.cpus[0];
  if (boot === undefined) throw new UsageError('ERR_NO_SUCH_CPU', 'vmx: the host has no CPU 0');
  return boot;
}

/**
 * `vmx_check_processor_compat` (`vmx.c`), run by `kvm_x86_vendor_init` on every online CPU: VMX usable there
 * (`__kvm_is_vmx_supported`), and the CPU's VMCS configuration equal to the boot CPU's — compared here as the
 * capability MSRs it is computed from (IA32_VMX_BASIC, the pin-based, primary and secondary control MSRs, and
 * with `nested` IA32_VMX_EPT_VPID_CAP, which `nested_vmx_setup_ctls_msrs` folds in). Otherwise `pr_err`
 * "Inconsistent VMCS config on CPU %d" and the load fails with EIO.
 */
function checkProcessorCompat(env: KvmVendorEnv<VmxParams>, hw: IntelHardware): void {
  const host = env.host;
  const boot = bootCpu(host);
  const msrs = [
    INTEL_MSR.MSR_IA32_VMX_BASIC,
    MSR_IA32_VMX_PINBASED_CTLS,
    INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS,
    INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS2,
    ...(env.params.nested ? [INTEL_MSR.MSR_IA32_VMX_EPT_VPID_CAP] : []),
  ];
  for (const c of host.cpus) {
    if (!c.online) continue;
    const why = hw.virt.unsupported(c.id);
    if (why !== undefined) {
      env.warn(why, c.id);
      throw new KernelError('EIO', 'kvm_x86_vendor_init', `CPU ${c.id}: ${why}`);
    }
    if (c === boot) continue;
    for (const msr of msrs) {
      if (c.rdmsrSafe(msr) !== boot.rdmsrSafe(msr)) {
        env.warn(`Inconsistent VMCS config on CPU ${c.id}`, c.id);
        throw new KernelError('EIO', 'kvm_x86_vendor_init', `Inconsistent VMCS config on CPU ${c.id} (MSR 0x${msr.toString(16)})`);
      }
    }
  }
}

/**
 * `vmx_hardware_setup` (`vmx.c`) for one module: each feature as its parameter allows and the boot CPU's
 * capability MSRs offer (`setup_vmcs_config` / `vmx_capability`). Linux turns a missing feature off
 * silently (visible in sysfs); the model also warns when `vpid` or `ept` was asked for and cannot be had,
 * because the module parameter file keeps showing what was asked.
 */
function hardwareSetup(env: KvmVendorEnv<VmxParams>, hw: IntelHardware): VmxKvmConfig {
  const p = env.params;
  const boot = bootCpu(env.host);
  const caps = hw.capabilities(0);
  const procbased = allowed1(boot, INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS);
  const secondary = (procbased & CPU_BASED_ACTIVATE_SECONDARY_CONTROLS) !== 0 ? allowed1(boot, INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS2) : 0;
  const pinbased = allowed1(boot, MSR_IA32_VMX_PINBASED_CTLS);
  const has = (bits: number, mask: number): boolean => (bits & mask) === mask;

  // if (!cpu_has_vmx_vpid() || !cpu_has_vmx_invvpid() ||
  //     !(cpu_has_vmx_invvpid_single() || cpu_has_vmx_invvpid_global())) enable_vpid = 0;
  const cpuVpid = caps.vpid && (caps.invvpid['single-context'] || caps.invvpid['all-context']);
  const vpid = p.vpid && cpuVpid;
  if (p.vpid && !cpuVpid) env.warn('vpid=Y but the CPU has no usable VPID support (enable VPID control, INVVPID): running with vpid=N');
  // if (!cpu_has_vmx_ept() || !cpu_has_vmx_ept_4levels() || !cpu_has_vmx_ept_mt_wb() ||
  //     !cpu_has_vmx_invept_global()) enable_ept = 0;
  const cpuEpt =
    caps.ept && has(caps.eptCap, VMX_EPT_CAP.VMX_EPT_PAGE_WALK_4_BIT) && has(caps.eptCap, VMX_EPT_CAP.VMX_EPTP_WB_BIT) && caps.inveptGlobal;
  const ept = p.ept && cpuEpt;
  if (p.ept && !cpuEpt) env.warn('ept=Y but the CPU has no usable EPT support (EPT, 4-level walk, WB, global INVEPT): running with ept=N');
  // if (!cpu_has_vmx_ept_ad_bits() || !enable_ept) enable_ept_ad_bits = 0;
  const eptad = p.eptad && ept && has(caps.eptCap, VMX_EPT_CAP.VMX_EPT_AD_BIT);
  // if (!cpu_has_vmx_unrestricted_guest() || !enable_ept) enable_unrestricted_guest = 0;
  const unrestrictedGuest = p.unrestricted_guest && ept && has(secondary, SECONDARY_EXEC.SECONDARY_EXEC_UNRESTRICTED_GUEST);
  // if (!cpu_has_vmx_flexpriority()) flexpriority_enabled = 0;  (TPR shadow + virtualize APIC accesses)
  const flexpriority =
    p.flexpriority && has(procbased, CPU_BASED_TPR_SHADOW) && has(secondary, SECONDARY_EXEC.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES);
  // if (!cpu_has_vmx_apicv()) enable_apicv = 0;  (APIC-register virt + virtual-interrupt delivery + posted interrupts)
  const apicv =
    p.enable_apicv &&
    has(secondary, SECONDARY_EXEC_APIC_REGISTER_VIRT | SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY) &&
    has(pinbased, PIN_BASED_POSTED_INTR);
  // if (!enable_ept || !enable_ept_ad_bits || !cpu_has_vmx_pml()) enable_pml = 0;
  const pml = p.pml && ept && eptad && has(secondary, SECONDARY_EXEC_ENABLE_PML);
  // if (!cpu_has_vmx_preemption_timer()) enable_preemption_timer = false;
  const preemptionTimer = p.preemption_timer && has(pinbased, PIN_BASED_VMX_PREEMPTION_TIMER);
  // vmx_setup_l1d_flush(vmentry_l1d_flush_param), after enable_ept is known.
  const l1tf = selectL1tfMitigation(boot, p.vmentry_l1d_flush, ept);
  return {
    vpid,
    ept,
    eptad,
    unrestrictedGuest,
    flexpriority,
    apicv,
    pml,
    preemptionTimer,
    nested: p.nested,
    invvpidAllContext: caps.invvpid['all-context'],
    l1tf: l1tf.mitigation,
    l1dFlushMethod: l1tf.method,
    l1tfAffected: l1tf.affected,
    errorOnInconsistentVmcsConfig: p.error_on_inconsistent_vmcs_config,
    dumpInvalidVmcs: p.dump_invalid_vmcs,
  };
}

/**
 * `vmx_setup_user_return_msrs` (`vmx.c`): `kvm_add_user_return_msr` for each of {@link VMX_URET_MSRS} through
 * the module's VAC handle. VAC shares a slot between modules registering the same MSR (beyond the RFC). An
 * MSR whose probe faults (EIO from VAC; `-1` in Linux) is skipped; any other error fails the setup — what was
 * registered before stays on the handle and goes with its `detach()`, as a failed KVM module init does.
 */
function setupUserReturnMsrs(env: KvmVendorEnv<VmxParams>): VmxUserReturnMsr[] {
  const out: VmxUserReturnMsr[] = [];
  for (const msr of VMX_URET_MSRS) {
    try {
      out.push({ msr, slot: env.vac.addUserReturnMsr(msr) });
    } catch (e) {
      if (isKernelError(e, 'EIO')) continue;
      throw e;
    }
  }
  return out;
}

/**
 * The VMX half of one loaded KVM module (what {@link vmxKvmOps}.setup returns): its configuration, its
 * user-return MSRs, its VMs and vCPUs.
 */
export class VmxKvmModule implements VendorModule {
  /** The module name (`kvm0`). */
  readonly module: string;
  /** What the module runs with. */
  readonly config: VmxKvmConfig;
  /**
   * Vendor answers to `KVM_CHECK_EXTENSION`: none (KVM_CAP_NESTED_STATE comes from `VendorArch.nestedState`).
   */
  readonly extensions: ReadonlyMap<number, number>;
  /** {@link VendorArch}: capabilities, MSRs and CPUID of this module's VMX half. */
  readonly arch: VendorArch;
  /** Every `vmx_uret_msrs_list` MSR VAC accepted, with its slot. */
  readonly userReturnMsrs: readonly VmxUserReturnMsr[];
  /**
   * The user-return MSRs a vCPU loads into the hardware at `vcpu_load` (`vmx_prepare_switch_to_guest` writes
   * the `guest_uret_msrs[]` with `load_into_hardware`, as set by `vmx_setup_uret_msrs`), with the guest's
   * value: only MSR_TSC_AUX, value 0 (its reset value; mask all ones). The model's guests run in real mode, so
   * the SYSCALL MSRs (long mode with EFER.SCE only) are not loaded, MSR_CSTAR never is, EFER is switched
   * through the VMCS on CPUs with "load IA32_EFER" (`update_transition_efer`), and TSX_CTRL is not
   * implemented; TSC_AUX is loaded when the guest's CPUID has RDTSCP, which the model assumes (a VMM passing
   * `KVM_GET_SUPPORTED_CPUID` through, as QEMU does).
   */
  readonly userReturn: ReadonlyArray<{ readonly slot: number; readonly value: bigint }>;
  readonly #env: KvmVendorEnv<VmxParams>;
  readonly #ctx: VmxModuleContext;
  readonly #vcpus = new Set<VmxVcpu>();
  readonly #warned = new Set<string>();
  #tornDown = false;

  /** @internal Built by {@link vmxKvmOps}.setup. */
  constructor(env: KvmVendorEnv<VmxParams>, hw: IntelHardware, config: VmxKvmConfig, uret: readonly VmxUserReturnMsr[]) {
    this.#env = env;
    this.module = env.module;
    this.config = config;
    this.extensions = new Map();
    this.arch = vmxArch(config, bootCpu(env.host));
    this.userReturnMsrs = uret;
    this.userReturn = uret.filter((u) => u.msr === INTEL_MSR.MSR_TSC_AUX).map((u) => ({ slot: u.slot, value: 0n }));
    this.#ctx = {
      hw,
      vac: env.vac,
      vpids: env.vac.resource(VPIDS),
      module: env.module,
      events: env.host.events,
      config,
      hostCpus: env.host.cpus,
      flushCmd: (env.host.cpus[0] as Cpu).msrSlot(INTEL_MSR.MSR_IA32_FLUSH_CMD),
      warn: (message, cpu) => env.warn(message, cpu),
      warnOnce: (key, message, cpu) => this.#warnOnce(key, message, cpu),
      vcpuFreed: (v) => {
        this.#vcpus.delete(v);
      },
    };
  }

  #warnOnce(key: string, message: string, cpu?: number): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#env.warn(message, cpu);
  }

  #live(op: string): void {
    if (this.#tornDown) throw new UsageError('ERR_DESTROYED', `vmx: ${op} after ${this.module}'s vendor teardown`);
  }

  /**
   * `vmx_vm_init` (`vmx.c`): a {@link VmxVm}. On an L1TF-affected CPU with EPT and `l1tf_vmx_mitigation` =
   * `never`, the first VM prints `L1TF_MSG_L1D` (`pr_warn_once`: once per module here). The SMT message
   * (`L1TF_MSG_SMT`) is not modelled: the model's hosts have no SMT topology.
   */
  createVm(vm: { readonly id: number; readonly tag: VcpuTag }): VmxVm {
    this.#live('createVm');
    if (this.config.l1tf === 'never') this.#warnOnce('l1tf', L1TF_MSG_L1D);
    return new VmxVm(this.module, vm.id);
  }

  /**
   * `vmx_vcpu_create`: a {@link VmxVcpu} with its VPID (VAC; 0 with `vpid=N` or when VAC's space is
   * exhausted) and its VMCS.
   * @throws UsageError for a VM of another module or vendor, a destroyed VM, or a tag of another module
   */
  createVcpu(vm: VendorVm, tag: VcpuTag): VmxVcpu {
    this.#live('createVcpu');
    if (!(vm instanceof VmxVm) || vm.module !== this.module) throw new UsageError('ERR_INVALID_ARG', `vmx: createVcpu with a VM that ${this.module} did not create`);
    if (vm.destroyed) throw new UsageError('ERR_DESTROYED', `vmx: createVcpu on destroyed VM ${this.module}/vm${vm.id}`);
    if (tag.instance !== this.module) throw new UsageError('ERR_INVALID_ARG', `vmx: ${this.module} cannot create a vCPU tagged for ${tag.instance}`);
    const v = new VmxVcpu(this.#ctx, vm, tag);
    this.#vcpus.add(v);
    return v;
  }

  /** The module's live (not freed) vCPUs, in creation order. */
  vcpus(): readonly VmxVcpu[] {
    return [...this.#vcpus];
  }

  /**
   * `vmx_hardware_unsetup` / `vmx_exit`: nothing to give back here (the user-return MSR slots belong to the
   * VAC handle and go with its `detach()`); afterwards `createVm` / `createVcpu` are refused.
   */
  teardown(): void {
    this.#tornDown = true;
  }
}

/**
 * kvm_intel's KVM half, folded into every KVM module: `name: 'vmx'`, kvm_intel's {@link vmxParams}, `usable`
 * and `setup` (see the module comment).
 */
export const vmxKvmOps = {
  name: 'vmx',
  params: vmxParams,
  /**
   * `kvm_is_vmx_supported` (RFC: moved to VAC, patch 12) for the KVM module's choice of vendor: Intel hardware,
   * and VMX usable on CPU 0 (CPUID.1:ECX.VMX, IA32_FEATURE_CONTROL locked with VMX outside SMX).
   */
  usable(host: Host): boolean {
    const hw = host.hardware;
    return isIntelHardware(hw) && hw.virt.unsupported(0) === undefined;
  },
  /**
   * `kvm_x86_vendor_init(&vt_init_ops)` within one module: `vmx_check_processor_compat` on every online CPU,
   * `vmx_hardware_setup` (features, `vmx_setup_l1d_flush`), `vmx_setup_user_return_msrs`.
   * @throws KernelError EOPNOTSUPP (no usable VMX), EIO (a CPU not compatible with the boot CPU), or VAC's
   *   error for a user-return MSR slot (ENOSPC)
   */
  setup(env: KvmVendorEnv<VmxParams>): VmxKvmModule {
    const hw = env.host.hardware;
    if (!isIntelHardware(hw)) throw new KernelError('EOPNOTSUPP', 'vmx_init', 'no VMX on this host (not Intel hardware)');
    const why = hw.virt.unsupported(0);
    if (why !== undefined) throw new KernelError('EOPNOTSUPP', 'vmx_init', why);
    checkProcessorCompat(env, hw);
    const config = hardwareSetup(env, hw);
    const uret = setupUserReturnMsrs(env);
    return new VmxKvmModule(env, hw, config, uret);
  },
} as const satisfies KvmVendorOps<VmxParams>;
