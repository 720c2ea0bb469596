/**
 * One vCPU's in-kernel local APIC, Linux's `struct kvm_lapic` (arch/x86/kvm/lapic.c): the register page as
 * `struct kvm_lapic_state` holds it, the APIC base MSR rules, interrupt acceptance (`__apic_accept_irq`),
 * priority (TPR/PPR), the highest pending vector and its acknowledgement, EOI, IPIs through the ICR, the LVTs
 * and the timer (`lapic-timer.ts`), xAPIC MMIO and x2APIC MSR access, and KVM_GET/SET_LAPIC.
 *
 * KVM's non-APICv path is modelled, caches included (`isr_count`, `highest_isr_cache`, `irr_pending`): they
 * are observable, e.g. KVM_SET_LAPIC computes PPR before it recounts the ISR, so the PPR it stores ignores the
 * ISR it just loaded (checked on a real /dev/kvm, see the fixture).
 *
 * @module
 */

import { ApicRegs, KVM_APIC_REG_SIZE } from './apic-regs.js';
import { icrToLapicIrq, type LapicIrq } from './apic-irq.js';
import {
  APIC_ARBPRI,
  APIC_DEFAULT_PHYS_BASE,
  APIC_DEST_SELF,
  APIC_DFR,
  APIC_DM_EXTINT,
  APIC_DM_FIXED,
  APIC_DM_INIT,
  APIC_DM_LOWEST,
  APIC_DM_NMI,
  APIC_DM_REMRD,
  APIC_DM_SMI,
  APIC_DM_STARTUP,
  APIC_EOI,
  APIC_ESR,
  APIC_ICR,
  APIC_ICR2,
  APIC_ICR_BUSY,
  APIC_ID,
  APIC_INPUT_POLARITY,
  APIC_IRR,
  APIC_ISR,
  APIC_LDR,
  APIC_LDR_MASK,
  APIC_LVR,
  APIC_LVR_DIRECTED_EOI,
  APIC_LVT0,
  APIC_LVT1,
  APIC_LVT_LEVEL_TRIGGER,
  APIC_LVT_MASKED,
  APIC_LVT_REMOTE_IRR,
  APIC_LVTCMCI,
  APIC_LVTERR,
  APIC_LVTPC,
  APIC_LVTT,
  APIC_LVTTHMR,
  APIC_MODE_MASK,
  APIC_PROCPRI,
  APIC_SELF_IPI,
  APIC_SEND_PENDING,
  APIC_SPIV,
  APIC_SPIV_APIC_ENABLED,
  APIC_SPIV_DIRECTED_EOI,
  APIC_TASKPRI,
  APIC_TDCR,
  APIC_TMCCT,
  APIC_TMICT,
  APIC_TMR,
  APIC_VECTOR_MASK,
  APIC_VERSION,
  APIC_BASE_MSR,
  APIC_BUS_CYCLE_NS_DEFAULT,
  KVM_APIC_MAX_NR_LVT_ENTRIES,
  LAPIC_MMIO_LENGTH,
  MCG_CMCI_P,
  MSR_IA32_APICBASE_BASE,
  MSR_IA32_APICBASE_BSP,
  MSR_IA32_APICBASE_ENABLE,
  X2APIC_ENABLE,
} from './constants.js';
import { KernelError, UsageError } from '@vac/core';
import { KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE } from '../abi/constants.js';
import { LapicTimer } from './lapic-timer.js';
import { DeviceClock } from './time.js';

/** `KVM_APIC_INIT` / `KVM_APIC_SIPI` bits of `apic->pending_events`. */
export const KVM_APIC_INIT = 0;
/** See {@link KVM_APIC_INIT}. */
export const KVM_APIC_SIPI = 1;

/** LVT indices (`enum lapic_lvt_entry`). */
const LVT_TIMER = 0;
const LVT_CMCI = 6;

const LVT_MASK = APIC_LVT_MASKED | APIC_SEND_PENDING | APIC_VECTOR_MASK;
const LINT_MASK = LVT_MASK | APIC_MODE_MASK | APIC_INPUT_POLARITY | APIC_LVT_REMOTE_IRR | APIC_LVT_LEVEL_TRIGGER;
/** `apic_lvt_mask[]`: the writable bits of each LVT. */
const LVT_WRITABLE = [LVT_MASK, LVT_MASK | APIC_MODE_MASK, LVT_MASK | APIC_MODE_MASK, LINT_MASK, LINT_MASK, LVT_MASK, LVT_MASK | APIC_MODE_MASK];

/** `APIC_LVTx(i)`. */
function lvtReg(i: number): number {
  return i === LVT_CMCI ? APIC_LVTCMCI : APIC_LVTT + 0x10 * i;
}

/** `get_lvt_index`. */
function lvtIndex(reg: number): number {
  if (reg === APIC_LVTCMCI) return LVT_CMCI;
  if (reg < APIC_LVTT || reg > APIC_LVTERR) return -1;
  return (reg - APIC_LVTT) >> 4;
}

/**
 * A set of APIC registers as `APIC_REG_MASK` bits (`reg >> 4`, 0–63) in two 32-bit words, low first: what
 * {@link KvmLapic.readableRegMask} is made of.
 */
type RegMask = readonly [number, number];

/** The {@link RegMask} of `regs`. */
function regMask(regs: readonly number[]): RegMask {
  let lo = 0;
  let hi = 0;
  for (const r of regs) {
    const i = r >> 4;
    if (i < 32) lo |= 1 << i;
    else hi |= 1 << (i - 32);
  }
  return [lo >>> 0, hi >>> 0];
}

/** Whether bit `i` (0–63) of `m` is set. */
function regMaskHas(m: RegMask, i: number): boolean {
  return i < 32 ? ((m[0] >>> i) & 1) !== 0 : ((m[1] >>> (i - 32)) & 1) !== 0;
}

