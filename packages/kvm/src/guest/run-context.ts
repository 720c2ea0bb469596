/**
 * The guest interpreter's per-run scratch ({@link R}): the vCPU state, memory, exit record and platform of
 * the run in progress, the decoder's position and prefixes, the slot caches, and what the current instruction
 * did (exit, fault, interrupt shadow). Only meaningful during one synchronous `runGuest` call (runs cannot
 * nest); every field is (re)set at entry. Also the two ways out of an instruction: {@link fail} (emulation
 * failure) and {@link raise} (an exception).
 *
 * @module
 */

import { GuestCpuState } from './cpu-state.js';
import { GuestExit } from './exit.js';
import type { InsnCache } from './insn-cache.js';
import type { GuestMemory } from './memory.js';
import { type GuestPlatform, defaultGuestPlatform, initialFxState } from './platform.js';

/**
 * The `KVM_X86_QUIRK_OUT_7E_INC_RIP` quirk bit (`<asm/kvm.h>`, value 1 << 3): advance RIP before exiting for
 * `out` to port 0x7e, for old user space that relied on it. Enabled by default, as in KVM.
 */
export const GUEST_QUIRK_OUT_7E_INC_RIP = 1 << 3;

/** The quirks {@link runGuest} applies when the caller passes none (KVM's default: all enabled). */
export const GUEST_DEFAULT_QUIRKS = GUEST_QUIRK_OUT_7E_INC_RIP;

export const EMPTY: Uint8Array = new Uint8Array(0);

/** Words of a code-page bit map: one bit per 4 KiB page of the 4 GiB linear space. */
export const CODE_BITS_WORDS = 1 << 15;

/** The code-page bit map of runs without a decoded-instruction cache: always empty. */
export const NO_CODE_BITS = new Uint32Array(CODE_BITS_WORDS);

export const IDLE_MEMORY: GuestMemory = { read8: () => -1, write8: () => false };

/** Thrown (never as an Error: no stack capture) when the instruction cannot be emulated. */
export const EMULATION_FAILED = { failed: true } as const;

/** Thrown (never as an Error) when the instruction raises an exception; {@link faultVector} says which. */
export const FAULT = { fault: true } as const;

/** What {@link DEFAULT_PLATFORM} keeps for each guest state it ran: its TSC and its FPU image. */
interface PlatformlessState {
  tsc: bigint;
  readonly fx: Uint8Array;
}

/** The per-guest-state part of {@link DEFAULT_PLATFORM}, made when a state first reads its TSC or its FPU image. */
const platformless = new WeakMap<GuestCpuState, PlatformlessState>();

/** The {@link PlatformlessState} of the state running now (`R.S`). */
function platformlessState(): PlatformlessState {
  const s = R.S;
  let p = platformless.get(s);
  if (p === undefined) {
    p = { tsc: 0n, fx: initialFxState() };
    platformless.set(s, p);
  }
  return p;
}

/**
 * The platform of runs that were given none (no CPUID table, no MSRs): {@link defaultGuestPlatform}'s answers, with the
 * TSC and the FPU image kept per guest state, as KVM keeps them per vCPU (`kvm_read_l1_tsc` adds the vCPU's own
 * offset): each state's TSC starts at 0 and counts its own `rdtsc`s, so the same program on a fresh state reads the
 * same values whatever ran before it in the process.
 */
export const DEFAULT_PLATFORM: GuestPlatform = {
  ...defaultGuestPlatform(),
  tsc(): bigint {
    const p = platformlessState();
    return p.tsc++;
  },
  get fxState(): Uint8Array {
    return platformlessState().fx;
  },
};

/** Scratch for `cpuid` answers. */
export const CPUID_OUT = new Uint32Array(4);

/** Ends the instruction as an emulation failure (`KVM_EXIT_INTERNAL_ERROR`), with `detail` for humans. */
export function fail(detail: string): never {
  R.failDetail = detail;
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- a marker object: no stack capture on the hot path
  throw EMULATION_FAILED;
}

/** Raises exception `vector` (#UD 6, #GP 13, #SS 12, …): the instruction is abandoned and the exception delivered. */
export function raise(vector: number): never {
  R.faultVector = vector;
  R.faultError = 0;
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- a marker object: no stack capture on the hot path
  throw FAULT;
}

/**
 * Raises exception `vector` with error code `code` (#TS, #NP, #SS, #GP of a segment load: the selector with
 * its TI bit and EXT clear, SDM Vol. 3A §6.13 "Error Code"). Real mode pushes no error code.
 */
