/**
 * The invariants of one VM that its module's checker reports, beside the running table:
 *
 * - invariant 6: a live VM is owned by a live process (`kvm->mm`: the VM fd and every vCPU fd are the owner's, so
 *   when the owner dies its files close and the VM goes); a VM marked dead is not still listed;
 * - invariant 8 (guest state is well-formed): each memslot behaves as its flags say (`KVM_MEM_READONLY` ⇔ the guest
 *   cannot write it, the end is base + size, a backed slot shows exactly its size in bytes), and every register
 *   holds a canonical value — each 32-bit half of a 64-bit register an unsigned 32-bit integer, segment selectors 16
 *   bits, CR0–CR4 unsigned 64-bit, no CR0.PG without CR0.PE (`kvm_is_valid_sregs`). A value that is not (a NaN
 *   RIP, a fraction) makes every later `KVM_GET_REGS` throw.
 *
 * @module
 */
import type { Violation } from '@vac/core';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../abi/constants.js';
import { GUEST_REGS64, type GuestCpuState } from '../guest/cpu-state.js';
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

/** @internal The register fields the check covers, by kind (for the test that keeps the fast path in step). */
export const CHECKED_REGISTERS = { u32: U32_FIELDS, u16: U16_FIELDS, u64: CONTROL_REGS } as const;

const u32 = (x: number): boolean => x >>> 0 === x;
const u16 = (x: number): boolean => (x & 0xffff) === x;
const u64 = (x: bigint): boolean => typeof x === 'bigint' && x >= 0n && x < 1n << 64n;

/**
 * The fast path of {@link vcpuStateViolations}: true when every register of {@link U32_FIELDS},
 * {@link U16_FIELDS} and {@link CONTROL_REGS} is canonical and CR0.PG implies CR0.PE. Written out field by field so
 * that each is a direct load (a loop over the names costs a keyed lookup each: the check ran at ~3 µs per vCPU);
 * `vm-check.test.ts` corrupts every listed field in turn to keep the two in step.
 */
export function registersCanonical(r: GuestCpuState): boolean {
  return (
    r.eax >>> 0 === r.eax && r.raxHigh >>> 0 === r.raxHigh && r.ebx >>> 0 === r.ebx && r.rbxHigh >>> 0 === r.rbxHigh && r.ecx >>> 0 === r.ecx && r.rcxHigh >>> 0 === r.rcxHigh &&
    r.edx >>> 0 === r.edx && r.rdxHigh >>> 0 === r.rdxHigh && r.esi >>> 0 === r.esi && r.rsiHigh >>> 0 === r.rsiHigh && r.edi >>> 0 === r.edi && r.rdiHigh >>> 0 === r.rdiHigh &&
    r.esp >>> 0 === r.esp && r.rspHigh >>> 0 === r.rspHigh && r.ebp >>> 0 === r.ebp && r.rbpHigh >>> 0 === r.rbpHigh && r.r8d >>> 0 === r.r8d && r.r8High >>> 0 === r.r8High &&
    r.r9d >>> 0 === r.r9d && r.r9High >>> 0 === r.r9High && r.r10d >>> 0 === r.r10d && r.r10High >>> 0 === r.r10High && r.r11d >>> 0 === r.r11d && r.r11High >>> 0 === r.r11High &&
    r.r12d >>> 0 === r.r12d && r.r12High >>> 0 === r.r12High && r.r13d >>> 0 === r.r13d && r.r13High >>> 0 === r.r13High && r.r14d >>> 0 === r.r14d && r.r14High >>> 0 === r.r14High &&
    r.r15d >>> 0 === r.r15d && r.r15High >>> 0 === r.r15High && r.eip >>> 0 === r.eip && r.ripHigh >>> 0 === r.ripHigh && r.eflags >>> 0 === r.eflags && r.rflagsHigh >>> 0 === r.rflagsHigh &&
    r.esBase >>> 0 === r.esBase && r.esBaseHigh >>> 0 === r.esBaseHigh && r.esLimit >>> 0 === r.esLimit && r.csBase >>> 0 === r.csBase && r.csBaseHigh >>> 0 === r.csBaseHigh && r.csLimit >>> 0 === r.csLimit &&
    r.ssBase >>> 0 === r.ssBase && r.ssBaseHigh >>> 0 === r.ssBaseHigh && r.ssLimit >>> 0 === r.ssLimit && r.dsBase >>> 0 === r.dsBase && r.dsBaseHigh >>> 0 === r.dsBaseHigh && r.dsLimit >>> 0 === r.dsLimit &&
    r.fsBase >>> 0 === r.fsBase && r.fsBaseHigh >>> 0 === r.fsBaseHigh && r.fsLimit >>> 0 === r.fsLimit && r.gsBase >>> 0 === r.gsBase && r.gsBaseHigh >>> 0 === r.gsBaseHigh && r.gsLimit >>> 0 === r.gsLimit &&
    r.gdtBase >>> 0 === r.gdtBase && r.gdtBaseHigh >>> 0 === r.gdtBaseHigh && r.idtBase >>> 0 === r.idtBase && r.idtBaseHigh >>> 0 === r.idtBaseHigh &&
    (r.esSelector & 0xffff) === r.esSelector && (r.csSelector & 0xffff) === r.csSelector && (r.ssSelector & 0xffff) === r.ssSelector && (r.dsSelector & 0xffff) === r.dsSelector && (r.fsSelector & 0xffff) === r.fsSelector && (r.gsSelector & 0xffff) === r.gsSelector &&
    (r.gdtLimit & 0xffff) === r.gdtLimit && (r.idtLimit & 0xffff) === r.idtLimit &&
    u64(r.cr0) && u64(r.cr2) && u64(r.cr3) && u64(r.cr4) &&
    !((r.cr0 & 0x8000_0000n) !== 0n && (r.cr0 & 1n) === 0n)
  );
}

/**
 * The vCPU's register state, checked field by field: what {@link registersCanonical} found wrong, by name (only
 * called when it found something).
 */
export function vcpuStateViolations(v: Vcpu): Violation[] {
  const out: Violation[] = [];
  const regs = v.regs as unknown as Record<string, unknown>;
  const bad = (field: string, what: string): void => {
    out.push({ invariant: 8, message: `${v.label}: ${field} is ${String(regs[field])}, not ${what}` });
  };
  for (const f of U32_FIELDS) if (!(typeof regs[f] === 'number' && u32(regs[f] as number))) bad(f, 'an unsigned 32-bit integer');
  for (const f of U16_FIELDS) if (!(typeof regs[f] === 'number' && u16(regs[f] as number))) bad(f, 'an unsigned 16-bit integer');
  for (const f of CONTROL_REGS) if (!u64(regs[f] as bigint)) bad(f, 'an unsigned 64-bit integer');
  const cr0 = regs['cr0'];
  if (typeof cr0 === 'bigint' && (cr0 & 0x8000_0000n) !== 0n && (cr0 & 1n) === 0n) {
    out.push({ invariant: 8, message: `${v.label}: CR0.PG is set without CR0.PE (0x${cr0.toString(16)})` });
  }
  return out;
}
