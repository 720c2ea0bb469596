/**
 * The memory a VMM maps from a vCPU fd: `struct kvm_run` in page 0, the port-I/O data page at
 * `KVM_PIO_PAGE_OFFSET` and the coalesced-MMIO ring at `KVM_COALESCED_MMIO_PAGE_OFFSET`, together
 * `KVM_VCPU_MMAP_SIZE` (12288) bytes.
 *
 * {@link KvmRunView} is a typed window over that area, little-endian, at the x86-64 offsets of the C
 * structure (computed in `layout.ts` from the header's field list, pinned by tests). The simulated kernel
 * writes exits through it and the VMM reads them through it, so both see the bytes a C VMM would see:
 * `run.exit_reason` is the `__u32` at offset 8, `run.io.port` the `__u16` at offset 34, and the data of an
 * `OUT` sits at `run.io.data_offset` (normally 4096, the PIO page) in `run.bytes`.
 *
 * Accessors do not allocate: every getter and setter reads or writes a `DataView` created once, and the
 * per-exit sub-views (`run.io`, `run.mmio`, …) are created with the view. Fields that hold registers or
 * arbitrary 64-bit values are `bigint` (reading one creates a bigint, as any bigint does); addresses, sizes
 * and flag words are `number` (see the number/bigint rule in `structs.ts`). Setters of 8/16/32-bit fields
 * store the low bits, like a C assignment; setters of 64-bit `number` fields reject values that are not
 * non-negative safe integers with a `UsageError`.
 *
 * @module
 */

import { UsageError } from '@vac/core';
import {
  KVM_COALESCED_MMIO_MAX,
  KVM_COALESCED_MMIO_PAGE_OFFSET,
  KVM_PIO_PAGE_OFFSET,
  KVM_VCPU_MMAP_SIZE,
  PAGE_SIZE,
} from './constants.js';
import { KVM_LAYOUTS } from './layout.js';
import type { kvm_regs, kvm_sregs } from './structs.js';
import { decodeKvmRegs, decodeKvmSregs, encodeKvmRegs, encodeKvmSregs } from './structs.js';
import { KVM_VCPU_EVENTS_CODEC, type kvm_vcpu_events } from './structs-x86.js';

const R = KVM_LAYOUTS.kvm_run;

/** A field of `struct kvm_run` that {@link KVM_RUN_OFFSETS} gives the offset of. */
export type KvmRunField =
  | 'request_interrupt_window'
  | 'immediate_exit'
  | 'exit_reason'
  | 'ready_for_interrupt_injection'
  | 'if_flag'
  | 'flags'
  | 'cr8'
  | 'apic_base'
  | 'hw.hardware_exit_reason'
  | 'fail_entry.hardware_entry_failure_reason'
  | 'fail_entry.cpu'
  | 'ex.exception'
  | 'ex.error_code'
  | 'io.direction'
  | 'io.size'
  | 'io.port'
  | 'io.count'
  | 'io.data_offset'
  | 'debug.arch.exception'
  | 'debug.arch.pc'
  | 'debug.arch.dr6'
  | 'debug.arch.dr7'
  | 'mmio.phys_addr'
  | 'mmio.data'
  | 'mmio.len'
  | 'mmio.is_write'
  | 'hypercall.nr'
  | 'hypercall.args'
  | 'hypercall.ret'
  | 'hypercall.flags'
  | 'tpr_access.rip'
  | 'tpr_access.is_write'
  | 'internal.suberror'
  | 'internal.ndata'
  | 'internal.data'
  | 'emulation_failure.flags'
  | 'emulation_failure.insn_size'
  | 'emulation_failure.insn_bytes'
  | 'system_event.type'
  | 'system_event.ndata'
  | 'system_event.data'
  | 'eoi.vector'
  | 'msr.error'
  | 'msr.reason'
  | 'msr.index'
  | 'msr.data'
  | 'notify.flags'
  | 'memory_fault.flags'
  | 'memory_fault.gpa'
  | 'memory_fault.size'
  | 'kvm_valid_regs'
  | 'kvm_dirty_regs'
  | 's.regs.regs'
  | 's.regs.sregs'
  | 's.regs.events';

/**
 * Byte offsets of the `struct kvm_run` fields on x86-64 (`offsetof(struct kvm_run, io.port)` is
 * `KVM_RUN_OFFSETS['io.port']` = 34). The exit union starts at 32, `kvm_valid_regs` at 288, the
 * sync-register union `s` at 304.
 */
