/**
 * The x86 state of a vCPU beyond the registers the guest interpreter executes on (`struct kvm_vcpu_arch`,
 * arch/x86/include/asm/kvm_host.h): its CPUID, MSRs, FPU/XSAVE area and XCR0, pending events, multiprocessing
 * state, debug registers, TSC and machine-check banks — what the vCPU-state ioctls get and set, and what a VMM
 * saves to move a VM. Made when the vCPU is created (`kvm_arch_vcpu_create` + `kvm_vcpu_reset`).
 *
 * @module
 */
import { KVM_MP_STATE_RUNNABLE } from '../abi/constants.js';
import type { kvm_cpuid_entry2 } from '../abi/structs.js';
import type { Vcpu } from './vcpu.js';
import { MSR_PLATFORM_INFO_CPUID_FAULT, x86Caps } from './x86-caps.js';
import { bytesDigest } from './bytes-digest.js';
import { vendorArch } from './vendor-arch.js';
import { MsrWords } from './msr-words.js';
import { KeptAreas, RUN_AREAS, detachArea } from './kept-areas.js';

/** `KVM_MAX_MCE_BANKS`. */
const MCE_BANKS = 32;
/** The FPU image of a new vCPU: `sizeof(struct kvm_xsave)`. */
const FPU_BYTES = 4096;
/** `mce_banks`: four 64-bit MSRs per bank. */
const MCE_BANKS_BYTES = MCE_BANKS * 4 * 8;
/** `mci_ctl2_banks`: one 64-bit MSR per bank. */
const MCI_CTL2_BYTES = MCE_BANKS * 8;

/**
 * The areas of new vCPUs' FPU images and machine-check banks, zeroed. An area given back moves to a new buffer, so the
 * destroyed vCPU's views of it (its `VcpuArch`'s FPU image and banks) are detached, never the next vCPU's.
 */
const ARCH_AREAS = new KeptAreas(
  () => new ArrayBuffer(FPU_BYTES + MCE_BANKS_BYTES + MCI_CTL2_BYTES),
  (a) => new Uint8Array(a).fill(0),
  detachArea,
);

/** A queued exception (`struct kvm_queued_exception`). */
export interface QueuedException {
  /** Being delivered. */
  injected: boolean;
  /** Not yet delivered (KVM_CAP_EXCEPTION_PAYLOAD). */
  pending: boolean;
  /** Vector. */
  nr: number;
  /** Has an error code. */
  hasErrorCode: boolean;
  /** The error code. */
  errorCode: number;
  /** The payload (CR2 or DR6) is valid. */
  hasPayload: boolean;
  /** The payload. */
  payload: bigint;
}

/** `struct kvm_queued_interrupt`. */
export interface QueuedInterrupt {
  /** Being delivered. */
  injected: boolean;
  /** A software interrupt (INTn). */
  soft: boolean;
  /** Vector. */
  nr: number;
}

/** The kvmclock of a vCPU (`vcpu->arch.time`, `pv_time`). */
export interface PvClock {
  /** The value of MSR_KVM_SYSTEM_TIME(_NEW): the GPA of the `pvclock_vcpu_time_info`, bit 0 = enabled. */
  msr: bigint;
  /** Which MSR set it (the old or the new one). */
  msrIndex: number;
  /** `pv_time.active`. */
  active: boolean;
  /** The version last written (even). */
  version: number;
  /** `pvclock_set_guest_stopped_request`. */
  stoppedRequest: boolean;
}

