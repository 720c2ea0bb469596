/**
 * A small C layout calculator for the x86-64 System V ABI, used to derive `sizeof` and `offsetof` for the
 * `/dev/kvm` structures from field lists that mirror the uapi headers.
 *
 * The ioctl request numbers in `constants.ts` embed `sizeof(struct …)`, and `KvmRunView` (`kvm-run.ts`)
 * reads fields at their C offsets. Rather than hand-typing those numbers,
 * the structures are declared here once, field by field, in header order; the usual C rules (each member
 * aligned to its own alignment, the aggregate padded to its largest alignment, unions as wide as their
 * widest member) then give every size and offset. The tests pin the results to the literal values.
 *
 * Only what the KVM uapi needs is supported: fixed-width integers, pointers and `unsigned long` (8 bytes on
 * x86-64), fixed and flexible (`[]` / `[0]`) arrays, nested and anonymous structs and unions.
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** A C scalar type as used by the KVM uapi on x86-64 (`ptr` and `ulong` are 8 bytes). */
export type CScalar = 'u8' | 's8' | 'u16' | 's16' | 'u32' | 's32' | 'u64' | 's64' | 'ptr' | 'ulong';

/** Size and alignment of each {@link CScalar} on x86-64. */
export const C_SCALAR_SIZE: Readonly<Record<CScalar, number>> = {
  u8: 1,
  s8: 1,
  u16: 2,
  s16: 2,
  u32: 4,
  s32: 4,
  u64: 8,
  s64: 8,
  ptr: 8,
  ulong: 8,
};

/**
 * One member of a struct or union declaration.
 *
 * `count` makes it an array (`0` is a flexible array member: it contributes alignment but no size). A
 * member with an empty `name` and a {@link CLayout} type is anonymous: its members are reachable directly,
 * as in C.
 */
export interface CFieldSpec {
  /** Member name (empty for an anonymous struct or union). */
  readonly name: string;
  /** Scalar type or nested aggregate. */
  readonly type: CScalar | CLayout;
  /** Array length; omitted for a plain member, 0 for a flexible array. */
  readonly count?: number;
}

/** A resolved member: where it lives and how big it is. */
export interface CMember {
  /** Member name (dotted path for members reached through nested aggregates). */
  readonly name: string;
  /** Byte offset from the start of the outermost aggregate this member was resolved in. */
  readonly offset: number;
  /** Total size in bytes (element size × count for arrays). */
  readonly size: number;
  /** Size of one element (equal to `size` for non-arrays). */
  readonly elementSize: number;
  /** Array length, or `undefined` for a non-array member. */
  readonly count: number | undefined;
  /** The member's type. */
  readonly type: CScalar | CLayout;
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** The computed layout of one C struct or union. */
export class CLayout {
  /** The C tag, e.g. `kvm_regs`. */
  readonly name: string;
  /** Whether this is a struct (members in sequence) or a union (members overlaid at offset 0). */
  readonly kind: 'struct' | 'union';
  /** `sizeof` in bytes. */
  readonly size: number;
  /** `_Alignof` in bytes. */
  readonly align: number;
  readonly #members = new Map<string, CMember>();
  readonly #order: string[] = [];

  /**
   * @param name - C tag
   * @param kind - `'struct'` or `'union'`
   * @param fields - members in header order
   */
  constructor(name: string, kind: 'struct' | 'union', fields: readonly CFieldSpec[]) {
    this.name = name;
    this.kind = kind;
    let offset = 0;
    let size = 0;
    let align = 1;
    for (const f of fields) {
      const elemSize = typeof f.type === 'string' ? C_SCALAR_SIZE[f.type] : f.type.size;
      const elemAlign = typeof f.type === 'string' ? C_SCALAR_SIZE[f.type] : f.type.align;
      if (f.count !== undefined && (!Number.isInteger(f.count) || f.count < 0)) {
        throw new UsageError('ERR_OUT_OF_RANGE', `${name}.${f.name}: bad array count ${f.count}`);
      }
      const total = elemSize * (f.count ?? 1);
      align = Math.max(align, elemAlign);
      const at = kind === 'struct' ? alignUp(offset, elemAlign) : 0;
      if (f.name === '') {
        if (typeof f.type === 'string') throw new UsageError('ERR_INVALID_ARG', `${name}: an anonymous member must be an aggregate`);
        for (const inner of f.type.members()) this.#add({ ...inner, offset: at + inner.offset });
      } else {
        this.#add({ name: f.name, offset: at, size: total, elementSize: elemSize, count: f.count, type: f.type });
        if (typeof f.type !== 'string') {
          for (const inner of f.type.members()) {
            this.#add({ ...inner, name: `${f.name}.${inner.name}`, offset: at + inner.offset });
          }
        }
      }
      if (kind === 'struct') offset = at + total;
      size = Math.max(size, at + total);
    }
    this.align = align;
    this.size = alignUp(size, align);
  }

