/**
 * System Management Mode of a vCPU (arch/x86/kvm/smm.c `kvm_smm_changed`, `process_smi`, `enter_smm`,
 * `emulator_leave_smm`; x86.c KVM_SMI, `kvm_check_and_inject_events`' SMI part; emulate.c `em_rsm`).
 *
 * - **KVM_SMI** (and an SMI IPI from an in-kernel LAPIC) makes `KVM_REQ_SMI`; at the next entry it becomes a pending
 *   SMI (`process_smi`), taken before any NMI or interrupt when the vendor allows it (`smi_allowed`: not while already
 *   in SMM — a second SMI stays latched until RSM).
 * - **Entry** (`enter_smm`): the registers are written to SMBASE + 0xFE00 (`smram.ts`, the 64-bit layout when the
 *   guest's CPUID has long mode), the vCPU goes into SMM (`HF_SMM_MASK`: its memory is now address space 1), NMIs are
 *   blocked (`HF_SMM_INSIDE_NMI_MASK` remembers they already were), and it starts at CS = SMBASE >> 4 (base SMBASE,
 *   limit 4 GiB), EIP 0x8000, EFLAGS 2, CR0 without PE/EM/TS/PG, CR4 0, IDT limit 0, DR7 0x400, the data segments
 *   flat at 0, EFER 0 (long-mode guests). A save area that cannot be written kills the VM (`kvm_vm_dead`: EIO).
 * - **RSM** (the interpreter stops after it in SMM; outside SMM it is #UD): the save area is read back (SMBASE may have
 *   been relocated by the handler), NMIs unblocked unless they were blocked at the SMI, the vCPU leaves SMM (a latched
 *   INIT or SMI is looked at again), and the registers are loaded in Linux's order; any failure — the area not in
 *   address space 1, a DR6/DR7/EFER/CR value KVM refuses, the vendor's refusal — is a triple fault (`KVM_EXIT_SHUTDOWN`).
 *
 * @module
 */
import { KernelError, type SmmVcpu, type VendorSmm } from '@vac/core';
import { KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE, KVM_SMI } from '../abi/constants.js';
import { KVM_REGS_CODEC, KVM_SREGS_CODEC, type kvm_segment } from '../abi/structs.js';
import { GuestPending } from '../guest/cpu-state.js';
import { completePending } from '../guest/interpreter.js';
import type { GuestMemory } from '../guest/memory.js';
import type { IoctlDef } from './ioctl-table.js';
import { setPresentSegment } from './present-segment.js';
import { SMRAM_SAVE_OFFSET, SMRAM_SAVE_SIZE, readSmram, writeSmram } from './smram.js';
import { vcpuArch } from './vcpu-arch.js';
import { guestHas } from './vcpu-cpuid.js';
import { setMsr } from './vcpu-msrs.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import { EFER_LMA, X86_CR0_PG, X86_CR4_PAE, X86_CR4_PCIDE, setCr0, setCr3, setCr4 } from './vcpu-cr.js';
import type { Vcpu } from './vcpu.js';
import { vendorArch } from './vendor-arch.js';
import { x86Caps } from './x86-caps.js';

/** `MSR_IA32_SMBASE`. */
const MSR_IA32_SMBASE = 0x9e;
/** `MSR_EFER`. */
const MSR_EFER = 0xc000_0080;
/** SMBASE after reset (`kvm_vcpu_reset`: `vcpu->arch.smbase = 0x30000`). */
export const SMBASE_DEFAULT = 0x30000n;

const X86_CR0_PE = 1n;
const X86_CR0_EM = 1n << 2n;
const X86_CR0_TS = 1n << 3n;
/** `DR7_FIXED_1`. */
const DR7_FIXED_1 = 0x400n;
/** `DR6_VOLATILE` and `DR6_FIXED_1`, and the two bits that read 1 unless the guest has their feature. */
const DR6_VOLATILE = 0x0001_e80fn;
const DR6_FIXED_1 = 0xfffe_0ff0n;
const DR6_RTM = 1n << 16n;
const DR6_BUS_LOCK = 1n << 11n;