export const KVM_RUN_OFFSETS: Readonly<Record<KvmRunField, number>> = Object.freeze({
  request_interrupt_window: R.offsetOf('request_interrupt_window'),
  immediate_exit: R.offsetOf('immediate_exit'),
  exit_reason: R.offsetOf('exit_reason'),
  ready_for_interrupt_injection: R.offsetOf('ready_for_interrupt_injection'),
  if_flag: R.offsetOf('if_flag'),
  flags: R.offsetOf('flags'),
  cr8: R.offsetOf('cr8'),
  apic_base: R.offsetOf('apic_base'),
  'hw.hardware_exit_reason': R.offsetOf('hw.hardware_exit_reason'),
  'fail_entry.hardware_entry_failure_reason': R.offsetOf('fail_entry.hardware_entry_failure_reason'),
  'fail_entry.cpu': R.offsetOf('fail_entry.cpu'),
  'ex.exception': R.offsetOf('ex.exception'),
  'ex.error_code': R.offsetOf('ex.error_code'),
  'io.direction': R.offsetOf('io.direction'),
  'io.size': R.offsetOf('io.size'),
  'io.port': R.offsetOf('io.port'),
  'io.count': R.offsetOf('io.count'),
  'io.data_offset': R.offsetOf('io.data_offset'),
  'debug.arch.exception': R.offsetOf('debug.arch.exception'),
  'debug.arch.pc': R.offsetOf('debug.arch.pc'),
  'debug.arch.dr6': R.offsetOf('debug.arch.dr6'),
  'debug.arch.dr7': R.offsetOf('debug.arch.dr7'),
  'mmio.phys_addr': R.offsetOf('mmio.phys_addr'),
  'mmio.data': R.offsetOf('mmio.data'),
  'mmio.len': R.offsetOf('mmio.len'),
  'mmio.is_write': R.offsetOf('mmio.is_write'),
  'hypercall.nr': R.offsetOf('hypercall.nr'),
  'hypercall.args': R.offsetOf('hypercall.args'),
  'hypercall.ret': R.offsetOf('hypercall.ret'),
  'hypercall.flags': R.offsetOf('hypercall.flags'),
  'tpr_access.rip': R.offsetOf('tpr_access.rip'),
  'tpr_access.is_write': R.offsetOf('tpr_access.is_write'),
  'internal.suberror': R.offsetOf('internal.suberror'),
  'internal.ndata': R.offsetOf('internal.ndata'),
  'internal.data': R.offsetOf('internal.data'),
  'emulation_failure.flags': R.offsetOf('emulation_failure.flags'),
  'emulation_failure.insn_size': R.offsetOf('emulation_failure.insn_size'),
  'emulation_failure.insn_bytes': R.offsetOf('emulation_failure.insn_bytes'),
  'system_event.type': R.offsetOf('system_event.type'),
  'system_event.ndata': R.offsetOf('system_event.ndata'),
  'system_event.data': R.offsetOf('system_event.data'),
  'eoi.vector': R.offsetOf('eoi.vector'),
  'msr.error': R.offsetOf('msr.error'),
  'msr.reason': R.offsetOf('msr.reason'),
  'msr.index': R.offsetOf('msr.index'),
  'msr.data': R.offsetOf('msr.data'),
  'notify.flags': R.offsetOf('notify.flags'),
  'memory_fault.flags': R.offsetOf('memory_fault.flags'),
  'memory_fault.gpa': R.offsetOf('memory_fault.gpa'),
  'memory_fault.size': R.offsetOf('memory_fault.size'),
  kvm_valid_regs: R.offsetOf('kvm_valid_regs'),
  kvm_dirty_regs: R.offsetOf('kvm_dirty_regs'),
  's.regs.regs': R.offsetOf('s.regs.regs'),
  's.regs.sregs': R.offsetOf('s.regs.sregs'),
  's.regs.events': R.offsetOf('s.regs.events'),
});

/** Offset of the exit-reason union inside `struct kvm_run` (32 on x86-64). */
export const KVM_RUN_EXIT_UNION_OFFSET = R.offsetOf('padding');

/** Size of the exit-reason union (`char padding[256]` fixes it). */
export const KVM_RUN_EXIT_UNION_SIZE = R.sizeOf('padding');

/** `sizeof(struct kvm_run)` on x86-64: 2352 bytes (it fits in the first page of the mmap area). */
export const KVM_RUN_SIZE = R.size;

/** Size of one `struct kvm_coalesced_mmio` ring entry (24 bytes). */
export const KVM_COALESCED_MMIO_ENTRY_SIZE = KVM_LAYOUTS.kvm_coalesced_mmio.size;

const O = KVM_RUN_OFFSETS;
const TWO_32 = 0x1_0000_0000;

function getU64n(dv: DataView, off: number): number {
  return dv.getUint32(off + 4, true) * TWO_32 + dv.getUint32(off, true);
}

function setU64n(dv: DataView, off: number, v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new UsageError('ERR_INVALID_ARG', `kvm_run.${what} must be a non-negative safe integer`);
  dv.setUint32(off, v % TWO_32, true);
  dv.setUint32(off + 4, Math.floor(v / TWO_32), true);
}

function checkIndex(i: number, n: number, what: string): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new UsageError('ERR_OUT_OF_RANGE', `kvm_run.${what}: index ${String(i)} not in 0..${String(n - 1)}`);
}

/** `run.hw` (KVM_EXIT_UNKNOWN). */
export class KvmRunHw {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** Hardware exit reason KVM did not handle (VMX basic exit reason or SVM exit code). */
  get hardware_exit_reason(): bigint {
    return this.#dv.getBigUint64(O['hw.hardware_exit_reason'], true);
  }
  /** Store `hardware_exit_reason`. */
  set hardware_exit_reason(v: bigint) {
    this.#dv.setBigUint64(O['hw.hardware_exit_reason'], v, true);
  }
}

