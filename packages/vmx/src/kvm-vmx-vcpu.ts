/**
 * The VMX vendor half of a vCPU inside one KVM module: what `vmx_vcpu_create`,
 * `vmx_vcpu_load`, `vmx_vcpu_put`, `vmx_vcpu_run` and `vmx_vcpu_free` (`arch/x86/kvm/vmx/vmx.c`) do, on top of
 * the Intel hardware model and VAC's shared VPID space and loaded-VMCS lists.
 *
 * The generic run loop (`@vac/kvm`, after `vcpu_enter_guest` in `arch/x86/kvm/x86.c`) calls, per pass,
 * {@link VmxVcpu.prepareEntry}, {@link VmxVcpu.enter} and, when the entry succeeded, {@link VmxVcpu.exit};
 * {@link VmxVcpu.load} / {@link VmxVcpu.put} at `vcpu_load` / `vcpu_put` (and when the thread is scheduled
 * in / out or migrates).
 *
 * @module
 */
import { UsageError, vcpuLabel } from '@vac/core';
import type { EventBus, UniqueId, VcpuTag, VendorVcpu } from '@vac/core';
import { INTEL_MSR, L1D_FLUSH, VMXERR_MESSAGE } from './arch.js';
import type { VmInstructionError } from './arch.js';
import type { VmxModuleContext } from './kvm-vmx-state.js';
import type { VmxVm } from './kvm-vmx-vm.js';
import type { Vmcs, VmxOutcome } from './vmx-cpu.js';

/** VMCS field encoding of the VM-instruction error (SDM Vol. 3C appendix B; Linux `VM_INSTRUCTION_ERROR`). */
const VM_INSTRUCTION_ERROR = 0x4400;
const L1D_FLUSH_N = BigInt(L1D_FLUSH);

/**
 * Per-vCPU counters of the VMX half (a plain record, so it also satisfies `VendorVcpu.stats`):
 * - `entries`: successful VM entries; `failedEntries`: VMLAUNCH/VMRESUME that failed or faulted
 *   (`KVM_EXIT_FAIL_ENTRY`); `exits`: VM exits;
 * - `vmlaunches`, `vmresumes`: successful entries by instruction;
 * - `l1dFlushes`: L1D flushes before an entry (Linux `vcpu->stat.l1d_flush`), whatever the method;
 * - `tlbFlushes`: every TLB flush done for this vCPU, the sum of `tlbFlushEptGlobal` (global INVEPT),
 *   `tlbFlushVpidAll` (all-context INVVPID), `tlbFlushVpidSingle` (single-context INVVPID) and
 *   `tlbFlushVpid0Entry` (entries with VPID 0, where the CPU flushes on entry and again on the exit);
 * - `vmcsMigrations`: loads that VMCLEARed the VMCS on another CPU first.
 */
export type VmxVcpuStats = {
  /** Successful VM entries. */
  readonly entries: number;
  /** Failed VM-entry instructions (VMfail or a fault). */
  readonly failedEntries: number;
  /** VM exits. */
  readonly exits: number;
  /** Successful VMLAUNCHes. */
  readonly vmlaunches: number;
  /** Successful VMRESUMEs. */
  readonly vmresumes: number;
  /** L1D flushes before an entry (`vcpu->stat.l1d_flush`). */
  readonly l1dFlushes: number;
  /** All TLB flushes of this vCPU (the four kinds below). */
  readonly tlbFlushes: number;
  /** Global INVEPTs (`ept_sync_global`, from `vmx_flush_tlb_all`). */
  readonly tlbFlushEptGlobal: number;
  /** All-context INVVPIDs (`vpid_sync_vcpu_global`). */
  readonly tlbFlushVpidAll: number;
  /** Single-context INVVPIDs (`vpid_sync_vcpu_single`). */
  readonly tlbFlushVpidSingle: number;
  /** VM entries with VPID 0: the CPU flushed VPID 0's mappings on entry and exit. */
  readonly tlbFlushVpid0Entry: number;
  /** Loads that found the VMCS on another CPU's list (VMCLEAR there, then VMPTRLD here). */
  readonly vmcsMigrations: number;
};

type MutableStats = { -readonly [K in keyof VmxVcpuStats]: number };

