/**
 * The golden files: what the recorder (`conformance/recorder/`, C) wrote from a real /dev/kvm. Types and
 * loading only; `facts.ts` replays them on the model and `compare.ts` compares.
 *
 * Every fact starts with /dev/kvm open as fd `sys`; its steps are the calls a VMM makes, each with the
 * kernel's answer. Integers narrower than 64 bits are JSON numbers; `__u64`/`__s64` values are `"0x…"`
 * strings (two's complement for negative ones), so nothing above 2^53 is rounded.
 *
 * @module
 */
import { readFileSync } from 'node:fs';

/** A JSON value. */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

/** A JSON object. */
export type JsonObject = { readonly [key: string]: Json };

/** The argument of an ioctl step. */
export type IoctlArg =
  /** An integer argument (`unsigned long`), as `"0x…"`. */
  | { readonly int: string }
  /** A pointer to a struct: `value` is what it held before the call (absent: an output buffer); `null`: a NULL pointer. */
  | { readonly struct: string; readonly value?: Json; readonly null?: true };

/** `ioctl(fd, nr, arg)` and the kernel's answer. */
export interface IoctlStep {
  readonly op: 'ioctl';
  /** The fd's name in the fact: `sys`, `vm`, `vcpu0`, … */
  readonly fd: string;
  /** The ioctl's Linux name. */
  readonly name: string;
  /** Its number, as the recorder's <linux/kvm.h> computes it. */
  readonly nr: number;
  readonly arg: IoctlArg;
  /** The result: a number (−1 on failure), or `"fd"` for a new file descriptor (named by `bind`). */
  readonly ret: number | 'fd';
  /** The errno name when `ret` is −1. */
  readonly errno?: string;
  /** The name the new fd gets. */
  readonly bind?: string;
  /** What the struct held after the call. */
  readonly out?: Json;
  /** KVM_RUN: the `kvm_run` fields after the call. */
  readonly run?: Json;
}

/** Anonymous memory (`mmap(MAP_ANONYMOUS)`), named by `buf`. */
export interface MmapStep {
  readonly op: 'mmap';
  readonly buf: string;
  readonly size: number;
}

/** `mmap(vcpu_fd)`: the vCPU's `kvm_run` area. */
export interface MapRunStep {
  readonly op: 'map-run';
  readonly vcpu: string;
}

/** Write a `kvm_run` field. */
export interface RunSetStep {
  readonly op: 'run-set';
  readonly vcpu: string;
  readonly field: 'immediate_exit' | 'request_interrupt_window';
  readonly value: number;
}

/** KVM_CAP_SYNC_REGS: write `kvm_valid_regs` and `kvm_dirty_regs` (`__u64`s, hex strings) of the vCPU's `kvm_run`. */
export interface SyncSetStep {
  readonly op: 'sync-set';
  readonly vcpu: string;
  readonly valid: string;
  readonly dirty: string;
}

/** KVM_CAP_SYNC_REGS: write one register set (`kvm_regs`, `kvm_sregs` or `kvm_vcpu_events`) into `s.regs`. */
export interface SyncWriteStep {
  readonly op: 'sync-write';
  readonly vcpu: string;
  readonly set: 'regs' | 'sregs' | 'events';
  readonly value: Json;
}

/** KVM_CAP_SYNC_REGS: what the vCPU's `kvm_run` holds — both words and the three register sets of `s.regs`. */
export interface SyncReadStep {
  readonly op: 'sync-read';
  readonly vcpu: string;
  readonly valid: string;
  readonly dirty: string;
  readonly regs: Json;
  readonly sregs: Json;
  readonly events: Json;
}

/** Copy bytes into a mapping. */
export interface PokeStep {
  readonly op: 'poke';
  readonly buf: string;
  readonly offset: number;
  readonly hex: string;
}

/** The data of an IN exit, written at `io.data_offset` of the vCPU's `kvm_run`. */
export interface PioDataStep {
  readonly op: 'pio-data';
  readonly vcpu: string;
  readonly hex: string;
}

/** The data of an MMIO read exit, written to `mmio.data` of the vCPU's `kvm_run`. */
export interface MmioDataStep {
  readonly op: 'mmio-data';
  readonly vcpu: string;
  readonly hex: string;
}

/** User space's answer to a KVM_EXIT_X86_RDMSR/WRMSR, written to `msr.error` and `msr.data` of the vCPU's `kvm_run`. */
export interface MsrDataStep {
  readonly op: 'msr-data';
  readonly vcpu: string;
  readonly error: number;
  /** `msr.data`, a `__u64` as a hex string. */
  readonly data: string;
}

