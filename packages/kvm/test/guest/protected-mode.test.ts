/**
 * 32-bit protected mode against a real /dev/kvm: every case of fixtures/pm-cases.ts (real-mode prologue → LGDT,
 * LIDT, CR0.PE, far jump to a 32-bit code segment → the body) runs through the model's /dev/kvm0 and must give the
 * recorded exits, registers at each exit, final registers, every segment register (selector and hidden part, TR
 * and LDTR included), control and descriptor-table registers, and memory (the stack's top, the GDT with its
 * accessed and busy bits, the case's dumps) — except the divergences below, each with its reason. The recording
 * (fixtures/real-kvm-pm.json, with the assembled bytes) was made on Linux 6.18 with kvm_pvm, which runs these in
 * KVM's instruction emulator.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO } from '../../src/index.js';
import { PM_CASES, pmDumps, pmMemory, type PmCase } from './fixtures/pm-cases.js';
import { REGS, runOnModel, type Recorded } from './real-kvm-model.js';

type RecordedPm = Recorded & { readonly code: string };

const recording = JSON.parse(readFileSync(new URL('./fixtures/real-kvm-pm.json', import.meta.url), 'utf8')) as { cases: Record<string, RecordedPm> };

/** Dump `base` of a recording with `bytes` (hex) written at guest-physical `at`. */
function patched(r: Recorded, base: number, at: number, bytes: string): Record<string, string> {
  const key = `0x${base.toString(16)}`;
  const old = r.memory[key]!;
  const o = (at - base) * 2;
  return { ...r.memory, [key]: old.slice(0, o) + bytes + old.slice(o + bytes.length) };
}

/** The recording with the registers of exit `n` (and, for the last exit, the final registers) changed by `regs`. */
function exitRegs(r: Recorded, n: number, regs: Readonly<Record<string, string>>): Recorded {
  const exits = r.exits.map((e, i) => (i === n ? { ...e, regs: { ...(e['regs'] as Record<string, string>), ...regs } } : e));
  return { ...r, exits, regs: n === r.exits.length - 1 ? { ...r.regs, ...regs } : r.regs };
}

/** The recording with its one exit turned into a HLT exit with the final registers changed by `regs`. */
function haltedWith(r: Recorded, regs: Readonly<Record<string, string>>): Recorded {
  const all = { ...r.regs, ...regs };
  return { ...r, exits: [{ reason: KVM_EXIT_HLT, regs: all }], regs: all };
}

const EMULATOR_OUT =
  'the emulator writes RIP back past an OUT before the exit; on VMX/SVM, as in the model, RIP stays on the OUT until the next KVM_RUN completes it (arch/x86/kvm/x86.c kvm_fast_pio_out, complete_fast_pio_out; conformance/divergences.ts rip-after-out)';

/**
 * Where the model differs from the recording, each with its reason. `emulator`: the recording machine's vendor
 * module (kvm_pvm) runs protected mode in KVM's instruction emulator and injects events its own way; the model
 * follows VMX/SVM hardware and the SDM (Vol. 3A §6.12).
 */
