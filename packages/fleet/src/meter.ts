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
/** A frozen table's price of each ioctl request number met so far (the table cannot change, so neither can they). */
const PRICES = new WeakMap<SyscallCosts, Map<number, number>>();

function checkCosts(c: SyscallCosts): void {
  if (typeof c === 'object' && c !== null && CHECKED.has(c)) return;
  if (typeof c !== 'object' || c === null || !isCost(c.defaultIoctlNs) || !isCost(c.fileNs) || !Object.values(c.ioctlNs ?? {}).every(isCost)) {
    throw new UsageError('ERR_INVALID_ARG', 'SyscallCosts: every cost must be a non-negative safe integer of ns');
  }
  // A frozen table cannot change after the check; another one is checked again on every use.
  if (Object.isFrozen(c) && (c.ioctlNs === undefined || Object.isFrozen(c.ioctlNs))) {
    CHECKED.add(c);
    PRICES.set(c, new Map());
  }
}

/** The meter a {@link MeteredProcess.proc} view counts for (a symbol: not a name the process has). */
const METER = Symbol('meter');

/** A {@link MeteredProcess.proc} view: the process's members, five of them counted by {@link METER}. */
interface MeterView {
  readonly [METER]: MeteredProcess;
}

/** The counted calls, shared by every view (each finds its meter through `this`). */
const COUNTED = {
  ioctl(this: MeterView, fd: number, request: number, arg?: unknown): number {
    return this[METER].ioctlCall(fd, request, arg);
  },
  open(this: MeterView, path: string, flags?: number): number {
    const m = this[METER].fileBegin();
    try {
      return m.target.open(path, flags);
    } finally {
      m.fileEnd();
    }
  },
  close(this: MeterView, fd: number): void {
    const m = this[METER].fileBegin();
    try {
      m.target.close(fd);
    } finally {
      m.fileEnd();
    }
  },
  mmap(this: MeterView, fd: number, length: number, offset?: number): ReturnType<Process['mmap']> {
    const m = this[METER].fileBegin();
    try {
      return m.target.mmap(fd, length, offset);
    } finally {
      m.fileEnd();
    }
  },
  munmap(this: MeterView, ...a: Parameters<Process['munmap']>): ReturnType<Process['munmap']> {
    const m = this[METER].fileBegin();
    try {
      return m.target.munmap(...a);
    } finally {
      m.fileEnd();
    }
  },
};

/**
 * What every view of a process of one class inherits (made once per class, so a move pays for one object): the
 * class's prototype (`instanceof` holds), then a forwarder for each member — a method calls the viewed process's
 * method, an accessor or an instance field reads and writes the viewed process's (its private fields are reached
 * through the real object) — and the counted calls.
 */
const FORWARDERS = new WeakMap<object, object>();

/** The process a view shows. */
function viewed(view: object): Process {
  return (view as MeterView)[METER].target;
}

function forwarderOf(proc: Process): object {
  const proto = Object.getPrototypeOf(proc) as object;
  const known = FORWARDERS.get(proto);
  if (known !== undefined) return known;
  const f = Object.create(proto) as object;
  const members = new Map<PropertyKey, PropertyDescriptor>();
  for (let o: object | null = proto; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Reflect.ownKeys(o)) if (key !== 'constructor' && !members.has(key)) members.set(key, Object.getOwnPropertyDescriptor(o, key) as PropertyDescriptor);
  }
  // The instance fields (pid, name, alive, …) are the same for every process of the class: read and write through.
  for (const key of Reflect.ownKeys(proc)) members.set(key, {});
  for (const [key, d] of members) {
    const k = key as keyof Process;
    if (Object.hasOwn(COUNTED, key)) Object.defineProperty(f, key, { value: COUNTED[key as keyof typeof COUNTED], configurable: true });
    else if (typeof d.value === 'function') {
      Object.defineProperty(f, key, {
        configurable: true,
        value(this: object, ...a: unknown[]): unknown {
          return (viewed(this)[k] as (...x: unknown[]) => unknown)(...a);
        },
      });
    } else {
      Object.defineProperty(f, key, {
        configurable: true,
        get(this: object): unknown {
          return viewed(this)[k];
        },
        set(this: object, v: unknown): void {
          (viewed(this) as unknown as Record<PropertyKey, unknown>)[key] = v;
        },
      });
    }
  }
  FORWARDERS.set(proto, f);
  return f;
}

/** A new view of `proc` counting for `meter`. */
function viewOf(proc: Process, meter: MeteredProcess): Process {
  const view = Object.create(forwarderOf(proc)) as { [METER]: MeteredProcess };
  view[METER] = meter;
  return view as unknown as Process;
}

/** A VMM process seen through a counter (see the module comment). */
export class MeteredProcess {
  /**
   * The process to pass to helpers (`saveVm`, `restoreVm`, …): the VMM's, with its system calls counted. A view
   * of it: its fields and methods are the process's (methods bound to it), `instanceof Process` holds.
   */
  readonly proc: Process;
  /** @internal The process counted. */
  readonly target: Process;
  readonly #host: Host;
  readonly #costs: SyscallCosts;
  #ioctls = 0;
  #fileOps = 0;
  #ns = 0;
  /** Calls by request number, in the order first made (named at {@link MeteredProcess.count}). */
  readonly #byRequest = new Map<number, number>();

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
    this.target = proc;
    this.proc = viewOf(proc, this);
  }

  #charge(ns: number): void {
    this.#ns += ns;
    if (ns > 0) this.#host.clock.advanceBy(ns);
  }

  /** @internal An ioctl through the view: counted, made, costed (a failing one too). */
  ioctlCall(fd: number, request: number, arg: unknown): number {
    const key = request >>> 0;
    this.#ioctls++;
    this.#byRequest.set(key, (this.#byRequest.get(key) ?? 0) + 1);
    try {
      return this.target.ioctl(fd, request, arg);
    } finally {
      this.#charge(this.#ioctlPrice(key));
    }
  }

  /** What ioctl `request` costs: looked up by its name once per frozen table, every time in another. */
  #ioctlPrice(request: number): number {
    const c = this.#costs;
    if (c.ioctlNs === undefined) return c.defaultIoctlNs;
    const prices = PRICES.get(c);
    const known = prices?.get(request);
    if (known !== undefined) return known;
    const ns = c.ioctlNs[ioctlName(request)] ?? c.defaultIoctlNs;
    prices?.set(request, ns);
    return ns;
  }

  /** @internal A file operation through the view begins: counted (then made, then {@link MeteredProcess.fileEnd}). */
  fileBegin(): this {
    this.#fileOps++;
    return this;
  }

  /** @internal A file operation through the view ended (or failed): costed. */
  fileEnd(): void {
    this.#charge(this.#costs.fileNs);
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
    const byName = new Map<string, number>();
    for (const [request, n] of this.#byRequest) byName.set(ioctlName(request), n);
    return { ioctls: this.#ioctls, fileOps: this.#fileOps, byName, ns: this.#ns };
  }
}