/** KVM's generic SMM answers, for a vendor without hooks of its own: an SMI is taken outside SMM; nothing else. */
const GENERIC_SMM: VendorSmm = Object.freeze({
  smiAllowed: (vcpu: SmmVcpu) => (vcpu.inSmm ? 0 : 1),
  enterSmm: () => undefined,
  leaveSmm: () => undefined,
});

/** `guest_cpuid_has(vcpu, X86_FEATURE_LM)`: whether the vCPU's save area has the 64-bit layout. */
export function smramLongMode(v: Vcpu): boolean {
  return guestHas(vcpuArch(v), x86Caps(v.vm.instance), '80000001.edx', 29);
}

/** What the vendor's hooks see of `v`. */
function smmVcpu(v: Vcpu): SmmVcpu {
  const arch = vcpuArch(v);
  const caps = x86Caps(v.vm.instance);
  return { inSmm: v.smm, longMode: smramLongMode(v), guestHas: (word, bit) => guestHas(arch, caps, word, bit) };
}

function vendorSmm(v: Vcpu): VendorSmm {
  return vendorArch(v.vm.instance).smm ?? GENERIC_SMM;
}

/** `vcpu->arch.smbase` (what MSR_IA32_SMBASE reads). */
export function smbaseOf(v: Vcpu): bigint {
  return vcpuArch(v).msrs.get(MSR_IA32_SMBASE) ?? SMBASE_DEFAULT;
}

/** `kvm_inject_smi`: `KVM_REQ_SMI`, looked at by the next entry (or KVM_GET_VCPU_EVENTS). */
export function injectSmi(v: Vcpu): void {
  makeRequest(v, VcpuRequest.Smi);
}

/** `process_smi`: the requested SMI becomes pending, to be taken with the other events. */
export function processSmi(v: Vcpu): void {
  v.requests &= ~VcpuRequest.Smi;
  vcpuArch(v).smiPending = true;
  makeRequest(v, VcpuRequest.Event);
}

/**
 * `kvm_smm_changed`: into or out of SMM (the vCPU's memory follows: address space 1 inside). Leaving clears
 * `HF_SMM_INSIDE_NMI_MASK` and makes `KVM_REQ_EVENT` so a latched INIT or SMI is looked at.
 */
export function smmChanged(v: Vcpu, entering: boolean): void {
  v.smm = entering;
  if (!entering) {
    vcpuArch(v).smmInsideNmi = false;
    makeRequest(v, VcpuRequest.Event);
  }
}

/**
 * The SMI part of `kvm_check_and_inject_events`: a pending SMI is taken when the vendor allows it and no other event
 * was injected at this entry (`can_inject`); otherwise it stays pending (a busy vendor or an event already injected:
 * it is looked at again at the next entry). A vCPU waiting for SIPI does not run, so it takes none.
 * @throws KernelError EIO when the save area cannot be written (`kvm_vm_dead`)
 */
export function injectPendingSmi(v: Vcpu, canInject: boolean): void {
  const arch = vcpuArch(v);
  if (!arch.smiPending) return;
  if (arch.mpState !== KVM_MP_STATE_RUNNABLE && arch.mpState !== KVM_MP_STATE_HALTED) {
    makeRequest(v, VcpuRequest.Event); // looked at again once INIT/SIPI make it runnable
    return;
  }
  const r = canInject ? vendorSmm(v).smiAllowed(smmVcpu(v), true) : -1;
  if (r < 0) {
    // -EBUSY (the entry carries an exception): an immediate exit, the SMI at the next entry.
    makeRequest(v, VcpuRequest.Event | VcpuRequest.ImmediateExit);
    return;
  }
  if (r === 0) return; // enable_smi_window: the SMI waits (RSM makes KVM_REQ_EVENT)
  // complete_userspace_io runs before the entry: an OUT or IN that exited is finished (RIP past it) first; an
  // instruction still re-executing for MMIO or string input finishes at this entry, the SMI at the next.
  const regs = v.regs;
  const p = regs.pending;
  if (p === GuestPending.MmioRead || p === GuestPending.PioInString || regs.mmioCacheCount !== 0) {
    makeRequest(v, VcpuRequest.Event);
    return;
  }
  if (p !== GuestPending.None) completePending(regs, v.exit.data);
  arch.smiPending = false;
  arch.smiCount++;
  enterSmm(v);
}

