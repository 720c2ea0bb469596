/**
 * Shared scaffolding for the guest-interpreter tests: a small VM (one RAM slot, optional holes and
 * read-only slots) and the two memory flavours every behaviour is checked under — `lookup` (the slot fast
 * path, which also enables the interpreter's fast instruction path) and `bytewise` (only `read8`/`write8`,
 * which forces every instruction through the general decoder).
 */

import {
  GuestCpuState,
  GuestExit,
  SlotListMemory,
  runGuest,
  type GuestExitReasonValue,
  type GuestMemory,
  type SlotListEntry,
} from '../../src/guest/index.js';

export type Flavor = 'lookup' | 'bytewise';
export const FLAVORS: readonly Flavor[] = ['lookup', 'bytewise'];

export function makeMemory(flavor: Flavor, slots: readonly SlotListEntry[]): GuestMemory {
  const m = new SlotListMemory(slots);
  if (flavor === 'lookup') return m;
  return { read8: (gpa) => m.read8(gpa), write8: (gpa, v) => m.write8(gpa, v) };
}

export interface Vm {
  readonly state: GuestCpuState;
  readonly memory: GuestMemory;
  readonly exit: GuestExit;
  readonly ram: Uint8Array;
  run(budget?: number): GuestExitReasonValue;
}

export interface VmOptions {
  /** Where the code goes (linear = physical; CS base 0). Default 0x1000. */
  readonly at?: number;
  /** RAM size from GPA 0. Default 0x30000. */
  readonly ramSize?: number;
  /** Extra slots (read-only ROM and the like) beyond the RAM. */
  readonly extra?: readonly SlotListEntry[];
  readonly quirks?: number;
}

/** A vCPU in real mode with CS = DS = ES = SS = 0, RIP at the code, SP 0x8000, RFLAGS 0x2. */
export function makeVm(flavor: Flavor, code: readonly number[], opts: VmOptions = {}): Vm {
  const at = opts.at ?? 0x1000;
  const ram = new Uint8Array(opts.ramSize ?? 0x30000);
  ram.set(code, at);
  const memory = makeMemory(flavor, [{ guestPhysAddr: 0, bytes: ram }, ...(opts.extra ?? [])]);
  const state = new GuestCpuState();
  state.cs.loadRealMode(0);
  state.rip = at;
  state.rsp = 0x8000;
  state.rdx = 0;
  const exit = new GuestExit();
  return {
    state,
    memory,
    exit,
    ram,
    run: (budget = 10_000) =>
      opts.quirks === undefined ? runGuest(state, memory, budget, exit) : runGuest(state, memory, budget, exit, opts.quirks),
  };
}

/** Little-endian bytes of `v` (`n` bytes). */
export function le(v: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.floor(v / 2 ** (8 * i)) & 0xff);
  return out;
}

export function word(ram: Uint8Array, at: number): number {
  return ram[at]! | (ram[at + 1]! << 8);
}

/**
 * Puts `vm` into flat 32-bit protected mode without paging: CR0.PE, CS 0x08 (execute/read, CS.D = 1) and
 * DS/ES/SS 0x10 (read/write, SS.B = 1), all with base 0 and a 4 GiB limit. No GDT or IDT is set up.
 */
export function enterFlat32(vm: Vm): void {
  const s = vm.state;
  s.cr0 |= 1n;
  for (const seg of [s.cs, s.ds, s.es, s.ss]) {
    seg.base = 0;
    seg.limit = 0xffffffff;
    seg.db = 1;
    seg.g = 1;
    seg.selector = 0x10;
  }
  s.cs.selector = 0x08;
}

/**
 * Runs `vm` four times with `budget` instructions each, answering IN/MMIO reads with fixed data (so completions are
 * exercised too), and returns what each run's exit said (reason, count, I/O and MMIO fields, data, instruction bytes).
 */
export function runTrace(vm: Vm, budget: number): unknown[] {
  const trace: unknown[] = [];
  for (let i = 0; i < 4; i++) {
    vm.exit.data.set([0x5a, 0xa5, 0x3c, 0xc3]);
    const reason = vm.run(budget);
    const x = vm.exit;
    trace.push([reason, x.executed, x.ioDirection, x.ioPort, x.ioSize, x.mmioPhysAddr, x.mmioLen, x.mmioIsWrite, [...x.data], x.insnSize, [...x.insnBytes]]);
  }
  return trace;
}
