/**
 * 12. Guest instructions per second: the interpreter alone (`runGuest` on one vCPU state and one RAM slot), on the
 * same loop of seven instructions (an ALU op, INC, XOR, a store and a load through a disp address, DEC, JNZ; a JMP
 * back every 1,000 iterations) in these forms:
 *
 * - real mode with the slot fast path (`SlotListMemory.lookup`): the baseline;
 * - real mode on a byte-wise memory (`read8`/`write8` only, as the bridge's view of a VMM's RAM), which fetches through
 *   the decoded-instruction cache — and the same without the cache (every byte fetched from memory);
 * - 32-bit protected mode (flat segments, CS.D = 1), which runs from the cache's decoded forms — and the same through
 *   the general decoder (forms off), on the slot memory and on the byte-wise memory.
 *
 * One op is one guest instruction; each call runs budgets of 100,000 instructions until 1,000,000 have completed.
 *
 * Then SeaBIOS (Debian's bios.bin, without QEMU: the harness of packages/kvm/test/guest/seabios.test.ts, through the
 * module's KVM_RUN with the in-kernel irqchip and PIT): its POST from the reset vector through its first 300 exits
 * (about 2.4 million instructions, most of them its 32-bit C code), on the slot memory and on the byte-wise memory
 * with and without the decoded forms (byte-wise: without any cache). Skipped with a note where bios.bin is missing.
 */
