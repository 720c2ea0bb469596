/**
 * The guest CPU of the KVM model: an x86 interpreter of real mode and 32-bit protected mode ({@link runGuest}) that `KVM_RUN`
 * uses to execute guest machine code from the VM's memslots, its register file ({@link GuestCpuState}),
 * the memory interface it reads through ({@link GuestMemory}) and the exit record it fills
 * ({@link GuestExit}).
 *
 * @module
 */

export {
  GUEST_REGS64,
  GUEST_SEGMENTS,
  GUEST_SHADOW_MOV_SS,
  GUEST_SHADOW_STI,
  GUEST_SYSTEM_SEGMENTS,
  GuestCpuState,
  GuestPending,
  SegmentRegister,
  X86_EFLAGS_AC,
  X86_EFLAGS_AF,
  X86_EFLAGS_CF,
  X86_EFLAGS_DF,
  X86_EFLAGS_FIXED,
  X86_EFLAGS_IF,
  X86_EFLAGS_OF,
  X86_EFLAGS_PF,
  X86_EFLAGS_SF,
  X86_EFLAGS_TF,
  X86_EFLAGS_ZF,
  type GuestAnySegmentName,
  type GuestPendingKind,
  type GuestReg64,
  type GuestSegmentName,
} from './cpu-state.js';
export {
  GUEST_EMULATION_FLAG_INSTRUCTION_BYTES,
  GUEST_INTERNAL_ERROR_EMULATION,
  GUEST_MAX_INSN_BYTES,
  GuestExit,
  GuestExitReason,
  GuestIoDirection,
  type GuestExitReasonValue,
} from './exit.js';
export {
  GUEST_DEFAULT_QUIRKS,
  GUEST_INTERRUPT_BLOCKED,
  GUEST_INTERRUPT_DELIVERED,
  deliverInterrupt,
  injectEvent,
  interruptWindowOpen,
  GUEST_QUIRK_OUT_7E_INC_RIP,
  completeIn,
  completeMmioRead,
  completeOut,
  completePending,
  runGuest,
} from './interpreter.js';
export {
  CpuidTable,
  KVM_CPUID_FLAG_SIGNIFICANT_INDEX,
  defaultGuestPlatform,
  initialFxState,
  type CpuidEntry,
  type GuestPlatform,
} from './platform.js';
export { SlotListMemory, type GuestMemory, type GuestMemorySlot, type SlotListEntry } from './memory.js';
export {
  Asm16,
  asm16,
  type Asm16AluSource,
  type Asm16Condition,
  type Asm16Imm16,
  type Asm16JumpSize,
  type Asm16LabelRef,
  type Asm16MovSource,
  type Asm16Options,
  type Asm16Reg,
  type Asm16Reg16,
  type Asm16Reg8,
  type Asm16SegReg,
} from './asm.js';
