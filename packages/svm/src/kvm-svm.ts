/**
 * kvm_amd folded into every KVM module: {@link svmKvmOps}, the SVM vendor ops (`struct kvm_x86_ops` +
 * `kvm_x86_init_ops`) that `@vac/kvm` calls.
 *
 * - {@link svmParams}: kvm_amd's module parameters with Linux's names, types and defaults
 *   (`arch/x86/kvm/svm/svm.c`, `arch/x86/kvm/svm/sev.c`);
 * - `usable(host)`: `kvm_is_svm_supported()` on the boot CPU;
 * - `setup(env)` → {@link SvmKvmModule}: `svm_hardware_setup()` and `sev_hardware_setup()` within one module —
 *   the effective features ({@link SvmFeatures}), the `MSR_TSC_AUX` user-return slot registered through VAC;
 * - VMs ({@link SvmVm}): `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` with SEV ASIDs from VAC;
 * - vCPUs ({@link SvmVcpu}): a VMCB, `pre_svm_run()` with VAC's shared per-CPU ASIDs, VMRUN / `#VMEXIT`.
 *
 * The generic vCPU life cycle and run loop are KVM's (`@vac/kvm`); this package only answers the vendor calls.
 *
 * @module
 */
import { KernelError, UsageError } from '@vac/core';
import type { Host, KvmVendorEnv, KvmVendorOps, VcpuTag, VendorArch, VendorModule, VendorVm } from '@vac/core';
import { svmArch } from './kvm-svm-arch.js';
import { svmParams, type SvmParams } from './kvm-svm-params.js';
import {
  CPUID_EXT_MAX,
  MSR_TSC_AUX,
  SEV_CPUID_FUNC,
  SEV_FEATURE,
  SVM_CPUID_FUNC,
  SVM_FEATURE,
} from './arch.js';
import { isAmdHardware } from './hardware.js';
import type { AmdHardware } from './hardware.js';
import { sevVmcbsOf } from './kvm-svm-state.js';
import type { SvmFeatures, SvmModuleContext } from './kvm-svm-state.js';
import { SvmVcpu } from './kvm-svm-vcpu.js';
import { SvmVm } from './kvm-svm-vm.js';
import { ASIDS } from './vac-asids.js';
import { SEV_ASIDS } from './vac-sev-asids.js';

/** `DEFAULT_RATELIMIT_BURST` (`include/linux/ratelimit_types.h`). */
const DEFAULT_RATELIMIT_BURST = 10;


/** Boot-CPU feature bits `svm_hardware_setup()` and `sev_hardware_setup()` look at (`boot_cpu_has()`). */
interface BootFeatures {
  /** CPUID 0x8000000A EDX. */
  readonly svm: number;
  /** CPUID 0x8000001F EAX, 0 when the leaf does not exist. */
  readonly sev: number;
}

/**
 * kvm_amd set up inside one KVM module (a {@link @vac/core!VendorModule}): the effective features, the
 * `MSR_TSC_AUX` user-return slot, and the factories of VMs and vCPUs. Built by `svmKvmOps.setup`.
 */
export class SvmKvmModule implements VendorModule {
  /** Vendor answers to `KVM_CHECK_EXTENSION`: none are modelled (KVM answers the generic ones). */
  readonly extensions: ReadonlyMap<number, number> = new Map();
  /**
   * `tsc_aux_uret_slot` with the guest's `MSR_TSC_AUX` (0: `svm->tsc_aux` of a new vCPU), which KVM writes
   * at `vcpu_load` (`svm_prepare_switch_to_guest()`). Empty when the MSR could not be registered.
   */
  readonly userReturn: ReadonlyArray<{ readonly slot: number; readonly value: bigint }>;
  /** What the module runs with after setup. */
  readonly features: SvmFeatures;
  /** {@link VendorArch}: capabilities, MSRs and CPUID of this module's SVM half. */
  readonly arch: VendorArch;
  readonly #state: SvmModuleContext;
  readonly #vms = new WeakSet<SvmVm>();
  #tornDown = false;

  /**
   * @internal Use `svmKvmOps.setup`.
   * @param state - the module's shared state
   */
  constructor(state: SvmModuleContext) {
    this.#state = state;
    this.features = state.features;
    this.arch = svmArch(state.features, state.env.host.cpus[0] as import('@vac/core').Cpu);
    const slot = state.features.tscAuxSlot;
    this.userReturn = Object.freeze(slot >= 0 ? [Object.freeze({ slot, value: 0n })] : []);
  }

  /** The module name. */
  get module(): string {
    return this.#state.env.module;
  }

