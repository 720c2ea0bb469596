/**
 * The binary statistics files (virt/kvm/binary_stats.c `kvm_stats_read`, kvm_main.c `kvm_vm_ioctl_get_stats_fd` /
 * `kvm_vcpu_ioctl_get_stats_fd`, the descriptor tables of arch/x86/kvm/x86.c): KVM_GET_STATS_FD on a VM or vCPU fd
 * returns a read-only file the process reads (`read` / `pread`): a `kvm_stats_header`, the id string
 * (`kvm-<pid>`, `kvm-<pid>/vcpu-<id>`), one `kvm_stats_desc` + 48-byte name per statistic, then the values as
 * `__u64`s. The file holds a reference on the VM, as Linux's does.
 *
 * The statistics the model counts (exits and their kinds, L1D flushes, TLB flushes) have their values; the rest
 * are 0 (the model has no MMU, PMU, halt polling or nested guests to count).
 *
 * @module
 */
import { KernelError, O_CLOEXEC, O_RDONLY, type FileOperations, type OpenFile, type Process } from '@vac/core';
import {
  KVM_STATS_BASE_POW10,
  KVM_STATS_NAME_SIZE,
  KVM_STATS_TYPE_CUMULATIVE,
  KVM_STATS_TYPE_INSTANT,
  KVM_STATS_TYPE_LOG_HIST,
  KVM_STATS_TYPE_PEAK,
  KVM_STATS_UNIT_BOOLEAN,
  KVM_STATS_UNIT_NONE,
  KVM_STATS_UNIT_SECONDS,
} from '../abi/constants-x86.js';
import { KVM_LAYOUTS } from '../abi/layout.js';
import type { Vcpu } from './vcpu.js';
import type { Vm } from './vm.js';

/** One statistic: name, flags, exponent, number of `__u64`s, and how to read it. */
interface StatDesc {
  readonly name: string;
  readonly flags: number;
  readonly exponent: number;
  readonly size: number;
  readonly value?: (v: Vcpu) => number;
  /** The value's place (in `__u64`s) when it is not the next one: the order of `struct kvm_vm_stat`. */
  readonly slot?: number;
}

const CUM = KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10;
const NS = KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10;
const HIST = KVM_STATS_TYPE_LOG_HIST | KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10;
const INSTANT = KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10;
const BOOL = KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_BOOLEAN | KVM_STATS_BASE_POW10;
const PEAK = KVM_STATS_TYPE_PEAK | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10;

const c = (name: string, value?: (v: Vcpu) => number): StatDesc => ({ name, flags: CUM, exponent: 0, size: 1, ...(value === undefined ? {} : { value }) });

/** `kvm_vm_stats_desc` (KVM_GENERIC_VM_STATS + the x86 VM statistics, Linux 6.12). */
const VM_STATS: readonly StatDesc[] = [
  c('remote_tlb_flush'),
  c('remote_tlb_flush_requests'),
  c('mmu_shadow_zapped'),
  c('mmu_pte_write'),
  c('mmu_pde_zapped'),
  c('mmu_flooded'),
  c('mmu_recycled'),
  c('mmu_cache_miss'),
  { name: 'mmu_unsync', flags: INSTANT, exponent: 0, size: 1 },
  { name: 'pages_4k', flags: INSTANT, exponent: 0, size: 1 },
  { name: 'pages_2m', flags: INSTANT, exponent: 0, size: 1 },
  { name: 'pages_1g', flags: INSTANT, exponent: 0, size: 1 },
  { name: 'nx_lpage_splits', flags: INSTANT, exponent: 0, size: 1 },
  // Listed rmap first, but struct kvm_vm_stat has the hash collisions first.
  { name: 'max_mmu_rmap_size', flags: PEAK, exponent: 0, size: 1, slot: 14 },
  { name: 'max_mmu_page_hash_collisions', flags: PEAK, exponent: 0, size: 1, slot: 13 },
];

/** A vendor counter of the vCPU, or 0. */
const vendorStat = (key: string) => (v: Vcpu): number => v.vendor.stats[key] ?? 0;

/** `kvm_vcpu_stats_desc` (KVM_GENERIC_VCPU_STATS + the x86 vCPU statistics, Linux 6.12). */
const VCPU_STATS: readonly StatDesc[] = [
  c('halt_successful_poll'),
  c('halt_attempted_poll'),
  c('halt_poll_invalid'),
  c('halt_wakeup', (v) => v.stats.pi_wakeups),
  { name: 'halt_poll_success_ns', flags: NS, exponent: -9, size: 1 },
  { name: 'halt_poll_fail_ns', flags: NS, exponent: -9, size: 1 },
  { name: 'halt_wait_ns', flags: NS, exponent: -9, size: 1 },
  { name: 'halt_poll_success_hist', flags: HIST, exponent: -9, size: 32 },
  { name: 'halt_poll_fail_hist', flags: HIST, exponent: -9, size: 32 },
  { name: 'halt_wait_hist', flags: HIST, exponent: -9, size: 32 },
  { name: 'blocking', flags: BOOL, exponent: 0, size: 1, value: (v) => (v.blockedOn >= 0 ? 1 : 0) },
  c('pf_taken'),
  c('pf_fixed'),
  c('pf_emulate'),
  c('pf_spurious'),
  c('pf_fast'),
  c('pf_mmio_spte_created'),
  c('pf_guest'),
  c('tlb_flush', vendorStat('tlbFlushes')),
  c('invlpg'),
  // stat.exits counts VM exits (vcpu_enter_guest: one per vendor vcpu_run), not returns to user space: every entry
  // has its exit — the immediate exit of req_immediate_exit, a HLT or an I/O handled in the kernel, a slice's end.
  c('exits', (v) => v.stats.entries),
  c('io_exits', (v) => v.stats.io_exits),
  c('mmio_exits', (v) => v.stats.mmio_exits),
  c('signal_exits', (v) => v.stats.signal_exits),
  c('irq_window_exits'),
  c('nmi_window_exits'),
  c('l1d_flush', vendorStat('l1dFlushes')),
  c('halt_exits', (v) => v.stats.halt_exits),
  c('request_irq_exits'),
  c('irq_exits'),
  c('host_state_reload'),
  c('fpu_reload'),
  c('insn_emulation'),
  c('insn_emulation_fail'),
  c('hypercalls'),
  c('irq_injections'),
  c('nmi_injections'),
  c('req_event'),
  c('nested_run'),
  c('directed_yield_attempted'),
  c('directed_yield_successful'),
  c('preemption_reported'),
  c('preemption_other'),
  { name: 'guest_mode', flags: BOOL, exponent: 0, size: 1 },
  c('notify_window_exits'),
];

