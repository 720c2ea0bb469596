/**
 * Counting what a VMM asks of the kernel while it moves a VM, and turning it into simulated time.
 *
 * A {@link MeteredProcess} is the VMM's own {@link Process} seen through a counter: every `ioctl`, `open`, `close`,
 * `mmap` and `munmap` it makes is counted (ioctls by their Linux name) and moves the host's simulated clock forward
 * by its cost ({@link SyscallCosts}). The kernel does the same work as without the meter; the meter only adds the
 * time a real kernel would have spent, so that a move's blackout can be read off the host's clock from the calls
 * actually made.
 *
 * @module
 */
import { UsageError, type Host, type Process } from '@vac/core';
import { KVM_IOCTL_TABLE } from '@vac/kvm';

/**
 * What each system call costs in simulated time. The defaults ({@link DEFAULT_SYSCALL_COSTS}) are assumptions,
 * stated where they are defined; pass your own figures (measured on your hosts) to model them.
 */
export interface SyscallCosts {
  /** ns of an ioctl not listed in `ioctlNs`. */
  readonly defaultIoctlNs: number;
  /** ns of particular ioctls, by Linux name (`KVM_CREATE_VM`, `KVM_SET_MSRS`, …). */
  readonly ioctlNs?: Readonly<Record<string, number>>;
  /** ns of an `open`, `close`, `mmap` or `munmap`. */
  readonly fileNs: number;
}

/**
 * The default costs — **assumptions, not measurements**: a KVM state ioctl is a system call plus a copy of at most a
 * few KiB (about 1 µs on current x86 servers: the order of a `getpid`-class syscall, 0.1–0.3 µs, plus the copy and
 * KVM's checks); `KVM_CREATE_VM` allocates the VM's MMU and per-VM structures and `KVM_CREATE_VCPU` a vCPU with its
 * VMCS/VMCB and `kvm_run` page, each taken as 50 µs; a file operation 1 µs. Replace them with figures of your own
 * hosts: the move reports the ioctls it made by name ({@link SyscallCount.byName}), so any cost table can be applied.
 */
export const DEFAULT_SYSCALL_COSTS: SyscallCosts = Object.freeze({
  defaultIoctlNs: 1_000,
  ioctlNs: Object.freeze({ KVM_CREATE_VM: 50_000, KVM_CREATE_VCPU: 50_000 }),
  fileNs: 1_000,
});

/** What a {@link MeteredProcess} counted. */
export interface SyscallCount {
  /** ioctls made. */
  readonly ioctls: number;
  /** `open`, `close`, `mmap` and `munmap` calls made. */
  readonly fileOps: number;
  /** ioctls by Linux name (`ioctl:0x…` for a request the KVM ABI does not name). */
  readonly byName: ReadonlyMap<string, number>;
  /** The simulated time they cost, in ns (already added to the host's clock). */
  readonly ns: number;
}

const NAMES = new Map<number, string>(KVM_IOCTL_TABLE.map((i) => [i.request >>> 0, i.name]));

/** The Linux name of a KVM ioctl request (`ioctl:0x…` for one the ABI does not name). */
export function ioctlName(request: number): string {
  return NAMES.get(request >>> 0) ?? `ioctl:0x${(request >>> 0).toString(16)}`;
}

/** Whether `v` is a cost: a non-negative safe integer. */
function isCost(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The cost tables already checked (the default one, and any a caller passes for many moves): checked once. */
const CHECKED = new WeakSet<SyscallCosts>();

function checkCosts(c: SyscallCosts): void {
  if (typeof c === 'object' && c !== null && CHECKED.has(c)) return;
  if (typeof c !== 'object' || c === null || !isCost(c.defaultIoctlNs) || !isCost(c.fileNs) || !Object.values(c.ioctlNs ?? {}).every(isCost)) {
    throw new UsageError('ERR_INVALID_ARG', 'SyscallCosts: every cost must be a non-negative safe integer of ns');
  }
  // A frozen table cannot change after the check; another one is checked again on every use.
  if (Object.isFrozen(c) && (c.ioctlNs === undefined || Object.isFrozen(c.ioctlNs))) CHECKED.add(c);
}

/** A VMM process seen through a counter (see the module comment). */
export class MeteredProcess {
  /** The process to pass to helpers (`saveVm`, `restoreVm`, …): the VMM's, with its system calls counted. */
  readonly proc: Process;
  readonly #host: Host;
  readonly #costs: SyscallCosts;
  #ioctls = 0;
  #fileOps = 0;
  #ns = 0;
  readonly #byName = new Map<string, number>();

  /**
   * @param host the VMM's host (its clock is moved forward by each call's cost)
   * @param proc the VMM process
   * @param costs what each call costs
   * @throws UsageError `ERR_INVALID_ARG` for a cost that is not a non-negative safe integer
   */
  constructor(host: Host, proc: Process, costs: SyscallCosts = DEFAULT_SYSCALL_COSTS) {
    checkCosts(costs);
    this.#host = host;
    this.#costs = costs;
    const charge = (ns: number): void => {
      this.#ns += ns;
      if (ns > 0) host.clock.advanceBy(ns);
    };
    const ioctl = (fd: number, request: number, arg?: unknown): number => {
      const name = ioctlName(request);
      this.#ioctls++;
      this.#byName.set(name, (this.#byName.get(name) ?? 0) + 1);
      try {
        return proc.ioctl(fd, request, arg);
      } finally {
        charge(costs.ioctlNs?.[name] ?? costs.defaultIoctlNs);
      }
    };
    const file = <A extends unknown[], R>(f: (...a: A) => R) => (...a: A): R => {
      this.#fileOps++;
      try {
        return f(...a);
      } finally {
        charge(costs.fileNs);
      }
    };
    const wrapped: Partial<Record<keyof Process, unknown>> = {
      ioctl,
      open: file(proc.open.bind(proc)),
      close: file(proc.close.bind(proc)),
      mmap: file(proc.mmap.bind(proc)),
      munmap: file(proc.munmap.bind(proc)),
    };
    // The process's other methods bound to it once each (not a new bound function per access).
    const bound = new Map<PropertyKey, { readonly of: unknown; readonly fn: unknown }>();
    this.proc = new Proxy(proc, {
      get(target, key): unknown {
        if (typeof key === 'string' && Object.hasOwn(wrapped, key)) return wrapped[key as keyof Process];
        const v: unknown = Reflect.get(target, key, target);
        if (typeof v !== 'function') return v;
        const b = bound.get(key);
        if (b !== undefined && b.of === v) return b.fn;
        const fn = (v as (...a: unknown[]) => unknown).bind(target);
        bound.set(key, { of: v, fn });
        return fn;
      },
    });
  }

  /** ioctls counted so far. */
  get ioctls(): number {
    return this.#ioctls;
  }

  /** The host whose clock the calls move. */
  get host(): Host {
    return this.#host;
  }

  /** The costs in use. */
  get costs(): SyscallCosts {
    return this.#costs;
  }

  /** What was counted so far (a copy). */
  count(): SyscallCount {
    return { ioctls: this.#ioctls, fileOps: this.#fileOps, byName: new Map(this.#byName), ns: this.#ns };
  }
}