/** `m` as the 64-bit mask. */
function regMaskBits(m: RegMask): bigint {
  return (BigInt(m[1]) << 32n) | BigInt(m[0]);
}

/** `enum lapic_mode`. */
export type LapicMode = 'disabled' | 'invalid' | 'xapic' | 'x2apic';

/** `kvm_apic_mode(apic_base)`. */
export function lapicModeOf(apicBase: bigint): LapicMode {
  const bits = apicBase & (MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE);
  if (bits === 0n) return 'disabled';
  if (bits === X2APIC_ENABLE) return 'invalid';
  return bits === MSR_IA32_APICBASE_ENABLE ? 'xapic' : 'x2apic';
}

/** What the LAPIC needs from its vCPU. */
export interface LapicVcpu {
  /** `vcpu->vcpu_id` (the x2APIC ID). */
  readonly vcpuId: number;
  /** `kvm_vcpu_is_reset_bsp`: whether this vCPU is the VM's boot vCPU (`bsp_vcpu_id`, 0 unless set). */
  isResetBsp(): boolean;
  /** The guest TSC at `now`. */
  guestTsc(now: bigint): bigint;
  /** `virtual_tsc_khz`. */
  tscKhz(): number;
  /** `kvm_inject_nmi` (queue an NMI, KVM_REQ_NMI). */
  injectNmi(): void;
  /** `kvm_inject_smi`; false if the vCPU cannot take one. */
  injectSmi(): boolean;
  /** KVM_REQ_EVENT (or KVM_REQ_UNBLOCK) + `kvm_vcpu_kick`: the vCPU has something new to look at. */
  kick(): void;
}

/** What the LAPIC needs from its VM. */
export interface LapicVm {
  /** `kvm_irq_delivery_to_apic(kvm, src, irq, NULL)` for an IPI. */
  sendIpi(src: KvmLapic, irq: LapicIrq, now: bigint): void;
  /** `kvm_ioapic_send_eoi`: the guest EOIed `vector` (the VM decides who handles it). */
  eoi(src: KvmLapic, vector: number, now: bigint): void;
  /** `kvm->arch.apic_map_dirty = DIRTY`: an ID, LDR, DFR, enable bit or mode changed. */
  mapChanged(): void;
  /** `vapics_in_nmi_mode` += `delta`. */
  nmiWatchdogChanged(delta: 1 | -1): void;
  /** `ioapic_in_kernel(kvm)`. */
  ioapicInKernel(): boolean;
  /** `kvm->arch.x2apic_format` (KVM_CAP_X2APIC_API with 32-bit APIC IDs). */
  readonly x2apicFormat: boolean;
}

/** Options fixed at creation. */
export interface LapicOptions {
  /** KVM_X86_QUIRK_LINT0_REENABLED (default on): the BSP's LINT0 comes out of reset as ExtINT. */
  readonly lint0Reenabled?: boolean;
  /** KVM_X86_QUIRK_LAPIC_MMIO_HOLE (default on): a disabled or x2APIC LAPIC's MMIO reads all-ones. */
  readonly mmioHole?: boolean;
  /** `kvm_x86_ops.x2apic_icr_is_split`: false on Intel (ICR is one 64-bit register at 0x300), true on AMD. */
  readonly x2apicIcrIsSplit?: boolean;
  /** `kvm->arch.apic_bus_cycle_ns` (default 1). */
  readonly busCycleNs?: number;
}

/** The guest-visible CPUID bits the LAPIC depends on (`kvm_vcpu_after_set_cpuid`). */
export interface LapicCpuid {
  /** CPUID.1:ECX.x2APIC. */
  readonly x2apic: boolean;
  /** CPUID.1:ECX.TSC_DEADLINE_TIMER. */
  readonly tscDeadline: boolean;
  /** MAXPHYADDR (bits above it are reserved in the APIC base MSR). */
  readonly maxPhyAddr: number;
}

/** KVM_SET_LAPIC's copy of the page it is given ({@link KvmLapic.setState}), one for every LAPIC: the work is synchronous. */
const SET_STATE_PAGE = new ApicRegs();

/** The registers `kvm_lapic_readable_reg_mask` always has (ISR, TMR and IRR all eight words each). */
const READABLE_ALWAYS: RegMask = regMask([
  APIC_ID, APIC_LVR, APIC_TASKPRI, APIC_PROCPRI, APIC_LDR, APIC_SPIV, APIC_ESR, APIC_ICR, APIC_LVTT, APIC_LVTTHMR,
  APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR, APIC_TMICT, APIC_TMCCT, APIC_TDCR,
  ...Array.from({ length: 8 }, (_, i) => [APIC_ISR + 0x10 * i, APIC_TMR + 0x10 * i, APIC_IRR + 0x10 * i]).flat(),
]);
/** With an LVT CMCI entry. */
const READABLE_WITH_CMCI: RegMask = regMask([APIC_LVTCMCI]);
/** Outside x2APIC mode. */
const READABLE_XAPIC_ONLY: RegMask = regMask([APIC_ARBPRI, APIC_DFR, APIC_ICR2]);

