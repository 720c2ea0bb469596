/**
 * VAC's SVM half: the per-CPU enable/disable VAC calls on an AMD host.
 *
 * Follows the RFC's `arch/x86/kvm/svm/vac.c` ("[RFC PATCH 11/14]" and "12/14"; the same code is in upstream
 * `arch/x86/kvm/svm/svm.c`):
 *
 * - `__kvm_is_svm_supported()` → {@link VacSvm.unsupported};
 * - `svm_hardware_enable()` → {@link VacSvm.enableCpu};
 * - `svm_hardware_disable()` / `kvm_cpu_svm_disable()` → {@link VacSvm.disableCpu};
 * - `svm_emergency_disable()` → {@link VacSvm.emergencyDisable};
 * - the ASIDs and SEV ASIDs VAC shares → {@link VacSvm.vacResources}.
 *
 * The per-CPU ASID state reset of `svm_hardware_enable()` (`asid_generation = 1`, `max_asid`, `next_asid`,
 * `min_asid`) is the ASID resource's ({@link AsidResource.cpuEnabled}), which VAC calls once an enable of the CPU
 * is kept; `kvm_rebooting = true` in `svm_emergency_disable()` is VAC core's. Not modelled (no observable effect
 * here): the TSC ratio writes (which the RFC stubs out with "TODO: Fix everything TSC"), the OSVW merge and
 * `amd_pmu_enable_virt()`/`amd_pmu_disable_virt()`.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { cpuAt, emitVirtEvent } from '@vac/core/internal';
import type { AnyVacResource, Cpu, ErrnoCode, HardwareEnv, VacResourceContext, VirtOps } from '@vac/core';
import {
  CPUID_80000001_ECX_SVM,
  CPUID_EXT_FEATURES,
  CPUID_EXT_MAX,
  EFER_SVME,
  MSR_EFER,
  MSR_VM_CR,
  SEV_CPUID_FUNC,
  SEV_FEATURE,
  SVM_CPUID_FUNC,
  SVM_EXIT,
  SVM_VM_CR_SVM_DIS_MASK,
} from './arch.js';
import type { SvmCpus } from './svm-cpu.js';
import { AsidResource } from './vac-asids.js';
import { SevAsidResource } from './vac-sev-asids.js';

/** The ASID space of an AMD host (CPUID 0x8000000A and 0x8000001F). */
export interface AsidSpace {
  /** CPUID 0x8000000A.EBX: the number of ASIDs (max_asid = this - 1). */
  readonly nrAsids: number;
  /** CPUID 0x8000001F.EDX: the lowest ASID for plain SEV guests (SEV-ES uses 1 … min-1). */
  readonly minSevAsid: number;
  /** CPUID 0x8000001F.ECX: the highest SEV ASID; 0 = no SEV. */
  readonly maxSevAsid: number;
}

// Hot-path constants as module locals: transpilers that keep ESM live bindings (tsx, vitest) turn every
// use of an imported constant into a property read through a getter.
const _EFER_SVME = EFER_SVME;
const _MSR_EFER = MSR_EFER;
const _MSR_VM_CR = MSR_VM_CR;
const _SVM_VM_CR_SVM_DIS_MASK = SVM_VM_CR_SVM_DIS_MASK;

/** X86 vendor strings Linux accepts for SVM (`X86_VENDOR_AMD`, `X86_VENDOR_HYGON`), as CPUID leaf 0 EBX. */
const VENDOR_EBX_AMD = 0x68747541; // "Auth"
const VENDOR_EBX_HYGON = 0x6f677948; // "Hygo"

/** Physical address of CPU 0's host save area (`sd->save_area_pa`); CPU n's is 4 KiB × n above it. */
export const SAVE_AREA_BASE = 0x1_0000_0000n;

/**
 * VAC's SVM half (a {@link @vac/core!VirtOps}): what VAC calls to turn SVM on and off on one CPU, plus the
 * SVM-only facts VAC's allocators need (the ASID space, the SEV flush). Reach it as `hardware.virt`.
 */
export class VacSvm implements VirtOps {
  /** Always `'svm'`. */
  readonly name = 'svm' as const;
  readonly #env: HardwareEnv;
  readonly #cpus: readonly Cpu[];
  readonly #svm: SvmCpus;
  /** `per_cpu(svm_data, cpu).save_area_pa`: one page per CPU. */
  readonly #saveArea: bigint[];
  /** `ex_handler_msr()` warns through `__ONCE_LITE_IF`: once per boot (per host). */
  #uncheckedWrmsrWarned = false;

