/**
 * KVM_GET/SET_VCPU_EVENTS, KVM_GET/SET_MP_STATE and KVM_GET/SET_DEBUGREGS (arch/x86/kvm/x86.c
 * `kvm_vcpu_ioctl_x86_get_vcpu_events` / `_set_vcpu_events`, `kvm_arch_vcpu_ioctl_get_mpstate` / `_set_mpstate`,
 * `kvm_vcpu_ioctl_x86_get_debugregs` / `_set_debugregs`).
 *
 * The SMM fields of `kvm_vcpu_events` (`smi`, with KVM_VCPUEVENT_VALID_SMM) are the vCPU's SMM state (`smm.ts`): in
 * SMM, an SMI pending, NMIs blocked at the SMI, an INIT latched by the in-kernel LAPIC. Without an in-kernel LAPIC a
 * vCPU is always RUNNABLE.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import {
  KVM_GET_DEBUGREGS,
  KVM_GET_MP_STATE,
  KVM_GET_VCPU_EVENTS,
  KVM_MP_STATE_AP_RESET_HOLD,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_INIT_RECEIVED,
  KVM_MP_STATE_RUNNABLE,
  KVM_MP_STATE_SIPI_RECEIVED,
  KVM_MP_STATE_UNINITIALIZED,
  KVM_SET_DEBUGREGS,
  KVM_SET_MP_STATE,
  KVM_SET_VCPU_EVENTS,
} from '../abi/constants.js';
import {
  KVM_VCPUEVENT_VALID_NMI_PENDING,
  KVM_VCPUEVENT_VALID_PAYLOAD,
  KVM_VCPUEVENT_VALID_SHADOW,
  KVM_VCPUEVENT_VALID_SIPI_VECTOR,
  KVM_VCPUEVENT_VALID_SMM,
  KVM_VCPUEVENT_VALID_TRIPLE_FAULT,
} from '../abi/constants-x86.js';
import { copyFromUser, copyToUser } from '../abi/codec.js';
import { KVM_DEBUGREGS_CODEC, KVM_MP_STATE_CODEC, KVM_VCPU_EVENTS_CODEC, type kvm_vcpu_events } from '../abi/structs-x86.js';
import { KVM_APIC_INIT, KVM_APIC_SIPI } from '../irqchip/lapic.js';
import { processSmi, smmChanged } from './smm.js';
import type { IoctlDef } from './ioctl-table.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import { VcpuRequest, makeRequest, processNmi } from './vcpu-requests.js';
import type { Vcpu } from './vcpu.js';
import { vmArch } from './vm-arch.js';
import { vendorArch } from './vendor-arch.js';

const NMI_VECTOR = 2;
const BP_VECTOR = 3;
const OF_VECTOR = 4;

/** `kvm_vcpu_ioctl_x86_get_vcpu_events`. */
export function getVcpuEvents(v: Vcpu): kvm_vcpu_events {
  const arch = vcpuArch(v);
  const vm = vmArch(v.vm);
  processNmi(arch);
  const ev = KVM_VCPU_EVENTS_CODEC.zero();
  const ex = arch.exception;
  // Software exceptions (#BP, #OF) are not reported as injected or pending: their instruction is re-executed.
  if (ex.nr !== BP_VECTOR && ex.nr !== OF_VECTOR) {
    ev.exception.injected = ex.injected ? 1 : 0;
    ev.exception.pending = ex.pending ? 1 : 0;
    // Without KVM_CAP_EXCEPTION_PAYLOAD pending and injected are conflated.
    if (!vm.exceptionPayload && ex.pending) ev.exception.injected = 1;
  }
  ev.exception.nr = ex.nr;
  ev.exception.has_error_code = ex.hasErrorCode ? 1 : 0;
  ev.exception.error_code = ex.errorCode;
  ev.exception_has_payload = ex.hasPayload ? 1 : 0;
  ev.exception_payload = ex.payload;
  ev.interrupt.injected = arch.interrupt.injected && !arch.interrupt.soft ? 1 : 0;
  ev.interrupt.nr = arch.interrupt.nr;
  // get_interrupt_shadow: the shadow the guest is in now (an STI or MOV SS it just executed, or one set here).
  ev.interrupt.shadow = vendorArch(v.vm.instance).normalizeInterruptShadow(v.regs.interruptShadow);
  ev.nmi.injected = arch.nmiInjected ? 1 : 0;
  ev.nmi.pending = arch.nmiPending;
  ev.nmi.masked = arch.nmiMasked ? 1 : 0;
  ev.smi.smm = v.smm ? 1 : 0;
  // A KVM_SMI not yet looked at is pending too (the GET ioctl makes it so: process_smi).
  ev.smi.pending = arch.smiPending || (v.requests & VcpuRequest.Smi) !== 0 ? 1 : 0;
  ev.smi.smm_inside_nmi = arch.smmInsideNmi ? 1 : 0;
  ev.smi.latched_init = latchedInit(v) ? 1 : 0;
  ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
  if (vm.exceptionPayload) ev.flags |= KVM_VCPUEVENT_VALID_PAYLOAD;
  if (vm.tripleFaultEvent) {
    ev.triple_fault.pending = arch.tripleFault ? 1 : 0;
    ev.flags |= KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
  }
  return ev;
}

