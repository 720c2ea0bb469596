/**
 * The model-based random tester of the whole host: a small, independent model of what a multi-KVM host must
 * look like (modules, processes and their fds, VMs, vCPUs, threads, CPUs, power, VAC's usage count, per-CPU
 * enable state, VPID / ASID / SEV holders, fault plans) and a command set covering every public operation.
 * {@link World.exec} runs one command on the real host and on the model, compares the answers (result or
 * exact errno), and then compares everything observable; a failed operation must also leave
 * `host.snapshot()` exactly as it was.
 *
 * Commands are plain data with "pick" numbers resolved against the current model state (modulo the number of
 * candidates), so every generated sequence stays meaningful when fast-check shrinks it.
 *
 * @module
 */
import {
  KernelError,
  O_RDWR,
  PERF_GUEST_ACTIVE,
  checkInvariants,
  createHost,
  isKernelError,
  vacImage,
  vacOf,
  type EventName,
  type FaultMode,
  type FaultSite,
  type Host,
  type HostSnapshot,
  type Process,
  type Thread,
} from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import {
  kvmInstance,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_NR_VCPUS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_GET_API_VERSION,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
  type KvmImage,
  type KvmInstance,
  type Vcpu,
} from '../../src/index.js';
import { firstDifference } from '@vac/test-support';
import { VPIDS } from '@vac/vmx';
import { OBSERVED_EVENTS, OBSERVER_ACTS, Observer, type ObserverAct } from './observer.js';
import { ASIDS, SEV_ASIDS } from '@vac/svm';

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

/** CPUs of every model host. */
export const NR_CPUS = 4;
/** At most this many live processes (besides init). */
const MAX_PROCS = 5;
/** At most this many live threads. */
const MAX_THREADS = 6;
/** Guest instructions a direct KVM_RUN may execute before EINTR (small, so spinning guests are cheap). */
export const SYNC_RUN_LIMIT = 3000;
/** Guest instructions per scheduler slice. */
const QUANTUM = 200;

/** The module names the model knows: VAC and three KVM modules. */
export const MODULES = ['vac', 'kvm0', 'kvm1', 'kvm2'] as const;
export type ModName = (typeof MODULES)[number];

/** One image per KVM module, shared by every host (images are stateless). */
export const IMAGES: Readonly<Record<Exclude<ModName, 'vac'>, KvmImage>> = {
  kvm0: kvm({ postfix: '0', syncRunLimit: SYNC_RUN_LIMIT }),
  kvm1: kvm({ postfix: '1', syncRunLimit: SYNC_RUN_LIMIT }),
  kvm2: kvm({ postfix: '2', syncRunLimit: SYNC_RUN_LIMIT }),
};

export type Vendor = 'intel' | 'amd';

/** Guest programs (16-bit real mode, loaded at guest-physical 0x1000). */
export const PROGRAMS = {
  /** `mov dx,0x3f8; L: out dx,al; inc ax; jmp L` — every KVM_RUN exits with KVM_EXIT_IO. */
  io: [0xba, 0xf8, 0x03, 0xee, 0x40, 0xeb, 0xfc],
  /** `L: hlt; jmp L` — every KVM_RUN exits with KVM_EXIT_HLT (blocks with an in-kernel irqchip). */
  hlt: [0xf4, 0xeb, 0xfd],
  /** `mov dx,0x3f8; L: out dx,al; hlt; jmp L` — exits alternate IO, HLT. */
  mix: [0xba, 0xf8, 0x03, 0xee, 0xf4, 0xeb, 0xfc],
  /** `L: inc ax; jmp L` — never exits: stays in guest mode. */
  spin: [0x40, 0xeb, 0xfd],
} as const;
export type Prog = keyof typeof PROGRAMS;
export const PROG_NAMES = Object.keys(PROGRAMS) as Prog[];

/** Load-time parameter sets: [params, expected outcome]. Vendor-specific entries are resolved at run time. */
export const PARAM_SETS = ['default', 'noEval', 'noVpidOrSev', 'noEvalNoVpidOrSev', 'unknown', 'badEval', 'badHaltPoll', 'badNx'] as const;
export type ParamSet = (typeof PARAM_SETS)[number];

/** Fault sites the model plans. */
export const SITES: readonly FaultSite[] = ['vm', 'vcpu', 'fd', 'mmap', 'vpid'];

/** Number of `ctx.defer` steps of each module's init (failModuleInit can hit 1 … this). */
export function initSteps(name: ModName, evalAtLoad: boolean): number {
  return name === 'vac' ? 10 : evalAtLoad ? 7 : 6;
}

// ---------------------------------------------------------------------------------------------------------
// Commands (plain data)
// ---------------------------------------------------------------------------------------------------------

export type Cmd =
  | { readonly k: 'load'; readonly mod: number; readonly modprobe: boolean; readonly params: ParamSet; readonly actor: number }
  | { readonly k: 'rmmod'; readonly mod: number; readonly actor: number }
  | { readonly k: 'spawn'; readonly kind: 'kvm' | 'nokvm' | 'root'; readonly cpu: number }
  | { readonly k: 'kill'; readonly p: number }
  | { readonly k: 'setcpu'; readonly p: number; readonly cpu: number }
  | { readonly k: 'open'; readonly p: number; readonly dev: number }
  | { readonly k: 'close'; readonly p: number; readonly f: number; readonly bogus: boolean }
  | { readonly k: 'createVm'; readonly p: number; readonly f: number }
  | { readonly k: 'createVcpu'; readonly p: number; readonly f: number; readonly id: 'next' | 'dup' | 'big' | 'neg' | 'max' }
  | { readonly k: 'mem'; readonly p: number; readonly f: number; readonly v: MemVariant; readonly prog: number }
  | { readonly k: 'irqchip'; readonly p: number; readonly f: number }
  | { readonly k: 'sev'; readonly p: number; readonly f: number; readonly es: boolean }
  | { readonly k: 'mmap'; readonly p: number; readonly f: number }
  | { readonly k: 'munmap'; readonly p: number; readonly m: number }
  | { readonly k: 'run'; readonly p: number; readonly f: number }
  | { readonly k: 'reset'; readonly p: number; readonly f: number }
  | { readonly k: 'thread'; readonly p: number; readonly f: number; readonly pin: number }
  | { readonly k: 'tick'; readonly n: number }
  | { readonly k: 'signal'; readonly t: number }
  | { readonly k: 'cpuDown'; readonly cpu: number }
  | { readonly k: 'cpuUp'; readonly cpu: number }
  | { readonly k: 'suspend' }
  | { readonly k: 'resume' }
  | { readonly k: 'reboot' }
  | { readonly k: 'crash' }
  | { readonly k: 'pmi'; readonly cpu: number }
  | { readonly k: 'nmi'; readonly cpu: number }
  | { readonly k: 'piWakeup'; readonly cpu: number }
  | { readonly k: 'query'; readonly p: number; readonly f: number; readonly q: number }
  | { readonly k: 'bad'; readonly p: number; readonly f: number; readonly b: number }
  | { readonly k: 'symlink'; readonly target: number }
  | { readonly k: 'unlink' }
  | { readonly k: 'enableFault'; readonly cpu: number; readonly mode: FaultMode }
  | { readonly k: 'foreign'; readonly cpu: number; readonly on: boolean }
  | { readonly k: 'failNth'; readonly site: FaultSite; readonly n: number }
  | { readonly k: 'failInit'; readonly mod: number; readonly step: number }
  | { readonly k: 'clearFaults' }
  | { readonly k: 'observe'; readonly event: number; readonly act: number };

export type MemVariant = 'load' | 'alias' | 'delete0' | 'delete1' | 'move' | 'moveBack' | 'badFlags' | 'unaligned' | 'badSlot';
export const MEM_VARIANTS: readonly MemVariant[] = ['load', 'alias', 'delete0', 'delete1', 'move', 'moveBack', 'badFlags', 'unaligned', 'badSlot'];

