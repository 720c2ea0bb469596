/**
 * KVM_SET_GUEST_DEBUG (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl_set_guest_debug`) and what it makes KVM_RUN do: with
 * `KVM_GUESTDBG_ENABLE`,
 *
 * - `SINGLESTEP`: KVM_EXIT_DEBUG after every instruction (`debug.arch.exception` 1, `pc` the linear RIP of the next
 *   instruction, `dr6` = `DR6_BS | DR6_ACTIVE_LOW`, `dr7` the effective DR7) — also after one that exited to user space
 *   and was completed by the next KVM_RUN (an IN, an OUT: `kvm_skip_emulated_instruction` → `kvm_vcpu_do_singlestep`,
 *   what KVM_CAP_X86_ROBUST_SINGLESTEP promises). An instruction that exits itself (HLT, I/O, MMIO) reports that exit.
 * - `USE_SW_BP`: an INT3 (0xCC) exits before it executes with exception 3 and `pc` its linear address (the vendors'
 *   #BP intercept: `handle_exception_nmi`, `bp_interception`); `dr6`/`dr7` are not written.
 * - `USE_HW_BP`: `arch.debugreg[0..3]` and `[7]` replace the guest's DR0–DR3/DR7 (`eff_db`, `guest_debug_dr7`); an
 *   enabled instruction breakpoint (R/W 00) at the linear RIP exits before the instruction with exception 1 and `dr6`
 *   = `DR6_ACTIVE_LOW` with the matching B0–B3 bits — unless RFLAGS.RF is set, which suppresses it for one instruction.
 *   Data breakpoints (R/W 01, 11) are kept but never fire (the interpreter does not watch its accesses).
 * - `INJECT_DB` / `INJECT_BP`: queue #DB / #BP for the next entry (`kvm_queue_exception`): EBUSY while an exception is
 *   pending or injected. A #BP is a soft exception: delivered after a KVM_EXIT_DEBUG of an INT3 it returns past the
 *   INT3 (`event_exit_inst_len`).
 * - `BLOCKIRQ`: no new SMI, NMI or interrupt is injected while it is set (`kvm_check_and_inject_events` tests it after
 *   re-injecting an NMI or interrupt being injected — one KVM_INTERRUPT queued — and before the SMI); clearing it
 *   (any KVM_SET_GUEST_DEBUG: `kvm_set_rflags`) makes KVM_REQ_EVENT, so what it held is injected at the next entry.
 *
 * Without `KVM_GUESTDBG_ENABLE` the control is 0 (debugging off). Unknown control bits are accepted, as Linux does
 * (recorded: `vcpu.guest-debug.bad-control`).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import {
  KVM_GUESTDBG_BLOCKIRQ,
  KVM_GUESTDBG_ENABLE,
  KVM_GUESTDBG_INJECT_BP,
  KVM_GUESTDBG_INJECT_DB,
  KVM_GUESTDBG_SINGLESTEP,
  KVM_GUESTDBG_USE_HW_BP,
  KVM_GUESTDBG_USE_SW_BP,
  KVM_SET_GUEST_DEBUG,
} from '../abi/constants.js';
import { copyFromUser } from '../abi/codec.js';
import type { KvmRunView } from '../abi/kvm-run.js';
import { KVM_GUEST_DEBUG_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { vcpuArch } from './vcpu-arch.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import type { Vcpu } from './vcpu.js';

/** `KVM_GUESTDBG_VALID_MASK` (arch/x86/include/asm/kvm_host.h): what KVM_CAP_SET_GUEST_DEBUG2 answers. */
export const KVM_GUESTDBG_VALID_MASK =
  KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_HW_BP | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_INJECT_BP | KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_BLOCKIRQ;

/** `DR6_ACTIVE_LOW`: the DR6 bits that read 1 when nothing happened. */
const DR6_ACTIVE_LOW = 0xffff0ff0n;
/** `DR6_BS`: single step. */
const DR6_BS = 0x4000n;
/** `DB_VECTOR`, `BP_VECTOR`. */
const DB_VECTOR = 1;
const BP_VECTOR = 3;
/** RFLAGS.RF. */
const X86_EFLAGS_RF = 0x10000;

/** A vCPU's guest-debug state (`vcpu->guest_debug`, `arch.eff_db`, `arch.guest_debug_dr7`). */
export class GuestDebug {
  /** `vcpu->guest_debug`: the control, with `KVM_GUESTDBG_ENABLE` set. */
  readonly control: number;
  /** `eff_db`: the breakpoint addresses in force. */
  readonly effDb: readonly [bigint, bigint, bigint, bigint];
  /** `guest_debug_dr7` with USE_HW_BP, else the guest's DR7 (what `kvm_update_dr7` loads). */
  readonly dr7: bigint;
  /** Linear addresses of the enabled instruction breakpoints, by DR index (−1: none), for USE_HW_BP. */
  readonly #instructionBps: readonly number[];