/** `kvm_lapic_latched_init`: an INIT the in-kernel LAPIC holds (latched while the vCPU is in SMM). */
function latchedInit(v: Vcpu): boolean {
  const lapic = v.intr?.chip?.lapic;
  return lapic !== undefined && (lapic.pendingEvents & (1 << KVM_APIC_INIT)) !== 0;
}

/** The KVM_VCPUEVENT_VALID_SMM part of `kvm_vcpu_ioctl_x86_set_vcpu_events`. */
function setSmiEvents(v: Vcpu, smi: kvm_vcpu_events['smi']): void {
  const arch = vcpuArch(v);
  if (v.smm !== (smi.smm !== 0)) smmChanged(v, smi.smm !== 0);
  arch.smiPending = smi.pending !== 0;
  if (smi.smm !== 0) arch.smmInsideNmi = smi.smm_inside_nmi !== 0;
  // sipi_vector and smi.latched_init need an in-kernel LAPIC.
  const lapic = v.intr?.chip?.lapic;
  if (lapic === undefined) return;
  if (smi.latched_init !== 0) lapic.pendingEvents |= 1 << KVM_APIC_INIT;
  else lapic.pendingEvents &= ~(1 << KVM_APIC_INIT);
}

/**
 * `kvm_vcpu_ioctl_x86_set_vcpu_events`: `events` is left as it was (a copy is worked on) unless `ownCopy` says it is
 * the kernel's own copy already (KVM_SET_VCPU_EVENTS's `copy_from_user`), which is then used as it is.
 * @throws KernelError EINVAL, with nothing changed
 */