/**
 * KVM_CREATE_VCPU with ids `first` … `first + count − 1` on VM fd `fd`, each new fd closed at once (the vCPU
 * stays): `created` succeeded, then `errno` if one failed.
 */
export interface CreateVcpusStep {
  readonly op: 'create-vcpus';
  readonly fd: string;
  readonly first: number;
  readonly count: number;
  readonly created: number;
  readonly errno?: string;
}

/** `close(fd)`. */
export interface CloseStep {
  readonly op: 'close';
  readonly fd: string;
}

/** The bytes of a mapping that differ from what the fact poked into it: `[offset, hex]` runs. */
export interface MemStep {
  readonly op: 'mem';
  readonly buf: string;
  readonly changes: ReadonlyArray<readonly [number, string]>;
}

/**
 * `arch_prctl(option, arg)` of the VMM process (the XSAVE permission options): a GET option's `u64` is `out`, a REQ
 * option's feature number `arg`.
 */
export interface ArchPrctlStep {
  readonly op: 'arch-prctl';
  /** The option's name, e.g. `ARCH_REQ_XCOMP_GUEST_PERM`. */
  readonly name: string;
  readonly option: number;
  readonly arg?: string;
  readonly ret: number;
  readonly errno?: string;
  readonly out?: string;
}

/** `mmap` of a vCPU's dirty ring: `size` bytes (hex) at page `KVM_DIRTY_LOG_PAGE_OFFSET` (64) of its fd. */
export interface MapRingStep {
  readonly op: 'map-ring';
  readonly vcpu: string;
  readonly size: string;
}

/** The entries the kernel published (flags DIRTY) in the vCPU's ring from index `from` on, each `"flags slot 0xoffset"`. */
export interface RingStep {
  readonly op: 'ring';
  readonly vcpu: string;
  readonly from: number;
  readonly entries: readonly string[];
}

/** User space harvests `count` entries from `from`: their flags set to `KVM_DIRTY_GFN_F_RESET`. */
export interface RingHarvestStep {
  readonly op: 'ring-harvest';
  readonly vcpu: string;
  readonly from: number;
  readonly count: number;
}

/** One step of a fact. */
export type Step =
  | IoctlStep | MmapStep | MapRunStep | RunSetStep | SyncSetStep | SyncWriteStep | SyncReadStep | PokeStep | PioDataStep | MmioDataStep | MsrDataStep | CreateVcpusStep | CloseStep | MemStep | ArchPrctlStep
  | MapRingStep | RingStep | RingHarvestStep;

/** One setup + one call sequence + the kernel's answers. */
export interface Fact {
  /** Stable id, e.g. `vm.memslot.gpa-unaligned`; divergences name facts by it. */
  readonly id: string;
  /** What it checks. */
  readonly title: string;
  readonly steps: readonly Step[];
}

/** A golden file of facts. */
export interface GoldenFile {
  readonly schema: 1;
  readonly group: string;
  readonly facts: readonly Fact[];
}

/** `golden/machine.json`: where the facts were recorded. */
export interface Machine {
  readonly schema: 1;
  readonly group: 'machine';
  readonly uname: { readonly sysname: string; readonly release: string; readonly version: string; readonly machine: string };
  readonly online_cpus: number;
  readonly cpu: { readonly model_name: string; readonly vendor: string; readonly hypervisor: string; readonly cpuid: readonly JsonObject[] };
  readonly modules: ReadonlyArray<{ readonly name: string; readonly parameters: { readonly [name: string]: string } }>;
}

/** The groups of facts, one golden file each, in recording order. */
export const GROUPS = ['caps', 'system', 'vm', 'memslots', 'vcpu', 'run', 'irq', 'guest', 'xsave', 'dirty-ring'] as const;

/** A group name. */
export type Group = (typeof GROUPS)[number];

const GOLDEN_DIR = new URL('../golden/', import.meta.url);

function readJson(name: string): unknown {
  return JSON.parse(readFileSync(new URL(name, GOLDEN_DIR), 'utf8')) as unknown;
}

/** The facts of one group. */
export function loadGroup(group: Group): GoldenFile {
  const g = readJson(`${group}.json`) as GoldenFile;
  if (g.schema !== 1 || g.group !== group) throw new Error(`golden/${group}.json: not a schema-1 file of group ${group}`);
  return g;
}

/** Every fact of every group. */
export function loadAllFacts(): Fact[] {
  return GROUPS.flatMap((g) => loadGroup(g).facts);
}

/** `golden/machine.json`. */
export function loadMachine(): Machine {
  return readJson('machine.json') as Machine;
}
