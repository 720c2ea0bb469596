/**
 * CPU topology: simultaneous multithreading (SMT, "hyper-threads"). A host of `cpus` logical CPUs with
 * `threadsPerCore` threads per core has `cpus / threadsPerCore` cores in one package. CPUs are numbered as x86
 * servers usually enumerate them (the firmware lists every core's first thread, then every core's second one): CPU
 * `n` is thread `⌊n / cores⌋` of core `n mod cores`, so with 16 CPUs and 2 threads per core, CPU 0 and CPU 8 are
 * siblings.
 *
 * Siblings share a core's L1 data cache and fill buffers: a flush on one thread's VM entry does not protect a guest
 * from code running on its sibling (L1TF, MDS). That is why a per-module mitigation such as
 * `vmentry_l1d_flush=always` needs a placement that keeps siblings in one trust domain, or core scheduling.
 *
 * The files of /sys/devices/system/cpu/cpuN/topology/ and /sys/devices/system/cpu/smt/ are read with
 * {@link readTopologySysfs} (drivers/base/topology.c, kernel/cpu.c `cpu_smt_control`).
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';

/** The most threads per core the model takes. */
export const MAX_THREADS_PER_CORE = 8;

/** The SMT layout of a host's CPUs. */
export class CpuTopology {
  /** Threads per core (1: no SMT). */
  readonly threadsPerCore: number;
  /** Number of cores (`cpus / threadsPerCore`). */
  readonly cores: number;

  /**
   * @internal Made by `createHost`.
   * @throws {@link UsageError} ERR_OUT_OF_RANGE when `threadsPerCore` is not an integer in 1 … 8 that divides `cpus`
   */
  constructor(cpus: number, threadsPerCore: number) {
    if (!Number.isInteger(threadsPerCore) || threadsPerCore < 1 || threadsPerCore > MAX_THREADS_PER_CORE || cpus % threadsPerCore !== 0) {
      throw new UsageError('ERR_OUT_OF_RANGE', `createHost: threadsPerCore must be an integer in 1…${MAX_THREADS_PER_CORE} that divides cpus (${cpus}), got ${String(threadsPerCore)}`);
    }
    this.threadsPerCore = threadsPerCore;
    this.cores = cpus / threadsPerCore;
  }

  /** The core CPU `cpu` belongs to (`topology_core_id`). */
  coreOf(cpu: number): number {
    return cpu % this.cores;
  }

  /** Which thread of its core CPU `cpu` is (0 for the first). */
  threadOf(cpu: number): number {
    return Math.floor(cpu / this.cores);
  }

  /** The CPUs of core `core`, in order (`topology_sibling_cpumask`): its threads. */
  cpusOfCore(core: number): number[] {
    return Array.from({ length: this.threadsPerCore }, (_, t) => t * this.cores + core);
  }

  /** The CPUs that share a core with `cpu`, `cpu` included, in order. */
  siblingsOf(cpu: number): number[] {
    return this.cpusOfCore(this.coreOf(cpu));
  }

  /** The other threads of `cpu`'s core (its SMT siblings, `cpu` left out). */
  otherThreadsOf(cpu: number): number[] {
    return this.siblingsOf(cpu).filter((c) => c !== cpu);
  }
}

/** A CPU list as sysfs prints it (`%*pbl`): ascending, runs of consecutive numbers as `a-b`, comma-separated. */
export function cpuList(cpus: readonly number[]): string {
  const sorted = [...cpus].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j++;
    out.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/**
 * Read a topology file of sysfs, as `cat` prints it without the newline:
 * `/sys/devices/system/cpu/cpuN/topology/{thread_siblings_list, core_cpus_list, core_siblings_list,
 * package_cpus_list, core_id, physical_package_id}` and `/sys/devices/system/cpu/smt/{active, control}`. The sibling
 * lists hold the online CPUs only (an offline thread leaves its siblings' masks), and an offline CPU has no
 * topology directory (ENOENT), as Linux removes it when the CPU goes down.
 * @param online - whether each CPU is online
 * @returns the text, or `undefined` when `path` is no topology file (the caller answers ENOENT)
 * @throws {@link KernelError} ENOENT for the topology of a CPU that is offline or does not exist
 */
export function readTopologySysfs(topo: CpuTopology, online: (cpu: number) => boolean, cpus: number, path: string): string | undefined {
  if (path === '/sys/devices/system/cpu/smt/active') return topo.threadsPerCore > 1 && [...Array(cpus).keys()].some((c) => online(c) && topo.otherThreadsOf(c).some(online)) ? '1' : '0';
  if (path === '/sys/devices/system/cpu/smt/control') return topo.threadsPerCore > 1 ? 'on' : 'notsupported';
  const m = /^\/sys\/devices\/system\/cpu\/cpu(0|[1-9]\d*)\/topology\/([a-z_]+)$/.exec(path);
  if (m === null) return undefined;
  const cpu = Number(m[1]);
  if (cpu >= cpus || !online(cpu)) throw new KernelError('ENOENT', 'open', `${path}: No such file or directory`);
  const all = [...Array(cpus).keys()].filter(online);
  switch (m[2]) {
    case 'thread_siblings_list':
    case 'core_cpus_list':
      return cpuList(topo.siblingsOf(cpu).filter(online));
    case 'core_siblings_list':
    case 'package_cpus_list':
      return cpuList(all);
    case 'core_id':
      return String(topo.coreOf(cpu));
    case 'physical_package_id':
      return '0';
    default:
      throw new KernelError('ENOENT', 'open', `${path}: No such file or directory`);
  }
}