export function setVcpuEvents(v: Vcpu, events: kvm_vcpu_events, op: string, ownCopy = false): void {
  const vm = vmArch(v.vm);
  const ev = ownCopy ? events : KVM_VCPU_EVENTS_CODEC.clone(events);
  const valid =
    KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
  if ((ev.flags & ~valid) !== 0) throw new KernelError('EINVAL', op, `unknown flags 0x${ev.flags.toString(16)}`);
  if ((ev.flags & KVM_VCPUEVENT_VALID_PAYLOAD) !== 0) {
    if (!vm.exceptionPayload) throw new KernelError('EINVAL', op, 'KVM_VCPUEVENT_VALID_PAYLOAD needs KVM_CAP_EXCEPTION_PAYLOAD');
    if (ev.exception.pending !== 0) ev.exception.injected = 0;
    else ev.exception_has_payload = 0;
  } else {
    ev.exception.pending = 0;
    ev.exception_has_payload = 0;
  }
  if ((ev.exception.injected !== 0 || ev.exception.pending !== 0) && (ev.exception.nr > 31 || ev.exception.nr === NMI_VECTOR)) {
    throw new KernelError('EINVAL', op, `exception vector ${ev.exception.nr} cannot be queued`);
  }
  // INITs are latched while in SMM: a vCPU waiting for SIPI cannot be put in SMM or given an SMI.
  if ((ev.flags & KVM_VCPUEVENT_VALID_SMM) !== 0 && (ev.smi.smm !== 0 || ev.smi.pending !== 0) && vcpuArch(v).mpState === KVM_MP_STATE_INIT_RECEIVED) {
    throw new KernelError('EINVAL', op, 'a vCPU in INIT_RECEIVED cannot be in SMM or have an SMI pending');
  }
  if ((ev.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT) !== 0 && !vm.tripleFaultEvent) {
    throw new KernelError('EINVAL', op, 'KVM_VCPUEVENT_VALID_TRIPLE_FAULT needs KVM_CAP_X86_TRIPLE_FAULT_EVENT');
  }
  const arch = vcpuArch(v);
  processNmi(arch);
  const ex = arch.exception;
  ex.injected = ev.exception.injected !== 0;
  ex.pending = ev.exception.pending !== 0;
  ex.nr = ev.exception.nr;
  ex.hasErrorCode = ev.exception.has_error_code !== 0;
  ex.errorCode = ev.exception.error_code;
  ex.hasPayload = ev.exception_has_payload !== 0;
  ex.payload = ev.exception_payload;
  arch.interrupt.injected = ev.interrupt.injected !== 0;
  arch.interrupt.nr = ev.interrupt.nr;
  arch.interrupt.soft = ev.interrupt.soft !== 0;
  if ((ev.flags & KVM_VCPUEVENT_VALID_SHADOW) !== 0) {
    // set_interrupt_shadow: the guest's next instruction runs in it (no interrupt or NMI before it).
    arch.interruptShadow = vendorArch(v.vm.instance).normalizeInterruptShadow(ev.interrupt.shadow);
    v.regs.interruptShadow = arch.interruptShadow;
  }
  arch.nmiInjected = ev.nmi.injected !== 0;
  if ((ev.flags & KVM_VCPUEVENT_VALID_NMI_PENDING) !== 0) {
    arch.nmiPending = 0;
    arch.nmiQueued = ev.nmi.pending;
    if (ev.nmi.pending !== 0) makeRequest(v, VcpuRequest.Nmi);
  }
  arch.nmiMasked = ev.nmi.masked !== 0;
  if ((ev.flags & KVM_VCPUEVENT_VALID_SMM) !== 0) setSmiEvents(v, ev.smi);
  if ((ev.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT) !== 0) arch.tripleFault = ev.triple_fault.pending !== 0;
  makeRequest(v, VcpuRequest.Event);
  if (arch.tripleFault) makeRequest(v, VcpuRequest.TripleFault);
}