export function raiseError(vector: number, code: number): never {
  R.faultVector = vector;
  R.faultError = code & 0xffff;
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- a marker object: no stack capture on the hot path
  throw FAULT;
}

/** The per-run scratch of the interpreter (see the module notes). */
export class RunContext {
  running = false;
  S: GuestCpuState = new GuestCpuState();
  M: GuestMemory = IDLE_MEMORY;
  X: GuestExit = new GuestExit();
  /** Whether `M` provides the `lookup` fast path. */
  hasLookup = false;
  quirks = GUEST_DEFAULT_QUIRKS;
  /** The vCPU's CPUID table, MSRs and TSC. */
  P: GuestPlatform = DEFAULT_PLATFORM;
  /** Offset within CS of the next byte to decode. */
  ip = 0;
  /** CS base for the current instruction. */
  csBase = 0;
  /** CS limit for the current instruction: fetching past it raises #GP. */
  csLim = 0xffff;
  /** Instruction-fetch slot cache: linear [cBase, cEnd) is cBytes[lin - cBase]. */
  cBytes = EMPTY;
  cBase = 0;
  cEnd = 0;
  /** Data-read slot cache. */
  dBytes = EMPTY;
  dBase = 0;
  dEnd = 0;
  /** Data-write slot cache (writable slots only). */
  wBytes = EMPTY;
  wBase = 0;
  wEnd = 0;
  /** The decoded-instruction cache of this run's memory (`insn-cache.ts`), or `undefined` when the run uses none. */
  code: InsnCache | undefined = undefined;
  /** Its code-page bit map (or an empty one): a guest write to a page whose bit is set calls `codeWritten`. */
  codeBits = NO_CODE_BITS;
  /** Real-mode code fetches through the cache's bytes (memories without the slot fast path, or the policy `'always'`). */
  fetchCached = false;
  /** 32-bit protected-mode code runs from the cache's decoded forms (`decoded-exec.ts`). */
  decoded = false;
  /** The execution loop in progress stopped because the mode changed (CR0.PE or CS.D): the other loop takes over. */
  modeChanged = false;
  /** Prefix state of the current instruction. */
  o32 = false;
  a32 = false;
  /** Segment-override prefix: a segment register number (see {@link segBaseOf}), or -1 for none. */
  ovr = -1;
  /** 0 = none, 2 = REPNE (F2), 3 = REP/REPE (F3). */
  rep = 0;
  /** A LOCK (F0) prefix: #UD unless the instruction is a locked read-modify-write of memory. */
  lock = false;
  prefixDirty = false;
  /** The instruction raised this exception vector (with {@link FAULT}). */
  faultVector = 0;
  /** The instruction just executed opened an interrupt shadow (`sti` setting IF, `mov ss`, `pop ss`). */
  shadowSet = 0;
  /** The error code of {@link faultVector} (pushed in protected mode for #DF, #TS, #NP, #SS, #GP, #AC). */
  faultError = 0;
  /** The instruction set CR0.PG: the run ends after it with an internal error (paging is not executed). */
  enteredPaging = false;
  /**
   * The instruction made a request the vCPU's host must act on before the guest's next instruction
   * ({@link GuestPlatform.requestPending}): the run ends after it, as a VM exit handled in the kernel would.
   */
  endRun = false;
  /**
   * The instructions the execution loop in progress completed before the one the general decoder runs now (set before
   * each `step`): with `X.executed` (what earlier loops of the run completed), how far into the run an instruction is —
   * `rdtsc` reads the TSC that far on ({@link GuestPlatform.tsc}).
   */
  loopExecuted = 0;
  /** CR0.PE, as a boolean (kept in step with the state's CR0 by `setCr0` and at run entry). */
  pe = false;
  /** The default operand and address size is 32 bits: protected mode with CS.D = 1. */
  def32 = false;
  /** The stack is 32-bit (ESP): protected mode with SS.B = 1. */
  stack32 = false;
  /** Linear address of the last decoded memory operand. */
  eaLin = 0;
  /** Offset (within its segment) of the last decoded memory operand, for `lea`. */
  eaOff = 0;
  /** Segment register of the last decoded memory operand. */
  eaSeg = 3;
  /** The last 32-bit memory operand used ESP as its base (`pop [esp…]` adjusts it). */
  eaUsesSp = false;
  /** Exit the current instruction produced (0 = none; else a GuestExitReason). */
  exitKind = 0;
  failDetail = '';
}

/** The one run context: only meaningful during one synchronous `runGuest` call. */
export const R = new RunContext();