/** The x86 state of one vCPU. */
export class VcpuArch {
  /** `cpuid_entries`, as KVM_SET_CPUID2 gave them. */
  cpuid: kvm_cpuid_entry2[] = [];
  /**
   * The FXSAVE/XSAVE image (user, non-compacted format): legacy area, XSAVE header, components. 4096 bytes
   * (`sizeof(struct kvm_xsave)`) until the vCPU's CPUID gives it dynamic features (AMX): then `fpu_uabi_size`.
   */
  fpu: Uint8Array<ArrayBuffer>;
  /** `guest_fpu.uabi_size`: what KVM_GET_XSAVE2 writes and KVM_SET_XSAVE reads. */
  fpuUabiSize = 4096;
  /** `guest_fpu.xfeatures`, its dynamic part: the dynamic features the guest FPU has room for (`fpstate_realloc`). */
  fpuXfeatures = 0n;
  /** `guest_fpu.perm`: the process's guest permissions when the vCPU was created. */
  fpuPerm = 0n;
  /** `guest_fpu.fpstate->user_xfeatures`: the features KVM_SET_XSAVE may load (`validate_user_xstate_header`). */
  fpuUserXfeatures = 0n;
  /** `guest_fpu.fpstate->xfd` (MSR_IA32_XFD). */
  xfd = 0n;
  /** `guest_fpu.xfd_err` (MSR_IA32_XFD_ERR). */
  xfdErr = 0n;
  /** The FPU state is hidden from the host (an SEV-ES guest's, `fpstate->is_confidential`). */
  readonly confidentialFpu: boolean;
  /** XCR0. */
  xcr0 = 1n;
  /** The queued exception. */
  readonly exception: QueuedException = { injected: false, pending: false, nr: 0, hasErrorCode: false, errorCode: 0, hasPayload: false, payload: 0n };
  /** The queued interrupt. */
  readonly interrupt: QueuedInterrupt = { injected: false, soft: false, nr: 0 };
  /** The interrupt shadow (`KVM_X86_SHADOW_INT_*`, as the vendor keeps it). */
  interruptShadow = 0;
  /** `nmi_injected`. */
  nmiInjected = false;
  /** `nmi_pending`. */
  nmiPending = 0;
  /** `nmi_queued`. */
  nmiQueued = 0;
  /** NMIs blocked. */
  nmiMasked = false;
  /**
   * `event_exit_inst_len`: the length of the instruction whose exit came last among those that set it (an INT3 under
   * KVM_GUESTDBG_USE_SW_BP), by which a re-injected soft exception (#BP, #OF) returns past it.
   */
  eventExitInstLen = 0;
  /** `smi_pending`: an SMI to take at the next entry the vendor allows it (`smm.ts`). */
  smiPending = false;
  /** `HF_SMM_INSIDE_NMI_MASK`: NMIs were already blocked when the vCPU entered SMM (RSM leaves them blocked). */
  smmInsideNmi = false;
  /** `smi_count`: SMIs taken. */
  smiCount = 0;
  /** `KVM_REQ_TRIPLE_FAULT` is pending. */
  tripleFault = false;
  /** `mp_state`. */
  mpState = KVM_MP_STATE_RUNNABLE;
  /** DR0–DR3. */
  readonly db: [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n];
  /** DR6 (`DR6_ACTIVE_LOW` at reset). */
  dr6 = 0xffff0ff0n;
  /** DR7 (`DR7_FIXED_1` at reset). */
  dr7 = 0x400n;
  /** PAE PDPTRs. */
  readonly pdptrs: [bigint, bigint, bigint, bigint] = [0n, 0n, 0n, 0n];
  /** The MSRs kept as plain values, by index. */
  readonly msrs = new Map<number, bigint>();
  /** `mcg_cap` (32 banks, no flags, until KVM_X86_SETUP_MCE). */
  mcgCap = BigInt(MCE_BANKS);
  /** `mcg_ctl`. */
  mcgCtl = 0n;
  /** `mcg_status`. */
  mcgStatus = 0n;
  /** `mcg_ext_ctl`. */
  mcgExtCtl = 0n;
  /** `mce_banks`: CTL, STATUS, ADDR, MISC of each bank. */
  readonly mceBanks: MsrWords;
  /** `mci_ctl2_banks`. */
  readonly mciCtl2: MsrWords;
  /** `virtual_tsc_khz`. */
  tscKhz: number;
  /** `l1_tsc_offset`: guest TSC = host TSC × ratio + offset. */
  tscOffset = 0n;
  /**
   * While a guest instruction asks for the TSC (`rdtsc`, RDMSR/WRMSR of IA32_TSC): how far the run has gone past the
   * host's clock, in ns (its earlier instructions, which the clock counts only after the run); 0 otherwise.
   */
  runAheadNs = 0n;
  /** `l1_tsc_scaling_ratio` as a rational of kHz (guest / host). */
  tscRatio: readonly [number, number] = [1, 1];
  /** `ia32_tsc_adjust_msr`. */
  tscAdjust = 0n;
  /** The signal mask KVM_RUN runs with (KVM_SET_SIGNAL_MASK), or `undefined`. */
  sigmask: bigint | undefined;
  /** KVM_SET_VAPIC_ADDR (`apic->vapic_addr`). */
  vapicAddr = 0;
  /** KVM_TPR_ACCESS_REPORTING (`tpr_access_reporting`). */
  tprAccessReporting = false;
  /** `enforce` of KVM_CAP_ENFORCE_PV_FEATURE_CPUID. */
  pvCpuidEnforce = false;
  /** kvmclock. */
  readonly pvclock: PvClock = { msr: 0n, msrIndex: 0, active: false, version: 0, stoppedRequest: false };
  /** `KVM_REQ_CLOCK_UPDATE` is pending. */
  clockUpdate = false;
  /** The memory of the FPU image (as made) and the machine-check banks, given back when the vCPU is destroyed. */
  readonly area: ArrayBuffer;
  /**
   * The KVM_CAP_X86_DISABLE_EXITS bits this vCPU runs with: the VM's when it was created (the vendor sets the HLT
   * intercept from `kvm_hlt_in_guest()` in `init_vmcs` / `init_vmcb`, once).
   */
  disabledExits = 0;