import { existsSync } from 'node:fs';
import { GuestCpuState, GuestExit, GuestExitReason, SlotListMemory, runGuest, type GuestMemory } from '@vac/kvm';
// @internal, so not in the package's exports: the source file itself (the bench runs from source).
import { setDecodedForms, setInsnCachePolicy, type InsnCachePolicy } from '../../packages/kvm/src/guest/insn-cache.js';
import { BIOS, boot } from '../../packages/kvm/test/guest/seabios-harness.js';
import { measure, row, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';

const GROUP = '12. Guest instructions';

/** The loop in 16-bit code: mov cx,1000; l: add ax,bx; inc si; xor dx,ax; mov [0x2000],ax; mov bx,[0x2000]; dec cx; jnz l; jmp start. */
const LOOP16 = [0xb9, 0xe8, 0x03, 0x01, 0xd8, 0x46, 0x31, 0xc2, 0xa3, 0x00, 0x20, 0x8b, 0x1e, 0x00, 0x20, 0x49, 0x75, 0xf1, 0xeb, 0xec];

/** The same loop in 32-bit code (disp32 addresses). */
const LOOP32 = [
  0xb9, 0xe8, 0x03, 0x00, 0x00, 0x01, 0xd8, 0x46, 0x31, 0xc2, 0xa3, 0x00, 0x20, 0x00, 0x00, 0x8b, 0x1d, 0x00, 0x20, 0x00, 0x00, 0x49, 0x75, 0xed, 0xeb, 0xe6,
];

interface Rig {
  readonly state: GuestCpuState;
  readonly memory: GuestMemory;
  readonly exit: GuestExit;
}

function rig(code: readonly number[], protectedMode: boolean, fastPath: boolean): Rig {
  const ram = new Uint8Array(0x10000);
  ram.set(code, 0x1000);
  const slots = new SlotListMemory([{ guestPhysAddr: 0, bytes: ram }]);
  const memory: GuestMemory = fastPath ? slots : { read8: (gpa) => slots.read8(gpa), write8: (gpa, v) => slots.write8(gpa, v) };
  const state = new GuestCpuState();
  state.cs.loadRealMode(0);
  state.rip = 0x1000;
  state.rsp = 0x8000;
  if (protectedMode) {
    state.cr0 |= 1n;
    for (const seg of [state.cs, state.ds, state.es, state.ss]) {
      seg.base = 0;
      seg.limit = 0xffffffff;
      seg.db = 1;
      seg.g = 1;
    }
    state.cs.selector = 0x08;
    for (const seg of [state.ds, state.es, state.ss]) seg.selector = 0x10;
  }
  return { state, memory, exit: new GuestExit() };
}

const PER_CALL = 1_000_000;

/** The cache policy and whether protected-mode code runs from decoded forms. */
interface Cache {
  readonly policy: InsnCachePolicy;
  readonly forms: boolean;
}

const AUTO: Cache = { policy: 'auto', forms: true };
const NO_FORMS: Cache = { policy: 'auto', forms: false };
const NEVER: Cache = { policy: 'never', forms: false };

/** Applies `c`; returns what undoes it. */
function use(c: Cache): () => void {
  const policy = setInsnCachePolicy(c.policy);
  const forms = setDecodedForms(c.forms);
  return () => {
    setInsnCachePolicy(policy);
    setDecodedForms(forms);
  };
}

function run(b: Budget, name: string, r: Rig, cache: Cache = AUTO): Measurement {
  return measure(
    b,
    name,
    () => {
      const undo = use(cache);
      try {
        let done = 0;
        while (done < PER_CALL) {
          if (runGuest(r.state, r.memory, 100_000, r.exit) !== GuestExitReason.Budget) throw new Error(`${name}: exit ${r.exit.reason} (${r.exit.detail})`);
          done += r.exit.executed;
        }
      } finally {
        undo();
      }
    },
    { opsPerCall: PER_CALL },
  );
}

/** SeaBIOS's exits measured (see the module notes). */
const SEABIOS_EXITS = 300;

/** One SeaBIOS boot per call; op = one guest instruction (the count of the first boot, checked on every call). */
function seabios(b: Budget, name: string, bytewise: boolean, cache: Cache): Measurement {
  const undo = use(cache);
  try {
    const expected = boot(SEABIOS_EXITS, { bytewise }).instructions;
    return measure(
      b,
      name,
      () => {
        const got = boot(SEABIOS_EXITS, { bytewise }).instructions;
        if (got !== expected) throw new Error(`${name}: ${got} instructions, ${expected} the first time`);
      },
      { opsPerCall: expected, time: 0, iterations: b.quick ? 1 : 3, warmupTime: 0, warmupIterations: b.quick ? 0 : 1 },
    );
  } finally {
    undo();
  }
}

/** Run the group. */
export function runGuestInsn(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const mReal = run(b, 'real mode, fast path', rig(LOOP16, false, true));
  const base = { label: 'real mode, fast path', m: mReal };
  const unit = { unit: 'per instruction' };
  const rows: Row[] = [row(GROUP, 'runGuest, real mode (baseline)', 'slot fast path', mReal, undefined, { unit: 'per instruction', note: '7-instruction ALU/load/store/branch loop' })];
  rows.push(row(GROUP, 'runGuest, real mode', 'byte-wise memory, insn cache', run(b, 'real mode, byte-wise, cache', rig(LOOP16, false, false)), base, unit));
  rows.push(row(GROUP, 'runGuest, real mode', 'byte-wise memory, no cache', run(b, 'real mode, byte-wise, no cache', rig(LOOP16, false, false), NEVER), base, unit));
  rows.push(row(GROUP, 'runGuest, 32-bit protected mode', 'slot memory, decoded forms', run(b, 'protected mode', rig(LOOP32, true, true)), base, unit));
  rows.push(row(GROUP, 'runGuest, 32-bit protected mode', 'slot memory, general decoder', run(b, 'protected mode, general decoder', rig(LOOP32, true, true), NO_FORMS), base, unit));
  rows.push(row(GROUP, 'runGuest, 32-bit protected mode', 'byte-wise memory, decoded forms', run(b, 'protected mode, byte-wise', rig(LOOP32, true, false)), base, unit));
  rows.push(row(GROUP, 'runGuest, 32-bit protected mode', 'byte-wise memory, general decoder, no cache', run(b, 'protected mode, byte-wise, no cache', rig(LOOP32, true, false), NEVER), base, unit));
  if (existsSync(BIOS)) {
    const note = { unit: 'per instruction', note: `bios.bin POST, first ${SEABIOS_EXITS} exits, KVM_RUN with in-kernel irqchip` };
    const mSlots = seabios(b, 'SeaBIOS, slot memory', false, AUTO);
    const sBase = { label: 'SeaBIOS, slot memory', m: mSlots };
    rows.push(row(GROUP, 'SeaBIOS POST (baseline)', 'slot memory, decoded forms', mSlots, undefined, note));
    rows.push(row(GROUP, 'SeaBIOS POST', 'slot memory, general decoder', seabios(b, 'SeaBIOS, slot memory, general decoder', false, NO_FORMS), sBase, note));
    rows.push(row(GROUP, 'SeaBIOS POST', 'byte-wise memory, insn cache and decoded forms', seabios(b, 'SeaBIOS, byte-wise, cache', true, AUTO), sBase, note));
    rows.push(row(GROUP, 'SeaBIOS POST', 'byte-wise memory, no cache', seabios(b, 'SeaBIOS, byte-wise, no cache', true, NEVER), sBase, note));
  } else console.warn(`guest-insn: the SeaBIOS rows are skipped (${BIOS} is missing: apt-get install seabios)`);
  return { rows, targets: [] };
}