  /**
   * @param env - the host (CPUs, events, warnings)
   * @param svm - the SVM hardware of the host's CPUs
   */
  constructor(env: HardwareEnv, svm: SvmCpus) {
    this.#env = env;
    this.#cpus = env.cpus;
    this.#svm = svm;
    const n = env.cpus.length;
    this.#saveArea = new Array<bigint>(n);
    for (let i = 0; i < n; i++) this.#saveArea[i] = SAVE_AREA_BASE + BigInt(i) * 0x1000n;
    env.events.describe('virt:enable', { label: 'EFER.SVME=1' });
    env.events.describe('virt:disable', { label: 'EFER.SVME=0' });
  }

  /**
   * `__kvm_is_svm_supported()` (RFC `arch/x86/kvm/svm/vac.c`): vendor AMD or Hygon, CPUID SVM bit,
   * `VM_CR.SVMDIS` clear. The messages are Linux's `pr_err` texts.
   */
  unsupported(cpu: number): string | undefined {
    const c = this.#cpu('svm.unsupported', cpu);
    const vendor = c.readCpuid(0).ebx >>> 0;
    if (vendor !== VENDOR_EBX_AMD && vendor !== VENDOR_EBX_HYGON) return `CPU ${cpu} isn't AMD or Hygon`;
    if ((c.readCpuid(CPUID_EXT_FEATURES).ecx & CPUID_80000001_ECX_SVM) === 0) return `SVM not supported by CPU ${cpu}`;
    // (cc_platform_has(CC_ATTR_GUEST_MEM_ENCRYPT) — "KVM is unsupported when running as an SEV guest" — the
    // simulated host is never an SEV guest.)
    const vmCr = c.rdmsrSafe(_MSR_VM_CR) ?? 0n;
    if ((vmCr & _SVM_VM_CR_SVM_DIS_MASK) !== 0n) return `SVM disabled (by BIOS) in MSR_VM_CR on CPU ${cpu}`;
    return undefined;
  }