  /**
   * `svm_vm_init()`: the VM's vendor part. Only `KVM_X86_DEFAULT_VM` exists in the model, so nothing is set
   * up until `KVM_SEV_INIT`.
   */
  createVm(vm: { readonly id: number; readonly tag: VcpuTag }): SvmVm {
    this.#live('createVm');
    const v = new SvmVm(this.#state, vm);
    this.#vms.add(v);
    return v;
  }

  /**
   * `svm_vcpu_create()`: a VMCB for the vCPU `tag` of `vm` (a VM of this module).
   * @throws UsageError when `vm` is not a live VM of this module
   */
  createVcpu(vm: VendorVm, tag: VcpuTag): SvmVcpu {
    this.#live('createVcpu');
    if (!(vm instanceof SvmVm) || !this.#vms.has(vm)) {
      throw new UsageError('ERR_INVALID_ARG', `${this.module}: createVcpu for a VM that does not belong to this module`);
    }
    if (vm.destroyed) throw new UsageError('ERR_DESTROYED', `${this.module}: createVcpu for a destroyed VM`);
    return new SvmVcpu(this.#state, vm, tag);
  }

  /**
   * `svm_hardware_unsetup()`. Its `sev_hardware_unsetup()` flushes reclaimable SEV ASIDs before freeing the
   * bitmaps; the bitmaps are VAC's here and outlive the module, so nothing is flushed. The `MSR_TSC_AUX`
   * slot is given back when the module detaches from VAC. Afterwards no VM or vCPU can be created.
   */
  teardown(): void {
    this.#tornDown = true;
  }

  #live(op: string): void {
    if (this.#tornDown) throw new UsageError('ERR_DESTROYED', `${this.module}: ${op} after teardown`);
  }
}

/**
 * `sev_hardware_setup()` (`arch/x86/kvm/svm/sev.c`) for one module: whether SEV and SEV-ES are enabled.
 *
 * SEV needs the `sev` parameter, NPT and NRIPS in use, CPUID SEV with DecodeAssists and FlushByAsid (their
 * absence is a `WARN_ON_ONCE`), and `max_sev_asid` > 0. SEV-ES additionally needs `sev_es`, CPUID SEV-ES,
 * LBR virtualization ("LBRV must be present for SEV-ES support" when the CPU lacks it) and SEV-ES ASIDs
 * (`min_sev_asid` > 1). A plain-SEV range that is empty (`min_sev_asid > max_sev_asid`, "unusable") still
 * counts as enabled; `KVM_SEV_INIT` then gets ENOTTY from the allocator, as in Linux.
 */
function sevHardwareSetup(
  env: KvmVendorEnv<SvmParams>,
  hw: AmdHardware,
  boot: BootFeatures,
  npt: boolean,
  nrips: boolean,
  lbrv: boolean,
): { sev: boolean; sevEs: boolean } {
  const p = env.params;
  // if (!sev_enabled || !npt_enabled || !nrips) goto out;
  if (!p.sev || !npt || !nrips) return { sev: false, sevEs: false };
  // if (!boot_cpu_has(X86_FEATURE_SEV) || WARN_ON_ONCE(!DECODEASSISTS) || WARN_ON_ONCE(!FLUSHBYASID)) goto out;
  if ((boot.sev & SEV_FEATURE.SEV) === 0) return { sev: false, sevEs: false };
  if ((boot.svm & SVM_FEATURE.DECODEASSISTS) === 0) {
    env.warn('WARNING: WARN_ON_ONCE(!boot_cpu_has(X86_FEATURE_DECODEASSISTS)) in sev_hardware_setup');
    return { sev: false, sevEs: false };
  }
  if ((boot.svm & SVM_FEATURE.FLUSHBYASID) === 0) {
    env.warn('WARNING: WARN_ON_ONCE(!boot_cpu_has(X86_FEATURE_FLUSHBYASID)) in sev_hardware_setup');
    return { sev: false, sevEs: false };
  }
  // max_sev_asid = ecx; if (!max_sev_asid) goto out; min_sev_asid = edx;
  const { maxSevAsid, minSevAsid } = hw.virt.asidSpace(0);
  if (maxSevAsid === 0) return { sev: false, sevEs: false };
  // sev_supported = true; if (!sev_es_enabled) goto out;
  if (!p.sev_es || (boot.sev & SEV_FEATURE.SEV_ES) === 0) return { sev: true, sevEs: false };
  if (!lbrv) {
    // WARN_ONCE(!boot_cpu_has(X86_FEATURE_LBRV), "LBRV must be present for SEV-ES support");
    if ((boot.svm & SVM_FEATURE.LBRV) === 0) env.warn('WARNING: LBRV must be present for SEV-ES support');
    return { sev: true, sevEs: false };
  }
  // /* Has the system been allocated ASIDs for SEV-ES? */ if (min_sev_asid == 1) goto out;
  return { sev: true, sevEs: minSevAsid > 1 };
}

/**
 * The SVM vendor ops folded into every KVM module (`kvm_amd`'s `svm_x86_ops` + `svm_init_ops`).
 *
 * - `name`: `'svm'`; `params`: {@link svmParams}.
 * - `usable(host)`: AMD hardware whose boot CPU supports SVM (`kvm_is_svm_supported()`: AMD or Hygon, CPUID
 *   SVM; the model also requires `VM_CR.SVMDIS` clear, as VAC's enable would fail otherwise).
 * - `setup(env)`: `svm_hardware_setup()` in one module → {@link SvmKvmModule}. `npt` without CPUID NP runs
 *   with NPT off and logs "Nested Paging disabled"; the other `int`/`bool` features are dropped silently when
 *   the CPU lacks them; SEV per `sev_hardware_setup()`; `MSR_TSC_AUX` registered through VAC (one slot shared
 *   by every module; a probe failure leaves `tsc_aux_uret_slot` at -1 as in Linux, a 17th distinct MSR fails
 *   the load with ENOSPC).
 */
export const svmKvmOps = {
  name: 'svm',
  params: svmParams,
  usable(host: Host): boolean {
    const hw = host.hardware;
    return isAmdHardware(hw) && hw.virt.unsupported(0) === undefined;
  },
  setup(env: KvmVendorEnv<SvmParams>): SvmKvmModule {
    const hw = env.host.hardware;
    if (!isAmdHardware(hw)) {
      throw new KernelError('EOPNOTSUPP', 'svm_hardware_setup', `${env.module}: kvm_amd needs AMD hardware`);
    }
    const p = env.params;
    const cpu0 = env.host.cpus[0];
    if (cpu0 === undefined) throw new UsageError('ERR_NO_SUCH_CPU', `${env.module}: the host has no CPU`);
    const hasSevLeaf = cpu0.readCpuid(CPUID_EXT_MAX).eax >>> 0 >= SEV_CPUID_FUNC;
    const boot: BootFeatures = {
      svm: cpu0.readCpuid(SVM_CPUID_FUNC).edx,
      sev: hasSevLeaf ? cpu0.readCpuid(SEV_CPUID_FUNC).eax : 0,
    };
    const has = (bit: number): boolean => (boot.svm & bit) !== 0;

    // tsc_aux_uret_slot = kvm_add_user_return_msr(MSR_TSC_AUX); — callers only test `< 0`.
    let tscAuxSlot = -1;
    try {
      tscAuxSlot = env.vac.addUserReturnMsr(MSR_TSC_AUX);
    } catch (e) {
      if (!(e instanceof KernelError && e.code === 'EIO')) throw e;
    }
    // if (!boot_cpu_has(X86_FEATURE_PAUSEFILTER)) { pause_filter_count = 0; pause_filter_thresh = 0; }
    const pauseFilterCount = has(SVM_FEATURE.PAUSEFILTER) ? p.pause_filter_count : 0;
    // if (!boot_cpu_has(X86_FEATURE_NPT)) npt_enabled = false; pr_info("Nested Paging %sabled\n", …);
    let npt = p.npt;
    if (npt && !has(SVM_FEATURE.NPT)) {
      npt = false;
      env.warn('Nested Paging disabled');
    }
    // nrips = nrips && boot_cpu_has(X86_FEATURE_NRIPS); if (lbrv) { if (!boot_cpu_has(LBRV)) lbrv = false; }
    const nrips = p.nrips !== 0 && has(SVM_FEATURE.NRIPS);
    const lbrv = p.lbrv !== 0 && has(SVM_FEATURE.LBRV);
    const { sev, sevEs } = sevHardwareSetup(env, hw, boot, npt, nrips, lbrv);
    // enable_apicv = avic = avic && avic_hardware_setup(); — which needs npt_enabled and CPUID AVIC.
    const avic = p.avic && npt && has(SVM_FEATURE.AVIC);
    // if (vls) { if (!npt_enabled || !boot_cpu_has(X86_FEATURE_V_VMSAVE_VMLOAD) …) vls = false; }
    const vls = p.vls !== 0 && npt && has(SVM_FEATURE.V_VMSAVE_VMLOAD);
    // if (vgif) { if (!boot_cpu_has(X86_FEATURE_VGIF)) vgif = false; }
    const vgif = p.vgif !== 0 && has(SVM_FEATURE.VGIF);

    const features: SvmFeatures = Object.freeze({
      npt,
      nested: p.nested,
      avic,
      nrips,
      vls,
      vgif,
      lbrv,
      pauseFilterCount,
      dumpInvalidVmcb: p.dump_invalid_vmcb,
      sev,
      sevEs,
      tscAuxSlot,
    });
    let warned = 0;
    const state: SvmModuleContext = {
      env: { host: env.host, module: env.module, vac: env.vac, warn: (message, cpu) => env.warn(message, cpu) },
      hw,
      features,
      sevVmcbs: sevVmcbsOf(hw),
      asids: env.vac.resource(ASIDS),
      sevAsids: env.vac.tryResource(SEV_ASIDS),
      ratelimit: () => warned++ < DEFAULT_RATELIMIT_BURST,
    };
    return new SvmKvmModule(state);
  },
} as const satisfies KvmVendorOps<SvmParams>;