  #add(m: CMember): void {
    if (this.#members.has(m.name)) throw new UsageError('ERR_DUPLICATE', `${this.name}: duplicate member ${m.name}`);
    this.#members.set(m.name, m);
    this.#order.push(m.name);
  }

  /** Every member, including nested ones under dotted names, in declaration order. */
  members(): CMember[] {
    return this.#order.map((n) => this.#members.get(n) as CMember);
  }

  /** The member at a (dotted) path, e.g. `'io.port'`; throws `UsageError` if there is none. */
  member(path: string): CMember {
    const m = this.#members.get(path);
    if (m === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `struct ${this.name} has no member ${path}`);
    return m;
  }

  /** `offsetof(struct name, path)`. */
  offsetOf(path: string): number {
    return this.member(path).offset;
  }

  /** `sizeof(((struct name *)0)->path)`. */
  sizeOf(path: string): number {
    return this.member(path).size;
  }
}

/** Declare a C struct. */
export function cStruct(name: string, fields: readonly CFieldSpec[]): CLayout {
  return new CLayout(name, 'struct', fields);
}

/** Declare a C union. */
export function cUnion(name: string, fields: readonly CFieldSpec[]): CLayout {
  return new CLayout(name, 'union', fields);
}

/** Shorthand for a list of same-typed scalar members (`__u64 rax, rbx, …;`). */
function many(type: CScalar, names: readonly string[]): CFieldSpec[] {
  return names.map((name) => ({ name, type }));
}

/* ------------------------------------------------------------------------------------------------------ */
/* x86 structures (arch/x86/include/uapi/asm/kvm.h)                                                         */
/* ------------------------------------------------------------------------------------------------------ */

const kvm_regs = cStruct('kvm_regs', [
  ...many('u64', ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp']),
  ...many('u64', ['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15']),
  ...many('u64', ['rip', 'rflags']),
]);

const kvm_segment = cStruct('kvm_segment', [
  { name: 'base', type: 'u64' },
  { name: 'limit', type: 'u32' },
  { name: 'selector', type: 'u16' },
  { name: 'type', type: 'u8' },
  ...many('u8', ['present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable', 'padding']),
]);

const kvm_dtable = cStruct('kvm_dtable', [
  { name: 'base', type: 'u64' },
  { name: 'limit', type: 'u16' },
  { name: 'padding', type: 'u16', count: 3 },
]);

const SREGS_COMMON: CFieldSpec[] = [
  ...['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'].map((name) => ({ name, type: kvm_segment })),
  { name: 'gdt', type: kvm_dtable },
  { name: 'idt', type: kvm_dtable },
  ...many('u64', ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base']),
];

/** KVM_NR_INTERRUPTS = 256 → `interrupt_bitmap[(256 + 63) / 64]`. */
const kvm_sregs = cStruct('kvm_sregs', [...SREGS_COMMON, { name: 'interrupt_bitmap', type: 'u64', count: 4 }]);

const kvm_sregs2 = cStruct('kvm_sregs2', [
  ...SREGS_COMMON,
  { name: 'flags', type: 'u64' },
  { name: 'pdptrs', type: 'u64', count: 4 },
]);

const kvm_fpu = cStruct('kvm_fpu', [
  { name: 'fpr', type: 'u8', count: 8 * 16 },
  { name: 'fcw', type: 'u16' },
  { name: 'fsw', type: 'u16' },
  { name: 'ftwx', type: 'u8' },
  { name: 'pad1', type: 'u8' },
  { name: 'last_opcode', type: 'u16' },
  { name: 'last_ip', type: 'u64' },
  { name: 'last_dp', type: 'u64' },
  { name: 'xmm', type: 'u8', count: 16 * 16 },
  { name: 'mxcsr', type: 'u32' },
  { name: 'pad2', type: 'u32' },
]);

const kvm_msr_entry = cStruct('kvm_msr_entry', [
  { name: 'index', type: 'u32' },
  { name: 'reserved', type: 'u32' },
  { name: 'data', type: 'u64' },
]);

const kvm_msrs = cStruct('kvm_msrs', [
  { name: 'nmsrs', type: 'u32' },
  { name: 'pad', type: 'u32' },
  { name: 'entries', type: kvm_msr_entry, count: 0 },
]);

const kvm_msr_list = cStruct('kvm_msr_list', [
  { name: 'nmsrs', type: 'u32' },
  { name: 'indices', type: 'u32', count: 0 },
]);

const kvm_cpuid_entry = cStruct('kvm_cpuid_entry', many('u32', ['function', 'eax', 'ebx', 'ecx', 'edx', 'padding']));

const kvm_cpuid = cStruct('kvm_cpuid', [
  { name: 'nent', type: 'u32' },
  { name: 'padding', type: 'u32' },
  { name: 'entries', type: kvm_cpuid_entry, count: 0 },
]);

const kvm_cpuid_entry2 = cStruct('kvm_cpuid_entry2', [
  ...many('u32', ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx']),
  { name: 'padding', type: 'u32', count: 3 },
]);

const kvm_cpuid2 = cStruct('kvm_cpuid2', [
  { name: 'nent', type: 'u32' },
  { name: 'padding', type: 'u32' },
  { name: 'entries', type: kvm_cpuid_entry2, count: 0 },
]);

const kvm_lapic_state = cStruct('kvm_lapic_state', [{ name: 'regs', type: 'u8', count: 0x400 }]);

const kvm_pic_state = cStruct(
  'kvm_pic_state',
  many('u8', [
    'last_irr', 'irr', 'imr', 'isr', 'priority_add', 'irq_base', 'read_reg_select', 'poll',
    'special_mask', 'init_state', 'auto_eoi', 'rotate_on_auto_eoi', 'special_fully_nested_mode', 'init4',
    'elcr', 'elcr_mask',
  ]),
);

/** One IOAPIC redirection entry: `union { __u64 bits; struct { … } fields; }` (8 bytes). */
const kvm_ioapic_redirtbl = cUnion('kvm_ioapic_redirtbl', [{ name: 'bits', type: 'u64' }]);

const kvm_ioapic_state = cStruct('kvm_ioapic_state', [
  { name: 'base_address', type: 'u64' },
  ...many('u32', ['ioregsel', 'id', 'irr', 'pad']),
  { name: 'redirtbl', type: kvm_ioapic_redirtbl, count: 24 },
]);

const kvm_pit_channel_state = cStruct('kvm_pit_channel_state', [
  { name: 'count', type: 'u32' },
  { name: 'latched_count', type: 'u16' },
  ...many('u8', [
    'count_latched', 'status_latched', 'status', 'read_state', 'write_state', 'write_latch', 'rw_mode',
    'mode', 'bcd', 'gate',
  ]),
  { name: 'count_load_time', type: 's64' },
]);

const kvm_pit_state = cStruct('kvm_pit_state', [{ name: 'channels', type: kvm_pit_channel_state, count: 3 }]);

const kvm_pit_state2 = cStruct('kvm_pit_state2', [
  { name: 'channels', type: kvm_pit_channel_state, count: 3 },
  { name: 'flags', type: 'u32' },
  { name: 'reserved', type: 'u32', count: 9 },
]);

const kvm_debug_exit_arch = cStruct('kvm_debug_exit_arch', [
  { name: 'exception', type: 'u32' },
  { name: 'pad', type: 'u32' },
  ...many('u64', ['pc', 'dr6', 'dr7']),
]);

const kvm_guest_debug_arch = cStruct('kvm_guest_debug_arch', [{ name: 'debugreg', type: 'u64', count: 8 }]);

const kvm_vcpu_events = cStruct('kvm_vcpu_events', [
  {
    name: 'exception',
    type: cStruct('kvm_vcpu_events_exception', [
      ...many('u8', ['injected', 'nr', 'has_error_code', 'pending']),
      { name: 'error_code', type: 'u32' },
    ]),
  },
  { name: 'interrupt', type: cStruct('kvm_vcpu_events_interrupt', many('u8', ['injected', 'nr', 'soft', 'shadow'])) },
  { name: 'nmi', type: cStruct('kvm_vcpu_events_nmi', many('u8', ['injected', 'pending', 'masked', 'pad'])) },
  { name: 'sipi_vector', type: 'u32' },
  { name: 'flags', type: 'u32' },
  {
    name: 'smi',
    type: cStruct('kvm_vcpu_events_smi', many('u8', ['smm', 'pending', 'smm_inside_nmi', 'latched_init'])),
  },
  { name: 'triple_fault', type: cStruct('kvm_vcpu_events_triple_fault', [{ name: 'pending', type: 'u8' }]) },
  { name: 'reserved', type: 'u8', count: 26 },
  { name: 'exception_has_payload', type: 'u8' },
  { name: 'exception_payload', type: 'u64' },
]);

const kvm_debugregs = cStruct('kvm_debugregs', [
  { name: 'db', type: 'u64', count: 4 },
  ...many('u64', ['dr6', 'dr7', 'flags']),
  { name: 'reserved', type: 'u64', count: 9 },
]);

const kvm_xsave = cStruct('kvm_xsave', [
  { name: 'region', type: 'u32', count: 1024 },
  { name: 'extra', type: 'u32', count: 0 },
]);

const kvm_xcr = cStruct('kvm_xcr', [
  { name: 'xcr', type: 'u32' },
  { name: 'reserved', type: 'u32' },
  { name: 'value', type: 'u64' },
]);

const kvm_xcrs = cStruct('kvm_xcrs', [
  { name: 'nr_xcrs', type: 'u32' },
  { name: 'flags', type: 'u32' },
  { name: 'xcrs', type: kvm_xcr, count: 16 },
  { name: 'padding', type: 'u64', count: 16 },
]);

const kvm_sync_regs = cStruct('kvm_sync_regs', [
  { name: 'regs', type: kvm_regs },
  { name: 'sregs', type: kvm_sregs },
  { name: 'events', type: kvm_vcpu_events },
]);

const kvm_x86_mce = cStruct('kvm_x86_mce', [
  ...many('u64', ['status', 'addr', 'misc', 'mcg_status']),
  { name: 'bank', type: 'u8' },
  { name: 'pad1', type: 'u8', count: 7 },
  { name: 'pad2', type: 'u64', count: 3 },
]);

const kvm_nested_state = cStruct('kvm_nested_state', [
  { name: 'flags', type: 'u16' },
  { name: 'format', type: 'u16' },
  { name: 'size', type: 'u32' },
  {
    name: 'hdr',
    type: cUnion('kvm_nested_state_hdr', [
      {
        name: 'vmx',
        type: cStruct('kvm_vmx_nested_state_hdr', [
          { name: 'vmxon_pa', type: 'u64' },
          { name: 'vmcs12_pa', type: 'u64' },
          { name: 'smm', type: cStruct('kvm_vmx_nested_state_hdr_smm', [{ name: 'flags', type: 'u16' }]) },
          { name: 'pad', type: 'u16' },
          { name: 'flags', type: 'u32' },
          { name: 'preemption_timer_deadline', type: 'u64' },
        ]),
      },
      { name: 'svm', type: cStruct('kvm_svm_nested_state_hdr', [{ name: 'vmcb_pa', type: 'u64' }]) },
      { name: 'pad', type: 'u8', count: 120 },
    ]),
  },
  { name: 'data', type: 'u8', count: 0 },
]);

const kvm_msr_filter_range = cStruct('kvm_msr_filter_range', [
  ...many('u32', ['flags', 'nmsrs', 'base']),
  { name: 'bitmap', type: 'ptr' },
]);

const kvm_msr_filter = cStruct('kvm_msr_filter', [
  { name: 'flags', type: 'u32' },
  { name: 'ranges', type: kvm_msr_filter_range, count: 16 },
]);

const kvm_sev_cmd = cStruct('kvm_sev_cmd', [
  { name: 'id', type: 'u32' },
  { name: 'pad0', type: 'u32' },
  { name: 'data', type: 'u64' },
  { name: 'error', type: 'u32' },
  { name: 'sev_fd', type: 'u32' },
]);

/* ------------------------------------------------------------------------------------------------------ */
/* Generic structures (include/uapi/linux/kvm.h)                                                            */
/* ------------------------------------------------------------------------------------------------------ */

const kvm_userspace_memory_region = cStruct('kvm_userspace_memory_region', [
  { name: 'slot', type: 'u32' },
  { name: 'flags', type: 'u32' },
  ...many('u64', ['guest_phys_addr', 'memory_size', 'userspace_addr']),
]);

const kvm_userspace_memory_region2 = cStruct('kvm_userspace_memory_region2', [
  { name: 'slot', type: 'u32' },
  { name: 'flags', type: 'u32' },
  ...many('u64', ['guest_phys_addr', 'memory_size', 'userspace_addr', 'guest_memfd_offset']),
  { name: 'guest_memfd', type: 'u32' },
  { name: 'pad1', type: 'u32' },
  { name: 'pad2', type: 'u64', count: 14 },
]);

const kvm_irq_level = cStruct('kvm_irq_level', [
  {
    name: '',
    type: cUnion('kvm_irq_level_u', [
      { name: 'irq', type: 'u32' },
      { name: 'status', type: 's32' },
    ]),
  },
  { name: 'level', type: 'u32' },
]);

const kvm_irqchip = cStruct('kvm_irqchip', [
  { name: 'chip_id', type: 'u32' },
  { name: 'pad', type: 'u32' },
  {
    name: 'chip',
    type: cUnion('kvm_irqchip_chip', [
      { name: 'dummy', type: 'u8', count: 512 },
      { name: 'pic', type: kvm_pic_state },
      { name: 'ioapic', type: kvm_ioapic_state },
    ]),
  },
]);

const kvm_pit_config = cStruct('kvm_pit_config', [
  { name: 'flags', type: 'u32' },
  { name: 'pad', type: 'u32', count: 15 },
]);

const kvm_dirty_log = cStruct('kvm_dirty_log', [
  { name: 'slot', type: 'u32' },
  { name: 'padding1', type: 'u32' },
  { name: '', type: cUnion('kvm_dirty_log_u', [{ name: 'dirty_bitmap', type: 'ptr' }, { name: 'padding2', type: 'u64' }]) },
]);

const kvm_clear_dirty_log = cStruct('kvm_clear_dirty_log', [
  { name: 'slot', type: 'u32' },
  { name: 'num_pages', type: 'u32' },
  { name: 'first_page', type: 'u64' },
  {
    name: '',
    type: cUnion('kvm_clear_dirty_log_u', [{ name: 'dirty_bitmap', type: 'ptr' }, { name: 'padding2', type: 'u64' }]),
  },
]);

const kvm_coalesced_mmio_zone = cStruct('kvm_coalesced_mmio_zone', [
  { name: 'addr', type: 'u64' },
  { name: 'size', type: 'u32' },
  { name: '', type: cUnion('kvm_coalesced_mmio_zone_u', [{ name: 'pad', type: 'u32' }, { name: 'pio', type: 'u32' }]) },
]);

const kvm_coalesced_mmio = cStruct('kvm_coalesced_mmio', [
  { name: 'phys_addr', type: 'u64' },
  { name: 'len', type: 'u32' },
  { name: '', type: cUnion('kvm_coalesced_mmio_u', [{ name: 'pad', type: 'u32' }, { name: 'pio', type: 'u32' }]) },
  { name: 'data', type: 'u8', count: 8 },
]);

const kvm_coalesced_mmio_ring = cStruct('kvm_coalesced_mmio_ring', [
  { name: 'first', type: 'u32' },
  { name: 'last', type: 'u32' },
  { name: 'coalesced_mmio', type: kvm_coalesced_mmio, count: 0 },
]);

const kvm_pmu_event_filter = cStruct('kvm_pmu_event_filter', [
  ...many('u32', ['action', 'nevents', 'fixed_counter_bitmap', 'flags']),
  { name: 'pad', type: 'u32', count: 4 },
  { name: 'events', type: 'u64', count: 0 },
]);

const kvm_translation = cStruct('kvm_translation', [
  { name: 'linear_address', type: 'u64' },
  { name: 'physical_address', type: 'u64' },
  ...many('u8', ['valid', 'writeable', 'usermode']),
  { name: 'pad', type: 'u8', count: 5 },
]);

const kvm_interrupt = cStruct('kvm_interrupt', [{ name: 'irq', type: 'u32' }]);

const kvm_signal_mask = cStruct('kvm_signal_mask', [
  { name: 'len', type: 'u32' },
  { name: 'sigset', type: 'u8', count: 0 },
]);

const kvm_tpr_access_ctl = cStruct('kvm_tpr_access_ctl', [
  { name: 'enabled', type: 'u32' },
  { name: 'flags', type: 'u32' },
  { name: 'reserved', type: 'u32', count: 8 },
]);

const kvm_vapic_addr = cStruct('kvm_vapic_addr', [{ name: 'vapic_addr', type: 'u64' }]);

const kvm_mp_state = cStruct('kvm_mp_state', [{ name: 'mp_state', type: 'u32' }]);

const kvm_guest_debug = cStruct('kvm_guest_debug', [
  { name: 'control', type: 'u32' },
  { name: 'pad', type: 'u32' },
  { name: 'arch', type: kvm_guest_debug_arch },
]);

const kvm_ioeventfd = cStruct('kvm_ioeventfd', [
  { name: 'datamatch', type: 'u64' },
  { name: 'addr', type: 'u64' },
  { name: 'len', type: 'u32' },
  { name: 'fd', type: 's32' },
  { name: 'flags', type: 'u32' },
  { name: 'pad', type: 'u8', count: 36 },
]);

const kvm_enable_cap = cStruct('kvm_enable_cap', [
  { name: 'cap', type: 'u32' },
  { name: 'flags', type: 'u32' },
  { name: 'args', type: 'u64', count: 4 },
  { name: 'pad', type: 'u8', count: 64 },
]);

const kvm_irq_routing_entry = cStruct('kvm_irq_routing_entry', [
  ...many('u32', ['gsi', 'type', 'flags', 'pad']),
  {
    name: 'u',
    type: cUnion('kvm_irq_routing_entry_u', [
      { name: 'irqchip', type: cStruct('kvm_irq_routing_irqchip', many('u32', ['irqchip', 'pin'])) },
      { name: 'msi', type: cStruct('kvm_irq_routing_msi', many('u32', ['address_lo', 'address_hi', 'data', 'devid'])) },
      {
        name: 'adapter',
        type: cStruct('kvm_irq_routing_s390_adapter', [
          ...many('u64', ['ind_addr', 'summary_addr', 'ind_offset']),
          ...many('u32', ['summary_offset', 'adapter_id']),
        ]),
      },
      { name: 'pad', type: 'u32', count: 8 },
    ]),
  },
]);

const kvm_irq_routing = cStruct('kvm_irq_routing', [
  { name: 'nr', type: 'u32' },
  { name: 'flags', type: 'u32' },
  { name: 'entries', type: kvm_irq_routing_entry, count: 0 },
]);

const kvm_irqfd = cStruct('kvm_irqfd', [
  ...many('u32', ['fd', 'gsi', 'flags', 'resamplefd']),
  { name: 'pad', type: 'u8', count: 16 },
]);

const kvm_clock_data = cStruct('kvm_clock_data', [
  { name: 'clock', type: 'u64' },
  { name: 'flags', type: 'u32' },
  { name: 'pad0', type: 'u32' },
  { name: 'realtime', type: 'u64' },
  { name: 'host_tsc', type: 'u64' },
  { name: 'pad', type: 'u32', count: 4 },
]);

const kvm_one_reg = cStruct('kvm_one_reg', many('u64', ['id', 'addr']));

const kvm_reg_list = cStruct('kvm_reg_list', [
  { name: 'n', type: 'u64' },
  { name: 'reg', type: 'u64', count: 0 },
]);

const kvm_msi = cStruct('kvm_msi', [
  ...many('u32', ['address_lo', 'address_hi', 'data', 'flags', 'devid']),
  { name: 'pad', type: 'u8', count: 12 },
]);

const kvm_create_device = cStruct('kvm_create_device', many('u32', ['type', 'fd', 'flags']));

const kvm_device_attr = cStruct('kvm_device_attr', [
  ...many('u32', ['flags', 'group']),
  ...many('u64', ['attr', 'addr']),
]);

const kvm_enc_region = cStruct('kvm_enc_region', many('u64', ['addr', 'size']));

const kvm_memory_attributes = cStruct('kvm_memory_attributes', many('u64', ['address', 'size', 'attributes', 'flags']));

const kvm_create_guest_memfd = cStruct('kvm_create_guest_memfd', [
  ...many('u64', ['size', 'flags']),
  { name: 'reserved', type: 'u64', count: 6 },
]);

const kvm_pre_fault_memory = cStruct('kvm_pre_fault_memory', [
  ...many('u64', ['gpa', 'size', 'flags']),
  { name: 'padding', type: 'u64', count: 5 },
]);

const kvm_dirty_gfn = cStruct('kvm_dirty_gfn', [
  ...many('u32', ['flags', 'slot']),
  { name: 'offset', type: 'u64' },
]);

/** A `__u64` passed by pointer (`KVM_X86_SETUP_MCE`, `KVM_SET_IDENTITY_MAP_ADDR`, …) as a one-member structure. */
const u64_arg = cStruct('u64_arg', [{ name: 'value', type: 'u64' }]);

const kvm_stats_desc = cStruct('kvm_stats_desc', [
  { name: 'flags', type: 'u32' },
  { name: 'exponent', type: 's16' },
  { name: 'size', type: 'u16' },
  { name: 'offset', type: 'u32' },
  { name: 'bucket_size', type: 'u32' },
  { name: 'name', type: 'u8', count: 0 },
]);

const kvm_stats_header = cStruct(
  'kvm_stats_header',
  many('u32', ['flags', 'name_size', 'num_desc', 'id_offset', 'desc_offset', 'data_offset']),
);

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_run (x86 view: no s390 PSW fields)                                                            */
/* ------------------------------------------------------------------------------------------------------ */

const kvm_run_exit = cUnion('kvm_run_exit', [
  { name: 'hw', type: cStruct('kvm_run_hw', [{ name: 'hardware_exit_reason', type: 'u64' }]) },
  {
    name: 'fail_entry',
    type: cStruct('kvm_run_fail_entry', [
      { name: 'hardware_entry_failure_reason', type: 'u64' },
      { name: 'cpu', type: 'u32' },
    ]),
  },
  { name: 'ex', type: cStruct('kvm_run_ex', many('u32', ['exception', 'error_code'])) },
  {
    name: 'io',
    type: cStruct('kvm_run_io', [
      { name: 'direction', type: 'u8' },
      { name: 'size', type: 'u8' },
      { name: 'port', type: 'u16' },
      { name: 'count', type: 'u32' },
      { name: 'data_offset', type: 'u64' },
    ]),
  },
  { name: 'debug', type: cStruct('kvm_run_debug', [{ name: 'arch', type: kvm_debug_exit_arch }]) },
  {
    name: 'mmio',
    type: cStruct('kvm_run_mmio', [
      { name: 'phys_addr', type: 'u64' },
      { name: 'data', type: 'u8', count: 8 },
      { name: 'len', type: 'u32' },
      { name: 'is_write', type: 'u8' },
    ]),
  },
  {
    name: 'hypercall',
    type: cStruct('kvm_run_hypercall', [
      { name: 'nr', type: 'u64' },
      { name: 'args', type: 'u64', count: 6 },
      { name: 'ret', type: 'u64' },
      { name: '', type: cUnion('kvm_run_hypercall_u', [{ name: 'longmode', type: 'u32' }, { name: 'flags', type: 'u64' }]) },
    ]),
  },
  {
    name: 'tpr_access',
    type: cStruct('kvm_run_tpr_access', [
      { name: 'rip', type: 'u64' },
      { name: 'is_write', type: 'u32' },
      { name: 'pad', type: 'u32' },
    ]),
  },
  {
    name: 'internal',
    type: cStruct('kvm_run_internal', [
      { name: 'suberror', type: 'u32' },
      { name: 'ndata', type: 'u32' },
      { name: 'data', type: 'u64', count: 16 },
    ]),
  },
  {
    name: 'emulation_failure',
    type: cStruct('kvm_run_emulation_failure', [
      { name: 'suberror', type: 'u32' },
      { name: 'ndata', type: 'u32' },
      { name: 'flags', type: 'u64' },
      { name: 'insn_size', type: 'u8' },
      { name: 'insn_bytes', type: 'u8', count: 15 },
    ]),
  },
  {
    name: 'system_event',
    type: cStruct('kvm_run_system_event', [
      { name: 'type', type: 'u32' },
      { name: 'ndata', type: 'u32' },
      { name: '', type: cUnion('kvm_run_system_event_u', [{ name: 'flags', type: 'u64' }, { name: 'data', type: 'u64', count: 16 }]) },
    ]),
  },
  { name: 'eoi', type: cStruct('kvm_run_eoi', [{ name: 'vector', type: 'u8' }]) },
  {
    name: 'msr',
    type: cStruct('kvm_run_msr', [
      { name: 'error', type: 'u8' },
      { name: 'pad', type: 'u8', count: 7 },
      { name: 'reason', type: 'u32' },
      { name: 'index', type: 'u32' },
      { name: 'data', type: 'u64' },
    ]),
  },
  { name: 'notify', type: cStruct('kvm_run_notify', [{ name: 'flags', type: 'u32' }]) },
  { name: 'memory_fault', type: cStruct('kvm_run_memory_fault', many('u64', ['flags', 'gpa', 'size'])) },
  { name: 'padding', type: 'u8', count: 256 },
]);

const kvm_run = cStruct('kvm_run', [
  { name: 'request_interrupt_window', type: 'u8' },
  { name: 'immediate_exit', type: 'u8' },
  { name: 'padding1', type: 'u8', count: 6 },
  { name: 'exit_reason', type: 'u32' },
  { name: 'ready_for_interrupt_injection', type: 'u8' },
  { name: 'if_flag', type: 'u8' },
  { name: 'flags', type: 'u16' },
  { name: 'cr8', type: 'u64' },
  { name: 'apic_base', type: 'u64' },
  { name: '', type: kvm_run_exit },
  { name: 'kvm_valid_regs', type: 'u64' },
  { name: 'kvm_dirty_regs', type: 'u64' },
  {
    name: 's',
    type: cUnion('kvm_run_s', [
      { name: 'regs', type: kvm_sync_regs },
      { name: 'padding', type: 'u8', count: 2048 },
    ]),
  },
]);

/** A C tag with a layout in {@link KVM_LAYOUTS}. */
export type KvmStructName =
  | 'kvm_regs'
  | 'kvm_segment'
  | 'kvm_dtable'
  | 'kvm_sregs'
  | 'kvm_sregs2'
  | 'kvm_fpu'
  | 'kvm_msr_entry'
  | 'kvm_msrs'
  | 'kvm_msr_list'
  | 'kvm_cpuid_entry'
  | 'kvm_cpuid'
  | 'kvm_cpuid_entry2'
  | 'kvm_cpuid2'
  | 'kvm_lapic_state'
  | 'kvm_pic_state'
  | 'kvm_ioapic_state'
  | 'kvm_pit_channel_state'
  | 'kvm_pit_state'
  | 'kvm_pit_state2'
  | 'kvm_debug_exit_arch'
  | 'kvm_guest_debug_arch'
  | 'kvm_vcpu_events'
  | 'kvm_debugregs'
  | 'kvm_xsave'
  | 'kvm_xcr'
  | 'kvm_xcrs'
  | 'kvm_sync_regs'
  | 'kvm_x86_mce'
  | 'kvm_nested_state'
  | 'kvm_msr_filter_range'
  | 'kvm_msr_filter'
  | 'kvm_sev_cmd'
  | 'kvm_userspace_memory_region'
  | 'kvm_userspace_memory_region2'
  | 'kvm_irq_level'
  | 'kvm_irqchip'
  | 'kvm_pit_config'
  | 'kvm_dirty_log'
  | 'kvm_clear_dirty_log'
  | 'kvm_coalesced_mmio_zone'
  | 'kvm_coalesced_mmio'
  | 'kvm_coalesced_mmio_ring'
  | 'kvm_translation'
  | 'kvm_pmu_event_filter'
  | 'kvm_interrupt'
  | 'kvm_signal_mask'
  | 'kvm_tpr_access_ctl'
  | 'kvm_vapic_addr'
  | 'kvm_mp_state'
  | 'kvm_guest_debug'
  | 'kvm_ioeventfd'
  | 'kvm_enable_cap'
  | 'kvm_irq_routing_entry'
  | 'kvm_irq_routing'
  | 'kvm_irqfd'
  | 'kvm_clock_data'
  | 'kvm_one_reg'
  | 'kvm_reg_list'
  | 'kvm_msi'
  | 'kvm_create_device'
  | 'kvm_device_attr'
  | 'kvm_enc_region'
  | 'kvm_memory_attributes'
  | 'kvm_create_guest_memfd'
  | 'kvm_pre_fault_memory'
  | 'kvm_dirty_gfn'
  | 'kvm_stats_header'
  | 'kvm_stats_desc'
  | 'u64_arg'
  | 'kvm_run';

/**
 * The computed layouts of the KVM uapi structures on x86-64, keyed by C tag.
 *
 * `KVM_LAYOUTS.kvm_regs.size` is `sizeof(struct kvm_regs)` (144); `KVM_LAYOUTS.kvm_run.offsetOf('io.port')`
 * is `offsetof(struct kvm_run, io.port)` (34).
 */
export const KVM_LAYOUTS: Readonly<Record<KvmStructName, CLayout>> = {
  kvm_regs,
  kvm_segment,
  kvm_dtable,
  kvm_sregs,
  kvm_sregs2,
  kvm_fpu,
  kvm_msr_entry,
  kvm_msrs,
  kvm_msr_list,
  kvm_cpuid_entry,
  kvm_cpuid,
  kvm_cpuid_entry2,
  kvm_cpuid2,
  kvm_lapic_state,
  kvm_pic_state,
  kvm_ioapic_state,
  kvm_pit_channel_state,
  kvm_pit_state,
  kvm_pit_state2,
  kvm_debug_exit_arch,
  kvm_guest_debug_arch,
  kvm_vcpu_events,
  kvm_debugregs,
  kvm_xsave,
  kvm_xcr,
  kvm_xcrs,
  kvm_sync_regs,
  kvm_x86_mce,
  kvm_nested_state,
  kvm_msr_filter_range,
  kvm_msr_filter,
  kvm_sev_cmd,
  kvm_userspace_memory_region,
  kvm_userspace_memory_region2,
  kvm_irq_level,
  kvm_irqchip,
  kvm_pit_config,
  kvm_dirty_log,
  kvm_clear_dirty_log,
  kvm_coalesced_mmio_zone,
  kvm_coalesced_mmio,
  kvm_coalesced_mmio_ring,
  kvm_translation,
  kvm_pmu_event_filter,
  kvm_interrupt,
  kvm_signal_mask,
  kvm_tpr_access_ctl,
  kvm_vapic_addr,
  kvm_mp_state,
  kvm_guest_debug,
  kvm_ioeventfd,
  kvm_enable_cap,
  kvm_irq_routing_entry,
  kvm_irq_routing,
  kvm_irqfd,
  kvm_clock_data,
  kvm_one_reg,
  kvm_reg_list,
  kvm_msi,
  kvm_create_device,
  kvm_device_attr,
  kvm_enc_region,
  kvm_memory_attributes,
  kvm_create_guest_memfd,
  kvm_pre_fault_memory,
  kvm_dirty_gfn,
  kvm_stats_header,
  kvm_stats_desc,
  u64_arg,
  kvm_run,
};


/** `sizeof(struct name)` on x86-64, for every structure in {@link KVM_LAYOUTS}. */
export function sizeofKvm(name: KvmStructName): number {
  return KVM_LAYOUTS[name].size;
}
