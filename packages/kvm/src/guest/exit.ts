/**
 * The exit record the guest interpreter fills: why a run stopped and, for an exit to user space, the data
 * `struct kvm_run` carries for it. One record is owned by the caller (one per vCPU) and reused for every
 * run, so the hot path never allocates.
 *
 * @module
 */

/**
 * Why {@link GuestExit} stopped. The values equal Linux's `KVM_EXIT_*` numbers (`<linux/kvm.h>`) so the
 * `/dev/kvm` layer can copy them into `kvm_run.exit_reason`; `Budget` is not a KVM exit but the scheduler's
 * "slice used up, continue later".
 */
export const GuestExitReason = {
  /** The instruction budget ran out; no exit to user space (not a KVM exit reason). */
  Budget: -1,
  /** Port I/O (`KVM_EXIT_IO` = 2). */
  Io: 2,
  /** `hlt` (`KVM_EXIT_HLT` = 5). */
  Hlt: 5,
  /** Access to guest-physical memory that is not RAM (`KVM_EXIT_MMIO` = 6). */
  Mmio: 6,
  /** Triple fault (`KVM_EXIT_SHUTDOWN` = 8). */
  Shutdown: 8,
  /**
   * `rdmsr` whose MSR access the platform hands to user space (`KVM_EXIT_X86_RDMSR` = 29): RIP still points at the
   * instruction, nothing of it is done (the platform's `rdmsr` returned `null`).
   */
  X86Rdmsr: 29,
  /** `wrmsr` handed to user space (`KVM_EXIT_X86_WRMSR` = 30), as {@link GuestExitReason.X86Rdmsr}. */
  X86Wrmsr: 30,
  /** The interpreter could not emulate an instruction (`KVM_EXIT_INTERNAL_ERROR` = 17). */
  InternalError: 17,
  /**
   * `rsm` in System Management Mode (not a KVM exit): RIP is past it, and the caller leaves SMM — loads the state
   * saved in SMRAM (`emulator_leave_smm`) — before the guest goes on. Outside SMM (the platform's `inSmm`) RSM is #UD.
   */
  Rsm: -2,
} as const;

/** One of the {@link GuestExitReason} values. */
export type GuestExitReasonValue = (typeof GuestExitReason)[keyof typeof GuestExitReason];

/** Direction of a port I/O exit, the values of `kvm_run.io.direction`. */
export const GuestIoDirection = {
  /** The guest reads a port (`KVM_EXIT_IO_IN` = 0). */
  In: 0,
  /** The guest writes a port (`KVM_EXIT_IO_OUT` = 1). */
  Out: 1,
} as const;

/** Sub-error of an internal-error exit: emulation failed (`KVM_INTERNAL_ERROR_EMULATION` = 1). */
export const GUEST_INTERNAL_ERROR_EMULATION = 1;

/**
 * Flag in {@link GuestExit.flags}: the instruction bytes are valid
 * (`KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES` = 1).
 */
export const GUEST_EMULATION_FLAG_INSTRUCTION_BYTES = 1;

/** Bytes of instruction reported with an emulation failure (`kvm_run.emulation_failure.insn_bytes[15]`). */
export const GUEST_MAX_INSN_BYTES = 15;

/**
 * The result of one `runGuest` call. Only the fields belonging to {@link GuestExit.reason} are meaningful;
 * the others keep whatever the last exit of their kind left there.
 */
export class GuestExit {
  /** Why the run stopped. */
  reason: GuestExitReasonValue = GuestExitReason.Budget;
  /** Instructions completed by this run (an exiting `out`/`in`/`hlt`/MMIO write counts, a failed one does not). */
  executed = 0;

  /** Port I/O: 0 = in, 1 = out ({@link GuestIoDirection}). */
  ioDirection = 0;
  /** Port I/O: access size in bytes (1, 2 or 4). */
  ioSize = 0;
  /** Port I/O: port number. */
  ioPort = 0;
  /** Port I/O: number of elements (`kvm_run.io.count`): 1, or more for `rep ins` (see {@link GuestExit.stringData}). */
  ioCount = 0;

  /** MMIO: guest-physical address. */
  mmioPhysAddr = 0;
  /** MMIO: access size in bytes (1, 2 or 4). */
  mmioLen = 0;
  /** MMIO: 1 for a write, 0 for a read. */
  mmioIsWrite = 0;

  /**
   * Data bytes, little-endian: the value written by `out` or an MMIO write. For `in` and MMIO reads the
   * caller places the answer here (or passes it to `completeIn`/`completeMmioRead`) before the next run.
   */
  readonly data = new Uint8Array(8);

  /**
   * The elements of a string input (`ins` exit with `ioCount` × `ioSize` bytes, up to 4 KiB): user space's
   * answer goes here before the next run (the `/dev/kvm` layer copies it from the `kvm_run` data page).
   * Allocated at first use.
   */
  get stringData(): Uint8Array {
    return (this.#stringData ??= new Uint8Array(4096));
  }
  #stringData: Uint8Array | undefined;

  /** Internal error: sub-error ({@link GUEST_INTERNAL_ERROR_EMULATION}). */
  suberror = 0;
  /** Internal error: `emulation_failure.flags` ({@link GUEST_EMULATION_FLAG_INSTRUCTION_BYTES} when bytes are known). */
  flags = 0;
  /** Internal error: how many bytes of {@link GuestExit.insnBytes} belong to the failing instruction. */
  insnSize = 0;
  /** Internal error: the failing instruction's bytes, padded with 0x90 as Linux pads them. */
  get insnBytes(): Uint8Array {
    return (this.#insnBytes ??= new Uint8Array(GUEST_MAX_INSN_BYTES));
  }
  /** Allocated at the first emulation failure (most vCPUs never have one). */
  #insnBytes: Uint8Array | undefined;
  /** Internal error: a short human-readable reason (not part of the KVM ABI). */
  detail = '';
}