const DIVERGENCES: Readonly<Record<string, { readonly kind: 'emulator'; readonly why: string; readonly model: (r: Recorded) => Recorded }>> = {
  'pm-enter': { kind: 'emulator', why: EMULATOR_OUT, model: (r) => exitRegs(r, 0, { rip: '0x1108' }) },
  'pm-in-out': { kind: 'emulator', why: EMULATOR_OUT, model: (r) => exitRegs(r, 1, { rip: '0x1105' }) },
  'pm-int-iret': {
    kind: 'emulator',
    why: "INT n in protected mode: the emulator's em_int handles real mode only (emulation failure); the hardware delivers through the trap gate (inc ebx; iretd) twice, and PUSHFD in between stores EFLAGS 0x7",
    model: (r) => ({ ...haltedWith(r, { rbx: '0x12', rip: '0x1107', rsp: '0x7ffc', rflags: '0x7' }), memory: patched(r, 0x7fe0, 0x7ff0, '06110000080000000700000007000000') }),
  },
  'pm-iretd-same-level': {
    kind: 'emulator',
    why: "IRET in protected mode: the emulator's em_iret handles real mode only (emulation failure); the hardware returns at the same privilege level: IRETD restores CF, LRETW enters the 16-bit segment 0x18 (accessed bit set), IRETW returns within it",
    model: (r) => ({
      ...haltedWith(r, { rbx: '0x8000', rip: '0x111d', rsp: '0x8000', rflags: '0x7' }),
      sregs: { ...r.sregs, cs: { ...(r.sregs['cs'] as object), selector: '0x18', limit: '0xffff', type: 11, db: 0, g: 0 } },
      memory: { ...patched(r, 0x7fe0, 0x7ff8, '08001c1118000700'), '0x800': patched(r, 0x800, 0x81d, '9b')['0x800']! },
    }),
  },
  'pm-ud-16bit-gate': {
    kind: 'emulator',
    why: "an exception through a 16-bit interrupt gate: the recording machine pushes a 32-bit frame (EIP, CS, EFLAGS with RF) and leaves the code descriptor's accessed bit clear; the SDM pushes 16-bit IP, CS, FLAGS through a 16-bit gate and sets the accessed bit of a descriptor it loads (Vol. 3A §6.12.1, §3.4.5.1)",
    model: (r) => ({
      ...exitRegs(r, 0, { rsp: '0x7ffa' }),
      sregs: { ...r.sregs, cs: { ...(r.sregs['cs'] as object), type: 11 } },
      memory: { ...patched(r, 0x7fe0, 0x7ff4, '000000000000001108000600'), '0x800': patched(r, 0x800, 0x81d, '9b')['0x800']! },
    }),
  },
};

/** The recorded case as the model's runner takes it. */
function asCase(c: PmCase, code: string): Parameters<typeof runOnModel>[0] {
  return { name: c.name, code, mem: { ...pmMemory(), ...(c.mem ?? {}) }, regs: { rsp: '0x8000', ...(c.regs ?? {}) }, in: c.in ?? [], dump: pmDumps(c), exits: 16 };
}

/** The compared part of a recording: exits (reason, I/O, registers), final registers, segments, control registers, memory. */
function compared(r: Recorded): Recorded {
  return {
    exits: r.exits.map((e) => {
      const out: Record<string, unknown> = { reason: e['reason'], regs: Object.fromEntries(REGS.map((k) => [k, (e['regs'] as Record<string, string>)[k]])) };
      if (e['io'] !== undefined) {
        const io = e['io'] as Record<string, unknown>;
        out['io'] = { direction: io['direction'], size: io['size'], port: io['port'], count: io['count'], data: io['data'] };
      }
      return out;
    }),
    regs: Object.fromEntries(REGS.map((k) => [k, r.regs[k]!])),
    sregs: Object.fromEntries(['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt', 'gdt', 'idt', 'cr0', 'cr2', 'cr3', 'cr4'].map((k) => [k, r.sregs[k]])),
    memory: r.memory,
  };
}

describe('32-bit protected mode against a real /dev/kvm (fixtures/real-kvm-pm.json)', () => {
  test('every case has a recording', () => {
    expect(Object.keys(recording.cases).sort()).toEqual(PM_CASES.map((c) => c.name).sort());
  });

  test.each(PM_CASES.map((c) => [c.name, c] as const))('%s', (name, c) => {
    const rec = recording.cases[name]!;
    const d = DIVERGENCES[name];
    const want = compared(d === undefined ? rec : d.model(rec));
    expect(compared(runOnModel(asCase(c, rec.code)))).toEqual(want);
  });

  test('every divergence still differs from the recording', () => {
    for (const [name, d] of Object.entries(DIVERGENCES)) {
      const rec = recording.cases[name]!;
      expect(compared(d.model(rec)), name).not.toEqual(compared(rec));
    }
  });
});