/** The event, multiprocessing-state and debug-register ioctls. */
export const VCPU_EVENTS_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_VCPU_EVENTS',
    request: KVM_GET_VCPU_EVENTS,
    arg: { dir: 'out', codec: KVM_VCPU_EVENTS_CODEC },
    run(v, arg) {
      copyToUser(KVM_VCPU_EVENTS_CODEC, getVcpuEvents(v), arg, 'KVM_GET_VCPU_EVENTS');
      // kvm_vcpu_ioctl_x86_get_vcpu_events: KVM_REQ_SMI becomes smi_pending (process_smi). Linux does it before the copy
      // and keeps it after an EFAULT; the model only after a successful copy, so a failed call changes nothing.
      if ((v.requests & VcpuRequest.Smi) !== 0) processSmi(v);
      return 0;
    },
  },
  {
    name: 'KVM_SET_VCPU_EVENTS',
    request: KVM_SET_VCPU_EVENTS,
    arg: { dir: 'in', codec: KVM_VCPU_EVENTS_CODEC },
    run(v, arg) {
      setVcpuEvents(v, copyFromUser(KVM_VCPU_EVENTS_CODEC, arg, 'KVM_SET_VCPU_EVENTS'), 'KVM_SET_VCPU_EVENTS', true);
      return 0;
    },
  },
  {
    name: 'KVM_GET_MP_STATE',
    request: KVM_GET_MP_STATE,
    arg: { dir: 'out', codec: KVM_MP_STATE_CODEC },
    run(v, arg) {
      // kvm_arch_vcpu_ioctl_get_mpstate: a pending INIT/SIPI is accepted first (kvm_apic_accept_events). A vCPU
      // blocked in the kernel on HLT (with KVM_CREATE_IRQCHIP) is HALTED.
      v.intr?.acceptEvents();
      const state = v.blockedOn >= 0 ? KVM_MP_STATE_HALTED : vcpuArch(v).mpState;
      copyToUser(KVM_MP_STATE_CODEC, { mp_state: state }, arg, 'KVM_GET_MP_STATE');
      return 0;
    },
  },
  {
    name: 'KVM_SET_MP_STATE',
    request: KVM_SET_MP_STATE,
    arg: { dir: 'in', codec: KVM_MP_STATE_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_MP_STATE';
      const { mp_state } = copyFromUser(KVM_MP_STATE_CODEC, arg, op);
      // kvm_arch_vcpu_ioctl_set_mpstate
      const lapic = v.intr?.chip?.lapic;
      switch (mp_state) {
        case KVM_MP_STATE_RUNNABLE:
          break;
        case KVM_MP_STATE_UNINITIALIZED:
        case KVM_MP_STATE_HALTED:
        case KVM_MP_STATE_AP_RESET_HOLD:
        case KVM_MP_STATE_INIT_RECEIVED:
        case KVM_MP_STATE_SIPI_RECEIVED:
          if (lapic === undefined) throw new KernelError('EINVAL', op, `mp_state ${mp_state} needs an in-kernel LAPIC`);
          break;
        default:
          throw new KernelError('EINVAL', op, `unknown mp_state ${mp_state}`);
      }
      // INITs are blocked in SMM (kvm_apic_init_sipi_allowed), and an SMI goes before an INIT: no INIT/SIPI state then.
      if ((v.smm || vcpuArch(v).smiPending) && (mp_state === KVM_MP_STATE_INIT_RECEIVED || mp_state === KVM_MP_STATE_SIPI_RECEIVED)) {
        throw new KernelError('EINVAL', op, 'INIT/SIPI states are blocked in SMM or with an SMI pending');
      }
      // SIPI_RECEIVED is INIT_RECEIVED with a SIPI pending (at the vector KVM_SET_LAPIC / the last SIPI left).
      if (mp_state === KVM_MP_STATE_SIPI_RECEIVED && lapic !== undefined) {
        vcpuArch(v).mpState = KVM_MP_STATE_INIT_RECEIVED;
        lapic.pendingEvents |= 1 << KVM_APIC_SIPI;
      } else {
        vcpuArch(v).mpState = mp_state;
      }
      v.intr?.kick();
      return 0;
    },
  },
  {
    name: 'KVM_GET_DEBUGREGS',
    request: KVM_GET_DEBUGREGS,
    arg: { dir: 'out', codec: KVM_DEBUGREGS_CODEC },
    run(v, arg) {
      const a = vcpuArch(v);
      copyToUser(KVM_DEBUGREGS_CODEC, { db: [a.db[0], a.db[1], a.db[2], a.db[3]], dr6: a.dr6, dr7: a.dr7, flags: 0n }, arg, 'KVM_GET_DEBUGREGS');
      return 0;
    },
  },
  {
    name: 'KVM_SET_DEBUGREGS',
    request: KVM_SET_DEBUGREGS,
    arg: { dir: 'in', codec: KVM_DEBUGREGS_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_DEBUGREGS';
      const d = copyFromUser(KVM_DEBUGREGS_CODEC, arg, op);
      if (d.flags !== 0n) throw new KernelError('EINVAL', op, 'flags must be 0');
      // kvm_dr6_valid / kvm_dr7_valid: bits 63:32 are reserved.
      if (d.dr6 >> 32n !== 0n) throw new KernelError('EINVAL', op, 'DR6 bits 63:32 are reserved');
      if (d.dr7 >> 32n !== 0n) throw new KernelError('EINVAL', op, 'DR7 bits 63:32 are reserved');
      const a = vcpuArch(v);
      for (let i = 0; i < 4; i++) a.db[i] = d.db[i] as bigint;
      a.dr6 = d.dr6;
      a.dr7 = d.dr7;
      return 0;
    },
  },
];