/** `run.fail_entry` (KVM_EXIT_FAIL_ENTRY). */
export class KvmRunFailEntry {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** Why VM entry failed (VMX exit reason with bit 31 set, or SVM_EXIT_ERR = 2^64 − 1). */
  get hardware_entry_failure_reason(): bigint {
    return this.#dv.getBigUint64(O['fail_entry.hardware_entry_failure_reason'], true);
  }
  /** Store `hardware_entry_failure_reason`. */
  set hardware_entry_failure_reason(v: bigint) {
    this.#dv.setBigUint64(O['fail_entry.hardware_entry_failure_reason'], v, true);
  }
  /** The physical CPU on which entry failed. */
  get cpu(): number {
    return this.#dv.getUint32(O['fail_entry.cpu'], true);
  }
  /** Store `cpu`. */
  set cpu(v: number) {
    this.#dv.setUint32(O['fail_entry.cpu'], v, true);
  }
}

/** `run.ex` (KVM_EXIT_EXCEPTION). */
export class KvmRunEx {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** Exception vector. */
  get exception(): number {
    return this.#dv.getUint32(O['ex.exception'], true);
  }
  /** Store `exception`. */
  set exception(v: number) {
    this.#dv.setUint32(O['ex.exception'], v, true);
  }
  /** Exception error code. */
  get error_code(): number {
    return this.#dv.getUint32(O['ex.error_code'], true);
  }
  /** Store `error_code`. */
  set error_code(v: number) {
    this.#dv.setUint32(O['ex.error_code'], v, true);
  }
}