/** `kvm_vcpu_write_guest` of the save area: false when a byte has no writable RAM in the vCPU's address space. */
function writeGuest(memory: GuestMemory, gpa: number, bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (!memory.write8(gpa + i, bytes[i] as number)) return false;
  return true;
}

/** `kvm_vcpu_read_guest` of the save area, or `undefined` when a byte is not RAM in the vCPU's address space. */
function readGuest(memory: GuestMemory, gpa: number, size: number): Uint8Array | undefined {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    const b = memory.read8(gpa + i);
    if (b < 0) return undefined;
    out[i] = b;
  }
  return out;
}

/** `kvm_vm_dead`: every later ioctl of the VM and its vCPUs is EIO, this KVM_RUN included. */
function killVm(v: Vcpu, why: string): never {
  v.vm.vmDead = true;
  throw new KernelError('EIO', 'KVM_RUN', why);
}

/** The flat 4 GiB segment SMM starts with (`enter_smm`'s `cs`/`ds`: type 3, S, present, G, 16-bit). */
function smmSegment(seg: kvm_segment, selector: number, base: bigint): void {
  setPresentSegment(seg, { selector, base, limit: 0xffff_ffff, type: 3, s: 1, g: 1 });
}

/** `enter_smm`. @throws KernelError EIO when the save area cannot be written or the vendor fails (the VM is dead) */
export function enterSmm(v: Vcpu): void {
  const arch = vcpuArch(v);
  const longMode = smramLongMode(v);
  const regs = KVM_REGS_CODEC.zero();
  const sregs = KVM_SREGS_CODEC.zero();
  v.getRegs(regs);
  v.getSregs(sregs);
  const smbase = smbaseOf(v);
  const image = new Uint8Array(SMRAM_SAVE_SIZE);
  writeSmram(image, { regs, sregs, dr6: arch.dr6, dr7: arch.dr7, smbase: Number(smbase & 0xffff_ffffn), intShadow: v.regs.interruptShadow }, longMode);
  const failed = vendorSmm(v).enterSmm(smmVcpu(v), image);
  if (failed !== undefined) killVm(v, `enter_smm: ${failed}`);
  smmChanged(v, true);
  const at = Number(smbase) + SMRAM_SAVE_OFFSET;
  if (!Number.isSafeInteger(at) || !writeGuest(v.memory, at, image)) killVm(v, `enter_smm: no SMRAM at 0x${(smbase + BigInt(SMRAM_SAVE_OFFSET)).toString(16)} (address space 1)`);
  if (arch.nmiMasked) arch.smmInsideNmi = true;
  else arch.nmiMasked = true;
  regs.rflags = 2n;
  regs.rip = 0x8000n;
  v.setRegs(regs);
  v.regs.interruptShadow = 0;
  arch.interruptShadow = 0;
  sregs.cr0 &= ~(X86_CR0_PE | X86_CR0_EM | X86_CR0_TS | X86_CR0_PG);
  sregs.cr4 = 0n;
  // "Undocumented: IDT limit is set to zero on entry to SMM."
  sregs.idt.base = 0n;
  sregs.idt.limit = 0;
  arch.dr7 = DR7_FIXED_1;
  smmSegment(sregs.cs, Number((smbase >> 4n) & 0xffffn), smbase);
  for (const seg of [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss]) smmSegment(seg, 0, 0n);
  if (longMode) sregs.efer = 0n;
  v.setSregs(sregs);
  // vcpu_block made a halted vCPU runnable for the SMI (kvm_vcpu_has_events) before the entry took it.
  if (arch.mpState === KVM_MP_STATE_HALTED) arch.mpState = KVM_MP_STATE_RUNNABLE;
}