  /**
   * `kvm_arch_vcpu_create` + `kvm_vcpu_reset(vcpu, false)` for the generic state.
   * @param v - the vCPU
   * @param confidentialFpu - the VM is an SEV-ES guest
   */
  constructor(v: Vcpu, confidentialFpu: boolean) {
    const caps = x86Caps(v.vm.instance);
    // The FPU image and the machine-check banks share one allocation (each `ArrayBuffer` costs a microsecond or two
    // to make, outside V8's heap): the image first, at offset 0 (a grown image gets its own, `fpstate_realloc`).
    // A destroyed vCPU's area is taken back zeroed (`kept-areas.ts`).
    const area = ARCH_AREAS.take();
    this.area = area;
    this.fpu = new Uint8Array(area, 0, FPU_BYTES);
    this.mceBanks = new MsrWords(MCE_BANKS * 4, new Uint32Array(area, FPU_BYTES, MCE_BANKS * 8));
    this.mciCtl2 = new MsrWords(MCE_BANKS, new Uint32Array(area, FPU_BYTES + MCE_BANKS_BYTES, MCE_BANKS * 2));
    this.confidentialFpu = confidentialFpu;
    // fpstate_init_fx: FCW 0x37f, MXCSR_DEFAULT; the CPU's FXSAVE reports its MXCSR_MASK.
    const dv = new DataView(this.fpu.buffer);
    dv.setUint16(0, 0x37f, true);
    dv.setUint32(24, 0x1f80, true);
    dv.setUint32(28, vendorArch(v.vm.instance).fxsaveMxcsrMask, true);
    this.tscKhz = caps.tscKhz;
    // kvm_arch_vcpu_create / kvm_vcpu_reset: the MSRs KVM keeps as values.
    this.msrs.set(0x277, 0x0007040600070406n); // MSR_IA32_CR_PAT: MSR_IA32_CR_PAT_DEFAULT
    this.msrs.set(0x1a0, 0x1800n); // MSR_IA32_MISC_ENABLE: PEBS_UNAVAIL | BTS_UNAVAIL
    this.msrs.set(0x8b, 0x100000000n); // MSR_IA32_UCODE_REV: microcode_version
    this.msrs.set(0xce, MSR_PLATFORM_INFO_CPUID_FAULT); // MSR_PLATFORM_INFO
    this.msrs.set(0x10a, caps.archCapabilities); // MSR_IA32_ARCH_CAPABILITIES
    this.msrs.set(0x9e, 0x30000n); // MSR_IA32_SMBASE: vcpu->arch.smbase (smm.ts)
    for (const [index, spec] of vendorArch(v.vm.instance).vcpuMsrs) this.msrs.set(index, spec.reset);
  }

  /** A plain copy for `host.snapshot()`. */
  snapshot(): unknown {
    return {
      cpuid: this.cpuid.map((e) => ({ ...e })),
      fpu: bytesDigest(this.fpu),
      xcr0: this.xcr0,
      exception: { ...this.exception },
      interrupt: { ...this.interrupt },
      interruptShadow: this.interruptShadow,
      eventExitInstLen: this.eventExitInstLen,
      nmi: [this.nmiInjected, this.nmiPending, this.nmiQueued, this.nmiMasked],
      smi: [this.smiPending, this.smmInsideNmi, this.smiCount],
      tripleFault: this.tripleFault,
      mpState: this.mpState,
      debug: [...this.db, this.dr6, this.dr7],
      pdptrs: [...this.pdptrs],
      msrs: [...this.msrs],
      mce: [this.mcgCap, this.mcgCtl, this.mcgStatus, this.mcgExtCtl, this.mceBanks.toArray(), this.mciCtl2.toArray()],
      tsc: [this.tscKhz, this.tscOffset, this.tscRatio, this.tscAdjust],
      sigmask: this.sigmask,
      pvCpuidEnforce: this.pvCpuidEnforce,
      vapicAddr: this.vapicAddr,
      tprAccessReporting: this.tprAccessReporting,
      pvclock: { ...this.pvclock },
      clockUpdate: this.clockUpdate,
      disabledExits: this.disabledExits,
    };
  }
}

const ARCH = new WeakMap<Vcpu, VcpuArch>();

/**
 * `kvm_arch_vcpu_destroy`'s part here: a destroyed vCPU gives its `kvm_run` area and the area of its FPU image and
 * machine-check banks back for new vCPUs (`kept-areas.ts`).
 */
export function freeVcpuAreas(v: Vcpu): void {
  const a = ARCH.get(v);
  if (a !== undefined) ARCH_AREAS.give(a.area);
  if (v.runAllocated) RUN_AREAS.give(v.run);
}

/** The {@link VcpuArch} of a vCPU. */
export function vcpuArch(v: Vcpu): VcpuArch {
  let a = ARCH.get(v);
  if (a === undefined) {
    a = new VcpuArch(v, v.vm.vendor.encryption === 'sev-es');
    ARCH.set(v, a);
  }
  return a;
}