const HEADER_SIZE = KVM_LAYOUTS.kvm_stats_header.size;
const DESC_SIZE = KVM_LAYOUTS.kvm_stats_desc.size + KVM_STATS_NAME_SIZE;

/** The constant part of a stats file (header, id, descriptors) for `descs` and `id`. */
function layoutBytes(descs: readonly StatDesc[], id: string): Uint8Array<ArrayBuffer> {
  const descOffset = HEADER_SIZE + KVM_STATS_NAME_SIZE;
  const dataOffset = descOffset + descs.length * DESC_SIZE;
  const out = new Uint8Array(dataOffset);
  const dv = new DataView(out.buffer);
  // struct kvm_stats_header
  dv.setUint32(0, 0, true); // flags
  dv.setUint32(4, KVM_STATS_NAME_SIZE, true);
  dv.setUint32(8, descs.length, true);
  dv.setUint32(12, HEADER_SIZE, true); // id_offset
  dv.setUint32(16, descOffset, true);
  dv.setUint32(20, dataOffset, true);
  out.set(new TextEncoder().encode(id).subarray(0, KVM_STATS_NAME_SIZE - 1), HEADER_SIZE);
  let dataAt = 0;
  descs.forEach((d, i) => {
    const at = descOffset + i * DESC_SIZE;
    dv.setUint32(at, d.flags, true);
    dv.setInt16(at + 4, d.exponent, true);
    dv.setUint16(at + 6, d.size, true);
    dv.setUint32(at + 8, (d.slot ?? dataAt) * 8, true); // offset of the value in the data block
    dv.setUint32(at + 12, 0, true); // bucket_size (linear histograms only)
    out.set(new TextEncoder().encode(d.name), at + 16);
    dataAt = Math.max(dataAt, (d.slot ?? dataAt) + d.size);
  });
  return out;
}

/** The private data of a stats file: what it describes, and the read position. */
interface StatsFile {
  readonly vm: Vm;
  readonly vcpu: Vcpu | undefined;
  readonly descs: readonly StatDesc[];
  readonly head: Uint8Array;
  pos: number;
}

/** The whole file as it reads now. */
function contents(s: StatsFile): Uint8Array {
  const n = s.descs.reduce((m, d) => m + d.size, 0);
  const out = new Uint8Array(s.head.length + 8 * n);
  out.set(s.head);
  const dv = new DataView(out.buffer);
  let slot = 0;
  for (const d of s.descs) {
    const at = d.slot ?? slot;
    const value = d.value !== undefined && s.vcpu !== undefined ? d.value(s.vcpu) : 0;
    dv.setBigUint64(s.head.length + 8 * at, BigInt(value), true);
    slot = Math.max(slot, at + d.size);
  }
  return out;
}

/** The file operations of a stats file (`kvm_vm_stats_fops` / `kvm_vcpu_stats_fops`). */
export function statsFops(owner: FileOperations['owner']): FileOperations<StatsFile> {
  return {
    owner,
    release(file: OpenFile<StatsFile>) {
      file.privateData.vm.put(); // kvm_put_kvm
    },
    read(file, count, offset) {
      const s = file.privateData;
      const all = contents(s);
      const from = offset ?? s.pos;
      const bytes = all.slice(Math.min(from, all.length), Math.min(from + count, all.length));
      if (offset === undefined) s.pos = from + bytes.length;
      return bytes;
    },
  };
}

/**
 * KVM_GET_STATS_FD: a new read-only stats file for a VM (`vcpu` undefined) or a vCPU.
 * @returns the fd
 */
export function openStatsFd(proc: Process, fops: FileOperations<StatsFile>, vm: Vm, vcpu: Vcpu | undefined): number {
  if (vm.dead) throw new KernelError('EIO', 'KVM_GET_STATS_FD', 'the VM is dead');
  const id = vcpu === undefined ? `kvm-${vm.owner.pid}` : `kvm-${vm.owner.pid}/vcpu-${vcpu.id}`;
  const descs = vcpu === undefined ? VM_STATS : VCPU_STATS;
  const data: StatsFile = { vm, vcpu, descs, head: layoutBytes(descs, id), pos: 0 };
  const fd = proc.installAnonFile(vcpu === undefined ? 'kvm-vm-stats' : 'kvm-vcpu-stats', fops, data, O_RDONLY | O_CLOEXEC); // get_unused_fd_flags(O_CLOEXEC)
  vm.users++; // kvm_get_kvm
  return fd;
}

/** The statistics names of a VM and of a vCPU, in file order (for docs and tests). */
export const STATS_NAMES = { vm: VM_STATS.map((d) => d.name), vcpu: VCPU_STATS.map((d) => d.name) } as const;