describe('what the interpreter does not execute ends in an internal error', () => {
  /** The recorded pm-enter bytes with the body replaced by `body` (hex) at 0x1100. */
  function withBody(body: string): string {
    const code = recording.cases['pm-enter']!.code;
    return code.slice(0, 0x200) + body;
  }

  test('setting CR0.PG: the MOV completes, then KVM_EXIT_INTERNAL_ERROR (emulation, no instruction bytes)', () => {
    // mov %cr0,%eax; or $0x80000000,%eax; mov %eax,%cr0; hlt
    const r = runOnModel({ name: 'pg', code: withBody('0f20c00d000000800f22c0f4'), mem: pmMemory(), regs: { rsp: '0x8000' }, exits: 4 });
    expect(r.exits).toHaveLength(1);
    expect(r.exits[0]!['reason']).toBe(KVM_EXIT_INTERNAL_ERROR);
    expect(r.regs['rip']).toBe('0x110b');
    expect(r.sregs['cr0']).toBe('0xe0000011'); // CD and NW from reset kept
  });

  test('LLDT, LTR, SLDT, STR in real mode raise #UD', () => {
    const r = runOnModel({ name: 'lldt-real', code: '0f00d0f4', ivt: true });
    expect(r.regs['rip']).toBe(`0x${(0x3001 + 6).toString(16)}`);
  });
});

describe('CPUID and the kvmclock MSR from 32-bit code', () => {
  test("CPUID answers the KVM leaves of KVM_SET_CPUID2; WRMSR(MSR_KVM_SYSTEM_TIME_NEW) makes the next entry write a pvclock structure; RDMSR reads the MSR back", () => {
    // cpuid(0x40000000) → [0x4000..0x400b]; cpuid(0x40000001).eax → [0x400c]; wrmsr(0x4b564d01, 0x5001); out 0x10;
    // mov ebx, [0x5000] (the version); rdmsr; hlt
    const body = 'b8000000400fa2891d00400000890d04400000891508400000b8010000400fa2a30c400000b9014d564bb80150000031d20f30e6108b1d005000000f32f4';
    const code = recording.cases['pm-enter']!.code.slice(0, 0x200) + body;
    const signature = [0x4b4d564b, 0x564b4d56, 0x4d]; // "KVMKVMKVM\0\0\0"
    const features = (1 << 3) | (1 << 24); // KVM_FEATURE_CLOCKSOURCE2, KVM_FEATURE_CLOCKSOURCE_STABLE_BIT
    const r = runOnModel({
      name: 'kvmclock',
      code,
      mem: pmMemory(),
      regs: { rsp: '0x8000' },
      cpuid: [[0x40000000, 0, 0, 0x40000001, ...signature], [0x40000001, 0, 0, features, 0, 0, 0]],
      dump: [[0x4000, 16], [0x5000, 32]],
      exits: 4,
    });
    expect(r.exits.map((e) => e['reason'])).toEqual([KVM_EXIT_IO, KVM_EXIT_HLT]);
    expect(r.memory['0x4000']).toBe('4b564d4b564d4b564d000000' + '08000001');
    const pv = Buffer.from(r.memory['0x5000']!, 'hex');
    const version = pv.readUInt32LE(0);
    expect(version % 2).toBe(0); // even: not being written
    expect(version).toBeGreaterThan(0);
    expect(pv.readUInt32LE(24)).toBeGreaterThan(0); // tsc_to_system_mul
    expect(r.regs['rbx']).toBe(`0x${version.toString(16)}`); // the guest read the same version
    expect([r.regs['rax'], r.regs['rdx']]).toEqual(['0x5001', '0x0']);
  });

  test('the pvclock structure is written before the instruction after the WRMSR, in the same KVM_RUN (SeaBIOS reads it right away)', () => {
    // wrmsr(0x4b564d01, 0x5001); mov ebx, [0x5018] (tsc_to_system_mul); hlt
    const body = 'b9014d564bb80150000031d20f308b1d18500000f4';
    const code = recording.cases['pm-enter']!.code.slice(0, 0x200) + body;
    const features = (1 << 3) | (1 << 24);
    const r = runOnModel({
      name: 'kvmclock-same-run',
      code,
      mem: pmMemory(),
      regs: { rsp: '0x8000' },
      cpuid: [[0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d], [0x40000001, 0, 0, features, 0, 0, 0]],
      dump: [[0x5000, 32]],
      exits: 2,
    });
    expect(r.exits.map((e) => e['reason'])).toEqual([KVM_EXIT_HLT]);
    const mul = Buffer.from(r.memory['0x5000']!, 'hex').readUInt32LE(24);
    expect(mul).toBeGreaterThan(0);
    expect(r.regs['rbx']).toBe(`0x${mul.toString(16)}`);
  });
});