/** Emit a `tlb:flush` event (building it only when someone listens). */
function emitTlbFlush(events: EventBus, cpu: number, kind: string, module: string): void {
  const seq = events.stamp('tlb:flush');
  if (seq >= 0) events.deliver('tlb:flush', { seq, tick: events.tick, cpu, kind, module });
}

function isFault(outcome: VmxOutcome): boolean {
  return outcome === '#UD' || outcome === '#GP';
}

/**
 * A vCPU's VMX part (`struct vcpu_vmx`): its VPID, its VMCS (`vmcs01`, `struct loaded_vmcs`), the pending
 * TLB-flush request, the `l1tf_flush_l1d` flag and counters.
 */
export class VmxVcpu implements VendorVcpu {
  /** How VAC knows the vCPU. */
  readonly tag: VcpuTag;
  /** The VM it belongs to. */
  readonly vm: VmxVm;
  readonly #ctx: VmxModuleContext;
  readonly #vmcs: Vmcs;
  readonly #stats: MutableStats = {
    entries: 0,
    failedEntries: 0,
    exits: 0,
    vmlaunches: 0,
    vmresumes: 0,
    l1dFlushes: 0,
    tlbFlushes: 0,
    tlbFlushEptGlobal: 0,
    tlbFlushVpidAll: 0,
    tlbFlushVpidSingle: 0,
    tlbFlushVpid0Entry: 0,
    vmcsMigrations: 0,
  };
  #vpid: number;
  /** `loaded_vmcs->launched`: VMLAUNCH succeeded and no VMCLEAR since (then VMRESUME). */
  #launched = false;
  /** The CPU it is loaded on (between `load` and `put`), or -1. */
  #loadedOn = -1;
  /** `KVM_REQ_TLB_FLUSH` is pending (made by `vmx_vcpu_load_vmcs` on a first load or a migration). */
  #tlbFlushPending = false;
  /** `vcpu->arch.l1tf_flush_l1d`. */
  #l1tfFlushL1d = false;
  /** Between a successful `enter` and its `exit`. */
  #inGuest = false;
  #freed = false;

  /**
   * `vmx_vcpu_create` (`vmx.c`): `vmx->vpid = enable_vpid ? allocate_vpid() : 0` (RFC patch 14; VAC's shared
   * bitmap returns 0 when exhausted), then `alloc_loaded_vmcs(&vmx->vmcs01)` (a VMCS with the boot CPU's
   * revision id, launch state clear, loaded nowhere) and `init_vmcs`'s `vmcs_write16(VIRTUAL_PROCESSOR_ID,
   * vmx->vpid)`; VPID 0 leaves the "enable VPID" control clear.
   * @internal Built by the module's `createVcpu`.
   */
  constructor(ctx: VmxModuleContext, vm: VmxVm, tag: VcpuTag) {
    this.#ctx = ctx;
    this.vm = vm;
    this.tag = tag;
    this.#vpid = ctx.config.vpid ? ctx.vpids.allocate(tag) : 0;
    const vmcs = ctx.hw.allocVmcs(vcpuLabel(tag));
    vmcs.vpid = this.#vpid;
    this.#vmcs = vmcs;
  }

  /** `kvm0/vm1/vcpu0` (the VMCS's owner tag: one string for both). */
  get label(): string {
    return this.#vmcs.owner;
  }

  /** The VPID (0 = none: a `vpid=0` module, or VAC's space was exhausted). */
  get vpid(): number {
    return this.#vpid;
  }

  /** The VMCS (`vmx->loaded_vmcs->vmcs`). */
  get vmcs(): Vmcs {
    return this.#vmcs;
  }

  /** The CPU it is loaded on, or -1. */
  get loadedOn(): number {
    return this.#loadedOn;
  }

  /** Whether a TLB flush is pending for the next entry (`KVM_REQ_TLB_FLUSH`). */
  get tlbFlushPending(): boolean {
    return this.#tlbFlushPending;
  }

  /** `vcpu->arch.l1tf_flush_l1d`: the next entry flushes L1D in `cond` mode. */
  get l1tfFlushL1d(): boolean {
    return this.#l1tfFlushL1d;
  }

  /** Whether {@link VmxVcpu.free} ran. */
  get freed(): boolean {
    return this.#freed;
  }

  /** The counters (a live, read-only view). */
  get stats(): VmxVcpuStats {
    return this.#stats;
  }

  #live(op: string): void {
    if (this.#freed) throw this.#notOnCpu(op, -1);
  }

  /** Throw unless the vCPU is live and loaded on `cpu` (two compares on the entry path; the message is built apart). */
  #onCpu(op: string, cpu: number): void {
    if (this.#freed || this.#loadedOn !== cpu) throw this.#notOnCpu(op, cpu);
  }

  /** The misuse errors of the entry path, built out of line (they would cost the inlining of the entry). */
  #inGuestError(what: string, hint: string): UsageError {
    return new UsageError('ERR_INVALID_STATE', `vmx: ${what} ${this.label} while ${hint === '' ? 'already ' : ''}in guest mode${hint}`);
  }

  #notOnCpu(op: string, cpu: number): UsageError {
    if (this.#freed) return new UsageError('ERR_DESTROYED', `vmx: ${op} on freed vCPU ${this.label}`);
    return new UsageError('ERR_INVALID_STATE', 
      `vmx: ${op} of ${this.label} on CPU ${String(cpu)}, but it is ${this.#loadedOn < 0 ? 'not loaded' : `loaded on CPU ${this.#loadedOn}`}`,
    );
  }

  /**
   * `vcpu_load` on `cpu`: `kvm_arch_vcpu_load` (`arch/x86/kvm/x86.c`) sets `vcpu->arch.l1tf_flush_l1d`
   * ("if the vCPU is reloaded, i.e. if the vCPU is scheduled out or if KVM exits to userspace", the comment
   * in `vmx_l1d_flush`), then `vmx_vcpu_load` → `vmx_vcpu_load_vmcs`: through the shared loaded-VMCS lists,
   * VMCLEAR on the CPU that last had the VMCS (`loaded_vmcs_clear`, which also resets `launched`) and add it
   * to this CPU's list, VMPTRLD if it is not this CPU's current VMCS; if it was not already loaded here,
   * `kvm_make_request(KVM_REQ_TLB_FLUSH)` — "Flush all EPTP/VPID contexts, the new pCPU may have stale TLB
   * entries from its previous association with the vCPU".
   * @throws UsageError when the vCPU is freed or already loaded (put it first)
   */
  load(cpu: number): void {
    this.#live('load');
    if (this.#loadedOn >= 0) throw this.#alreadyLoaded(cpu);
    const result = this.#ctx.hw.vmcsLoad(this.#vmcs, cpu);
    if (result !== 'already-loaded') {
      this.#launched = false;
      this.#tlbFlushPending = true;
      if (result === 'migrated') this.#stats.vmcsMigrations++;
    }
    this.#l1tfFlushL1d = true;
    this.#loadedOn = cpu;
  }

  #alreadyLoaded(cpu: number): UsageError {
    return new UsageError('ERR_INVALID_STATE', `vmx: load of ${this.label} on CPU ${cpu} while loaded on CPU ${this.#loadedOn}`);
  }

  /**
   * `vcpu_put` from `cpu` (`vmx_vcpu_put`: posted-interrupt descriptor and host state; nothing the model
   * keeps). The VMCS stays active and on `cpu`'s loaded list — Linux VMCLEARs it only when the vCPU is next
   * loaded elsewhere, when the CPU's virtualization is turned off, or when the vCPU is freed.
   * @throws UsageError when the vCPU is not loaded on `cpu`
   */
  put(cpu: number): void {
    this.#onCpu('put', cpu);
    this.#inGuest = false;
    this.#loadedOn = -1;
  }

  /**
   * Everything `vcpu_enter_guest` does before VMLAUNCH/VMRESUME on `cpu`, in Linux's order:
   * 1. `kvm_service_local_tlb_flush_requests`: a pending `KVM_REQ_TLB_FLUSH` → `vmx_flush_tlb_all`: with EPT a
   *    global INVEPT (`ept_sync_global`); else with VPIDs an all-context INVVPID (`vpid_sync_vcpu_global`) or,
   *    when the CPU lacks it, a single-context INVVPID of the vCPU's VPID (`vpid_sync_vcpu_single`, a no-op for
   *    VPID 0); else nothing — the CPU flushes on every entry anyway.
   * 2. `vmx_vcpu_enter_exit` → `vmx_l1d_flush` per `l1tf_vmx_mitigation`: `always` every entry; `cond` only
   *    when `l1tf_flush_l1d` is set (then cleared); otherwise none. A flush writes `L1D_FLUSH` to IA32_FLUSH_CMD
   *    through the CPU's MSR (the hardware counts it) or, without `X86_FEATURE_FLUSH_L1D`, is the software
   *    fill; `vcpu->stat.l1d_flush` counts either.
   *
   * What sets `l1tf_flush_l1d` in the model: every {@link VmxVcpu.load} (Linux `kvm_arch_vcpu_load`), which
   * covers a return from user space (KVM_RUN loads the vCPU) and a sched-in. Linux also sets it in
   * `x86_emulate_instruction` and `kvm_write_guest_virt_system`, and the per-CPU `kvm_cpu_l1tf_flush_l1d`
   * from every interrupt entry (`DEFINE_IDTENTRY_IRQ` / `_SYSVEC`); the model's exits needing the emulator
   * (I/O, MMIO, HLT without an irqchip) all return to user space, so the reload covers them, and the end of a
   * time slice stands for an exit handled in KVM's fastpath without any host interrupt (e.g. the VMX-preemption
   * timer), which sets neither flag — so `cond` does not flush on a plain re-entry after a slice.
   * @throws UsageError when the vCPU is not loaded on `cpu` or is in guest mode
   */
  prepareEntry(cpu: number): void {
    this.#onCpu('prepareEntry', cpu);
    if (this.#inGuest) throw this.#inGuestError('prepareEntry of', ' (exit first)');
    if (this.#tlbFlushPending) {
      this.#tlbFlushPending = false;
      this.#flushTlbAll(cpu);
    }
    const cfg = this.#ctx.config;
    switch (cfg.l1tf) {
      case 'always':
        this.#l1dFlush(cpu);
        break;
      case 'cond': {
        const flush = this.#l1tfFlushL1d;
        this.#l1tfFlushL1d = false;
        if (flush) this.#l1dFlush(cpu);
        break;
      }
      default:
        break;
    }
  }

  /** `vmx_flush_tlb_all` (`vmx.c`) on `cpu`. */
  #flushTlbAll(cpu: number): void {
    const ctx = this.#ctx;
    const cfg = ctx.config;
    const vmx = ctx.hw.vmx;
    if (cfg.ept) {
      // ept_sync_global(): __invept(VMX_EPT_EXTENT_GLOBAL, 0, 0)
      if (this.#insn(cpu, 'invept', vmx.invept(cpu, 'global'), 'ext=0x2 eptp=0 gpa=0x0')) {
        this.#countFlush(cpu, 'tlbFlushEptGlobal', 'global');
      }
    } else if (cfg.vpid) {
      if (cfg.invvpidAllContext) {
        // vpid_sync_vcpu_global(): __invvpid(VMX_VPID_EXTENT_ALL_CONTEXT, 0, 0)
        if (this.#insn(cpu, 'invvpid', vmx.invvpid(cpu, 'all-context', 0), 'ext=0x2 vpid=0 gva=0x0')) {
          this.#countFlush(cpu, 'tlbFlushVpidAll', 'all-vpid');
        }
      } else if (this.#vpid !== 0) {
        // vpid_sync_vcpu_single(vmx->vpid): "if (vpid == 0) return;" (vpid02 of nested VMX: not modelled)
        const vpid = this.#vpid;
        if (this.#insn(cpu, 'invvpid', vmx.invvpid(cpu, 'single-context', vpid), `ext=0x1 vpid=${vpid} gva=0x0`)) {
          this.#countFlush(cpu, 'tlbFlushVpidSingle', 'vpid');
        }
      }
    }
  }

  #countFlush(cpu: number, counter: 'tlbFlushEptGlobal' | 'tlbFlushVpidAll' | 'tlbFlushVpidSingle' | 'tlbFlushVpid0Entry', kind: string): void {
    const s = this.#stats;
    s[counter]++;
    s.tlbFlushes++;
    emitTlbFlush(this.#ctx.events, cpu, kind, this.#ctx.module);
  }

  /**
   * The outcome of INVEPT / INVVPID as Linux's `vmx_asm2` wrappers handle it (`arch/x86/kvm/vmx/vmx_ops.h`):
   * a VMfail is `invept_error` / `invvpid_error` → `vmx_insn_failed` (WARN_ONCE); a fault is
   * `kvm_spurious_fault()` — `BUG_ON(!kvm_rebooting)`, silent once the host is rebooting.
   * @returns whether the instruction succeeded
   */
  #insn(cpu: number, insn: 'invept' | 'invvpid', outcome: VmxOutcome, operands: string): boolean {
    if (outcome === 'VMsucceed') return true;
    const ctx = this.#ctx;
    if (isFault(outcome)) {
      if (!ctx.vac.rebooting) ctx.warn(`kernel BUG: kvm_spurious_fault: ${insn} faulted (${outcome}) on CPU ${cpu} while not rebooting`, cpu);
      return false;
    }
    ctx.warnOnce(insn, `${insn} failed: ${operands} (${outcome})`, cpu);
    return false;
  }

  /** One flush of `vmx_l1d_flush` (`vmx.c`) on `cpu`. */
  #l1dFlush(cpu: number): void {
    const ctx = this.#ctx;
    this.#stats.l1dFlushes++; // vcpu->stat.l1d_flush++
    const ev = ctx.events;
    const seq = ev.stamp('l1d:flush');
    if (seq >= 0) ev.deliver('l1d:flush', { seq, tick: ev.tick, module: ctx.module, cpu });
    if (ctx.config.l1dFlushMethod !== 'msr') return; // the software fill: no MSR, nothing the hardware counts
    // native_wrmsrl(MSR_IA32_FLUSH_CMD, L1D_FLUSH): the IA32_FLUSH_CMD write hook counts `l1dFlush`.
    if (ctx.hostCpus[cpu]?.wrmsrSlot(ctx.flushCmd, L1D_FLUSH_N) === true) return;
    // A faulting unchecked WRMSR (a CPU without the MSR although the boot CPU has it): ex_handler_msr warns
    // once, "unchecked MSR access error".
    ctx.warnOnce(
      'flush_cmd',
      `unchecked MSR access error: WRMSR to 0x${INTEL_MSR.MSR_IA32_FLUSH_CMD.toString(16)} (tried to write 0x${L1D_FLUSH.toString(16).padStart(16, '0')}) on CPU ${cpu}`,
      cpu,
    );
  }

  /**
   * The VM-entry instruction on `cpu` (`__vmx_vcpu_run`, `arch/x86/kvm/vmx/vmenter.S`): VMRESUME when
   * `loaded_vmcs->launched`, else VMLAUNCH; a successful VMLAUNCH sets `launched` (`vmx_vcpu_run`).
   *
   * - Success → `undefined` (the guest runs until {@link VmxVcpu.exit}). With VPID 0 the CPU flushed VPID 0's
   *   mappings on the entry (and will on the exit): counted as `tlbFlushVpid0Entry` and a `tlb:flush` event
   *   of kind `'entry'` (the hardware counts `vpid0Flush`).
   * - VMfail → `vmx->fail`; `__vmx_handle_exit` reports `KVM_EXIT_FAIL_ENTRY` with
   *   `hardware_entry_failure_reason = vmcs_read32(VM_INSTRUCTION_ERROR)`: the error number of the current
   *   VMCS for VMfailValid; 0 for VMfailInvalid (no current VMCS: the VMREAD fails too, `vmread_error` →
   *   WARN_ONCE "vmread failed: field=4400"). `dump_vmcs` first: the rate-limited hint "set
   *   kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state." (once per module in the model), or with
   *   `dump_invalid_vmcs=Y` a dump line per failure.
   * - A fault (VMX is off on the CPU): with `kvm_rebooting` the asm treats it as a VM-Fail and the VMREAD of
   *   the error faults quietly (`kvm_spurious_fault`), so the reason is 0 and nothing is logged; otherwise it
   *   is the `ud2` after the rebooting check — a kernel BUG, recorded as a warning, reason 0.
   * @returns `undefined`, or the failure reason for `KVM_EXIT_FAIL_ENTRY`
   * @throws UsageError when the vCPU is not loaded on `cpu` or is already in guest mode
   */
  enter(cpu: number): bigint | undefined {
    this.#onCpu('enter', cpu);
    if (this.#inGuest) throw this.#inGuestError('enter of', '');
    const vmx = this.#ctx.hw.vmx;
    const launch = !this.#launched;
    const outcome = launch ? vmx.vmlaunch(cpu) : vmx.vmresume(cpu);
    if (outcome === 'VMsucceed') {
      const s = this.#stats;
      s.entries++;
      if (launch) {
        this.#launched = true;
        s.vmlaunches++;
      } else {
        s.vmresumes++;
      }
      if (this.#vmcs.vpid === 0) this.#countFlush(cpu, 'tlbFlushVpid0Entry', 'entry');
      this.#inGuest = true;
      return undefined;
    }
    return this.#entryFailed(cpu, launch ? 'vmlaunch' : 'vmresume', outcome);
  }

  #entryFailed(cpu: number, insn: 'vmlaunch' | 'vmresume', outcome: VmxOutcome): bigint {
    const ctx = this.#ctx;
    this.#stats.failedEntries++;
    if (isFault(outcome)) {
      if (!ctx.vac.rebooting) {
        ctx.warn(`kernel BUG: ${insn} faulted (${outcome}) on CPU ${cpu} while not rebooting (vmx_vmenter: ud2)`, cpu);
      }
      return 0n;
    }
    let error = 0;
    if (outcome === 'VMfailInvalid') {
      ctx.warnOnce('vmread', `vmread failed: field=${VM_INSTRUCTION_ERROR.toString(16)}`, cpu);
    } else {
      error = ctx.hw.vmx.currentVmcs(cpu)?.instructionError ?? 0;
    }
    // __vmx_handle_exit → dump_vmcs(vcpu)
    if (ctx.config.dumpInvalidVmcs) {
      const why = error === 0 ? 'no current VMCS' : `VM-instruction error ${error} (${VMXERR_MESSAGE[error as VmInstructionError] ?? 'unknown'})`;
      ctx.warn(`VMCS #${this.#vmcs.id} (${this.label}), last attempted VM-entry on CPU ${cpu}: ${insn} failed, ${why}`, cpu);
    } else {
      ctx.warnOnce('dump_vmcs', 'set kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state.', cpu);
    }
    return BigInt(error);
  }

  /**
   * The VM exit ending the pass entered with {@link VmxVcpu.enter} (counted). Which exit it was is the generic
   * loop's business; see {@link VmxVcpu.prepareEntry} for how exits feed the `cond` L1D flush.
   * @throws UsageError when the vCPU is not loaded on `cpu` or not in guest mode
   */
  exit(cpu: number): void {
    this.#onCpu('exit', cpu);
    if (!this.#inGuest) throw new UsageError('ERR_INVALID_STATE', `vmx: exit of ${this.label} without a successful enter`);
    this.#inGuest = false;
    this.#stats.exits++;
  }

  /** The TLB tag: the VPID (0 = none, also after {@link VmxVcpu.free}). */
  tlbTag(): { readonly kind: 'vpid'; readonly value: number } {
    return { kind: 'vpid', value: this.#vpid };
  }

  /** The VPID, when it has one: no two live vCPUs of any modules may share it (invariant 2). */
  uniqueIds(): readonly UniqueId[] {
    return this.#vpid === 0 ? [] : [{ kind: 'VPID', value: this.#vpid }];
  }

  /**
   * `vmx_vcpu_free` (`vmx.c`): `free_vpid(vmx->vpid)` (RFC patch 14: only with `enable_vpid`; VPID 0 is never
   * given back), then `free_loaded_vmcs(vmx->loaded_vmcs)`: VMCLEAR on the CPU whose loaded list holds the VMCS
   * (wherever that is; a fault while rebooting is tolerated), off the list, free.
   * @throws UsageError when called twice
   */
  free(): void {
    this.#live('free');
    const ctx = this.#ctx;
    if (this.#vpid !== 0) ctx.vpids.free(this.#vpid);
    this.#vpid = 0;
    ctx.hw.vmcsFree(this.#vmcs);
    this.#freed = true;
    this.#loadedOn = -1;
    this.#inGuest = false;
    this.#tlbFlushPending = false;
    ctx.vcpuFreed(this);
  }
}
