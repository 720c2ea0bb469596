/**
 * The kernel's per-CPU list of loaded VMCSs (`loaded_vmcss_on_cpu`) and current VMCS (`current_vmcs`),
 * shared by every KVM module: the RFC moved both into VAC (patch 08, `arch/x86/kvm/vmx/vac.c`) so that
 * disabling a CPU VMCLEARs every module's VMCSs, and a vCPU migrating between CPUs is VMCLEARed where it was.
 *
 * The KVM module's VMX vCPU ops call {@link LoadedVmcsLists.vmcsLoad} on vcpu_load and
 * {@link LoadedVmcsLists.vmcsFree} when a vCPU (or a nested VMCS) goes away; VAC's disable path calls
 * {@link LoadedVmcsLists.clearLocal}, the crash path {@link LoadedVmcsLists.emergencyClear}.
 *
 * Instruction failures are handled as Linux's `vmx_asm1` wrappers do (`arch/x86/kvm/vmx/vmx_ops.h`): a
 * `VMfail` is `vmx_insn_failed` (a warning "vmclear failed: …" / "vmptrld failed: …"), a fault is
 * `kvm_spurious_fault()` (`BUG_ON(!kvm_rebooting)`: recorded as a warning unless the host is rebooting).
 *
 * @module
 */
import { checkCpuIndex } from '@vac/core/internal';
import type { HardwareEnv } from '@vac/core';
import { pageOf } from './vmx-cpu.js';
import type { Vmcs, VmxCpus, VmxOutcome, VmxPage } from './vmx-cpu.js';

/** The warning source of VAC's VMX half (the RFC's `kvm-vac` module). */
export const VAC_WARNING_SOURCE = 'vac';

/**
 * What {@link LoadedVmcsLists.vmcsLoad} found:
 * - `'already-loaded'`: the VMCS was already on this CPU's list (no VMCLEAR; VMPTRLD only if another VMCS
 *   became current meanwhile);
 * - `'first-load'`: it was on no list (new, or cleared by a CPU disable);
 * - `'migrated'`: it was on another CPU's list and was VMCLEARed there first.
 *
 * Anything but `'already-loaded'` is Linux's `!already_loaded`: the vCPU must flush all its EPTP/VPID contexts
 * before the next entry (`kvm_make_request(KVM_REQ_TLB_FLUSH, vcpu)`).
 */
export type VmcsLoadResult = 'already-loaded' | 'first-load' | 'migrated';

/** True for the outcomes that are faults (`'#UD'`, `'#GP'`). */
function isFault(outcome: VmxOutcome): boolean {
  return outcome === '#UD' || outcome === '#GP';
}

/**
 * Per-CPU `loaded_vmcss_on_cpu` lists and `current_vmcs` pointers of one host (RFC `arch/x86/kvm/vmx/vac.c`;
 * the functions are those of `arch/x86/kvm/vmx/vmx.c`).
 */
export class LoadedVmcsLists {
  readonly #env: HardwareEnv;
  readonly #vmx: VmxCpus;
  /** `per_cpu(loaded_vmcss_on_cpu, cpu)`, in insertion order (Linux's `list_add` puts new ones at the head). */
  readonly #lists: Array<Set<VmxPage> | undefined>;
  /** `per_cpu(current_vmcs, cpu)`: the kernel's idea of the CPU's current VMCS. */
  readonly #current: Array<VmxPage | null>;

  /**
   * @param env - the host (CPUs, warnings, `rebooting`)
   * @param vmx - the VMX instructions of the host's CPUs
   */
  constructor(env: HardwareEnv, vmx: VmxCpus) {
    this.#env = env;
    this.#vmx = vmx;
    this.#lists = new Array<Set<VmxPage> | undefined>(vmx.size).fill(undefined);
    this.#current = new Array<VmxPage | null>(vmx.size).fill(null);
  }

  #checkCpu(cpu: number): void {
    checkCpuIndex('vmx', cpu, this.#vmx.size);
  }