/**
 * `em_rsm`: the guest executed RSM in SMM (the interpreter has moved RIP past it). The state is loaded back
 * (`emulator_leave_smm`); when that fails the vCPU takes a triple fault (`KVM_REQ_TRIPLE_FAULT`), with whatever
 * was loaded before the failure, as in Linux.
 */
export function rsm(v: Vcpu): void {
  const why = leaveSmm(v);
  if (why === undefined) return;
  vcpuArch(v).tripleFault = true;
  makeRequest(v, VcpuRequest.TripleFault);
}

/** `kvm_set_dr(vcpu, 6, val)`: the volatile bits, the fixed ones (RTM and bus-lock bits read 1 without the feature). */
function setDr6(v: Vcpu, val: bigint): boolean {
  if (val >> 32n !== 0n) return false;
  const arch = vcpuArch(v);
  const caps = x86Caps(v.vm.instance);
  let fixed = DR6_FIXED_1;
  if (!guestHas(arch, caps, '7.0.ebx', 11)) fixed |= DR6_RTM;
  if (!guestHas(arch, caps, '7.0.ecx', 24)) fixed |= DR6_BUS_LOCK;
  arch.dr6 = (val & DR6_VOLATILE) | fixed;
  return true;
}

/** `kvm_set_dr(vcpu, 7, val)`: bits 63:32 are reserved. */
function setDr7(v: Vcpu, val: bigint): boolean {
  if (val >> 32n !== 0n) return false;
  vcpuArch(v).dr7 = val;
  return true;
}

/**
 * `rsm_enter_protected_mode`: CR3 (its PCID bits held back while CR4.PCIDE is to be set), CR4 without PCIDE (PAE
 * before paging), CR0 (EFER.LMA follows LME and PG), then CR4 with PCIDE and the PCID in CR3 — each through KVM's own
 * setter ({@link setCr3}, {@link setCr4}, {@link setCr0}), in that order, the registers already loaded staying loaded
 * when one refuses. @returns why a setter refused (RSM then shuts down), `undefined` when all were loaded
 */
function rsmEnterProtectedMode(v: Vcpu, cr0: bigint, cr3: bigint, cr4: bigint): string | undefined {
  // CR3[11:0] must be 0 when CR4.PCIDE is set: the PCID goes in last.
  const pcid = (cr4 & X86_CR4_PCIDE) !== 0n ? cr3 & 0xfffn : 0n;
  const base = cr3 & ~pcid;
  const hex = (x: bigint) => `0x${x.toString(16)}`;
  if (!setCr3(v, base)) return `CR3 ${hex(base)} is refused`;
  if (!setCr4(v, cr4 & ~X86_CR4_PCIDE)) return `CR4 ${hex(cr4 & ~X86_CR4_PCIDE)} is refused`;
  if (!setCr0(v, cr0)) return `CR0 ${hex(cr0)} is refused`;
  if ((cr4 & X86_CR4_PCIDE) !== 0n) {
    if (!setCr4(v, cr4)) return `CR4 ${hex(cr4)} (PCIDE) is refused`;
    if (pcid !== 0n && !setCr3(v, base | pcid)) return `CR3 ${hex(base | pcid)} (PCID) is refused`;
  }
  return undefined;
}

/**
 * `emulator_leave_smm` and `rsm_load_state_32` / `_64`. @returns why it failed (the caller makes it a triple fault),
 * `undefined` when the vCPU left SMM with the saved state loaded
 */