/** A vCPU's in-kernel local APIC. */
export class KvmLapic {
  /** The register page (`apic->regs`). */
  readonly regs = new ApicRegs();
  readonly vcpu: LapicVcpu;
  readonly #vm: LapicVm;
  readonly #opts: Required<LapicOptions>;
  readonly #clock = new DeviceClock();
  readonly timer: LapicTimer;
  /** `vcpu->arch.apic_base`. */
  #apicBase = MSR_IA32_APICBASE_ENABLE;
  /**
   * `MSR_IA32_APICBASE_ENABLE` of {@link KvmLapic.#apicBase}, kept with it by {@link KvmLapic.#setBase} (its one
   * writer): every entry asks, and a BigInt test allocates.
   */
  #hwEnabled = true;
  /** `apic->base_address`. */
  #baseAddress = 0n;
  /** `apic->sw_enabled`. */
  #swEnabled = false;
  #isrCount = 0;
  #highestIsrCache = -1;
  #irrPending = false;
  #lvt0InNmiMode = false;
  #nrLvtEntries = KVM_APIC_MAX_NR_LVT_ENTRIES - 1;
  #cpuid: LapicCpuid = { x2apic: false, tscDeadline: false, maxPhyAddr: 36 };
  /** `apic->pending_events` (INIT/SIPI bits). */
  pendingEvents = 0;
  /** `apic->sipi_vector`. */
  sipiVector = 0;
  /** `vcpu->arch.apic_arb_prio`. */
  arbPrio = 0;