  #list(cpu: number): Set<VmxPage> {
    let list = this.#lists[cpu];
    if (list === undefined) {
      list = new Set<VmxPage>();
      this.#lists[cpu] = list;
    }
    return list;
  }

  /** `kvm_spurious_fault()` (RFC: moved to VAC): `BUG_ON(!kvm_rebooting)`, recorded instead of crashing. */
  #spuriousFault(cpu: number, insn: string, outcome: VmxOutcome): void {
    if (this.#env.rebooting) return;
    this.#env.warn({
      source: VAC_WARNING_SOURCE,
      cpu,
      message: `kernel BUG: kvm_spurious_fault: ${insn} faulted (${outcome}) on CPU ${cpu} while not rebooting`,
    });
  }

  /** Handle the outcome of a VMX instruction as `vmx_asm1` does. */
  #checked(cpu: number, insn: 'vmclear' | 'vmptrld', vmcs: VmxPage, outcome: VmxOutcome): void {
    if (outcome === 'VMsucceed') return;
    if (isFault(outcome)) {
      this.#spuriousFault(cpu, insn, outcome);
      return;
    }
    // vmclear_error / vmptrld_error → vmx_insn_failed("vmclear failed: %p/%llx\n", …)
    this.#env.warn({
      source: VAC_WARNING_SOURCE,
      cpu,
      message: `${insn} failed: VMCS #${vmcs.id} (${vmcs.owner}): ${outcome}`,
    });
  }

  /**
   * `__loaded_vmcs_clear` run on `cpu` (Linux `vmx.c`): if the VMCS is still on `cpu`'s list, forget it as
   * the current VMCS, VMCLEAR it, take it off the list, `loaded_vmcs->cpu = -1`.
   */
  #clearOn(cpu: number, vmcs: VmxPage): void {
    if (vmcs.loadedOn !== cpu) return; // "vcpu migration can race with cpu offline"
    if (this.#current[cpu] === vmcs) this.#current[cpu] = null;
    this.#checked(cpu, 'vmclear', vmcs, this.#vmx.vmclear(cpu, vmcs));
    this.#lists[cpu]?.delete(vmcs);
    vmcs.loadedOn = -1;
  }

  /**
   * Load a VMCS on `cpu`: the VMCS part of `vmx_vcpu_load_vmcs` (Linux `arch/x86/kvm/vmx/vmx.c`).
   * 1. If it is not on `cpu`'s list: `loaded_vmcs_clear` (VMCLEAR on the CPU whose list holds it, off that
   *    list), then add it to `cpu`'s list.
   * 2. If `per_cpu(current_vmcs, cpu)` is another VMCS: make this one current and VMPTRLD it.
   * 3. `loaded_vmcs->cpu = cpu`.
   *
   * A VMPTRLD that fails is reported as Linux does (warning) and the load goes on, as in Linux.
   * @returns whether it was already loaded here, loaded fresh, or migrated from another CPU
   */
  vmcsLoad(vmcs: Vmcs, cpu: number): VmcsLoadResult {
    // The common vcpu_load: this CPU's current VMCS, on its list, not freed — nothing to do. (`#current` only
    // ever holds pages of this machine that passed the checks below, so those checks are not repeated.)
    const current = this.#current[cpu];
    if (current === vmcs && current.loadedOn === cpu && !current.freed) return 'already-loaded';
    return this.#vmcsLoadHere(vmcs, cpu);
  }

  /** {@link LoadedVmcsLists.vmcsLoad} past its shortcut (kept apart so that the shortcut inlines into vcpu_load). */
  #vmcsLoadHere(vmcs: Vmcs, cpu: number): VmcsLoadResult {
    this.#checkCpu(cpu);
    const page = pageOf(this.#vmx, vmcs);
    const previous = page.loadedOn;
    const alreadyLoaded = previous === cpu;
    if (!alreadyLoaded) {
      if (previous !== -1) this.#clearOn(previous, page); // loaded_vmcs_clear: IPI to the old CPU
      this.#list(cpu).add(page); // list_add(&loaded_vmcs->loaded_vmcss_on_cpu_link, …)
    }
    if (this.#current[cpu] !== page) {
      this.#current[cpu] = page;
      this.#checked(cpu, 'vmptrld', page, this.#vmx.vmptrld(cpu, page)); // vmcs_load()
    }
    if (alreadyLoaded) return 'already-loaded';
    page.loadedOn = cpu;
    return previous === -1 ? 'first-load' : 'migrated';
  }

  /**
   * `loaded_vmcs_clear` (Linux `vmx.c`, exported by VAC in the RFC): VMCLEAR the VMCS on the CPU whose list
   * holds it and take it off that list. No-op when it is on no list.
   */
  vmcsClear(vmcs: Vmcs): void {
    const page = pageOf(this.#vmx, vmcs);
    if (page.loadedOn !== -1) this.#clearOn(page.loadedOn, page);
  }

  /** `free_loaded_vmcs` (Linux `vmx.c`): {@link LoadedVmcsLists.vmcsClear}, then free the VMCS. */
  vmcsFree(vmcs: Vmcs): void {
    this.vmcsClear(vmcs);
    this.#vmx.freeVmcs(vmcs);
  }

  /**
   * `vmclear_local_loaded_vmcss` (Linux `vmx.c`; VAC's disable path): `__loaded_vmcs_clear` every VMCS on
   * `cpu`'s list (newest first, as `list_for_each_entry_safe` walks a `list_add`ed list), leaving it empty.
   */
  clearLocal(cpu: number): void {
    this.#checkCpu(cpu);
    const list = this.#lists[cpu];
    if (list === undefined || list.size === 0) return;
    const newestFirst = [...list].reverse();
    for (const vmcs of newestFirst) this.#clearOn(cpu, vmcs);
  }

  /**
   * The loop of `vmx_emergency_disable` (Linux `vmx.c`, RFC `vmx/vac.c`): VMCLEAR every VMCS on `cpu`'s list
   * so its data reaches memory before VMXOFF. As in Linux, the list itself and `loaded_vmcs->cpu` are left
   * as they are, and faults are ignored (`kvm_rebooting` is set on this path).
   */
  emergencyClear(cpu: number): void {
    this.#checkCpu(cpu);
    const list = this.#lists[cpu];
    if (list === undefined) return;
    for (const vmcs of [...list].reverse()) this.#vmx.vmclear(cpu, vmcs);
  }

  /** The VMCSs on `cpu`'s `loaded_vmcss_on_cpu` list, newest first (Linux list order). */
  loaded(cpu: number): readonly Vmcs[] {
    this.#checkCpu(cpu);
    const list = this.#lists[cpu];
    return list === undefined ? [] : [...list].reverse();
  }

  /**
   * The live list of `cpu` (read-only view, insertion order). Invariant checks read it; a test may cast it to
   * `Set<Vmcs>` to corrupt it on purpose.
   */
  listOf(cpu: number): ReadonlySet<Vmcs> {
    this.#checkCpu(cpu);
    return this.#list(cpu);
  }

  /** `per_cpu(current_vmcs, cpu)`: the VMCS the kernel believes is current on `cpu`. */
  currentVmcs(cpu: number): Vmcs | undefined {
    this.#checkCpu(cpu);
    return this.#current[cpu] ?? undefined;
  }
}