export function leaveSmm(v: Vcpu): string | undefined {
  const arch = vcpuArch(v);
  const longMode = smramLongMode(v);
  const smbase = smbaseOf(v);
  const at = Number(smbase) + SMRAM_SAVE_OFFSET;
  const image = Number.isSafeInteger(at) ? readGuest(v.memory, at, SMRAM_SAVE_SIZE) : undefined;
  if (image === undefined) return 'the save area is not RAM in address space 1';
  if (!arch.smmInsideNmi) arch.nmiMasked = false;
  smmChanged(v, false);
  // Back to real mode first, a safe state in which to load CR0, CR3, CR4 and EFER.
  const now = KVM_SREGS_CODEC.zero();
  v.getSregs(now);
  if (longMode) {
    now.cr4 &= ~X86_CR4_PCIDE;
    // A 32-bit code segment is required to clear EFER.LMA.
    Object.assign(now.cs, { selector: 0, base: 0n, limit: 0, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 1, avl: 0, unusable: 0 });
  }
  if ((now.cr0 & X86_CR0_PE) !== 0n) now.cr0 &= ~(X86_CR0_PG | X86_CR0_PE);
  if (longMode) {
    now.cr4 &= ~X86_CR4_PAE;
    now.efer = 0n;
  }
  v.setSregs(now);
  const refused = vendorSmm(v).leaveSmm(smmVcpu(v), image);
  if (refused !== undefined) return refused;
  const saved = readSmram(image, longMode);
  // RIP, RFLAGS and the general registers (a 32-bit area loads EAX…EDI zero-extended; R8–R15 stay).
  const regs = KVM_REGS_CODEC.zero();
  v.getRegs(regs);
  const s = saved.regs;
  Object.assign(regs, { rax: s.rax, rcx: s.rcx, rdx: s.rdx, rbx: s.rbx, rsp: s.rsp, rbp: s.rbp, rsi: s.rsi, rdi: s.rdi, rip: s.rip, rflags: s.rflags });
  if (longMode) Object.assign(regs, { r8: s.r8, r9: s.r9, r10: s.r10, r11: s.r11, r12: s.r12, r13: s.r13, r14: s.r14, r15: s.r15 });
  v.setRegs(regs);
  if (!setDr6(v, saved.dr6)) return `DR6 0x${saved.dr6.toString(16)} has reserved bits`;
  if (!setDr7(v, saved.dr7)) return `DR7 0x${saved.dr7.toString(16)} has reserved bits`;
  const to = KVM_SREGS_CODEC.zero();
  v.getSregs(to);
  const ss = saved.sregs;
  if (longMode) {
    arch.msrs.set(MSR_IA32_SMBASE, BigInt(saved.smbase));
    if (!setMsr(v, MSR_EFER, ss.efer & ~EFER_LMA, false)) return `EFER 0x${ss.efer.toString(16)} is refused`;
    v.getSregs(to);
  }
  // TR, LDTR, GDTR and IDTR (the 64-bit layout loads the other segments after the control registers).
  Object.assign(to, { tr: ss.tr, ldt: ss.ldt, gdt: ss.gdt, idt: ss.idt });
  if (!longMode) {
    Object.assign(to, { es: ss.es, cs: ss.cs, ss: ss.ss, ds: ss.ds, fs: ss.fs, gs: ss.gs });
    arch.msrs.set(MSR_IA32_SMBASE, BigInt(saved.smbase));
  }
  v.setSregs(to);
  const problem = rsmEnterProtectedMode(v, ss.cr0, ss.cr3, ss.cr4);
  if (problem !== undefined) return problem;
  if (longMode) {
    v.getSregs(to);
    Object.assign(to, { es: ss.es, cs: ss.cs, ss: ss.ss, ds: ss.ds, fs: ss.fs, gs: ss.gs });
    v.setSregs(to);
  }
  // The interrupt shadow the SMI interrupted (KVM's extension of the save area).
  const shadow = vendorArch(v.vm.instance).normalizeInterruptShadow(saved.intShadow);
  v.regs.interruptShadow = shadow;
  arch.interruptShadow = shadow;
  return undefined;
}

/** KVM_SMI on the vCPU fd. */
export const VCPU_SMM_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_SMI',
    request: KVM_SMI,
    arg: { dir: 'none' },
    run(v) {
      injectSmi(v);
      return 0;
    },
  },
];