  /** `kvm_create_lapic` followed by `kvm_lapic_reset(vcpu, false)`. */
  constructor(vcpu: LapicVcpu, vm: LapicVm, options: LapicOptions = {}) {
    this.vcpu = vcpu;
    this.#vm = vm;
    this.#opts = {
      lint0Reenabled: options.lint0Reenabled ?? true,
      mmioHole: options.mmioHole ?? true,
      x2apicIcrIsSplit: options.x2apicIcrIsSplit ?? false,
      busCycleNs: options.busCycleNs ?? APIC_BUS_CYCLE_NS_DEFAULT,
    };
    const self = this;
    this.timer = new LapicTimer({
      regs: this.regs,
      busCycleNs: this.#opts.busCycleNs,
      // Methods, not arrows: under tsx each arrow assigned to a property is also named at run time (`__name`).
      guestTsc(now) {
        return vcpu.guestTsc(now);
      },
      tscKhz() {
        return vcpu.tscKhz();
      },
      kickForTimer() {
        self.vcpu.kick();
      },
    });
    this.reset(false);
  }

  /* ---- state queries (lapic.h) ------------------------------------------------------------------------ */

  /** `vcpu->arch.apic_base`. */
  get apicBase(): bigint {
    return this.#apicBase;
  }

  /** `apic->base_address`: where the xAPIC MMIO page is. */
  get baseAddress(): bigint {
    return this.#baseAddress;
  }

  /** `kvm_apic_hw_enabled`. */
  get hwEnabled(): boolean {
    return this.#hwEnabled;
  }

  /** `kvm_apic_sw_enabled`. */
  get swEnabled(): boolean {
    return this.#swEnabled;
  }

  /** `apic_enabled`: hardware and software enabled. */
  get enabled(): boolean {
    return this.#swEnabled && this.hwEnabled;
  }

  /** `apic_x2apic_mode`. */
  get x2apicMode(): boolean {
    return (this.#apicBase & X2APIC_ENABLE) !== 0n;
  }

  /** `kvm_get_apic_mode`. */
  get mode(): LapicMode {
    return lapicModeOf(this.#apicBase);
  }

  /** `kvm_xapic_id`. */
  get xapicId(): number {
    return this.regs.get(APIC_ID) >>> 24;
  }

  /** `kvm_x2apic_id` (= vCPU id). */
  get x2apicId(): number {
    return this.vcpu.vcpuId;
  }

  /** `apic->lvt0_in_nmi_mode`. */
  get lvt0InNmiMode(): boolean {
    return this.#lvt0InNmiMode;
  }

  /** `kvm_apic_accept_pic_intr`: a disabled APIC, or LINT0 unmasked in ExtINT mode, passes the PIC through. */
  acceptsPicIntr(): boolean {
    if (!this.hwEnabled) return true;
    const lvt0 = this.regs.get(APIC_LVT0);
    return (lvt0 & APIC_LVT_MASKED) === 0 && ((lvt0 >> 8) & 7) === APIC_DM_EXTINT >> 8;
  }

  /** `kvm_apic_pending_eoi`: `vector` is in ISR or IRR. */
  pendingEoi(vector: number): boolean {
    return this.regs.testVector(APIC_ISR, vector) || this.regs.testVector(APIC_IRR, vector);
  }

  /* ---- reset and the APIC base MSR ------------------------------------------------------------------- */

  /** `kvm_lapic_reset(vcpu, init_event)`. */
  reset(initEvent: boolean): void {
    if (!initEvent) {
      let base = BigInt(APIC_DEFAULT_PHYS_BASE) | MSR_IA32_APICBASE_ENABLE;
      if (this.vcpu.isResetBsp()) base |= MSR_IA32_APICBASE_BSP;
      this.#setBase(base);
    }
    this.timer.cancelHrtimer();
    if (!initEvent) this.#setXapicId(this.vcpu.vcpuId);
    this.#setVersion();
    for (let i = 0; i < this.#nrLvtEntries; i++) this.regs.set(lvtReg(i), APIC_LVT_MASKED);
    this.timer.updateLvtt();
    if (this.vcpu.isResetBsp() && this.#opts.lint0Reenabled) this.regs.set(APIC_LVT0, APIC_DM_EXTINT);
    this.#manageNmiWatchdog(this.regs.get(APIC_LVT0));
    this.#setDfr(0xffffffff);
    this.#setSpiv(0xff);
    this.regs.set(APIC_TASKPRI, 0);
    if (!this.x2apicMode) this.#setLdr(0);
    this.regs.set(APIC_ESR, 0);
    if (!this.x2apicMode) {
      this.regs.set(APIC_ICR, 0);
      this.regs.set(APIC_ICR2, 0);
    } else {
      this.regs.set64(APIC_ICR, 0n);
    }
    this.regs.set(APIC_TDCR, 0);
    this.regs.set(APIC_TMICT, 0);
    for (let i = 0; i < 8; i++) {
      this.regs.set(APIC_IRR + 0x10 * i, 0);
      this.regs.set(APIC_ISR + 0x10 * i, 0);
      this.regs.set(APIC_TMR + 0x10 * i, 0);
    }
    this.#updateApicv();
    this.timer.updateDivideCount();
    this.timer.pending = 0;
    this.#updatePpr();
    this.arbPrio = 0;
  }

  /**
   * `kvm_vcpu_after_set_cpuid`'s APIC part: the timer modes the LVTT accepts, whether x2APIC may be enabled,
   * MAXPHYADDR; and `kvm_apic_set_version` (the directed-EOI bit depends on x2APIC).
   */
  setCpuid(cpuid: LapicCpuid): void {
    this.#cpuid = { ...cpuid };
    this.timer.modeMask = cpuid.tscDeadline ? 3 << 17 : 1 << 17;
    this.#setVersion();
  }

  /** `kvm_apic_after_set_mcg_cap`: MCG_CAP.CMCI_P adds (or removes) the CMCI LVT. */
  setMcgCap(mcgCap: bigint): void {
    const nr = KVM_APIC_MAX_NR_LVT_ENTRIES - ((mcgCap & MCG_CMCI_P) !== 0n ? 0 : 1);
    if (nr === this.#nrLvtEntries) return;
    for (let i = this.#nrLvtEntries; i < nr; i++) this.regs.set(lvtReg(i), APIC_LVT_MASKED);
    this.#nrLvtEntries = nr;
    this.#setVersion();
  }

  /**
   * Write the APIC base MSR (`kvm_apic_set_base` / `kvm_set_apic_base`). Returns false where Linux returns 1
   * (the caller injects #GP for a guest WRMSR, or fails KVM_SET_MSRS): reserved bits, x2APIC without the CPUID
   * bit, the invalid mode x2APIC-without-enable, and for the guest (`hostInitiated` false) x2APIC → xAPIC and
   * disabled → x2APIC.
   */
  setApicBase(value: bigint, hostInitiated: boolean): boolean {
    const oldMode = this.mode;
    const newMode = lapicModeOf(value);
    const reserved =
      (BigInt.asUintN(64, ~0n) << BigInt(this.#cpuid.maxPhyAddr)) |
      0x2ffn |
      (this.#cpuid.x2apic ? 0n : X2APIC_ENABLE);
    if ((BigInt.asUintN(64, value) & reserved) !== 0n || newMode === 'invalid') return false;
    if (!hostInitiated) {
      if (oldMode === 'x2apic' && newMode === 'xapic') return false;
      if (oldMode === 'disabled' && newMode === 'x2apic') return false;
    }
    this.#setBase(BigInt.asUintN(64, value));
    return true;
  }

  /** `kvm_lapic_set_base` / `__kvm_apic_set_base`. */
  #setBase(value: bigint): void {
    const old = this.#apicBase;
    this.#apicBase = value;
    this.#hwEnabled = (value & MSR_IA32_APICBASE_ENABLE) !== 0n;
    const changed = old ^ value;
    if (changed & MSR_IA32_APICBASE_ENABLE) {
      if (value & MSR_IA32_APICBASE_ENABLE) this.#setXapicId(this.vcpu.vcpuId);
      else this.#vm.mapChanged();
    }
    if (changed & X2APIC_ENABLE) {
      if (value & X2APIC_ENABLE) this.#setX2apicId();
      else if (value & MSR_IA32_APICBASE_ENABLE) this.#setXapicId(this.vcpu.vcpuId);
    }
    this.#baseAddress = value & MSR_IA32_APICBASE_BASE;
  }

  #setXapicId(id: number): void {
    this.regs.set(APIC_ID, (id & 0xff) << 24);
    this.#vm.mapChanged();
  }

  #setX2apicId(): void {
    const id = this.vcpu.vcpuId;
    this.regs.set(APIC_ID, id);
    this.regs.set(APIC_LDR, ((id >>> 4) << 16) | (1 << (id & 0xf)));
    this.#vm.mapChanged();
  }

  #setLdr(v: number): void {
    this.regs.set(APIC_LDR, v);
    this.#vm.mapChanged();
  }

  #setDfr(v: number): void {
    this.regs.set(APIC_DFR, v);
    this.#vm.mapChanged();
  }

  /** `kvm_apic_set_version`. */
  #setVersion(): void {
    let v = APIC_VERSION | ((this.#nrLvtEntries - 1) << 16);
    if (this.#cpuid.x2apic && !this.#vm.ioapicInKernel()) v |= APIC_LVR_DIRECTED_EOI;
    this.regs.set(APIC_LVR, v);
  }

  /** `apic_set_spiv`. */
  #setSpiv(val: number): void {
    const enabled = (val & APIC_SPIV_APIC_ENABLED) !== 0;
    this.regs.set(APIC_SPIV, val);
    if (enabled !== this.#swEnabled) {
      this.#swEnabled = enabled;
      this.#vm.mapChanged();
    }
  }

  /** `apic_manage_nmi_watchdog`. */
  #manageNmiWatchdog(lvt0: number): void {
    const nmi = (lvt0 & (APIC_MODE_MASK | APIC_LVT_MASKED)) === APIC_DM_NMI;
    if (nmi === this.#lvt0InNmiMode) return;
    this.#lvt0InNmiMode = nmi;
    this.#vm.nmiWatchdogChanged(nmi ? 1 : -1);
  }

  /** `kvm_apic_update_apicv` without APICv: recount the ISR, forget the caches. */
  #updateApicv(): void {
    this.#irrPending = true;
    this.#isrCount = this.regs.countVectors(APIC_ISR);
    this.#highestIsrCache = -1;
  }

  /* ---- IRR / ISR / PPR --------------------------------------------------------------------------------- */

  /** `apic_find_highest_irr` (honours the `irr_pending` hint as Linux does). */
  #highestIrr(): number {
    return this.#irrPending ? this.regs.highestVector(APIC_IRR) : -1;
  }

  /** `apic_clear_irr`. */
  #clearIrr(vector: number): void {
    this.#irrPending = false;
    this.regs.clearVector(APIC_IRR, vector);
    if (this.regs.highestVector(APIC_IRR) !== -1) this.#irrPending = true;
  }

  /** `apic_set_isr`. */
  #setIsr(vector: number): void {
    if (this.regs.testVector(APIC_ISR, vector)) return;
    this.regs.setVector(APIC_ISR, vector);
    this.#isrCount++;
    this.#highestIsrCache = vector;
  }

  /** `apic_find_highest_isr`. */
  #highestIsr(): number {
    if (this.#isrCount === 0) return -1;
    if (this.#highestIsrCache !== -1) return this.#highestIsrCache;
    return this.regs.highestVector(APIC_ISR);
  }

  /** `apic_clear_isr`. */
  #clearIsr(vector: number): void {
    if (!this.regs.testVector(APIC_ISR, vector)) return;
    this.regs.clearVector(APIC_ISR, vector);
    this.#isrCount--;
    this.#highestIsrCache = -1;
  }

  /** `__apic_update_ppr`: returns the new PPR and whether it went down. */
  #computePpr(): { ppr: number; lowered: boolean } {
    const old = this.regs.get(APIC_PROCPRI);
    const tpr = this.regs.get(APIC_TASKPRI);
    const isr = this.#highestIsr();
    const isrv = isr !== -1 ? isr : 0;
    const ppr = (tpr & 0xf0) >= (isrv & 0xf0) ? tpr & 0xff : isrv & 0xf0;
    if (old !== ppr) this.regs.set(APIC_PROCPRI, ppr);
    return { ppr, lowered: ppr < old };
  }

  /** `apic_has_interrupt_for_ppr`. */
  #interruptAbove(ppr: number): number {
    const irr = this.#highestIrr();
    return irr === -1 || (irr & 0xf0) <= ppr ? -1 : irr;
  }

  /** `apic_update_ppr`: a lowered PPR that uncovers an interrupt is a new event for the vCPU. */
  #updatePpr(): void {
    const { ppr, lowered } = this.#computePpr();
    if (lowered && this.#interruptAbove(ppr) !== -1) this.vcpu.kick();
  }

  /** `kvm_apic_has_interrupt`: the vector the APIC would deliver now, or -1 (needs only a hardware-enabled APIC). */
  hasInterrupt(): number {
    if (!this.hwEnabled) return -1;
    return this.#interruptAbove(this.#computePpr().ppr);
  }

  /** `kvm_get_apic_interrupt`: acknowledge the highest deliverable vector (IRR → ISR) and return it, or -1. */
  getInterrupt(): number {
    const vector = this.hasInterrupt();
    if (vector === -1) return -1;
    this.#clearIrr(vector);
    this.#setIsr(vector);
    this.#computePpr();
    return vector;
  }

  /**
   * `__apic_accept_irq`: a message reached this APIC. Returns 1 if taken (what delivery counts), 0 if
   * discarded (a disabled APIC drops fixed interrupts; level-triggered de-asserts are dropped).
   */
  acceptIrq(irq: LapicIrq, rtc?: Map<number, number>): number {
    switch (irq.deliveryMode) {
      case APIC_DM_LOWEST:
      case APIC_DM_FIXED: {
        if (irq.deliveryMode === APIC_DM_LOWEST) this.arbPrio++;
        if (irq.trigMode && !irq.level) return 0;
        if (!this.enabled) return 0;
        rtc?.set(this.vcpu.vcpuId, irq.vector);
        if (this.regs.testVector(APIC_TMR, irq.vector) !== (irq.trigMode === 1)) {
          if (irq.trigMode) this.regs.setVector(APIC_TMR, irq.vector);
          else this.regs.clearVector(APIC_TMR, irq.vector);
        }
        // kvm_x86_ops.deliver_interrupt → kvm_lapic_set_irr + KVM_REQ_EVENT + kick.
        this.regs.setVector(APIC_IRR, irq.vector);
        this.#irrPending = true;
        this.vcpu.kick();
        return 1;
      }
      case APIC_DM_REMRD:
        this.vcpu.kick(); // pv_unhalted
        return 1;
      case APIC_DM_SMI:
        if (!this.vcpu.injectSmi()) return 0;
        this.vcpu.kick();
        return 1;
      case APIC_DM_NMI:
        this.vcpu.injectNmi();
        this.vcpu.kick();
        return 1;
      case APIC_DM_INIT:
        if (irq.trigMode && !irq.level) return 0;
        this.pendingEvents = 1 << KVM_APIC_INIT;
        this.vcpu.kick();
        return 1;
      case APIC_DM_STARTUP:
        this.sipiVector = irq.vector;
        this.pendingEvents |= 1 << KVM_APIC_SIPI;
        this.vcpu.kick();
        return 1;
      default:
        return 0; // ExtINT reaches the CPU through kvm_cpu_has_extint, not here
    }
  }

  /** `kvm_apic_local_deliver`: deliver through an LVT (`reg` = APIC_LVTT, APIC_LVT0, …). */
  localDeliver(reg: number): number {
    const lvt = this.regs.get(reg);
    if (!this.hwEnabled || lvt & APIC_LVT_MASKED) return 0;
    const r = this.acceptIrq({
      vector: lvt & APIC_VECTOR_MASK,
      deliveryMode: lvt & APIC_MODE_MASK,
      destMode: 0,
      level: true,
      trigMode: lvt & APIC_LVT_LEVEL_TRIGGER ? 1 : 0,
      shorthand: 0,
      destId: 0,
      msiRedirHint: false,
    });
    // An Intel-compatible guest's PMI masks LVTPC (guest_cpuid_is_intel_compatible): assumed Intel here.
    if (r && reg === APIC_LVTPC) this.regs.set(APIC_LVTPC, lvt | APIC_LVT_MASKED);
    return r;
  }

  /** `apic_has_pending_timer`: an expiry waits and LVTT can deliver it. */
  hasPendingTimer(): boolean {
    return this.enabled && (this.regs.get(APIC_LVTT) & APIC_LVT_MASKED) === 0 && this.timer.pending > 0;
  }

  /** `kvm_inject_apic_timer_irqs`: deliver a pending timer expiry through LVTT. */
  injectPendingTimer(): void {
    if (this.timer.pending <= 0) return;
    this.localDeliver(APIC_LVTT);
    this.timer.delivered();
    this.timer.pending = 0;
  }

  /** `apic_set_eoi`: EOI the highest in-service vector; returns it, or -1 if none was in service. */
  #setEoi(now: bigint): number {
    const vector = this.#highestIsr();
    if (vector === -1) return -1;
    this.#clearIsr(vector);
    this.#updatePpr();
    this.#vm.eoi(this, vector, now);
    this.vcpu.kick();
    return vector;
  }

  /* ---- register access --------------------------------------------------------------------------------- */

  /** `kvm_lapic_readable_reg_mask`. */
  readableRegMask(): bigint {
    let mask = regMaskBits(READABLE_ALWAYS);
    if (this.#nrLvtEntries > LVT_CMCI) mask |= regMaskBits(READABLE_WITH_CMCI);
    if (!this.x2apicMode) mask |= regMaskBits(READABLE_XAPIC_ONLY);
    return mask;
  }

  /**
   * Whether {@link KvmLapic.readableRegMask} has `offset`'s register (`offset` ≤ 0x3f0), tested on the words: every
   * register read asks, and building the mask as a bigint cost ~1 µs.
   */
  #readable(offset: number): boolean {
    const i = offset >> 4;
    if (i < 0) return false;
    if (regMaskHas(READABLE_ALWAYS, i)) return true;
    if (this.#nrLvtEntries > LVT_CMCI && regMaskHas(READABLE_WITH_CMCI, i)) return true;
    return regMaskHas(READABLE_XAPIC_ONLY, i) && !this.x2apicMode;
  }

  /** `__apic_read`. */
  #read(offset: number, now: bigint): number {
    switch (offset) {
      case APIC_ARBPRI:
        return 0;
      case APIC_TMCCT:
        return this.timer.tmcct(now);
      case APIC_PROCPRI:
        this.#updatePpr();
        return this.regs.get(offset);
      default:
        return this.regs.get(offset);
    }
  }

  /**
   * `kvm_lapic_reg_read`: `len` (1, 2 or 4) bytes at `offset`, or `undefined` where Linux returns 1 (a read
   * crossing a register, beyond 0x3f0, or of a register not readable in the current mode).
   */
  readRegister(offset: number, len: number, now: bigint): number | undefined {
    this.#clock.see(now);
    const alignment = offset & 0xf;
    if (alignment + len > 4) return undefined;
    if (offset > 0x3f0 || !this.#readable(offset)) return undefined;
    const result = this.#read(offset & ~0xf, now);
    if (len !== 1 && len !== 2 && len !== 4) return 0;
    const shifted = result >>> (alignment * 8);
    return len === 4 ? shifted >>> 0 : shifted & ((1 << (len * 8)) - 1);
  }

  /**
   * `kvm_lapic_reg_write`: write a 32-bit register. Returns false where Linux returns 1 (#GP for an x2APIC
   * WRMSR): unknown or read-only registers, those of the other mode, an absent LVT.
   */
  writeRegister(reg: number, val: number, now: bigint): boolean {
    this.#clock.see(now);
    val >>>= 0;
    let ok = true;
    switch (reg) {
      case APIC_ID:
        if (!this.x2apicMode) this.#setXapicId(val >>> 24);
        else ok = false;
        break;
      case APIC_TASKPRI:
        this.regs.set(APIC_TASKPRI, val & 0xff);
        this.#updatePpr();
        break;
      case APIC_EOI:
        this.#setEoi(now);
        break;
      case APIC_LDR:
        if (!this.x2apicMode) this.#setLdr(val & APIC_LDR_MASK);
        else ok = false;
        break;
      case APIC_DFR:
        if (!this.x2apicMode) this.#setDfr((val | 0x0fffffff) >>> 0);
        else ok = false;
        break;
      case APIC_SPIV: {
        let mask = 0x3ff;
        if (this.regs.get(APIC_LVR) & APIC_LVR_DIRECTED_EOI) mask |= APIC_SPIV_DIRECTED_EOI;
        this.#setSpiv(val & mask);
        if (!(val & APIC_SPIV_APIC_ENABLED)) {
          for (let i = 0; i < this.#nrLvtEntries; i++) this.regs.set(lvtReg(i), this.regs.get(lvtReg(i)) | APIC_LVT_MASKED);
          this.timer.updateLvtt();
          this.timer.pending = 0;
        }
        break;
      }
      case APIC_ICR: {
        const low = val & ~APIC_ICR_BUSY;
        this.#vm.sendIpi(this, icrToLapicIrq(low, this.regs.get(APIC_ICR2), false), now);
        this.regs.set(APIC_ICR, low);
        break;
      }
      case APIC_ICR2:
        if (this.x2apicMode) ok = false;
        else this.regs.set(APIC_ICR2, val & 0xff000000);
        break;
      case APIC_LVT0:
      case APIC_LVTTHMR:
      case APIC_LVTPC:
      case APIC_LVT1:
      case APIC_LVTERR:
      case APIC_LVTCMCI: {
        if (reg === APIC_LVT0) this.#manageNmiWatchdog(val);
        const index = lvtIndex(reg);
        if (index >= this.#nrLvtEntries) {
          ok = false;
          break;
        }
        if (!this.#swEnabled) val |= APIC_LVT_MASKED;
        this.regs.set(reg, val & (LVT_WRITABLE[index] ?? 0));
        break;
      }
      case APIC_LVTT:
        if (!this.#swEnabled) val |= APIC_LVT_MASKED;
        this.regs.set(APIC_LVTT, val & ((LVT_WRITABLE[LVT_TIMER] ?? 0) | this.timer.modeMask));
        this.timer.updateLvtt();
        break;
      case APIC_TMICT:
        if (this.timer.isTscDeadline) break;
        this.timer.cancel();
        this.regs.set(APIC_TMICT, val);
        this.timer.start(now);
        break;
      case APIC_TDCR: {
        const old = this.timer.divideCount;
        this.regs.set(APIC_TDCR, val & 0xb);
        this.timer.updateDivideCount();
        this.timer.divisorChanged(now, old);
        break;
      }
      case APIC_ESR:
        if (this.x2apicMode && val !== 0) ok = false;
        break;
      case APIC_SELF_IPI:
        if (!this.x2apicMode || val & ~APIC_VECTOR_MASK) ok = false;
        else this.#vm.sendIpi(this, icrToLapicIrq(APIC_DEST_SELF | val, 0, true), now);
        break;
      default:
        ok = false;
    }
    return ok;
  }

  /** Whether `address` is in this APIC's MMIO page (`apic_mmio_in_range`). */
  mmioInRange(address: bigint): boolean {
    return address >= this.#baseAddress && address < this.#baseAddress + BigInt(LAPIC_MMIO_LENGTH);
  }

  /**
   * A guest MMIO read (`apic_mmio_read`): `undefined` if the address is not this APIC's (the access goes on to
   * user space); all-ones for a disabled or x2APIC-mode APIC (the MMIO-hole quirk); otherwise the register
   * bytes (0 where `kvm_lapic_reg_read` refuses, since the guest gets an untouched buffer).
   */
  mmioRead(address: bigint, len: number, now: bigint): number | undefined {
    if (!this.mmioInRange(address)) return undefined;
    this.#clock.see(now);
    if (!this.hwEnabled || this.x2apicMode) {
      if (!this.#opts.mmioHole) return undefined;
      return len >= 4 ? 0xffffffff : (1 << (len * 8)) - 1;
    }
    return this.readRegister(Number(address - this.#baseAddress), len, now) ?? 0;
  }

  /** A guest MMIO write (`apic_mmio_write`); `false` if not this APIC's address. Only aligned 4-byte writes act. */
  mmioWrite(address: bigint, len: number, value: number, now: bigint): boolean {
    if (!this.mmioInRange(address)) return false;
    this.#clock.see(now);
    if (!this.hwEnabled || this.x2apicMode) return this.#opts.mmioHole;
    const offset = Number(address - this.#baseAddress);
    if (len !== 4 || offset & 0xf) return true;
    this.writeRegister(offset & 0xff0, value, now);
    return true;
  }

  /** `kvm_x2apic_icr_read`. */
  #x2apicIcr(): bigint {
    if (this.#opts.x2apicIcrIsSplit) return BigInt(this.regs.get(APIC_ICR)) | (BigInt(this.regs.get(APIC_ICR2)) << 32n);
    return this.regs.get64(APIC_ICR);
  }

  /** `kvm_x2apic_msr_read`: RDMSR of 0x800-0x8ff; `undefined` means #GP. */
  readX2apicMsr(msr: number, now: bigint): bigint | undefined {
    if (!this.x2apicMode) return undefined;
    const reg = (msr - APIC_BASE_MSR) << 4;
    if (reg === APIC_ICR) return this.#x2apicIcr();
    const v = this.readRegister(reg, 4, now);
    return v === undefined ? undefined : BigInt(v);
  }

  /** `kvm_x2apic_msr_write`: WRMSR of 0x800-0x8ff; false means #GP. */
  writeX2apicMsr(msr: number, data: bigint, now: bigint): boolean {
    if (!this.x2apicMode) return false;
    const reg = (msr - APIC_BASE_MSR) << 4;
    if (reg === APIC_ICR) {
      // X2APIC_ICR_RESERVED_BITS: 31:20, 17:16, 13.
      const reserved = (0xfff00000n | 0x30000n | 0x2000n);
      if (data & reserved) return false;
      const icr = data & ~BigInt(APIC_ICR_BUSY);
      this.#clock.see(now);
      this.#vm.sendIpi(this, icrToLapicIrq(Number(icr & 0xffffffffn), Number(icr >> 32n), true), now);
      if (this.#opts.x2apicIcrIsSplit) {
        this.regs.set(APIC_ICR, Number(icr & 0xffffffffn));
        this.regs.set(APIC_ICR2, Number(icr >> 32n));
      } else {
        this.regs.set64(APIC_ICR, icr);
      }
      return true;
    }
    if (data >> 32n) return false;
    return this.writeRegister(reg, Number(data), now);
  }

  /** `kvm_lapic_set_tpr`: a MOV to CR8. */
  setCr8(cr8: bigint): void {
    this.regs.set(APIC_TASKPRI, Number((cr8 & 0x0fn) << 4n));
    this.#updatePpr();
  }

  /** `kvm_lapic_get_cr8`. */
  getCr8(): bigint {
    return BigInt(this.cr8());
  }

  /** CR8 as a number (TPR bits 7:4): what KVM_RUN's exit path writes into `kvm_run.cr8` without a BigInt. */
  cr8(): number {
    return (this.regs.get(APIC_TASKPRI) & 0xf0) >> 4;
  }

  /** `kvm_get_lapic_tscdeadline_msr`. */
  getTscDeadlineMsr(): bigint {
    if (!this.hwEnabled || !this.timer.isTscDeadline) return 0n;
    return this.timer.tscdeadline;
  }

  /** `kvm_set_lapic_tscdeadline_msr`: ignored unless the APIC is enabled in TSC-deadline mode. */
  setTscDeadlineMsr(value: bigint, now: bigint): void {
    this.#clock.see(now);
    if (!this.hwEnabled || !this.timer.isTscDeadline) return;
    this.timer.setTscDeadline(now, BigInt.asUintN(64, value));
  }

  /** Run the timer callbacks due by `now`. */
  advance(now: bigint): void {
    this.#clock.see(now);
    this.timer.advance(now);
  }

  /** When the timer fires next. */
  nextDeadline(): bigint | undefined {
    return this.timer.deadline();
  }

  /* ---- KVM_GET_LAPIC / KVM_SET_LAPIC ------------------------------------------------------------------- */

  /** `kvm_apic_state_fixup`: the x2APIC ID, LDR and ICR between KVM's form and user space's. */
  #fixup(regs: ApicRegs, set: boolean): boolean {
    if (!this.x2apicMode) return true;
    const id = this.x2apicId;
    if (this.#vm.x2apicFormat) {
      if (regs.get(APIC_ID) !== id) return false;
    } else {
      regs.set(APIC_ID, set ? id : (id << 24) >>> 0);
    }
    if (set) regs.set(APIC_LDR, ((id >>> 4) << 16) | (1 << (id & 0xf)));
    if (!this.#opts.x2apicIcrIsSplit) {
      if (set) regs.set64(APIC_ICR, BigInt(regs.get(APIC_ICR)) | (BigInt(regs.get(APIC_ICR2)) << 32n));
      else regs.set(APIC_ICR2, Number(regs.get64(APIC_ICR) >> 32n));
    }
    return true;
  }

  /** KVM_GET_LAPIC (`kvm_apic_get_state`): the 1 KiB page with TMCCT computed at `now`. */
  getState(now: bigint): Uint8Array {
    return this.getStateInto(new ApicRegs(), now).bytes;
  }

  /** {@link KvmLapic.getState} written into `out` (a page the caller reuses), which it returns. */
  getStateInto(out: ApicRegs, now: bigint): ApicRegs {
    this.#clock.see(now);
    out.load(this.regs.bytes);
    out.set(APIC_TMCCT, this.#read(APIC_TMCCT, now));
    this.#fixup(out, false);
    return out;
  }

  /**
   * KVM_SET_LAPIC (`kvm_apic_set_state`): load the page as Linux does — SPIV first, then the fixup, the copy,
   * the version recomputed, PPR recomputed (from the ISR count of the state being replaced: Linux recounts the
   * ISR only afterwards), the timer restarted from TMICT and the TMCCT given. In x2APIC mode with 32-bit IDs a
   * page whose ID is not the vCPU's is EINVAL — after SPIV was applied, as in Linux.
   */
  setState(page: Uint8Array, now: bigint): void {
    if (!(page instanceof Uint8Array) || page.length !== KVM_APIC_REG_SIZE) {
      throw new UsageError('ERR_INVALID_ARG', `kvm_lapic_state.regs must be a Uint8Array of ${String(KVM_APIC_REG_SIZE)} bytes`);
    }
    this.#clock.see(now);
    const s = SET_STATE_PAGE; // read once, fixed up, copied in: nothing keeps it
    s.load(page);
    this.#setSpiv(s.get(APIC_SPIV));
    if (!this.#fixup(s, true)) throw new KernelError('EINVAL', 'kvm_apic_set_state', 'x2APIC ID differs from the vCPU id');
    this.regs.load(s.bytes);
    this.#vm.mapChanged();
    this.#setVersion();
    this.#updatePpr();
    this.timer.cancel();
    this.timer.expiredTscdeadline = 0n;
    this.timer.updateLvtt();
    this.#manageNmiWatchdog(this.regs.get(APIC_LVT0));
    this.timer.updateDivideCount();
    this.timer.start(now, APIC_TMCCT);
    this.regs.set(APIC_TMCCT, 0);
    this.#updateApicv();
    this.vcpu.kick();
    this.arbPrio = 0;
  }

  /* ---- INIT and SIPI ------------------------------------------------------------------------------------- */

  /** `kvm_apic_has_pending_init_or_sipi`. */
  get hasPendingInitOrSipi(): boolean {
    return this.pendingEvents !== 0;
  }

  /**
   * `kvm_apic_accept_events` for a vCPU in `mpState` (a `KVM_MP_STATE_*`), outside SMM and VMX root mode: a
   * pending INIT resets this APIC (`kvm_lapic_reset(vcpu, true)`; the caller resets the rest of the vCPU) and
   * leaves the BSP runnable, an AP waiting for SIPI; a pending SIPI starts an AP that waits for one at
   * `sipiVector` (CS = vector << 8, IP = 0) and is dropped otherwise.
   */
  acceptEvents(mpState: number, isBsp: boolean): { init: boolean; mpState: number; sipiVector: number | undefined } {
    let state = mpState;
    let init = false;
    let sipiVector: number | undefined;
    if (this.pendingEvents & (1 << KVM_APIC_INIT)) {
      this.pendingEvents &= ~(1 << KVM_APIC_INIT);
      this.reset(true);
      init = true;
      state = isBsp ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_INIT_RECEIVED;
    }
    if (this.pendingEvents & (1 << KVM_APIC_SIPI)) {
      this.pendingEvents &= ~(1 << KVM_APIC_SIPI);
      if (state === KVM_MP_STATE_INIT_RECEIVED) {
        sipiVector = this.sipiVector;
        state = KVM_MP_STATE_RUNNABLE;
      }
    }
    return { init, mpState: state, sipiVector };
  }
}
