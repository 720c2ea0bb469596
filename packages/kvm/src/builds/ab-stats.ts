/**
 * A/B across modules: what a canary compares. A VMM reads each vCPU's statistics through KVM_GET_STATS_FD (the
 * binary file of virt/kvm/binary_stats.c: header, id, descriptors, values), and the host sums them per module, so
 * a share of VMs on kvm1 can be held against the rest on kvm0 (the multi-KVM talk at LPC 2023).
 *
 * @module
 */
import type { Process } from '@vac/core';
import { KVM_GET_STATS_FD } from '../abi/constants.js';

/** The statistics a canary compares, as `kvm_vcpu_stats_desc` names them. */
export const CANARY_STATS = ['exits', 'io_exits', 'mmio_exits', 'halt_exits', 'signal_exits', 'l1d_flush'] as const;

/** One vCPU's statistics by name (histograms summed over their buckets). */
export type KvmStatValues = Readonly<Record<string, number>>;

/**
 * Read a vCPU's (or VM's) statistics the way a VMM does: KVM_GET_STATS_FD, then `pread` of the header, the
 * descriptors and the values; the file is closed after.
 *
 * @param proc - the VMM process
 * @param fd - a vCPU or VM fd
 * @returns every statistic by name
 * @throws KernelError from KVM_GET_STATS_FD (EIO for a dead VM, …)
 */
export function readKvmStats(proc: Process, fd: number): KvmStatValues {
  const stats = proc.ioctl(fd, KVM_GET_STATS_FD, 0);
  try {
    const head = new DataView(proc.read(stats, 24, 0).buffer);
    const nameSize = head.getUint32(4, true);
    const numDesc = head.getUint32(8, true);
    const descOffset = head.getUint32(16, true);
    const dataOffset = head.getUint32(20, true);
    const descSize = 16 + nameSize;
    const descs = proc.read(stats, numDesc * descSize, descOffset);
    const out: Record<string, number> = {};
    const decoder = new TextDecoder();
    for (let i = 0; i < numDesc; i++) {
      const at = i * descSize;
      const dv = new DataView(descs.buffer, descs.byteOffset + at, 16);
      const size = dv.getUint16(6, true);
      const offset = dv.getUint32(8, true);
      const name = decoder.decode(descs.subarray(at + 16, at + descSize)).replace(/\0.*$/s, '');
      const values = new DataView(proc.read(stats, 8 * size, dataOffset + offset).buffer);
      let sum = 0;
      for (let j = 0; j < size; j++) sum += Number(values.getBigUint64(8 * j, true));
      out[name] = sum;
    }
    return out;
  } finally {
    proc.close(stats);
  }
}

/** One arm of a canary: how many vCPUs, their summed statistics, and the mean per vCPU. */
export interface CanaryArm {
  /** The module, e.g. `'kvm1'`. */
  readonly module: string;
  /** vCPUs counted. */
  readonly vcpus: number;
  /** {@link CANARY_STATS} summed over the vCPUs, and `failed_entries` (KVM_EXIT_FAIL_ENTRY seen by the VMMs). */
  readonly total: Readonly<Record<string, number>>;
  /** The same per vCPU. */
  readonly mean: Readonly<Record<string, number>>;
}

/**
 * Sum per module what the VMMs read: `samples` are one per vCPU, each with its module, its statistics and the
 * KVM_EXIT_FAIL_ENTRY exits its VMM saw (Linux has no statistic for them).
 *
 * @returns one arm per module, in the order the modules first appear
 */
export function canaryArms(samples: ReadonlyArray<{ readonly module: string; readonly stats: KvmStatValues; readonly failedEntries: number }>): CanaryArm[] {
  const arms = new Map<string, { vcpus: number; total: Record<string, number> }>();
  for (const s of samples) {
    let arm = arms.get(s.module);
    if (arm === undefined) {
      arm = { vcpus: 0, total: Object.fromEntries([...CANARY_STATS, 'failed_entries'].map((k) => [k, 0])) };
      arms.set(s.module, arm);
    }
    arm.vcpus++;
    for (const k of CANARY_STATS) arm.total[k] = (arm.total[k] ?? 0) + (s.stats[k] ?? 0);
    arm.total['failed_entries'] = (arm.total['failed_entries'] ?? 0) + s.failedEntries;
  }
  return [...arms].map(([module, a]) => ({
    module,
    vcpus: a.vcpus,
    total: a.total,
    mean: Object.fromEntries(Object.entries(a.total).map(([k, v]) => [k, a.vcpus === 0 ? 0 : v / a.vcpus])),
  }));
}
