/**
 * 12. Guest instructions per second: the interpreter alone (`runGuest` on one vCPU state and one RAM slot), on the
 * same loop of seven instructions (an ALU op, INC, XOR, a store and a load through a disp address, DEC, JNZ; a JMP
 * back every 1,000 iterations) in three forms:
 *
 * - real mode with the slot fast path (`SlotListMemory.lookup`): the baseline;
 * - real mode through the general decoder only (a memory without `lookup`, as MMIO-heavy or fragmented guests see);
 * - 32-bit protected mode (flat segments, CS.D = 1), which today always takes the general decoder.
 *
 * One op is one guest instruction; each call runs budgets of 100,000 instructions until 1,000,000 have completed.
 */
import { GuestCpuState, GuestExit, GuestExitReason, SlotListMemory, runGuest, type GuestMemory } from '@vac/kvm';
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

function run(b: Budget, name: string, r: Rig): Measurement {
  return measure(
    b,
    name,
    () => {
      let done = 0;
      while (done < PER_CALL) {
        if (runGuest(r.state, r.memory, 100_000, r.exit) !== GuestExitReason.Budget) throw new Error(`${name}: exit ${r.exit.reason} (${r.exit.detail})`);
        done += r.exit.executed;
      }
    },
    { opsPerCall: PER_CALL },
  );
}

/** Run the group. */
export function runGuestInsn(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const mReal = run(b, 'real mode, fast path', rig(LOOP16, false, true));
  const base = { label: 'real mode, fast path', m: mReal };
  const rows: Row[] = [row(GROUP, 'runGuest, real mode (baseline)', 'slot fast path', mReal, undefined, { unit: 'per instruction', note: '7-instruction ALU/load/store/branch loop' })];
  rows.push(row(GROUP, 'runGuest, real mode', 'general decoder only', run(b, 'real mode, general decoder', rig(LOOP16, false, false)), base, { unit: 'per instruction' }));
  rows.push(row(GROUP, 'runGuest, 32-bit protected mode', 'flat segments', run(b, 'protected mode', rig(LOOP32, true, true)), base, { unit: 'per instruction' }));
  return { rows, targets: [] };
}