/** Bad ioctls of the model run: [fd kind it targets, request, argument, expected errno by fd kind]. */
export const BAD_IOCTLS: ReadonlyArray<{ readonly req: number; readonly arg: unknown; readonly sys: string; readonly vm: string; readonly vcpu: string }> = [
  { req: 0xae99, arg: 0, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EINVAL' },
  { req: KVM_GET_API_VERSION, arg: 1, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EINVAL' },
  { req: KVM_CREATE_VM, arg: 7, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EINVAL' },
  { req: KVM_CREATE_VM, arg: 'x', sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EINVAL' },
  { req: KVM_CREATE_VCPU, arg: 4096, sys: 'EINVAL', vm: 'EINVAL', vcpu: 'EINVAL' },
  { req: KVM_CREATE_VCPU, arg: {}, sys: 'EINVAL', vm: 'EINVAL', vcpu: 'EINVAL' },
  { req: KVM_SET_USER_MEMORY_REGION, arg: 'slot', sys: 'EINVAL', vm: 'EFAULT', vcpu: 'EINVAL' },
  { req: KVM_SET_USER_MEMORY_REGION, arg: { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: -1 }, sys: 'EINVAL', vm: 'EFAULT', vcpu: 'EINVAL' },
  { req: KVM_RUN, arg: 1, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EINVAL' },
  { req: KVM_GET_REGS, arg: undefined, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EFAULT' },
  { req: KVM_SET_REGS, arg: { rax: 1 }, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EFAULT' },
  { req: KVM_SET_SREGS, arg: 42n, sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EFAULT' },
  { req: KVM_CHECK_EXTENSION, arg: 'cap', sys: 'EINVAL', vm: 'EINVAL', vcpu: 'EINVAL' },
];

// ---------------------------------------------------------------------------------------------------------
// Model state
// ---------------------------------------------------------------------------------------------------------

interface MModule {
  readonly name: ModName;
  readonly evalAtLoad: boolean;
  readonly vpid: boolean;
  readonly sev: boolean;
  readonly minor: number;
  nextVm: number;
}

type FileKind = 'sys' | 'vm' | 'vcpu';

interface MFile {
  readonly kind: FileKind;
  readonly module: ModName;
  readonly path: string;
  refs: number;
  readonly vm?: MVm;
  readonly vcpu?: MVcpu;
  /** Set once released. */
  released: boolean;
}

interface MProc {
  readonly pid: number;
  readonly kind: 'kvm' | 'nokvm' | 'root';
  cpu: number;
  readonly fds: Map<number, MFile>;
  readonly mappings: Array<{ readonly file: MFile | undefined; readonly addr: number; readonly length: number }>;
  readonly real: Process;
}

interface MSlot {
  readonly gpa: number;
  readonly size: number;
  readonly uaddr: number;
  readonly prog: Prog;
}

interface MVm {
  readonly module: MModule;
  readonly id: number;
  readonly owner: MProc;
  users: number;
  readonly vcpus: Map<number, MVcpu>;
  created: number;
  readonly slots: Map<number, MSlot>;
  irqchip: boolean;
  sev: 'none' | 'sev' | 'sev-es';
  dead: boolean;
}

interface MVcpu {
  readonly vm: MVm;
  readonly id: number;
  readonly label: string;
  readonly vpid: boolean;
  file: MFile | undefined;
  loadedOn: number;
  inGuest: boolean;
  blockedOn: number;
  /** mp_state HALTED: it blocked on HLT with an in-kernel irqchip and nothing woke it (a signal's EINTR keeps it). */
  halted: boolean;
  kicked: boolean;
  /** The thread inside KVM_RUN on it. */
  thread: MThread | undefined;
  /** RIP is inside the program at 0x1000, which has not changed since the registers were reset. */
  known: boolean;
  mixPhase: 0 | 1;
  /** AMD: the ordinary ASID grant (CPU and the CPU's enable epoch). */
  grant: { cpu: number; epoch: number } | undefined;
  freed: boolean;
}

interface MThread {
  readonly tid: number;
  readonly proc: MProc;
  readonly fd: number;
  readonly file: MFile;
  readonly vcpu: MVcpu;
  cpu: number;
  affinity: number | undefined;
  alive: boolean;
  inRun: boolean;
  /** Its KVM_RUN waits for `vcpu->mutex` (another thread is inside KVM_RUN on the vCPU); the call holds the file. */
  waiting: boolean;
  signal: boolean;
  readonly real: Thread;
  /** What the real thread body caught (for the checks after a tick). */
  readonly log: unknown[];
}

type Expect = { readonly ok: true } | { readonly errno: string };
const OK: Expect = { ok: true };
const err = (errno: string): Expect => ({ errno });

/** A check failure: the message says what disagreed. */
export class ModelMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelMismatch';
  }
}

function fail(msg: string): never {
  throw new ModelMismatch(msg);
}

function describeError(e: unknown): string {
  if (isKernelError(e)) return e.code;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** Statistics of a run of many sequences. */
export interface Stats {
  sequences: number;
  commands: number;
  skipped: number;
  failedAsExpected: number;
  faultsInjected: number;
  faultsFired: number;
  badInputs: number;
  ticks: number;
  /** Deliveries a random observer acted on, by behaviour (see observer.ts). */
  callbacks: Record<string, number>;
  byKind: Record<string, number>;
  skippedByKind: Record<string, number>;
}

export function newStats(): Stats {
  return { sequences: 0, commands: 0, skipped: 0, failedAsExpected: 0, faultsInjected: 0, faultsFired: 0, badInputs: 0, ticks: 0, callbacks: {}, byKind: {}, skippedByKind: {} };
}

// ---------------------------------------------------------------------------------------------------------
// The world: the real host and its model
// ---------------------------------------------------------------------------------------------------------

/** The real host plus the model, and the command interpreter. */
export class World {
  readonly host: Host;
  readonly vendor: Vendor;
  readonly stats: Stats;
  /** A trace of the commands run (for failure messages). */
  readonly trace: string[] = [];

  // -- model ---------------------------------------------------------------------------------------------
  readonly #mods = new Map<ModName, MModule>();
  /** Load order (lsmod lists the reverse). */
  #loadOrder: ModName[] = [];
  readonly #procs = new Map<number, MProc>();
  #threads: MThread[] = [];
  readonly #current: Array<MThread | undefined> = new Array<MThread | undefined>(NR_CPUS).fill(undefined);
  readonly #online: boolean[] = new Array<boolean>(NR_CPUS).fill(true);
  #state: 'running' | 'suspended' | 'restart' | 'crashed' = 'running';
  #suspendedCpus: number[] = [];
  /**
   * Tasks are frozen (from suspend to resume): a CPU going offline then leaves the threads where they are, pinned
   * (only runnable tasks are migrated off a dying CPU, `migrate_tasks`); resume wakes them on their own CPUs.
   */
  #frozen = false;
  /** Processes whose default CPU the suspend moved off a CPU going down: where it was and where it went. */
  readonly #movedWhileFrozen = new Map<MProc, { readonly home: number; readonly to: number }>();
  // VAC
  #count = 0;
  readonly #enabled: boolean[] = new Array<boolean>(NR_CPUS).fill(false);
  readonly #epoch: number[] = new Array<number>(NR_CPUS).fill(0);
  #rebooting = false;
  /** VAC's per-CPU running instance, and each instance's per-CPU running vCPU. */
  readonly #vacRunning: Array<ModName | undefined> = new Array<ModName | undefined>(NR_CPUS).fill(undefined);
  readonly #instRunning = new Map<ModName, Array<MVcpu | undefined>>();
  // hardware knobs and fault plans
  readonly #foreign: boolean[] = new Array<boolean>(NR_CPUS).fill(false);
  readonly #enableFault: FaultMode[] = new Array<FaultMode>(NR_CPUS).fill('off');
  readonly #plans = new Map<FaultSite, { countdown: number; always: boolean }>();
  readonly #initFaults = new Map<ModName, number>();
  #symlink: ModName | undefined;
  /**
   * CPUs whose re-enable failed at resume: Linux warns and goes on (`kvm_resume`), leaving the CPU disabled
   * while the usage count is > 0 until the count drops to 0. `checkInvariants` reports that state as an
   * invariant-1 violation; the model expects exactly that report for these CPUs (see docs/reliability.md).
   */
  readonly #degraded = new Set<number>();
  /** VM ids of destroyed VMs are gone; live VMs by module. */
  readonly #vms = new Set<MVm>();
  #crashed = false;
  /** CPUs the crash's emergency callback turned off (VAC's callback runs only when vac is loaded). */
  readonly #emergencyOff: boolean[] = new Array<boolean>(NR_CPUS).fill(false);

  /** The listener that calls back at random (the `observe` command). */
  readonly #observer: Observer;

  constructor(vendor: Vendor, stats: Stats = newStats()) {
    this.vendor = vendor;
    this.stats = stats;
    this.host = createHost({ cpus: NR_CPUS, hardware: vendor === 'intel' ? intel() : amd(), modules: Object.values(IMAGES) });
    this.host.scheduler.quantum = QUANTUM;
    this.#observer = new Observer(this.host);
  }

  /** True after a crash: the sequence must end. */
  get crashed(): boolean {
    return this.#crashed;
  }

  // -- helpers -------------------------------------------------------------------------------------------

  #procList(): MProc[] {
    return [...this.#procs.values()];
  }

  #pickProc(p: number): MProc | undefined {
    const l = this.#procList();
    return l.length === 0 ? undefined : l[p % l.length];
  }

  #pickFd(proc: MProc, f: number, kind?: FileKind): [number, MFile] | undefined {
    const l = [...proc.fds].filter(([, file]) => kind === undefined || file.kind === kind);
    return l.length === 0 ? undefined : l[f % l.length];
  }

  /** Any fd (of `kind`) of any process: `p` and `f` pick among all of them. */
  #pickAny(p: number, f: number, kind?: FileKind): [MProc, [number, MFile]] | undefined {
    const all: Array<[MProc, [number, MFile]]> = [];
    for (const proc of this.#procs.values()) {
      for (const e of proc.fds) if (kind === undefined || e[1].kind === kind) all.push([proc, e]);
    }
    return all.length === 0 ? undefined : all[(p * 64 + f) % all.length];
  }

  #loaded(name: ModName): boolean {
    return this.#mods.has(name);
  }

  #planFires(site: FaultSite): boolean {
    const p = this.#plans.get(site);
    if (p === undefined) return false;
    if (p.always) return true;
    if (--p.countdown > 0) return false;
    this.#plans.delete(site);
    return true;
  }

  // -- VAC model -----------------------------------------------------------------------------------------

  #enableAttempt(cpu: number): boolean {
    if (this.#foreign[cpu]) return false;
    const f = this.#enableFault[cpu];
    if (f === 'always') return false;
    if (f === 'once') {
      this.#enableFault[cpu] = 'off';
      return false;
    }
    return true;
  }

  /** svm_hardware_enable's ASID reset: a new generation on `cpu` (VAC never reuses one). */
  #bumpEpoch(cpu: number): void {
    this.#epoch[cpu] = (this.#epoch[cpu] ?? 0) + 1;
  }

  #disable(cpu: number): void {
    this.#enabled[cpu] = false;
  }

  /** hardware_enable_all (0→1 all or nothing) + count++. */
  #virtGet(): boolean {
    if (this.#rebooting) return false;
    if (this.#count === 0) {
      let failed = 0;
      const on: number[] = [];
      for (let c = 0; c < NR_CPUS; c++) {
        if (!this.#online[c]) continue;
        if (this.#enabled[c]) continue;
        if (this.#enableAttempt(c)) {
          this.#enabled[c] = true;
          on.push(c);
        } else failed++;
      }
      if (failed > 0) {
        for (let c = 0; c < NR_CPUS; c++) if (this.#online[c]) this.#disable(c);
        return false;
      }
      for (const c of on) this.#bumpEpoch(c);
    }
    this.#count++;
    return true;
  }

  #virtPut(): void {
    this.#count--;
    if (this.#count === 0) {
      for (let c = 0; c < NR_CPUS; c++) if (this.#online[c]) this.#disable(c);
      this.#degraded.clear();
    }
  }

  // -- vCPU load/put (KVM + VAC running marks) -----------------------------------------------------------

  #instRun(name: ModName): Array<MVcpu | undefined> {
    let r = this.#instRunning.get(name);
    if (r === undefined) {
      r = new Array<MVcpu | undefined>(NR_CPUS).fill(undefined);
      this.#instRunning.set(name, r);
    }
    return r;
  }

  #load(v: MVcpu, cpu: number): void {
    if (v.loadedOn === cpu) return;
    if (v.loadedOn >= 0) this.#put(v, v.loadedOn);
    v.loadedOn = cpu;
    this.#instRun(v.vm.module.name)[cpu] = v;
    this.#vacRunning[cpu] = v.vm.module.name;
  }

  #put(v: MVcpu, cpu: number = v.loadedOn): void {
    if (v.loadedOn < 0 || cpu !== v.loadedOn) return;
    if (this.#vacRunning[cpu] === v.vm.module.name) this.#vacRunning[cpu] = undefined;
    const r = this.#instRun(v.vm.module.name);
    if (r[cpu] === v) r[cpu] = undefined;
    v.loadedOn = -1;
    v.inGuest = false;
  }

  /**
   * One VM entry of `v` on `cpu`: 'slice' (still in guest mode), 'block' (halted with an in-kernel irqchip),
   * or the exit reason KVM_RUN returns with.
   */
  #enter(v: MVcpu, cpu: number): 'slice' | 'block' | number {
    // No VM entry on a CPU where VAC has virtualization off (after a reboot, a failed re-enable at resume).
    if (!this.#enabled[cpu]) return KVM_EXIT_FAIL_ENTRY;
    // vcpu_run: a halted vCPU is not entered; it blocks again (vcpu_block) until a wakeup.
    if (v.halted) return 'block';
    // prepareEntry (AMD): a new ASID after a CPU change or a stale generation; SEV guests use the VM's.
    if (this.vendor === 'amd' && v.vm.sev === 'none') {
      const g = v.grant;
      if (g === undefined || g.cpu !== cpu || g.epoch !== this.#epoch[cpu]) v.grant = { cpu, epoch: this.#epoch[cpu] as number };
    }
    const prog = this.#progAt(v.vm);
    if (prog === undefined) return KVM_EXIT_INTERNAL_ERROR;
    switch (prog) {
      case 'spin':
        v.inGuest = true;
        return 'slice';
      case 'io':
        return KVM_EXIT_IO;
      case 'hlt':
        if (!v.vm.irqchip) return KVM_EXIT_HLT;
        v.halted = true;
        return 'block';
      case 'mix': {
        const phase = v.mixPhase;
        v.mixPhase = phase === 0 ? 1 : 0;
        if (phase === 0) return KVM_EXIT_IO;
        if (!v.vm.irqchip) return KVM_EXIT_HLT;
        v.halted = true;
        return 'block';
      }
    }
  }

  #progAt(vm: MVm): Prog | undefined {
    for (const s of vm.slots.values()) if (s.gpa === 0x1000) return s.prog;
    return undefined;
  }

  // -- files and VMs -------------------------------------------------------------------------------------

  #hold(f: MFile): void {
    f.refs++;
  }

  #drop(f: MFile): void {
    if (--f.refs > 0) return;
    f.released = true;
    if (f.kind === 'vm' && f.vm !== undefined) this.#vmPut(f.vm);
    if (f.kind === 'vcpu' && f.vcpu !== undefined) {
      f.vcpu.file = undefined;
      this.#vmPut(f.vcpu.vm);
    }
  }

  #vmPut(vm: MVm): void {
    if (--vm.users > 0) return;
    this.#destroyVm(vm);
  }

  #destroyVm(vm: MVm): void {
    if (vm.dead) return;
    vm.dead = true;
    for (const v of vm.vcpus.values()) {
      if (v.loadedOn >= 0) this.#put(v, v.loadedOn);
      v.freed = true;
      v.grant = undefined;
    }
    vm.vcpus.clear();
    this.#vms.delete(vm);
    this.#virtPut();
  }

  #install(proc: MProc, file: MFile): number {
    let fd = 3;
    while (proc.fds.has(fd)) fd++;
    this.#hold(file);
    proc.fds.set(fd, file);
    return fd;
  }

  #refcount(name: ModName): number {
    if (name === 'vac') return [...this.#mods.keys()].filter((m) => m !== 'vac').length;
    const files = new Set<MFile>();
    for (const p of this.#procs.values()) {
      for (const f of p.fds.values()) files.add(f);
      for (const m of p.mappings) if (m.file !== undefined) files.add(m.file);
    }
    for (const t of this.#threads) if (t.alive && (t.inRun || t.waiting)) files.add(t.file);
    let n = 0;
    for (const f of files) if (f.module === name && !f.released) n++;
    return n;
  }

  // -- scheduler model -----------------------------------------------------------------------------------

  #schedOut(t: MThread, cpu: number): void {
    if (t.inRun) this.#put(t.vcpu, cpu);
  }

  #schedIn(t: MThread, cpu: number): void {
    if (t.inRun) this.#load(t.vcpu, cpu);
  }

  #firstOnline(): number {
    for (let c = 0; c < NR_CPUS; c++) if (this.#online[c]) return c;
    return 0;
  }

  #place(t: MThread): void {
    let cpu = t.affinity ?? t.cpu;
    if (!this.#online[cpu]) cpu = this.#firstOnline();
    if (t.cpu !== cpu) {
      if (this.#current[t.cpu] === t) {
        this.#schedOut(t, t.cpu);
        this.#current[t.cpu] = undefined;
      }
      t.cpu = cpu;
    }
    const cur = this.#current[cpu];
    if (cur !== t) {
      if (cur !== undefined) this.#schedOut(cur, cpu);
      this.#current[cpu] = t;
      this.#schedIn(t, cpu);
    }
  }

  #finish(t: MThread): void {
    if (this.#current[t.cpu] === t) {
      this.#schedOut(t, t.cpu);
      this.#current[t.cpu] = undefined;
    }
    t.alive = false;
  }

  /** Leave runThreaded (its `finally`): put, forget the thread, drop the file the call held. */
  #leaveRun(t: MThread): void {
    const v = t.vcpu;
    v.blockedOn = -1;
    v.thread = undefined;
    if (v.loadedOn >= 0) this.#put(v, v.loadedOn);
    t.inRun = false;
    this.#drop(t.file);
  }

  /** One slice of thread `t` (after it was placed). */
  #slice(t: MThread): void {
    const v = t.vcpu;
    if (!t.inRun) {
      if (!t.waiting) {
        // The body: the fd must still name the file it was started with, then KVM_RUN (which holds the file).
        const now = t.proc.fds.get(t.fd);
        if (now !== t.file) {
          this.#finish(t);
          return;
        }
        this.#hold(t.file);
      }
      // vcpu->mutex: while another thread is inside KVM_RUN on this vCPU, the call sleeps (slice over).
      t.waiting = v.thread !== undefined;
      if (t.waiting) return;
      v.thread = t;
      t.inRun = true;
      this.#load(v, t.cpu);
    }
    // The run loop, resumed.
    const cpu = t.cpu;
    if (v.loadedOn !== cpu) this.#load(v, cpu);
    if (t.signal || v.kicked) {
      t.signal = false;
      v.kicked = false;
      v.inGuest = false;
      this.#leaveRun(t); // EINTR: the body catches it and yields
      return;
    }
    if (v.blockedOn >= 0) {
      if (v.loadedOn >= 0) this.#put(v, v.loadedOn);
      return;
    }
    const step = this.#enter(v, cpu);
    if (typeof step === 'number') {
      v.inGuest = false;
      this.#leaveRun(t);
      return;
    }
    if (step === 'block') {
      v.inGuest = false;
      v.blockedOn = cpu;
    }
  }

  #tick(): void {
    if (this.#state !== 'running') return;
    for (const t of this.#threads) {
      if (!t.alive) continue;
      this.#place(t);
      this.#slice(t);
    }
    this.#threads = this.#threads.filter((t) => t.alive);
  }

  /** Sched's `CPUHP_AP_ACTIVE` teardown. */
  #evacuate(cpu: number): void {
    const cur = this.#current[cpu];
    if (cur !== undefined) {
      this.#schedOut(cur, cpu);
      this.#current[cpu] = undefined;
    }
    let target = 0;
    for (let c = 0; c < NR_CPUS; c++) {
      if (this.#online[c] && c !== cpu) {
        target = c;
        break;
      }
    }
    if (!this.#frozen) {
      // select_fallback_rq: a thread pinned to the dying CPU is no longer affine to it.
      for (const t of this.#threads) {
        if (!t.alive || (t.cpu !== cpu && t.affinity !== cpu)) continue;
        if (t.affinity === cpu) t.affinity = undefined;
        t.cpu = target;
      }
    }
    // A process's default CPU (its direct syscalls) always moves to an online CPU; resume puts it back.
    for (const p of this.#procs.values()) {
      if (p.cpu !== cpu) continue;
      if (this.#frozen && !this.#movedWhileFrozen.has(p)) this.#movedWhileFrozen.set(p, { home: cpu, to: target });
      p.cpu = target;
    }
  }

  /**
   * `thaw_processes` after the CPUs came back: a thread pinned to a CPU that is still offline has no allowed CPU
   * (`select_fallback_rq`: unpinned, first online CPU); an unpinned one on an offline CPU goes to the first online
   * CPU; the rest wake on their own CPUs, still pinned. Process default CPUs moved by the suspend go back.
   */
  #thawTasks(): void {
    this.#frozen = false;
    const fallback = this.#firstOnline();
    for (const t of this.#threads) {
      if (!t.alive) continue;
      if (t.affinity !== undefined) {
        if (this.#online[t.affinity]) continue;
        t.affinity = undefined;
      }
      if (!this.#online[t.cpu]) t.cpu = fallback;
    }
    for (const [p, { home, to }] of this.#movedWhileFrozen) {
      if (this.#procs.get(p.pid) === p && p.cpu === to && this.#online[home]) p.cpu = home;
    }
    this.#movedWhileFrozen.clear();
  }

  #down(cpu: number): void {
    this.#evacuate(cpu);
    // KVM's teardown: every instance puts its vCPU loaded there, then VAC disables the CPU.
    for (const name of this.#instanceOrder()) {
      const v = this.#instRun(name)[cpu];
      if (v !== undefined) this.#put(v, cpu);
    }
    if (this.#loaded('vac') && this.#count > 0) this.#disable(cpu);
    this.#online[cpu] = false;
  }

  /** Returns false when VAC refused the CPU. */
  #up(cpu: number): boolean {
    if (this.#loaded('vac') && this.#count > 0 && !this.#enabled[cpu]) {
      if (!this.#enableAttempt(cpu)) return false;
      this.#enabled[cpu] = true;
      this.#bumpEpoch(cpu);
    }
    this.#online[cpu] = true;
    return true;
  }

  #instanceOrder(): ModName[] {
    return this.#loadOrder.filter((m) => m !== 'vac');
  }

  #kickAll(): void {
    for (const vm of this.#vms) for (const v of vm.vcpus.values()) if (v.thread !== undefined) v.kicked = true;
  }

  #killThreadsOf(proc: MProc): void {
    const mine = this.#threads.filter((t) => t.proc === proc && t.alive);
    for (const t of mine.reverse()) {
      t.signal = true;
      if (t.inRun) this.#leaveRun(t);
      if (t.waiting) {
        // Killed while waiting for vcpu->mutex: the call's fdput.
        t.waiting = false;
        this.#drop(t.file);
      }
      this.#finish(t);
    }
  }

  // -- the command interpreter ---------------------------------------------------------------------------

  /**
   * Run one command on both sides and compare. Returns false when the command did not apply (skipped).
   * @throws {@link ModelMismatch} on any disagreement
   */
  exec(cmd: Cmd): boolean {
    if (this.#crashed) return false;
    const degradedBefore = new Set(this.#degraded);
    const calls = { ...this.#observer.calls };
    this.#observer.beginCommand();
    const ran = this.#exec(cmd);
    this.#checkObserver(cmd, degradedBefore, calls);
    if (!ran) {
      this.stats.skipped++;
      this.stats.skippedByKind[cmd.k] = (this.stats.skippedByKind[cmd.k] ?? 0) + 1;
      return false;
    }
    this.stats.commands++;
    this.stats.byKind[cmd.k] = (this.stats.byKind[cmd.k] ?? 0) + 1;
    this.trace.push(JSON.stringify(cmd, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));
    this.agree(cmd.k);
    return true;
  }

  /**
   * What the random observer saw during `cmd`: it ran outside every operation, its own calls behaved, and the host it
   * saw was consistent (no violation beyond the degraded CPUs the model knows of before or after the command).
   */
  #checkObserver(cmd: Cmd, degradedBefore: ReadonlySet<number>, callsBefore: Readonly<Record<string, number>>): void {
    const o = this.#observer;
    for (const [act, n] of Object.entries(o.calls)) this.stats.callbacks[act] = (this.stats.callbacks[act] ?? 0) + n - (callsBefore[act] ?? 0);
    if (o.problems().length > 0) fail(`during ${JSON.stringify(cmd)}: ${o.problems().join('; ')}`);
    const degraded = (cpu: number | undefined): boolean => cpu !== undefined && (degradedBefore.has(cpu) || this.#degraded.has(cpu));
    const v = o.seen().filter((x) => !(x.invariant === 1 && degraded(x.cpu)));
    if (v.length > 0) fail(`during ${JSON.stringify(cmd)}: a listener saw invariant violations ${JSON.stringify(v)}`);
  }

  /** Run `fn` (the real operation) and compare with `exp`; on an expected failure the host must not change. */
  #call<T>(what: string, exp: Expect, fn: () => T, opts: { snapshot?: boolean } = {}): T | undefined {
    const before = 'errno' in exp && opts.snapshot !== false ? this.host.snapshot() : undefined;
    let result: T | undefined;
    let error: unknown;
    try {
      result = fn();
    } catch (e) {
      error = e;
    }
    if (error !== undefined && !(error instanceof KernelError)) fail(`${what}: threw ${describeError(error)} (${(error as Error).stack ?? ''})`);
    if ('errno' in exp) {
      if (error === undefined) fail(`${what}: succeeded, the model expected ${exp.errno}`);
      if ((error as KernelError).code !== exp.errno) fail(`${what}: failed with ${describeError(error)}, the model expected ${exp.errno}`);
      this.stats.failedAsExpected++;
      if (before !== undefined) sameSnapshot(what, before, this.host.snapshot());
      return undefined;
    }
    if (error !== undefined) fail(`${what}: failed with ${describeError(error)} (${(error as Error).message}), the model expected success`);
    return result;
  }

  #exec(cmd: Cmd): boolean {
    switch (cmd.k) {
      case 'load':
        return this.#cmdLoad(cmd);
      case 'rmmod':
        return this.#cmdRmmod(cmd);
      case 'spawn':
        return this.#cmdSpawn(cmd);
      case 'kill':
        return this.#cmdKill(cmd);
      case 'setcpu': {
        const p = this.#pickProc(cmd.p);
        if (p === undefined) return false;
        // sched_setaffinity: an offline CPU is EINVAL, and the process stays where it is.
        const exp = this.#online[cmd.cpu] ? OK : err('EINVAL');
        this.#call(`setAffinity ${p.pid} → CPU ${cmd.cpu}`, exp, () => p.real.setAffinity(cmd.cpu));
        if (!('errno' in exp)) p.cpu = cmd.cpu;
        return true;
      }
      case 'open':
        return this.#cmdOpen(cmd);
      case 'close':
        return this.#cmdClose(cmd);
      case 'createVm':
        return this.#cmdCreateVm(cmd);
      case 'createVcpu':
        return this.#cmdCreateVcpu(cmd);
      case 'mem':
        return this.#cmdMem(cmd);
      case 'irqchip':
        return this.#cmdIrqchip(cmd);
      case 'sev':
        return this.#cmdSev(cmd);
      case 'mmap':
        return this.#cmdMmap(cmd);
      case 'munmap':
        return this.#cmdMunmap(cmd);
      case 'run':
        return this.#cmdRun(cmd);
      case 'reset':
        return this.#cmdReset(cmd);
      case 'thread':
        return this.#cmdThread(cmd);
      case 'tick':
        return this.#cmdTick(cmd);
      case 'signal': {
        const live = this.#threads.filter((t) => t.alive);
        if (live.length === 0) return false;
        const t = live[cmd.t % live.length] as MThread;
        t.signal = true;
        t.real.signal();
        return true;
      }
      case 'cpuDown':
        return this.#cmdCpuDown(cmd.cpu);
      case 'cpuUp':
        return this.#cmdCpuUp(cmd.cpu);
      case 'suspend':
        return this.#cmdSuspend();
      case 'resume':
        return this.#cmdResume();
      case 'reboot':
        return this.#cmdReboot();
      case 'crash':
        return this.#cmdCrash();
      case 'pmi':
        return this.#cmdPmi(cmd.cpu);
      case 'nmi':
        return this.#cmdNmi(cmd.cpu);
      case 'piWakeup':
        return this.#cmdPi(cmd.cpu);
      case 'query':
        return this.#cmdQuery(cmd);
      case 'bad':
        return this.#cmdBad(cmd);
      case 'symlink': {
        const target = MODULES[1 + (cmd.target % 3)] as ModName;
        const exp = this.#symlink !== undefined ? err('EEXIST') : OK;
        this.#call('symlink', exp, () => this.host.symlink(`/dev/${target}`, '/dev/kvm'));
        if (!('errno' in exp)) this.#symlink = target;
        return true;
      }
      case 'unlink': {
        const exp = this.#symlink === undefined ? err('ENOENT') : OK;
        this.#call('unlink', exp, () => this.host.unlink('/dev/kvm'));
        this.#symlink = undefined;
        return true;
      }
      case 'enableFault':
        this.host.hardware.injectEnableFault(cmd.cpu, cmd.mode);
        this.#enableFault[cmd.cpu] = cmd.mode;
        if (cmd.mode !== 'off') this.stats.faultsInjected++;
        return true;
      case 'foreign': {
        if (cmd.on && this.#enabled[cmd.cpu]) return false; // VMX/SVM is in use by VAC there: no one else can take it
        this.host.hardware.setForeignOwner(cmd.cpu, cmd.on);
        this.#foreign[cmd.cpu] = cmd.on;
        if (cmd.on) this.stats.faultsInjected++;
        return true;
      }
      case 'failNth':
        if (cmd.site === 'vpid' && this.vendor !== 'intel') return false;
        this.host.faults.failNth(cmd.site, cmd.n);
        this.#plans.set(cmd.site, { countdown: cmd.n, always: false });
        this.stats.faultsInjected++;
        return true;
      case 'failInit': {
        const name = MODULES[cmd.mod % 4] as ModName;
        const step = 1 + (cmd.step % initSteps(name, false));
        this.host.faults.failModuleInit(name, step);
        this.#initFaults.set(name, step);
        this.stats.faultsInjected++;
        return true;
      }
      case 'clearFaults':
        this.host.faults.clear();
        this.#plans.clear();
        this.#initFaults.clear();
        return true;
      case 'observe':
        this.#observer.set(OBSERVED_EVENTS[cmd.event % OBSERVED_EVENTS.length] as EventName, OBSERVER_ACTS[cmd.act % OBSERVER_ACTS.length] as ObserverAct);
        return true;
    }
  }

  // -- modules -------------------------------------------------------------------------------------------

  #params(set: ParamSet): { params: Record<string, string | number>; outcome: 'ok' | 'EINVAL'; evalAtLoad: boolean; vpid: boolean; sev: boolean } {
    const off = this.vendor === 'intel' ? 'vpid' : 'sev';
    switch (set) {
      case 'default':
        return { params: {}, outcome: 'ok', evalAtLoad: true, vpid: true, sev: true };
      case 'noEval':
        return { params: { enable_virt_at_load: 0 }, outcome: 'ok', evalAtLoad: false, vpid: true, sev: true };
      case 'noVpidOrSev':
        return { params: { [off]: 'N' }, outcome: 'ok', evalAtLoad: true, vpid: off !== 'vpid', sev: off !== 'sev' };
      case 'noEvalNoVpidOrSev':
        return { params: { enable_virt_at_load: 'n', [off]: 0 }, outcome: 'ok', evalAtLoad: false, vpid: off !== 'vpid', sev: off !== 'sev' };
      case 'unknown':
        return { params: { bogus_param: 1 }, outcome: 'ok', evalAtLoad: true, vpid: true, sev: true };
      case 'badEval':
        return { params: { enable_virt_at_load: 'maybe' }, outcome: 'EINVAL', evalAtLoad: true, vpid: true, sev: true };
      case 'badHaltPoll':
        return { params: { halt_poll_ns: -1 }, outcome: 'EINVAL', evalAtLoad: true, vpid: true, sev: true };
      case 'badNx':
        return { params: { nx_huge_pages: 'sometimes' }, outcome: 'EINVAL', evalAtLoad: true, vpid: true, sev: true };
    }
  }

  #actor(actor: number): { real: Process | undefined; capable: boolean } {
    if (actor === 0) return { real: undefined, capable: true };
    const p = this.#pickProc(actor);
    if (p === undefined) return { real: undefined, capable: true };
    return { real: p.real, capable: p.kind === 'root' };
  }

  #nextMinor(): number {
    const taken = new Set([...this.#mods.values()].map((m) => m.minor));
    for (let m = 127; m >= 0; m--) if (!taken.has(m)) return m;
    return -1;
  }

  /** Model of loading one module; returns the expected outcome and applies it to the model on success. */
  #modelLoadOne(name: ModName, set: ParamSet): Expect {
    if (this.#loaded(name)) return err('EEXIST');
    if (name !== 'vac' && !this.#loaded('vac')) return err('ENOENT');
    const pr = name === 'vac' ? { outcome: 'ok' as const, evalAtLoad: false, vpid: false, sev: false } : this.#params(set);
    if (pr.outcome === 'EINVAL') return err('EINVAL');
    const steps = initSteps(name, pr.evalAtLoad);
    const fault = this.#initFaults.get(name);
    if (name === 'vac') {
      if (fault !== undefined && fault <= steps) {
        this.#initFaults.delete(name);
        return err('ENOMEM');
      }
      this.#mods.set(name, { name, evalAtLoad: false, vpid: false, sev: false, minor: -1, nextVm: 1 });
      this.#loadOrder.push(name);
      this.#epoch.fill(0);
      this.#count = 0;
      this.#rebooting = false;
      this.#vacRunning.fill(undefined);
      return OK;
    }
    // kvmX: steps 1 (detach), 2 (vendor teardown), then the usage reference when enable_virt_at_load.
    if (fault !== undefined && fault <= 2) {
      this.#initFaults.delete(name);
      return err('ENOMEM');
    }
    let held = false;
    if (pr.evalAtLoad) {
      if (!this.#virtGet()) return err('EBUSY');
      held = true;
    }
    if (fault !== undefined && fault <= steps) {
      this.#initFaults.delete(name);
      if (held) this.#virtPut();
      return err('ENOMEM');
    }
    this.#mods.set(name, { name, evalAtLoad: pr.evalAtLoad, vpid: pr.vpid, sev: pr.sev, minor: this.#nextMinor(), nextVm: 1 });
    this.#loadOrder.push(name);
    this.#instRunning.set(name, new Array<MVcpu | undefined>(NR_CPUS).fill(undefined));
    return OK;
  }

  #modelUnload(name: ModName): void {
    const m = this.#mods.get(name);
    if (m === undefined) return;
    if (m.evalAtLoad) this.#virtPut();
    this.#mods.delete(name);
    this.#loadOrder = this.#loadOrder.filter((x) => x !== name);
  }

  #cmdLoad(cmd: Extract<Cmd, { k: 'load' }>): boolean {
    const name = MODULES[cmd.mod % 4] as ModName;
    const actor = this.#actor(cmd.actor);
    const set: ParamSet = name === 'vac' ? (cmd.params === 'unknown' ? 'unknown' : 'default') : cmd.params;
    const params = name === 'vac' ? (set === 'unknown' ? { bogus_param: 1 } : {}) : this.#params(set).params;
    const image = name === 'vac' ? vacImage : IMAGES[name];
    let exp: Expect;
    if (!actor.capable) exp = err('EPERM');
    else if (cmd.modprobe) {
      if (this.#loaded(name)) exp = OK;
      else {
        let depLoaded = false;
        exp = OK;
        if (name !== 'vac' && !this.#loaded('vac')) {
          exp = this.#modelLoadOne('vac', 'default');
          depLoaded = !('errno' in exp);
        }
        if (!('errno' in exp)) {
          exp = this.#modelLoadOne(name, set);
          if ('errno' in exp && depLoaded) this.#modelUnload('vac');
        }
      }
    } else {
      exp = this.#modelLoadOne(name, set);
    }
    const as = actor.real === undefined ? {} : { as: actor.real };
    const what = `${cmd.modprobe ? 'modprobe' : 'insmod'} ${name} ${JSON.stringify(params)}${actor.capable ? '' : ' (unprivileged)'}`;
    this.#call(what, exp, () => (cmd.modprobe ? this.host.modprobe(image as never, params, as) : this.host.insmod(image as never, params, as)));
    return true;
  }

  #cmdRmmod(cmd: Extract<Cmd, { k: 'rmmod' }>): boolean {
    const name = MODULES[cmd.mod % 4] as ModName;
    const actor = this.#actor(cmd.actor);
    let exp: Expect;
    if (!actor.capable) exp = err('EPERM');
    else if (!this.#loaded(name)) exp = err('ENOENT');
    else if (name === 'vac' && this.#refcount('vac') > 0) exp = err('EWOULDBLOCK');
    else if (this.#refcount(name) > 0) exp = err('EWOULDBLOCK');
    else exp = OK;
    this.#call(`rmmod ${name}`, exp, () => this.host.rmmod(name, actor.real === undefined ? {} : { as: actor.real }));
    if (!('errno' in exp)) {
      this.#modelUnload(name);
      if (name === 'vac') {
        this.#count = 0;
        this.#enabled.fill(false);
      }
    }
    return true;
  }

  // -- processes -----------------------------------------------------------------------------------------

  #cmdSpawn(cmd: Extract<Cmd, { k: 'spawn' }>): boolean {
    if (this.#procs.size >= MAX_PROCS) return false;
    if (!this.#online[cmd.cpu]) return false;
    const opts =
      cmd.kind === 'kvm'
        ? { uid: 1000, groups: ['kvm'], cpu: cmd.cpu }
        : cmd.kind === 'nokvm'
          ? { uid: 1001, cpu: cmd.cpu }
          : { uid: 0, cpu: cmd.cpu };
    const real = this.host.spawn({ ...opts, name: `${cmd.kind}${this.#procs.size}` });
    this.#procs.set(real.pid, { pid: real.pid, kind: cmd.kind, cpu: cmd.cpu, fds: new Map(), mappings: [], real });
    return true;
  }

  #cmdKill(cmd: Extract<Cmd, { k: 'kill' }>): boolean {
    const p = this.#pickProc(cmd.p);
    if (p === undefined) return false;
    this.#call(`kill ${p.pid}`, OK, () => p.real.kill());
    this.#killThreadsOf(p);
    for (const fd of [...p.fds.keys()].reverse()) {
      const f = p.fds.get(fd) as MFile;
      p.fds.delete(fd);
      this.#drop(f);
    }
    while (p.mappings.length > 0) {
      const m = p.mappings.pop();
      if (m?.file !== undefined) this.#drop(m.file);
    }
    this.#procs.delete(p.pid);
    this.#threads = this.#threads.filter((t) => t.alive);
    // A killed process's pid is gone; another command on it is ESRCH.
    this.#call(`close after kill`, err('ESRCH'), () => p.real.close(3));
    return true;
  }

  #cmdOpen(cmd: Extract<Cmd, { k: 'open' }>): boolean {
    const p = this.#pickProc(cmd.p);
    if (p === undefined) return false;
    const paths = ['/dev/kvm0', '/dev/kvm1', '/dev/kvm2', '/dev/kvm', '/dev/nope'];
    const path = paths[cmd.dev % paths.length] as string;
    let target: ModName | undefined;
    if (path === '/dev/kvm') target = this.#symlink;
    else if (path !== '/dev/nope') target = path.slice(5) as ModName;
    let exp: Expect;
    if (target === undefined || !this.#loaded(target)) exp = err('ENOENT');
    else if (p.kind === 'nokvm') exp = err('EACCES');
    else exp = OK;
    const fd = this.#call(`open ${path} by ${p.kind}`, exp, () => p.real.open(path, O_RDWR));
    if (fd !== undefined && target !== undefined) {
      const mfd = this.#install(p, { kind: 'sys', module: target, path: `/dev/${target}`, refs: 0, released: false });
      if (mfd !== fd) fail(`open: fd ${fd}, the model expected ${mfd}`);
    }
    return true;
  }

  #cmdClose(cmd: Extract<Cmd, { k: 'close' }>): boolean {
    const p = this.#pickProc(cmd.p);
    if (p === undefined) return false;
    if (cmd.bogus) {
      this.#call('close of a bad fd', err('EBADF'), () => p.real.close(99));
      return true;
    }
    const pick = this.#pickFd(p, cmd.f);
    if (pick === undefined) return false;
    const [fd, file] = pick;
    this.#call(`close ${fd}`, OK, () => p.real.close(fd));
    p.fds.delete(fd);
    this.#drop(file);
    return true;
  }

  // -- KVM ioctls ----------------------------------------------------------------------------------------

  #cmdCreateVm(cmd: Extract<Cmd, { k: 'createVm' }>): boolean {
    const any = this.#pickAny(cmd.p, cmd.f, 'sys');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, sys] = pick;
    const mod = this.#mods.get(sys.module) as MModule;
    let exp: Expect;
    let vm: MVm | undefined;
    if (this.#planFires('vm')) exp = err('ENOMEM');
    else if (!this.#virtGet()) exp = err('EBUSY');
    else {
      const id = mod.nextVm++;
      vm = { module: mod, id, owner: p, users: 1, vcpus: new Map(), created: 0, slots: new Map(), irqchip: false, sev: 'none', dead: false };
      if (this.#planFires('fd')) {
        this.#virtPut();
        vm = undefined;
        exp = err('ENOMEM');
      } else exp = OK;
    }
    const r = this.#call(`KVM_CREATE_VM on ${sys.module}`, exp, () => p.real.ioctl(fd, KVM_CREATE_VM, 0));
    if (r !== undefined && vm !== undefined) {
      this.#vms.add(vm);
      const mfd = this.#install(p, { kind: 'vm', module: sys.module, path: 'anon_inode:kvm-vm', refs: 0, vm, released: false });
      if (mfd !== r) fail(`KVM_CREATE_VM: fd ${r}, the model expected ${mfd}`);
    }
    return true;
  }

  #cmdCreateVcpu(cmd: Extract<Cmd, { k: 'createVcpu' }>): boolean {
    const any = this.#pickAny(cmd.p, cmd.f, 'vm');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const vm = file.vm as MVm;
    let id: number;
    switch (cmd.id) {
      case 'next': {
        id = 0;
        while (vm.vcpus.has(id)) id++;
        break;
      }
      case 'dup':
        id = [...vm.vcpus.keys()][0] ?? 0;
        break;
      case 'big':
        id = 4096;
        break;
      case 'max':
        id = 4095;
        break;
      case 'neg':
        id = -1;
        break;
    }
    if (vm.vcpus.size >= 8 && !vm.vcpus.has(id)) return false;
    let exp: Expect;
    let vpid = false;
    if (id < 0 || id >= 4096) exp = err('EINVAL');
    else if (vm.vcpus.has(id)) exp = err('EEXIST');
    else if (this.#planFires('vcpu')) exp = err('ENOMEM');
    else {
      if (this.vendor === 'intel' && vm.module.vpid) vpid = !this.#planFires('vpid');
      exp = this.#planFires('fd') ? err('ENOMEM') : OK;
    }
    const r = this.#call(`KVM_CREATE_VCPU ${id} on ${vm.module.name}/vm${vm.id}`, exp, () => p.real.ioctl(fd, KVM_CREATE_VCPU, id));
    if (r === undefined) return true;
    const v: MVcpu = {
      vm,
      id,
      label: `${vm.module.name}/vm${vm.id}/vcpu${id}`,
      vpid,
      file: undefined,
      loadedOn: -1,
      inGuest: false,
      blockedOn: -1,
      halted: false,
      kicked: false,
      thread: undefined,
      known: false,
      mixPhase: 0,
      grant: undefined,
      freed: false,
    };
    const vf: MFile = { kind: 'vcpu', module: vm.module.name, path: `anon_inode:kvm-vcpu:${id}`, refs: 0, vcpu: v, released: false };
    v.file = vf;
    vm.vcpus.set(id, v);
    vm.created++;
    vm.users++;
    const mfd = this.#install(p, vf);
    if (mfd !== r) fail(`KVM_CREATE_VCPU: fd ${r}, the model expected ${mfd}`);
    this.#resetRegs(p, r, v);
    return true;
  }

  #resetRegs(p: MProc, fd: number, v: MVcpu): void {
    const s = makeKvmSregs();
    this.#call('KVM_GET_SREGS', OK, () => p.real.ioctl(fd, KVM_GET_SREGS, s));
    s.cs.base = 0n;
    s.cs.selector = 0;
    this.#call('KVM_SET_SREGS', OK, () => p.real.ioctl(fd, KVM_SET_SREGS, s));
    this.#call('KVM_SET_REGS', OK, () => p.real.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n })));
    v.known = true;
    v.mixPhase = 0;
  }

  #hasThreads(vm: MVm): boolean {
    return this.#threads.some((t) => t.alive && t.vcpu.vm === vm);
  }

  #cmdMem(cmd: Extract<Cmd, { k: 'mem' }>): boolean {
    const any = this.#pickAny(cmd.p, cmd.f, 'vm');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const vm = file.vm as MVm;
    if (this.#hasThreads(vm)) return false; // the guest's code changes only while no thread runs it
    const prog = PROG_NAMES[cmd.prog % PROG_NAMES.length] as Prog;
    const progBefore = this.#progAt(vm);
    let region: { slot: number; flags: number; guest_phys_addr: number; memory_size: number; userspace_addr: number };
    let exp: Expect;
    let apply: (() => void) | undefined;
    const s0 = vm.slots.get(0);
    const overlaps = (gpa: number, size: number, except: number): boolean =>
      [...vm.slots].some(([id, s]) => id !== except && gpa < s.gpa + s.size && s.gpa < gpa + size);
    switch (cmd.v) {
      case 'load':
      case 'alias': {
        const slot = cmd.v === 'load' ? 0 : 1;
        const expMap: Expect = this.#planFires('mmap') ? err('ENOMEM') : OK;
        const m = this.#call('mmap anonymous', expMap, () => p.real.mmapAnonymous(0x1000));
        if (m === undefined) return true;
        p.mappings.push({ file: undefined, addr: m.addr, length: m.length });
        m.bytes.set(PROGRAMS[prog]);
        region = { slot, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: m.addr };
        const old = vm.slots.get(slot);
        if (old !== undefined) exp = err('EINVAL');
        else if (overlaps(0x1000, 0x1000, slot)) exp = err('EEXIST');
        else {
          exp = OK;
          apply = () => vm.slots.set(slot, { gpa: 0x1000, size: 0x1000, uaddr: m.addr, prog });
        }
        break;
      }
      case 'delete0':
      case 'delete1': {
        const slot = cmd.v === 'delete0' ? 0 : 1;
        const old = vm.slots.get(slot);
        region = { slot, flags: 0, guest_phys_addr: old?.gpa ?? 0x1000, memory_size: 0, userspace_addr: old?.uaddr ?? 0 };
        exp = old === undefined ? err('EINVAL') : OK;
        apply = () => vm.slots.delete(slot);
        break;
      }
      case 'move':
      case 'moveBack': {
        if (s0 === undefined) return false;
        const gpa = cmd.v === 'move' ? 0x8000 : 0x1000;
        region = { slot: 0, flags: 0, guest_phys_addr: gpa, memory_size: s0.size, userspace_addr: s0.uaddr };
        if (s0.gpa === gpa) exp = OK;
        else if (overlaps(gpa, s0.size, 0)) exp = err('EEXIST');
        else {
          exp = OK;
          apply = () => vm.slots.set(0, { ...s0, gpa });
        }
        break;
      }
      case 'badFlags':
        region = { slot: 2, flags: 0x80, guest_phys_addr: 0x20000, memory_size: 0x1000, userspace_addr: 0 };
        exp = err('EINVAL');
        break;
      case 'unaligned':
        region = { slot: 2, flags: 0, guest_phys_addr: 0x20001, memory_size: 0x1000, userspace_addr: 0 };
        exp = err('EINVAL');
        break;
      case 'badSlot':
        region = { slot: 32764, flags: 0, guest_phys_addr: 0x20000, memory_size: 0x1000, userspace_addr: 0 };
        exp = err('EINVAL');
        break;
    }
    this.#call(`KVM_SET_USER_MEMORY_REGION ${cmd.v} ${JSON.stringify(region)}`, exp, () => p.real.ioctl(fd, KVM_SET_USER_MEMORY_REGION, region));
    if (!('errno' in exp)) {
      apply?.();
      if (this.#progAt(vm) !== progBefore || (cmd.v === 'load' || cmd.v === 'alias')) for (const v of vm.vcpus.values()) v.known = false;
    }
    return true;
  }

  #cmdIrqchip(cmd: Extract<Cmd, { k: 'irqchip' }>): boolean {
    const any = this.#pickAny(cmd.p, cmd.f, 'vm');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const vm = file.vm as MVm;
    const exp = vm.irqchip ? err('EEXIST') : vm.created > 0 ? err('EINVAL') : OK;
    this.#call('KVM_CREATE_IRQCHIP', exp, () => p.real.ioctl(fd, KVM_CREATE_IRQCHIP, 0));
    if (!('errno' in exp)) vm.irqchip = true;
    return true;
  }

  #cmdSev(cmd: Extract<Cmd, { k: 'sev' }>): boolean {
    const any = this.#pickAny(cmd.p, cmd.f, 'vm');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const vm = file.vm as MVm;
    let exp: Expect;
    if (this.vendor === 'intel' || !vm.module.sev) exp = err('ENOTTY');
    else if (vm.created > 0 || vm.sev !== 'none') exp = err('EINVAL');
    else exp = OK;
    const arg = { id: cmd.es ? 1 : 0, data: 0, error: 0, sev_fd: 0 };
    this.#call(`KVM_MEMORY_ENCRYPT_OP ${cmd.es ? 'SEV_ES_INIT' : 'SEV_INIT'}`, exp, () => p.real.ioctl(fd, KVM_MEMORY_ENCRYPT_OP, arg));
    if (!('errno' in exp)) vm.sev = cmd.es ? 'sev-es' : 'sev';
    return true;
  }

  #cmdMmap(cmd: Extract<Cmd, { k: 'mmap' }>): boolean {
    const any = cmd.f % 4 === 0 ? this.#pickAny(cmd.p, cmd.f) : this.#pickAny(cmd.p, cmd.f, 'vcpu');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    let exp: Expect;
    if (file.kind !== 'vcpu') exp = err('ENODEV');
    else exp = this.#planFires('mmap') ? err('ENOMEM') : OK;
    const m = this.#call(`mmap ${file.path}`, exp, () => p.real.mmap(fd, 12288));
    if (m !== undefined) {
      p.mappings.push({ file, addr: m.addr, length: m.length });
      this.#hold(file);
    }
    return true;
  }

  #cmdMunmap(cmd: Extract<Cmd, { k: 'munmap' }>): boolean {
    const p = this.#pickProc(cmd.p);
    if (p === undefined || p.mappings.length === 0) return false;
    const i = cmd.m % p.mappings.length;
    const m = p.mappings[i] as (typeof p.mappings)[number];
    this.#call('munmap', OK, () => p.real.munmap(m.addr, m.length));
    p.mappings.splice(i, 1);
    if (m.file !== undefined) this.#drop(m.file);
    return true;
  }

  #cmdReset(cmd: Extract<Cmd, { k: 'reset' }>): boolean {
    const any = this.#pickAny(cmd.p, cmd.f, 'vcpu');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const v = file.vcpu as MVcpu;
    if (this.#threads.some((t) => t.alive && t.vcpu === v)) return false;
    this.#resetRegs(p, fd, v);
    return true;
  }

  #cmdRun(cmd: Extract<Cmd, { k: 'run' }>): boolean {
    // While a CPU is degraded (failed re-enable at resume) guests are not run: Linux would BUG on VMPTRLD.
    if (this.#state !== 'running' || this.#degraded.size > 0) return false;
    const any = this.#pickAny(cmd.p, cmd.f, 'vcpu');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const v = file.vcpu as MVcpu;
    const real = p.real.file(fd).privateData as Vcpu;
    const what = `KVM_RUN ${v.label} on CPU ${p.cpu}`;
    if (v.thread !== undefined) {
      this.#call(what, err('EBUSY'), () => p.real.ioctl(fd, KVM_RUN, 0));
      return true;
    }
    const cpu = p.cpu;
    // The direct caller runs on `cpu`: the thread that was current there is scheduled out first.
    const cur = this.#current[cpu];
    if (cur !== undefined) {
      this.#schedOut(cur, cpu);
      this.#current[cpu] = undefined;
    }
    if (!v.known) {
      // Unpredictable: a guest whose code changed under it may do anything.
      try {
        p.real.ioctl(fd, KVM_RUN, 0);
      } catch (e) {
        if (!(e instanceof KernelError)) fail(`${what}: threw ${describeError(e)}`);
      }
      this.#syncAfterUnknownRun(v, p.cpu);
      return true;
    }
    this.#load(v, cpu);
    const step = this.#enter(v, cpu);
    this.#put(v, cpu);
    let exp: Expect;
    if (typeof step === 'number') exp = OK;
    else {
      exp = err('EINTR');
      v.kicked = false;
    }
    const r = this.#call(what, exp, () => p.real.ioctl(fd, KVM_RUN, 0), { snapshot: false });
    if (r !== undefined && real.run.exit_reason !== step) fail(`${what}: exit reason ${real.run.exit_reason}, the model expected ${String(step)}`);
    return true;
  }

  /** After a run the model could not predict: take the vCPU's ASID grant from the host's view. */
  #syncAfterUnknownRun(v: MVcpu, cpu: number): void {
    v.loadedOn = -1;
    v.inGuest = false;
    v.kicked = false;
    v.known = false;
    if (this.vendor === 'amd' && v.vm.sev === 'none') {
      const st = vacOf(this.host)?.tryResource(ASIDS)?.cpuState(cpu);
      if (st?.holders.some((h) => h.holder === v.label) === true) v.grant = { cpu, epoch: this.#epoch[cpu] as number };
      else if (v.grant?.cpu === cpu) v.grant = undefined;
    }
  }

  #cmdThread(cmd: Extract<Cmd, { k: 'thread' }>): boolean {
    if (this.#threads.filter((t) => t.alive).length >= MAX_THREADS) return false;
    const any = this.#pickAny(cmd.p, cmd.f, 'vcpu');
    if (any === undefined) return false;
    const [p, pick] = any;
    const [fd, file] = pick;
    const v = file.vcpu as MVcpu;
    if (!v.known) return false;
    const pin = cmd.pin < 0 || cmd.pin >= NR_CPUS ? undefined : cmd.pin;
    const cpu = pin ?? p.cpu;
    if (!this.#online[cpu]) {
      this.#call('spawn a thread on an offline CPU', err('EINVAL'), () => this.host.scheduler.spawn(p.real, { cpu }, function* () {}), { snapshot: false });
      return true;
    }
    const log: unknown[] = [];
    const realFile = p.real.file(fd);
    const body = function* (t: Thread): Generator<void, void, void> {
      for (;;) {
        let now;
        try {
          now = t.proc.file(fd);
        } catch {
          return;
        }
        if (now !== realFile) return;
        try {
          yield* t.ioctl(fd, KVM_RUN, 0);
        } catch (e) {
          if (!isKernelError(e, 'EINTR')) {
            log.push(e);
            return;
          }
        }
        yield;
      }
    };
    const real = this.host.scheduler.spawn(p.real, pin === undefined ? {} : { cpu: pin }, body);
    this.#threads.push({ tid: real.tid, proc: p, fd, file, vcpu: v, cpu, affinity: pin, alive: true, inRun: false, waiting: false, signal: false, real, log });
    return true;
  }

  #cmdTick(cmd: Extract<Cmd, { k: 'tick' }>): boolean {
    // Not while a CPU is degraded: a vcpu_load there would leave a VMCS on the loaded list of a CPU outside VMX
    // operation (Linux BUGs on that VMPTRLD); reported in docs/reliability.md.
    if (this.#degraded.size > 0) return false;
    for (let i = 0; i < cmd.n; i++) {
      this.host.scheduler.tick();
      this.#tick();
      this.stats.ticks++;
    }
    for (const t of this.#threads.concat()) this.#checkThreadLog(t);
    return true;
  }

  #checkThreadLog(t: MThread): void {
    for (const e of t.log) {
      fail(`thread ${t.tid} (${t.vcpu.label}) failed: ${describeError(e)}${e instanceof Error ? `\n${e.stack ?? ''}` : ''}`);
    }
    if (t.real.state === 'failed') fail(`thread ${t.tid} failed: ${describeError(t.real.error)}`);
  }

  // -- CPUs and power ------------------------------------------------------------------------------------

  #cmdCpuDown(cpu: number): boolean {
    let exp: Expect;
    if (this.#state !== 'running') exp = err('EBUSY');
    else if (!this.#online[cpu]) exp = OK;
    else if (cpu === 0) exp = err('EBUSY');
    else exp = OK;
    const wasOnline = this.#online[cpu];
    this.#call(`cpuDown ${cpu}`, exp, () => this.host.cpuDown(cpu));
    if (!('errno' in exp) && wasOnline) this.#down(cpu);
    return true;
  }

  #cmdCpuUp(cpu: number): boolean {
    let exp: Expect;
    if (this.#state !== 'running') exp = err('EBUSY');
    else if (this.#online[cpu]) exp = OK;
    else exp = this.#up(cpu) ? OK : err('EIO');
    this.#call(`cpuUp ${cpu}`, exp, () => this.host.cpuUp(cpu));
    return true;
  }

  #cmdSuspend(): boolean {
    if (this.#state !== 'running') {
      this.#call('suspend', err('EBUSY'), () => this.host.suspend());
      return true;
    }
    this.#call('suspend', OK, () => this.host.suspend());
    if (this.#loaded('vac')) this.#kickAll();
    // Frozen tasks run nowhere: every CPU's current thread is scheduled out, and stays where it is.
    for (let c = 0; c < NR_CPUS; c++) {
      const cur = this.#current[c];
      if (cur !== undefined) {
        this.#schedOut(cur, c);
        this.#current[c] = undefined;
      }
    }
    this.#frozen = true;
    this.#movedWhileFrozen.clear();
    const offlined: number[] = [];
    for (let c = 1; c < NR_CPUS; c++) {
      if (this.#online[c]) {
        this.#down(c);
        offlined.push(c);
      }
    }
    if (this.#loaded('vac') && this.#count > 0) this.#disable(0);
    this.#suspendedCpus = offlined;
    this.#state = 'suspended';
    return true;
  }

  #cmdResume(): boolean {
    if (this.#state !== 'suspended') {
      this.#call('resume', err('EINVAL'), () => this.host.resume());
      return true;
    }
    const w = this.host.warnings.length;
    this.#call('resume', OK, () => this.host.resume());
    this.#state = 'running';
    const warnings: string[] = [];
    if (this.#loaded('vac') && this.#count > 0 && !this.#enabled[0]) {
      if (this.#enableAttempt(0)) {
        this.#enabled[0] = true;
        this.#bumpEpoch(0);
      } else {
        warnings.push('kvm_resume');
        this.#degraded.add(0);
      }
    }
    for (const c of [...this.#suspendedCpus].sort((a, b) => a - b)) {
      if (!this.#up(c)) warnings.push(`Error taking CPU${c} up`);
    }
    this.#suspendedCpus = [];
    this.#thawTasks();
    const got = this.host.warnings.slice(w).map((x) => x.message);
    for (const want of warnings) {
      if (!got.some((m) => m.includes(want))) fail(`resume: expected a warning "${want}", got ${JSON.stringify(got)}`);
    }
    return true;
  }

  #cmdReboot(): boolean {
    if (this.#state !== 'running') {
      this.#call('reboot', err('EBUSY'), () => this.host.reboot());
      return true;
    }
    this.#call('reboot', OK, () => this.host.reboot());
    if (this.#loaded('vac')) {
      this.#kickAll();
      this.#rebooting = true;
      for (let c = 0; c < NR_CPUS; c++) if (this.#online[c]) this.#disable(c);
    }
    this.#state = 'restart';
    return true;
  }

  #cmdCrash(): boolean {
    this.#call('crash', OK, () => this.host.crash());
    this.#state = 'crashed';
    this.#crashed = true;
    if (this.#loaded('vac')) {
      this.#kickAll();
      this.#rebooting = true;
      for (let c = 0; c < NR_CPUS; c++) {
        if (this.#online[c] || c === 0) {
          this.#disable(c);
          this.#emergencyOff[c] = true;
        }
      }
    }
    const v = checkInvariants(this.host);
    if (v.length > 0) fail(`after crash: invariants: ${JSON.stringify(v)}`);
    for (const c of this.host.cpus) {
      // cpu_emergency_disable_virtualization turns VMX / SVM off on every CPU, whoever turned it on.
      if (this.host.hardware.virt.isEnabled(c.id) && this.#emergencyOff[c.id]) fail(`after crash: CPU ${c.id} is still in virtualization mode`);
    }
    return true;
  }

  // -- hardware events -----------------------------------------------------------------------------------

  /** The vCPU the model says is loaded on `cpu` and registered with VAC, if any. */
  #runningOn(cpu: number): MVcpu | undefined {
    const name = this.#vacRunning[cpu];
    if (name === undefined || !this.#loaded('vac')) return undefined;
    return this.#instRunning.get(name)?.[cpu];
  }

  #cmdPmi(cpu: number): boolean {
    const r = this.host.raisePmi(cpu);
    const v = this.#runningOn(cpu);
    const active = v !== undefined && v.inGuest;
    if (!this.#loaded('vac')) {
      if (r.state !== 0 || r.callbacks !== undefined) fail(`PMI on CPU ${cpu} without vac: ${JSON.stringify(r, big)}`);
      return true;
    }
    if ((r.state === PERF_GUEST_ACTIVE) !== active || (active && r.attributedTo !== v.label) || (!active && r.attributedTo !== undefined)) {
      fail(`PMI on CPU ${cpu}: got ${JSON.stringify(r, big)}, the model expected ${active ? v.label : 'a host PMI'}`);
    }
    return true;
  }

  #cmdNmi(cpu: number): boolean {
    const claims = this.host.raiseNmi(cpu);
    const v = this.#runningOn(cpu);
    const want = v !== undefined && v.inGuest ? [v.label] : [];
    if (JSON.stringify(claims) !== JSON.stringify(want)) fail(`NMI on CPU ${cpu}: claims ${JSON.stringify(claims)}, the model expected ${JSON.stringify(want)}`);
    return true;
  }

  #cmdPi(cpu: number): boolean {
    const woken = this.host.raisePostedIntrWakeup(cpu);
    const want: string[] = [];
    if (this.#loaded('vac')) {
      for (const name of this.#instanceOrder()) {
        for (const vm of [...this.#vms].filter((x) => x.module.name === name).sort((a, b) => a.id - b.id)) {
          for (const v of vm.vcpus.values()) {
            if (v.blockedOn === cpu) {
              v.blockedOn = -1;
              v.halted = false;
              want.push(v.label);
            }
          }
        }
      }
    }
    if (JSON.stringify([...woken].sort()) !== JSON.stringify(want.sort())) fail(`PI wakeup on CPU ${cpu}: woke ${JSON.stringify(woken)}, the model expected ${JSON.stringify(want)}`);
    return true;
  }

  // -- queries and bad input -----------------------------------------------------------------------------

  #cmdQuery(cmd: Extract<Cmd, { k: 'query' }>): boolean {
    const p = this.#pickProc(cmd.p);
    if (p === undefined) return false;
    const pick = this.#pickFd(p, cmd.f);
    if (pick === undefined) return false;
    const [fd, file] = pick;
    const online = this.#online.filter(Boolean).length;
    let req: number;
    let arg: unknown = 0;
    let want: number | undefined;
    if (file.kind === 'sys') {
      [req, arg, want] = [
        [KVM_GET_API_VERSION, 0, 12],
        [KVM_GET_VCPU_MMAP_SIZE, 0, 12288],
        [KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS, online],
        [KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS, 1024],
      ][cmd.q % 4] as [number, number, number];
    } else if (file.kind === 'vm') {
      [req, arg, want] = [KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS, online];
    } else {
      req = cmd.q % 2 === 0 ? KVM_GET_REGS : KVM_GET_SREGS;
      arg = req === KVM_GET_REGS ? makeKvmRegs() : makeKvmSregs();
      want = 0;
    }
    // A direct vCPU ioctl while a thread is inside KVM_RUN there cannot wait for vcpu->mutex: EBUSY.
    const busy = file.kind === 'vcpu' && (file.vcpu as MVcpu).thread !== undefined;
    const r = this.#call(`query 0x${req.toString(16)} on ${file.path}`, busy ? err('EBUSY') : OK, () => p.real.ioctl(fd, req, arg));
    if (!busy && r !== want) fail(`query 0x${req.toString(16)} on ${file.path}: ${String(r)}, expected ${String(want)}`);
    return true;
  }

  #cmdBad(cmd: Extract<Cmd, { k: 'bad' }>): boolean {
    const p = this.#pickProc(cmd.p);
    if (p === undefined) return false;
    const b = BAD_IOCTLS[cmd.b % BAD_IOCTLS.length] as (typeof BAD_IOCTLS)[number];
    const pick = this.#pickFd(p, cmd.f);
    this.stats.badInputs++;
    if (pick === undefined) {
      this.#call('ioctl on a bad fd', err('EBADF'), () => p.real.ioctl(77, b.req, b.arg));
      return true;
    }
    const [fd, file] = pick;
    // Every bad request here is a KVM ioctl (_IOC_TYPE 0xAE): on a vCPU fd it meets vcpu->mutex first.
    const busy = file.kind === 'vcpu' && (file.vcpu as MVcpu).thread !== undefined;
    const exp = err(busy ? 'EBUSY' : b[file.kind]);
    this.#call(`bad ioctl 0x${b.req.toString(16)} (${String(b.arg)}) on ${file.path}`, exp, () => p.real.ioctl(fd, b.req, b.arg));
    return true;
  }

  // -- agreement -----------------------------------------------------------------------------------------

  /** Compare everything observable with the model; `checkInvariants` must be empty. */
  agree(after: string): void {
    const host = this.host;
    const where = `after ${after}`;
    const v = checkInvariants(host).filter((x) => !(x.invariant === 1 && x.cpu !== undefined && this.#degraded.has(x.cpu)));
    if (v.length > 0) fail(`${where}: invariant violations ${JSON.stringify(v)}`);
    // lsmod
    const ls = host.lsmod().map((m) => `${m.name}:${m.refcount}:${m.usedBy.join(',')}:${m.state}`);
    const want = [...this.#loadOrder].reverse().map((name) => {
      const usedBy = name === 'vac' ? this.#loadOrder.filter((x) => x !== 'vac').sort().join(',') : '';
      return `${name}:${this.#refcount(name)}:${usedBy}:live`;
    });
    if (JSON.stringify(ls) !== JSON.stringify(want)) fail(`${where}: lsmod ${JSON.stringify(ls)}, the model says ${JSON.stringify(want)}`);
    // /dev
    const dev = host.devfs.list().map((d) => (d.type === 'char' ? `${d.path}:c${d.major}:${d.minor}:${d.gid}:${d.mode.toString(8)}` : `${d.path}->${d.target}`));
    const wantDev = [
      ...[...this.#mods.values()].filter((m) => m.name !== 'vac').map((m) => `/dev/${m.name}:c10:${m.minor}:36:660`),
      ...(this.#symlink === undefined ? [] : [`/dev/kvm->/dev/${this.#symlink}`]),
    ].sort((a, b) => (a.split(/[:-]/)[0] as string).localeCompare(b.split(/[:-]/)[0] as string));
    if (JSON.stringify(dev) !== JSON.stringify(wantDev)) fail(`${where}: /dev ${JSON.stringify(dev)}, the model says ${JSON.stringify(wantDev)}`);
    // processes and fds
    const pids = host.processes().map((p) => p.pid);
    const wantPids = [1, ...this.#procs.keys()];
    if (JSON.stringify(pids) !== JSON.stringify(wantPids)) fail(`${where}: processes ${JSON.stringify(pids)}, the model says ${JSON.stringify(wantPids)}`);
    for (const p of this.#procs.values()) {
      const fds = JSON.stringify(p.real.fds());
      const wantFds = JSON.stringify([...p.fds].map(([fd, f]) => ({ fd, path: f.path })));
      if (fds !== wantFds) fail(`${where}: fds of ${p.pid}: ${fds}, the model says ${wantFds}`);
      if (p.real.mappings().length !== p.mappings.length) fail(`${where}: ${p.pid} has ${p.real.mappings().length} mappings, the model says ${p.mappings.length}`);
      if (p.real.cpu !== p.cpu) fail(`${where}: ${p.pid} runs on CPU ${p.real.cpu}, the model says ${p.cpu}`);
    }
    // CPUs
    for (let c = 0; c < NR_CPUS; c++) {
      if ((host.cpus[c] as { online: boolean }).online !== this.#online[c]) fail(`${where}: CPU ${c} online=${String(!this.#online[c])}, the model says ${String(this.#online[c])}`);
      const hw = host.hardware.virt.isEnabled(c);
      if (hw !== (this.#enabled[c] || (this.#foreign[c] && !this.#emergencyOff[c]))) fail(`${where}: CPU ${c} hardware virtualization ${String(hw)}, the model says ${String(this.#enabled[c])} (foreign ${String(this.#foreign[c])})`);
    }
    if (host.systemState !== this.#state) fail(`${where}: system state ${host.systemState}, the model says ${this.#state}`);
    // threads
    const threads = host.scheduler.threads().map((t) => t.tid);
    const wantThreads = this.#threads.filter((t) => t.alive).map((t) => t.tid);
    if (JSON.stringify(threads) !== JSON.stringify(wantThreads)) fail(`${where}: live threads ${JSON.stringify(threads)}, the model says ${JSON.stringify(wantThreads)}`);
    for (const t of this.#threads) {
      if (!t.alive) continue;
      if (t.real.cpu !== t.cpu || t.real.affinity !== t.affinity) {
        fail(`${where}: thread ${t.tid} is on CPU ${t.real.cpu} pinned to ${String(t.real.affinity)}, the model says CPU ${t.cpu} pinned to ${String(t.affinity)}`);
      }
    }
    // VAC
    const vac = vacOf(host);
    if ((vac !== undefined) !== this.#loaded('vac')) fail(`${where}: vac loaded=${String(vac !== undefined)}`);
    if (vac === undefined) return;
    if (vac.usageCount !== this.#count) fail(`${where}: usage count ${vac.usageCount}, the model says ${this.#count}`);
    if (vac.rebooting !== this.#rebooting) fail(`${where}: kvm_rebooting ${String(vac.rebooting)}`);
    const cpus = vac.cpus();
    for (let c = 0; c < NR_CPUS; c++) {
      const st = cpus[c] as (typeof cpus)[number];
      if (st.enabled !== this.#enabled[c]) fail(`${where}: VAC says CPU ${c} enabled=${String(st.enabled)}, the model says ${String(this.#enabled[c])}`);
      const run = this.#runningOn(c);
      const wantRun = run?.label;
      if (!this.#rebooting && st.running !== wantRun) fail(`${where}: VAC says ${String(st.running)} runs on CPU ${c}, the model says ${String(wantRun)}`);
    }
    // allocators
    const vcpus = [...this.#vms].flatMap((vm) => [...vm.vcpus.values()]);
    if (this.vendor === 'intel') {
      const holders = (vac.tryResource(VPIDS)?.holders() ?? []).map((h) => h.holder).sort();
      const wantH = vcpus.filter((x) => x.vpid).map((x) => x.label).sort();
      if (JSON.stringify(holders) !== JSON.stringify(wantH)) fail(`${where}: VPID holders ${JSON.stringify(holders)}, the model says ${JSON.stringify(wantH)}`);
    } else {
      for (let c = 0; c < NR_CPUS; c++) {
        const got = (vac.tryResource(ASIDS)?.cpuState(c)?.holders ?? []).map((h) => h.holder).sort();
        const wantA = vcpus.filter((x) => x.grant?.cpu === c && x.grant.epoch === this.#epoch[c]).map((x) => x.label).sort();
        if (JSON.stringify(got) !== JSON.stringify(wantA)) fail(`${where}: ASID holders on CPU ${c} ${JSON.stringify(got)}, the model says ${JSON.stringify(wantA)}`);
      }
      const sev = (vac.tryResource(SEV_ASIDS)?.state()?.inUse ?? []).map((h) => h.holder).sort();
      const wantSev = [...this.#vms].filter((vm) => vm.sev !== 'none').map((vm) => `${vm.module.name}/vm${vm.id}`).sort();
      if (JSON.stringify(sev) !== JSON.stringify(wantSev)) fail(`${where}: SEV ASIDs ${JSON.stringify(sev)}, the model says ${JSON.stringify(wantSev)}`);
    }
    // Each instance's VMs and vCPUs.
    for (const m of this.#mods.values()) {
      if (m.name === 'vac') continue;
      const got = [...kvmInstance(host, m.name).vms].map((vm) => `${vm.id}:[${[...vm.vcpus.keys()].join(',')}]`);
      const wantVms = [...this.#vms]
        .filter((vm) => vm.module === m)
        .map((vm) => `${vm.id}:[${[...vm.vcpus.keys()].join(',')}]`);
      if (JSON.stringify(got) !== JSON.stringify(wantVms)) fail(`${where}: ${m.name} VMs ${JSON.stringify(got)}, the model says ${JSON.stringify(wantVms)}`);
    }
  }

  /**
   * Tear everything down (kill every process, unload every module) and check docs/spec.md §4 invariant 6: every
   * allocator empty, every CPU disabled, every user-return MSR at its host value.
   */
  finish(): void {
    if (this.#crashed || this.#state !== 'running') return;
    for (const p of this.#procList()) this.exec({ k: 'kill', p: 0 });
    for (const name of [...this.#loadOrder].reverse()) this.exec({ k: 'rmmod', mod: MODULES.indexOf(name), actor: 0 });
    if (this.#loadOrder.length > 0) fail(`finish: modules still loaded: ${this.#loadOrder.join(', ')}`);
    for (let c = 0; c < NR_CPUS; c++) {
      if (this.host.hardware.virt.isEnabled(c) && !this.#foreign[c]) fail(`finish: CPU ${c} is still in virtualization mode`);
    }
  }
}

function big(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

/** Compare two snapshots; a difference is a model mismatch naming the first differing path. */
export function sameSnapshot(what: string, a: HostSnapshot, b: HostSnapshot): void {
  const d = firstDifference(a, b);
  if (d !== undefined) fail(`${what}: the failed operation changed the host at ${d}`);
}
