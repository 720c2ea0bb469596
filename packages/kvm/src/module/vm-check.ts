/**
 * The invariants of one VM that its module's checker reports, beside the running table:
 *
 * - invariant 6: a live VM is owned by a live process (`kvm->mm`: the VM fd and every vCPU fd are the owner's, so
 *   when the owner dies its files close and the VM goes); a VM marked dead is not still listed;
 * - invariant 8 (guest state is well-formed): each memslot behaves as its flags say (`KVM_MEM_READONLY` ⇔ the guest
 *   cannot write it, the end is base + size, a backed slot shows exactly its size in bytes), and every register
 *   holds a canonical value — each 32-bit half of a 64-bit register an unsigned 32-bit integer, segment selectors 16
 *   bits, CR0–CR4 unsigned 64-bit, no CR0.PG without CR0.PE (`kvm_is_valid_sregs`), every other counter a
 *   non-negative integer. A value that is not (a NaN RIP, a fraction) makes every later `KVM_GET_REGS` throw.
 *
 * @module
 */
import type { Violation } from '@vac/core';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../abi/constants.js';
import { GUEST_REGS64 } from '../guest/cpu-state.js';
import type { Vcpu } from './vcpu.js';
import type { Vm } from './vm.js';

/** The VM's own violations (not its vCPUs'). */
export function vmViolations(vm: Vm): Violation[] {
  const out: Violation[] = [];
  if (vm.dead) out.push({ invariant: 6, message: `${vm.label} is destroyed but still listed by ${vm.instance.name}` });
  if (!vm.owner.alive) out.push({ invariant: 6, message: `${vm.label} is alive but its owner, process ${vm.owner.pid}, is dead` });
  for (const s of vm.memslots.list()) {
    const where = `${vm.label} memslot ${s.asId}:${s.id}`;
    if ((s.flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) out.push({ invariant: 8, message: `${where} has unknown flags 0x${s.flags.toString(16)}` });
    const ro = (s.flags & KVM_MEM_READONLY) !== 0;
    if (s.readonly !== ro) out.push({ invariant: 8, message: `${where}: KVM_MEM_READONLY is ${ro ? 'set' : 'clear'} but the guest ${s.readonly ? 'cannot' : 'can'} write it` });
    if (s.end !== s.base + s.size) out.push({ invariant: 8, message: `${where} ends at 0x${s.end.toString(16)}, not base + size` });
    if (s.backed && s.bytes.length !== s.size) out.push({ invariant: 8, message: `${where} is ${s.size} bytes but shows ${s.bytes.length}` });
  }
  return out;
}

/** The low half's field of each 64-bit register (`rax` → `eax`, `r8` → `r8d`, `rip` → `eip`). */
const LOW_HALF: Readonly<Record<string, string>> = Object.fromEntries(
  GUEST_REGS64.map((r) => [r, /^r\d/.test(r) ? `${r}d` : r === 'rflags' ? 'eflags' : `e${r.slice(1)}`]),
);
const SEGMENTS = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

/** 32-bit fields: the register halves, segment bases (both halves) and limits, the descriptor tables' bases. */
const U32_FIELDS: readonly string[] = [
  ...GUEST_REGS64.flatMap((r) => [LOW_HALF[r] as string, `${r}High`]),
  ...SEGMENTS.flatMap((s) => [`${s}Base`, `${s}BaseHigh`, `${s}Limit`]),
  'gdtBase', 'gdtBaseHigh', 'idtBase', 'idtBaseHigh',
];
/** 16-bit fields: selectors and the descriptor tables' limits (`struct kvm_dtable.limit`). */
const U16_FIELDS: readonly string[] = [...SEGMENTS.map((s) => `${s}Selector`), 'gdtLimit', 'idtLimit'];
const CONTROL_REGS = ['cr0', 'cr2', 'cr3', 'cr4'] as const;
const KNOWN = new Set<string>([...U32_FIELDS, ...U16_FIELDS, ...CONTROL_REGS]);

const isUint = (v: unknown, bits: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** bits;

/** The vCPU's register state, checked field by field (linear in the fields; allocates only to report). */
export function vcpuStateViolations(v: Vcpu): Violation[] {
  const out: Violation[] = [];
  const regs = v.regs as unknown as Record<string, unknown>;
  const bad = (field: string, what: string): void => {
    out.push({ invariant: 8, message: `${v.label}: ${field} is ${String(regs[field])}, not ${what}` });
  };
  for (const f of U32_FIELDS) if (!isUint(regs[f], 32)) bad(f, 'an unsigned 32-bit integer');
  for (const f of U16_FIELDS) if (!isUint(regs[f], 16)) bad(f, 'an unsigned 16-bit integer');
  for (const f of CONTROL_REGS) {
    const x = regs[f];
    if (typeof x !== 'bigint' || x < 0n || x >= 1n << 64n) bad(f, 'an unsigned 64-bit integer');
  }
  const cr0 = regs['cr0'];
  if (typeof cr0 === 'bigint' && (cr0 & 0x8000_0000n) !== 0n && (cr0 & 1n) === 0n) {
    out.push({ invariant: 8, message: `${v.label}: CR0.PG is set without CR0.PE (0x${cr0.toString(16)})` });
  }
  for (const f of Object.keys(regs)) {
    if (KNOWN.has(f)) continue;
    const x = regs[f];
    if (typeof x === 'number' && !(Number.isSafeInteger(x) && x >= 0)) bad(f, 'a non-negative integer');
  }
  return out;
}