  /** @param control - `kvm_guest_debug.control` with ENABLE set; `effDb` and `dr7` as {@link setGuestDebug} computed them */
  constructor(control: number, effDb: readonly [bigint, bigint, bigint, bigint], dr7: bigint) {
    this.control = control;
    this.effDb = effDb;
    this.dr7 = dr7;
    const bps: number[] = [];
    for (let i = 0; i < 4; i++) {
      const enabled = (dr7 >> BigInt(i * 2)) & 3n;
      const rw = (dr7 >> BigInt(16 + i * 4)) & 3n;
      bps.push((control & KVM_GUESTDBG_USE_HW_BP) !== 0 && enabled !== 0n && rw === 0n ? Number((effDb[i] ?? 0n) & 0xffff_ffffn) : -1);
    }
    this.#instructionBps = bps;
  }

  /** Single-stepping. */
  get singlestep(): boolean {
    return (this.control & KVM_GUESTDBG_SINGLESTEP) !== 0;
  }

  /** Interrupts and NMIs are not injected. */
  get blockIrq(): boolean {
    return (this.control & KVM_GUESTDBG_BLOCKIRQ) !== 0;
  }

  /**
   * What stops the guest before the instruction at linear address `lin` (`firstByte`: its first byte, or −1), or
   * `undefined`: an instruction breakpoint (#DB, reported with its DR6) unless `rf`, then an INT3 (#BP).
   */
  before(lin: number, firstByte: number, rf: boolean): { readonly exception: number; readonly dr6: bigint } | undefined {
    if (!rf) {
      let hits = 0n;
      for (let i = 0; i < 4; i++) if (this.#instructionBps[i] === lin) hits |= 1n << BigInt(i);
      if (hits !== 0n) return { exception: DB_VECTOR, dr6: DR6_ACTIVE_LOW | hits };
    }
    if ((this.control & KVM_GUESTDBG_USE_SW_BP) !== 0 && firstByte === 0xcc) return { exception: BP_VECTOR, dr6: 0n };
    return undefined;
  }

  /** A plain copy for `host.snapshot()`. */
  snapshot(): unknown {
    return { control: this.control, effDb: [...this.effDb], dr7: this.dr7 };
  }
}

/** The single-step #DB's DR6. */
export const SINGLESTEP_DR6 = DR6_ACTIVE_LOW | DR6_BS;

/** RFLAGS.RF is set in `eflags`. */
export function resumeFlag(eflags: number): boolean {
  return (eflags & X86_EFLAGS_RF) !== 0;
}

/** RFLAGS with RF cleared (the CPU clears it once an instruction completes). */
export function clearResumeFlag(eflags: number): number {
  return eflags & ~X86_EFLAGS_RF;
}

/**
 * KVM_EXIT_DEBUG in `run`: `exception`, `pc`, and — for a #DB — `dr6` and `dr7` (a #BP leaves them as they were:
 * `handle_exception_nmi` / `bp_interception` do not write them).
 */
export function writeDebugExit(run: KvmRunView, exception: number, pc: bigint, dr6: bigint, dr7: bigint): void {
  const d = run.debug;
  d.exception = exception;
  d.pc = pc;
  if (exception === DB_VECTOR) {
    d.dr6 = dr6;
    d.dr7 = dr7;
  }
}

/** `kvm_arch_vcpu_ioctl_set_guest_debug`. */
function setGuestDebug(v: Vcpu, arg: unknown): number {
  const op = 'KVM_SET_GUEST_DEBUG';
  const dbg = copyFromUser(KVM_GUEST_DEBUG_CODEC, arg, op);
  const arch = vcpuArch(v);
  const control = dbg.control >>> 0;
  if ((control & (KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP)) !== 0) {
    // kvm_is_exception_pending
    if (arch.exception.pending || arch.exception.injected) throw new KernelError('EBUSY', op, 'an exception is pending');
    arch.exception.pending = true;
    arch.exception.nr = (control & KVM_GUESTDBG_INJECT_DB) !== 0 ? DB_VECTOR : BP_VECTOR;
    arch.exception.hasErrorCode = false;
    arch.exception.errorCode = 0;
    arch.exception.hasPayload = false;
    arch.exception.payload = 0n;
  }
  // kvm_set_rflags at the end makes KVM_REQ_EVENT: events held by BLOCKIRQ (or a new #DB/#BP) are looked at again.
  makeRequest(v, VcpuRequest.Event);
  if ((control & KVM_GUESTDBG_ENABLE) === 0) {
    v.guestDebug = undefined;
    return 0;
  }
  const hw = (control & KVM_GUESTDBG_USE_HW_BP) !== 0;
  const r = dbg.arch.debugreg;
  const effDb: [bigint, bigint, bigint, bigint] = hw ? [r[0], r[1], r[2], r[3]] : [arch.db[0], arch.db[1], arch.db[2], arch.db[3]];
  v.guestDebug = new GuestDebug(control, effDb, hw ? r[7] : arch.dr7);
  return 0;
}

/** The guest-debug vCPU ioctl. */
export const VCPU_DEBUG_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_SET_GUEST_DEBUG',
    request: KVM_SET_GUEST_DEBUG,
    arg: { dir: 'in', codec: KVM_GUEST_DEBUG_CODEC },
    run: setGuestDebug,
  },
];