/** `run.io` (KVM_EXIT_IO). */
export class KvmRunIo {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** `KVM_EXIT_IO_IN` (0) or `KVM_EXIT_IO_OUT` (1). */
  get direction(): number {
    return this.#dv.getUint8(O['io.direction']);
  }
  /** Store `direction`. */
  set direction(v: number) {
    this.#dv.setUint8(O['io.direction'], v);
  }
  /** Access width in bytes (1, 2 or 4). */
  get size(): number {
    return this.#dv.getUint8(O['io.size']);
  }
  /** Store `size`. */
  set size(v: number) {
    this.#dv.setUint8(O['io.size'], v);
  }
  /** I/O port. */
  get port(): number {
    return this.#dv.getUint16(O['io.port'], true);
  }
  /** Store `port`. */
  set port(v: number) {
    this.#dv.setUint16(O['io.port'], v, true);
  }
  /** Number of accesses (more than 1 for string I/O with REP). */
  get count(): number {
    return this.#dv.getUint32(O['io.count'], true);
  }
  /** Store `count`. */
  set count(v: number) {
    this.#dv.setUint32(O['io.count'], v, true);
  }
  /** Where the data is, relative to the start of kvm_run (normally `KVM_PIO_PAGE_OFFSET * 4096`). */
  get data_offset(): number {
    return getU64n(this.#dv, O['io.data_offset']);
  }
  /** Store `data_offset`. */
  set data_offset(v: number) {
    setU64n(this.#dv, O['io.data_offset'], v, 'io.data_offset');
  }
}

/** `run.debug` (KVM_EXIT_DEBUG): `struct kvm_debug_exit_arch` on x86. */
export class KvmRunDebug {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** Vector of the debug exception (#DB = 1, #BP = 3). */
  get exception(): number {
    return this.#dv.getUint32(O['debug.arch.exception'], true);
  }
  /** Store `exception`. */
  set exception(v: number) {
    this.#dv.setUint32(O['debug.arch.exception'], v, true);
  }
  /** Guest linear RIP of the event. */
  get pc(): bigint {
    return this.#dv.getBigUint64(O['debug.arch.pc'], true);
  }
  /** Store `pc`. */
  set pc(v: bigint) {
    this.#dv.setBigUint64(O['debug.arch.pc'], v, true);
  }
  /** DR6 at the event. */
  get dr6(): bigint {
    return this.#dv.getBigUint64(O['debug.arch.dr6'], true);
  }
  /** Store `dr6`. */
  set dr6(v: bigint) {
    this.#dv.setBigUint64(O['debug.arch.dr6'], v, true);
  }
  /** DR7 at the event. */
  get dr7(): bigint {
    return this.#dv.getBigUint64(O['debug.arch.dr7'], true);
  }
  /** Store `dr7`. */
  set dr7(v: bigint) {
    this.#dv.setBigUint64(O['debug.arch.dr7'], v, true);
  }
}

/** `run.mmio` (KVM_EXIT_MMIO). */
export class KvmRunMmio {
  readonly #dv: DataView;
  /** The 8 data bytes (`__u8 data[8]`): written by the guest for a write, to be filled by the VMM for a read. */
  readonly data: Uint8Array;
  /**
   * @param dv - view of the whole mmap area
   * @param bytes - byte view of the whole mmap area
   */
  constructor(dv: DataView, bytes: Uint8Array) {
    this.#dv = dv;
    this.data = bytes.subarray(O['mmio.data'], O['mmio.data'] + 8);
  }
  /** Guest-physical address of the access. */
  get phys_addr(): number {
    return getU64n(this.#dv, O['mmio.phys_addr']);
  }
  /** Store `phys_addr`. */
  set phys_addr(v: number) {
    setU64n(this.#dv, O['mmio.phys_addr'], v, 'mmio.phys_addr');
  }
  /** Access width in bytes (1 to 8). */
  get len(): number {
    return this.#dv.getUint32(O['mmio.len'], true);
  }
  /** Store `len`. */
  set len(v: number) {
    this.#dv.setUint32(O['mmio.len'], v, true);
  }
  /** 1 for a write, 0 for a read. */
  get is_write(): number {
    return this.#dv.getUint8(O['mmio.is_write']);
  }
  /** Store `is_write`. */
  set is_write(v: number) {
    this.#dv.setUint8(O['mmio.is_write'], v);
  }
}

/** `run.hypercall` (KVM_EXIT_HYPERCALL). */
export class KvmRunHypercall {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** Hypercall number. */
  get nr(): bigint {
    return this.#dv.getBigUint64(O['hypercall.nr'], true);
  }
  /** Store `nr`. */
  set nr(v: bigint) {
    this.#dv.setBigUint64(O['hypercall.nr'], v, true);
  }
  /** Argument `i` (0–5). */
  arg(i: number): bigint {
    checkIndex(i, 6, 'hypercall.args');
    return this.#dv.getBigUint64(O['hypercall.args'] + 8 * i, true);
  }
  /** Set argument `i` (0–5). */
  setArg(i: number, v: bigint): void {
    checkIndex(i, 6, 'hypercall.args');
    this.#dv.setBigUint64(O['hypercall.args'] + 8 * i, v, true);
  }
  /** Return value, filled by the VMM. */
  get ret(): bigint {
    return this.#dv.getBigUint64(O['hypercall.ret'], true);
  }
  /** Store `ret`. */
  set ret(v: bigint) {
    this.#dv.setBigUint64(O['hypercall.ret'], v, true);
  }
  /** `KVM_EXIT_HYPERCALL_LONG_MODE` (bit 0) when the guest was in 64-bit mode (overlays the old `longmode`). */
  get flags(): number {
    return getU64n(this.#dv, O['hypercall.flags']);
  }
  /** Store `flags`. */
  set flags(v: number) {
    setU64n(this.#dv, O['hypercall.flags'], v, 'hypercall.flags');
  }
}

/** `run.tpr_access` (KVM_EXIT_TPR_ACCESS). */
export class KvmRunTprAccess {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** RIP of the accessing instruction. */
  get rip(): bigint {
    return this.#dv.getBigUint64(O['tpr_access.rip'], true);
  }
  /** Store `rip`. */
  set rip(v: bigint) {
    this.#dv.setBigUint64(O['tpr_access.rip'], v, true);
  }
  /** 1 for a write. */
  get is_write(): number {
    return this.#dv.getUint32(O['tpr_access.is_write'], true);
  }
  /** Store `is_write`. */
  set is_write(v: number) {
    this.#dv.setUint32(O['tpr_access.is_write'], v, true);
  }
}

/** `run.internal` (KVM_EXIT_INTERNAL_ERROR). */
export class KvmRunInternal {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** `KVM_INTERNAL_ERROR_*` code. */
  get suberror(): number {
    return this.#dv.getUint32(O['internal.suberror'], true);
  }
  /** Store `suberror`. */
  set suberror(v: number) {
    this.#dv.setUint32(O['internal.suberror'], v, true);
  }
  /** How many `data` words are valid (0–16). */
  get ndata(): number {
    return this.#dv.getUint32(O['internal.ndata'], true);
  }
  /** Store `ndata`. */
  set ndata(v: number) {
    this.#dv.setUint32(O['internal.ndata'], v, true);
  }
  /** Diagnostic word `i` (0–15). */
  data(i: number): bigint {
    checkIndex(i, 16, 'internal.data');
    return this.#dv.getBigUint64(O['internal.data'] + 8 * i, true);
  }
  /** Set diagnostic word `i` (0–15). */
  setData(i: number, v: bigint): void {
    checkIndex(i, 16, 'internal.data');
    this.#dv.setBigUint64(O['internal.data'] + 8 * i, v, true);
  }
}

/** `run.emulation_failure`: the KVM_INTERNAL_ERROR_EMULATION overlay of `run.internal`. */
export class KvmRunEmulationFailure {
  readonly #dv: DataView;
  /** The 15 instruction bytes (`__u8 insn_bytes[15]`), valid when `flags` has the instruction-bytes bit. */
  readonly insn_bytes: Uint8Array;
  /**
   * @param dv - view of the whole mmap area
   * @param bytes - byte view of the whole mmap area
   */
  constructor(dv: DataView, bytes: Uint8Array) {
    this.#dv = dv;
    this.insn_bytes = bytes.subarray(O['emulation_failure.insn_bytes'], O['emulation_failure.insn_bytes'] + 15);
  }
  /** Same word as `internal.suberror`. */
  get suberror(): number {
    return this.#dv.getUint32(O['internal.suberror'], true);
  }
  /** Store `suberror`. */
  set suberror(v: number) {
    this.#dv.setUint32(O['internal.suberror'], v, true);
  }
  /** Same word as `internal.ndata`. */
  get ndata(): number {
    return this.#dv.getUint32(O['internal.ndata'], true);
  }
  /** Store `ndata`. */
  set ndata(v: number) {
    this.#dv.setUint32(O['internal.ndata'], v, true);
  }
  /** `KVM_INTERNAL_ERROR_EMULATION_FLAG_*` bits. */
  get flags(): number {
    return getU64n(this.#dv, O['emulation_failure.flags']);
  }
  /** Store `flags`. */
  set flags(v: number) {
    setU64n(this.#dv, O['emulation_failure.flags'], v, 'emulation_failure.flags');
  }
  /** Number of valid bytes in `insn_bytes`. */
  get insn_size(): number {
    return this.#dv.getUint8(O['emulation_failure.insn_size']);
  }
  /** Store `insn_size`. */
  set insn_size(v: number) {
    this.#dv.setUint8(O['emulation_failure.insn_size'], v);
  }
}

/** `run.system_event` (KVM_EXIT_SYSTEM_EVENT). */
export class KvmRunSystemEvent {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** `KVM_SYSTEM_EVENT_*`. */
  get type(): number {
    return this.#dv.getUint32(O['system_event.type'], true);
  }
  /** Store `type`. */
  set type(v: number) {
    this.#dv.setUint32(O['system_event.type'], v, true);
  }
  /** How many `data` words are valid. */
  get ndata(): number {
    return this.#dv.getUint32(O['system_event.ndata'], true);
  }
  /** Store `ndata`. */
  set ndata(v: number) {
    this.#dv.setUint32(O['system_event.ndata'], v, true);
  }
  /** Data word `i` (0–15); word 0 is also the old `flags`. */
  data(i: number): bigint {
    checkIndex(i, 16, 'system_event.data');
    return this.#dv.getBigUint64(O['system_event.data'] + 8 * i, true);
  }
  /** Set data word `i` (0–15). */
  setData(i: number, v: bigint): void {
    checkIndex(i, 16, 'system_event.data');
    this.#dv.setBigUint64(O['system_event.data'] + 8 * i, v, true);
  }
}

/** `run.eoi` (KVM_EXIT_IOAPIC_EOI). */
export class KvmRunEoi {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** The vector that was EOIed. */
  get vector(): number {
    return this.#dv.getUint8(O['eoi.vector']);
  }
  /** Store `vector`. */
  set vector(v: number) {
    this.#dv.setUint8(O['eoi.vector'], v);
  }
}

/** `run.msr` (KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR). */
export class KvmRunMsr {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** Set to 1 by the VMM to inject #GP. */
  get error(): number {
    return this.#dv.getUint8(O['msr.error']);
  }
  /** Store `error`. */
  set error(v: number) {
    this.#dv.setUint8(O['msr.error'], v);
  }
  /** `KVM_MSR_EXIT_REASON_*`. */
  get reason(): number {
    return this.#dv.getUint32(O['msr.reason'], true);
  }
  /** Store `reason`. */
  set reason(v: number) {
    this.#dv.setUint32(O['msr.reason'], v, true);
  }
  /** MSR number. */
  get index(): number {
    return this.#dv.getUint32(O['msr.index'], true);
  }
  /** Store `index`. */
  set index(v: number) {
    this.#dv.setUint32(O['msr.index'], v, true);
  }
  /** Value written (WRMSR) or to return (RDMSR). */
  get data(): bigint {
    return this.#dv.getBigUint64(O['msr.data'], true);
  }
  /** Store `data`. */
  set data(v: bigint) {
    this.#dv.setBigUint64(O['msr.data'], v, true);
  }
}

/** `run.notify` (KVM_EXIT_NOTIFY). */
export class KvmRunNotify {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** `KVM_NOTIFY_CONTEXT_INVALID` or 0. */
  get flags(): number {
    return this.#dv.getUint32(O['notify.flags'], true);
  }
  /** Store `flags`. */
  set flags(v: number) {
    this.#dv.setUint32(O['notify.flags'], v, true);
  }
}

/** `run.memory_fault` (KVM_EXIT_MEMORY_FAULT). */
export class KvmRunMemoryFault {
  readonly #dv: DataView;
  /** @param dv - view of the whole mmap area */
  constructor(dv: DataView) {
    this.#dv = dv;
  }
  /** `KVM_MEMORY_EXIT_FLAG_*`. */
  get flags(): number {
    return getU64n(this.#dv, O['memory_fault.flags']);
  }
  /** Store `flags`. */
  set flags(v: number) {
    setU64n(this.#dv, O['memory_fault.flags'], v, 'memory_fault.flags');
  }
  /** Guest-physical address of the fault. */
  get gpa(): number {
    return getU64n(this.#dv, O['memory_fault.gpa']);
  }
  /** Store `gpa`. */
  set gpa(v: number) {
    setU64n(this.#dv, O['memory_fault.gpa'], v, 'memory_fault.gpa');
  }
  /** Size of the faulting range in bytes. */
  get size(): number {
    return getU64n(this.#dv, O['memory_fault.size']);
  }
  /** Store `size`. */
  set size(v: number) {
    setU64n(this.#dv, O['memory_fault.size'], v, 'memory_fault.size');
  }
}

/**
 * The coalesced-MMIO ring page: `struct kvm_coalesced_mmio_ring { __u32 first, last; entries[] }`. The
 * kernel appends at `last`, user space consumes from `first`; both wrap at {@link KVM_COALESCED_MMIO_MAX}.
 */
export class KvmCoalescedMmioRing {
  readonly #dv: DataView;
  readonly #bytes: Uint8Array;
  readonly #base: number;
  /**
   * @param dv - view of the whole mmap area
   * @param bytes - byte view of the whole mmap area
   */
  constructor(dv: DataView, bytes: Uint8Array) {
    this.#dv = dv;
    this.#bytes = bytes;
    this.#base = KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE_SIZE;
  }
  /** Byte offset of the ring page within the mmap area (8192). */
  get offset(): number {
    return this.#base;
  }
  /** Index of the oldest unconsumed entry (advanced by user space). */
  get first(): number {
    return this.#dv.getUint32(this.#base, true);
  }
  /** Store `first`. */
  set first(v: number) {
    this.#dv.setUint32(this.#base, v, true);
  }
  /** Index one past the newest entry (advanced by the kernel). */
  get last(): number {
    return this.#dv.getUint32(this.#base + 4, true);
  }
  /** Store `last`. */
  set last(v: number) {
    this.#dv.setUint32(this.#base + 4, v, true);
  }
  /** Byte offset, within the mmap area, of entry `i`. */
  entryOffset(i: number): number {
    checkIndex(i, KVM_COALESCED_MMIO_MAX, 'coalesced_mmio');
    return this.#base + KVM_LAYOUTS.kvm_coalesced_mmio_ring.size + i * KVM_COALESCED_MMIO_ENTRY_SIZE;
  }
  /** Guest-physical address of entry `i`. */
  physAddr(i: number): number {
    return getU64n(this.#dv, this.entryOffset(i));
  }
  /** Length in bytes of entry `i`. */
  len(i: number): number {
    return this.#dv.getUint32(this.entryOffset(i) + 8, true);
  }
  /** 1 if entry `i` is port I/O rather than MMIO. */
  pio(i: number): number {
    return this.#dv.getUint32(this.entryOffset(i) + 12, true);
  }
  /** The 8 data bytes of entry `i` (a new subarray view over the ring). */
  data(i: number): Uint8Array {
    const off = this.entryOffset(i) + 16;
    return this.#bytes.subarray(off, off + 8);
  }
  /** Store entry `i` (what the kernel does when it coalesces a write). */
  setEntry(i: number, physAddr: number, data: Uint8Array, pio = 0): void {
    const off = this.entryOffset(i);
    if (data.length > 8) throw new UsageError('ERR_INVALID_ARG', 'coalesced MMIO entry data is at most 8 bytes');
    setU64n(this.#dv, off, physAddr, 'coalesced_mmio.phys_addr');
    this.#dv.setUint32(off + 8, data.length, true);
    this.#dv.setUint32(off + 12, pio, true);
    this.#bytes.fill(0, off + 16, off + 24);
    this.#bytes.set(data, off + 16);
  }
}

/**
 * A typed view of a vCPU's mmap area (`struct kvm_run` + PIO page + coalesced-MMIO ring).
 *
 * ```ts
 * const run = new KvmRunView(vcpu.mmap());       // the same ArrayBuffer the kernel writes
 * if (run.exit_reason === KVM_EXIT_IO && run.io.direction === KVM_EXIT_IO_OUT) {
 *   const byte = run.bytes[run.io.data_offset];  // what a C VMM reads at (char *)run + data_offset
 * }
 * ```
 */
export class KvmRunView<TBuffer extends ArrayBufferLike = ArrayBuffer> {
  /** The underlying buffer (shared with whoever else maps the same vCPU). */
  readonly buffer: TBuffer;
  /** Offset of the area within `buffer`. */
  readonly byteOffset: number;
  /** The whole area as bytes: index `n` is `((char *)run)[n]`. */
  readonly bytes: Uint8Array<TBuffer>;
  /** The whole area as a DataView (use little-endian accessors). */
  readonly view: DataView<TBuffer>;
  /** The PIO data page (bytes 4096–8191 of the area). */
  readonly pioPage: Uint8Array<TBuffer>;
  /** KVM_EXIT_UNKNOWN details. */
  readonly hw: KvmRunHw;
  /** KVM_EXIT_FAIL_ENTRY details. */
  readonly fail_entry: KvmRunFailEntry;
  /** KVM_EXIT_EXCEPTION details. */
  readonly ex: KvmRunEx;
  /** KVM_EXIT_IO details. */
  readonly io: KvmRunIo;
  /** KVM_EXIT_DEBUG details. */
  readonly debug: KvmRunDebug;
  /** KVM_EXIT_MMIO details. */
  readonly mmio: KvmRunMmio;
  /** KVM_EXIT_HYPERCALL details. */
  readonly hypercall: KvmRunHypercall;
  /** KVM_EXIT_TPR_ACCESS details. */
  readonly tpr_access: KvmRunTprAccess;
  /** KVM_EXIT_INTERNAL_ERROR details. */
  readonly internal: KvmRunInternal;
  /** KVM_EXIT_INTERNAL_ERROR with suberror KVM_INTERNAL_ERROR_EMULATION. */
  readonly emulation_failure: KvmRunEmulationFailure;
  /** KVM_EXIT_SYSTEM_EVENT details. */
  readonly system_event: KvmRunSystemEvent;
  /** KVM_EXIT_IOAPIC_EOI details. */
  readonly eoi: KvmRunEoi;
  /** KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR details. */
  readonly msr: KvmRunMsr;
  /** KVM_EXIT_NOTIFY details. */
  readonly notify: KvmRunNotify;
  /** KVM_EXIT_MEMORY_FAULT details. */
  readonly memory_fault: KvmRunMemoryFault;
  /** The coalesced-MMIO ring in page 2. */
  readonly coalesced_mmio: KvmCoalescedMmioRing;

  /**
   * @param buffer - memory of at least `byteOffset + KVM_VCPU_MMAP_SIZE` bytes; a fresh zeroed
   *   `ArrayBuffer` of `KVM_VCPU_MMAP_SIZE` bytes by default
   * @param byteOffset - where the area starts in `buffer`
   */
  constructor(buffer: TBuffer = new ArrayBuffer(KVM_VCPU_MMAP_SIZE) as TBuffer, byteOffset = 0) {
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || buffer.byteLength - byteOffset < KVM_VCPU_MMAP_SIZE) {
      throw new UsageError('ERR_INVALID_ARG', 
        `a kvm_run area needs ${String(KVM_VCPU_MMAP_SIZE)} bytes; got ${String(buffer.byteLength)} bytes at offset ${String(byteOffset)}`,
      );
    }
    this.buffer = buffer;
    this.byteOffset = byteOffset;
    this.bytes = new Uint8Array(buffer, byteOffset, KVM_VCPU_MMAP_SIZE);
    this.view = new DataView(buffer, byteOffset, KVM_VCPU_MMAP_SIZE);
    this.pioPage = this.bytes.subarray(KVM_PIO_PAGE_OFFSET * PAGE_SIZE, (KVM_PIO_PAGE_OFFSET + 1) * PAGE_SIZE);
    const dv = this.view;
    this.hw = new KvmRunHw(dv);
    this.fail_entry = new KvmRunFailEntry(dv);
    this.ex = new KvmRunEx(dv);
    this.io = new KvmRunIo(dv);
    this.debug = new KvmRunDebug(dv);
    this.mmio = new KvmRunMmio(dv, this.bytes);
    this.hypercall = new KvmRunHypercall(dv);
    this.tpr_access = new KvmRunTprAccess(dv);
    this.internal = new KvmRunInternal(dv);
    this.emulation_failure = new KvmRunEmulationFailure(dv, this.bytes);
    this.system_event = new KvmRunSystemEvent(dv);
    this.eoi = new KvmRunEoi(dv);
    this.msr = new KvmRunMsr(dv);
    this.notify = new KvmRunNotify(dv);
    this.memory_fault = new KvmRunMemoryFault(dv);
    this.coalesced_mmio = new KvmCoalescedMmioRing(dv, this.bytes);
  }

  /** In: ask for a KVM_EXIT_IRQ_WINDOW_OPEN as soon as the guest can take an interrupt. */
  get request_interrupt_window(): number {
    return this.view.getUint8(O.request_interrupt_window);
  }
  /** Store `request_interrupt_window`. */
  set request_interrupt_window(v: number) {
    this.view.setUint8(O.request_interrupt_window, v);
  }

  /** In: when non-zero, KVM_RUN returns EINTR at once without entering the guest (`KVM_CAP_IMMEDIATE_EXIT`). */
  get immediate_exit(): number {
    return this.view.getUint8(O.immediate_exit);
  }
  /** Store `immediate_exit`. */
  set immediate_exit(v: number) {
    this.view.setUint8(O.immediate_exit, v);
  }

  /** Out: the `KVM_EXIT_*` reason of the last exit. */
  get exit_reason(): number {
    return this.view.getUint32(O.exit_reason, true);
  }
  /** Store `exit_reason`. */
  set exit_reason(v: number) {
    this.view.setUint32(O.exit_reason, v, true);
  }

  /** Out: 1 when an interrupt can be injected with KVM_INTERRUPT now. */
  get ready_for_interrupt_injection(): number {
    return this.view.getUint8(O.ready_for_interrupt_injection);
  }
  /** Store `ready_for_interrupt_injection`. */
  set ready_for_interrupt_injection(v: number) {
    this.view.setUint8(O.ready_for_interrupt_injection, v);
  }

  /** Out: the guest's RFLAGS.IF. */
  get if_flag(): number {
    return this.view.getUint8(O.if_flag);
  }
  /** Store `if_flag`. */
  set if_flag(v: number) {
    this.view.setUint8(O.if_flag, v);
  }

  /** Out: `KVM_RUN_X86_*` flags. */
  get flags(): number {
    return this.view.getUint16(O.flags, true);
  }
  /** Store `flags`. */
  set flags(v: number) {
    this.view.setUint16(O.flags, v, true);
  }

  /** In/out: CR8 (used when there is no in-kernel local APIC). */
  get cr8(): bigint {
    return this.view.getBigUint64(O.cr8, true);
  }
  /** Store `cr8`. */
  set cr8(v: bigint) {
    this.view.setBigUint64(O.cr8, v, true);
  }

  /** In/out: the IA32_APIC_BASE MSR (used when there is no in-kernel local APIC). */
  get apic_base(): bigint {
    return this.view.getBigUint64(O.apic_base, true);
  }
  /** Store `apic_base`. */
  set apic_base(v: bigint) {
    this.view.setBigUint64(O.apic_base, v, true);
  }

  /** Out: `KVM_SYNC_X86_*` bits of the register sets KVM stored in `s.regs`. */
  get kvm_valid_regs(): number {
    return getU64n(this.view, O.kvm_valid_regs);
  }
  /** Store `kvm_valid_regs`. */
  set kvm_valid_regs(v: number) {
    setU64n(this.view, O.kvm_valid_regs, v, 'kvm_valid_regs');
  }

  /** In: `KVM_SYNC_X86_*` bits of the register sets user space changed in `s.regs`. */
  get kvm_dirty_regs(): number {
    return getU64n(this.view, O.kvm_dirty_regs);
  }
  /** Store `kvm_dirty_regs`. */
  set kvm_dirty_regs(v: number) {
    setU64n(this.view, O.kvm_dirty_regs, v, 'kvm_dirty_regs');
  }

  /**
   * The bytes of a KVM_EXIT_IO transfer: `io.size * io.count` bytes at `io.data_offset` (a new subarray view,
   * so a VMM can read an OUT's data or fill an IN's). Throws `UsageError` if that range leaves the area.
   */
  ioData(): Uint8Array<TBuffer> {
    const start = this.io.data_offset;
    const end = start + this.io.size * this.io.count;
    if (end > KVM_VCPU_MMAP_SIZE) throw new UsageError('ERR_INVALID_ARG', `kvm_run io data ${String(start)}..${String(end)} is outside the mmap area`);
    return this.bytes.subarray(start, end);
  }

  /** Zero the exit union (offsets 32–287), as a fresh exit would find it. */
  clearExit(): void {
    this.bytes.fill(0, KVM_RUN_EXIT_UNION_OFFSET, KVM_RUN_EXIT_UNION_OFFSET + KVM_RUN_EXIT_UNION_SIZE);
  }

  /** Zero the whole area (all three pages). */
  reset(): void {
    this.bytes.fill(0);
  }

  /** Decode `s.regs.regs` (meaningful when `kvm_valid_regs` has `KVM_SYNC_X86_REGS`). */
  getSyncRegs(): kvm_regs {
    return decodeKvmRegs(this.view, O['s.regs.regs']);
  }

  /** Store `s.regs.regs` (set `KVM_SYNC_X86_REGS` in `kvm_dirty_regs` for KVM to load it). */
  setSyncRegs(r: kvm_regs): void {
    encodeKvmRegs(r, this.view, O['s.regs.regs']);
  }

  /** Decode `s.regs.sregs` (meaningful when `kvm_valid_regs` has `KVM_SYNC_X86_SREGS`). */
  getSyncSregs(): kvm_sregs {
    return decodeKvmSregs(this.view, O['s.regs.sregs']);
  }

  /** Store `s.regs.sregs` (set `KVM_SYNC_X86_SREGS` in `kvm_dirty_regs` for KVM to load it). */
  setSyncSregs(s: kvm_sregs): void {
    encodeKvmSregs(s, this.view, O['s.regs.sregs']);
  }

  /** Decode `s.regs.events` (meaningful when `kvm_valid_regs` has `KVM_SYNC_X86_EVENTS`). */
  getSyncEvents(): kvm_vcpu_events {
    return KVM_VCPU_EVENTS_CODEC.decode(this.view, O['s.regs.events']);
  }

  /** Store `s.regs.events` (set `KVM_SYNC_X86_EVENTS` in `kvm_dirty_regs` for KVM to load it). */
  setSyncEvents(e: kvm_vcpu_events): void {
    KVM_VCPU_EVENTS_CODEC.encode(e, this.view, O['s.regs.events']);
  }
}