  /**
   * `svm_hardware_enable()` (RFC `arch/x86/kvm/svm/vac.c`): EFER.SVME already set → EBUSY (another
   * hypervisor, or an earlier enable, owns SVM); set EFER.SVME; `VM_HSAVE_PA = sd->save_area_pa`; emit
   * `virt:enable`. (The ASID state reset in between is VAC core's.)
   *
   * If the EFER write faults (an injected fault, or SVME being must-be-zero), Linux's `wrmsrl()` is an
   * unchecked write: `ex_handler_msr()` (`arch/x86/mm/extable.c`) logs "unchecked MSR access error: WRMSR
   * to 0xc0000080 (tried to write …)" once and execution goes on with SVME still clear — the enable would
   * "succeed" and the first VMRUN would #UD. The model logs the same warning (once per host) but returns
   * **EIO** with nothing changed, so VAC's all-or-nothing rollback sees the failure where it happened
   * (docs/spec.md §2.1: a per-CPU failure is logged as EIO).
   */
  enableCpu(cpu: number): ErrnoCode | undefined {
    const c = this.#cpu('svm.enableCpu', cpu);
    const svm = this.#svm;
    const efer = c.msrs.get(_MSR_EFER) ?? 0n; // rdmsrl(MSR_EFER, efer)
    if ((efer & _EFER_SVME) !== 0n) return 'EBUSY';
    const value = efer | _EFER_SVME;
    if (!svm.vacWriteEfer(cpu, value)) {
      if (!this.#uncheckedWrmsrWarned) {
        this.#uncheckedWrmsrWarned = true;
        const hex = value.toString(16).padStart(16, '0');
        this.#env.warn({
          source: 'kernel',
          cpu,
          message: `unchecked MSR access error: WRMSR to 0x${_MSR_EFER.toString(16)} (tried to write 0x${hex})`,
        });
      }
      return 'EIO';
    }
    if (!svm.vacWriteHsave(cpu, this.#saveArea[cpu] as bigint)) {
      // Cannot happen: the save area is page aligned and below MAXPHYADDR. Undo to stay atomic.
      svm.vacWriteEfer(cpu, efer);
      throw new UsageError('ERR_INVALID_STATE', `svm.enableCpu: CPU ${cpu} refused its host save area address`);
    }
    emitVirtEvent(this.#env.events, 'virt:enable', cpu);
    return undefined;
  }

  /**
   * `svm_hardware_disable()` → `kvm_cpu_svm_disable()`. It runs from an IPI: a CPU in guest mode takes a
   * `#VMEXIT` (`SVM_EXIT_INTR`) first.
   */
  disableCpu(cpu: number): void {
    this.#cpu('svm.disableCpu', cpu);
    this.#svm.forceVmexit(cpu, SVM_EXIT.INTR);
    this.#kvmCpuSvmDisable(cpu);
  }

  /**
   * `svm_emergency_disable()` → `kvm_cpu_svm_disable()` (setting `kvm_rebooting` is VAC core's). It runs from
   * the crash path's NMI: a CPU in guest mode takes a `#VMEXIT` (`SVM_EXIT_NMI`) first.
   */
  emergencyDisable(cpu: number): void {
    this.#cpu('svm.emergencyDisable', cpu);
    this.#svm.forceVmexit(cpu, SVM_EXIT.NMI);
    this.#kvmCpuSvmDisable(cpu);
  }

  /** Whether EFER.SVME is set on `cpu` (VAC's or a foreign hypervisor's). */
  isEnabled(cpu: number): boolean {
    this.#cpu('svm.isEnabled', cpu);
    return this.#svm.svme(cpu);
  }

  /** Whether VAC turned EFER.SVME on on `cpu` and has not turned it off since (VAC's claim on the CPU). */
  enabledByVac(cpu: number): boolean {
    return this.#svm.vacEnabled(cpu);
  }

  /** `per_cpu(svm_data, cpu).save_area_pa`: the host save area VAC's enable writes to `VM_HSAVE_PA`. */
  saveAreaPa(cpu: number): bigint {
    this.#cpu('svm.saveAreaPa', cpu);
    return this.#saveArea[cpu] as bigint;
  }

  /**
   * The ASID space from CPUID of `cpu` (default 0, the boot CPU, as `sev_hardware_setup()` reads it):
   * `nrAsids` = 0x8000000A.EBX; `maxSevAsid`/`minSevAsid` = 0x8000001F ECX/EDX when the SEV bit
   * (0x8000001F EAX bit 1) is set, else 0/0. Linux reads 0x8000000A.EBX per CPU in `svm_hardware_enable()`;
   * pass the CPU to get its own value.
   */
  asidSpace(cpu = 0): AsidSpace {
    const c = this.#cpu('svm.asidSpace', cpu);
    const nrAsids = c.readCpuid(SVM_CPUID_FUNC).ebx >>> 0;
    const hasLeaf = c.readCpuid(CPUID_EXT_MAX).eax >>> 0 >= SEV_CPUID_FUNC;
    const sev = hasLeaf ? c.readCpuid(SEV_CPUID_FUNC) : undefined;
    if (sev === undefined || (sev.eax & SEV_FEATURE.SEV) === 0) return { nrAsids, maxSevAsid: 0, minSevAsid: 0 };
    return { nrAsids, maxSevAsid: sev.ecx >>> 0, minSevAsid: sev.edx >>> 0 };
  }

  /**
   * `sev_flush_asids()` (`arch/x86/kvm/svm/sev.c`) minus locking: WBINVD on every online CPU, then the SEV
   * firmware's `DF_FLUSH`. `false` when `DF_FLUSH` failed. The {@link SevAsidAllocator}'s `onFlush` hook.
   */
  sevFlush(): boolean {
    return this.#svm.sevFlush();
  }

  /**
   * The resources VAC's SVM half brings (RFC `arch/x86/kvm/svm/vac.c`): the per-CPU ASID generations
   * ({@link AsidResource}) and, when CPUID reports SEV, the SEV ASID space ({@link SevAsidResource}, whose recycle
   * flushes through {@link VacSvm.sevFlush}). The ASID space is read from the boot CPU, as `sev_hardware_setup()`
   * and `svm_hardware_setup()` read it.
   */
  vacResources(ctx: VacResourceContext): readonly AnyVacResource[] {
    const space = this.asidSpace();
    const out: AnyVacResource[] = [new AsidResource(ctx, space.nrAsids, space.maxSevAsid)];
    if (space.maxSevAsid > 0) out.push(new SevAsidResource(space, () => this.sevFlush(), ctx.crossModuleMoves));
    return out;
  }

  /** `kvm_cpu_svm_disable()`: VM_HSAVE_PA = 0; if EFER.SVME: STGI (so INIT and NMI are not blocked), clear SVME. */
  #kvmCpuSvmDisable(cpu: number): void {
    const svm = this.#svm;
    svm.vacWriteHsave(cpu, 0n);
    const efer = (this.#cpus[cpu] as Cpu).msrs.get(_MSR_EFER) ?? 0n;
    if ((efer & _EFER_SVME) !== 0n) {
      svm.stgi(cpu);
      svm.vacWriteEfer(cpu, efer & ~_EFER_SVME);
      emitVirtEvent(this.#env.events, 'virt:disable', cpu);
    }
  }

  /** The CPU object, or a UsageError for a CPU number the host does not have (one array read when valid). */
  #cpu(who: string, cpu: number): Cpu {
    return cpuAt(who, this.#cpus, cpu);
  }
}
