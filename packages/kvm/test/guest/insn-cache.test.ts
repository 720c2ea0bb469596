/**
 * The decoded-instruction cache (`src/guest/insn-cache.ts`): instructions run from the cache must behave exactly as
 * when fetched from memory, whatever changed the bytes they were decoded from — the guest (the next instruction,
 * `rep stos` over code, a write into an instruction that crosses a page), the VMM between runs, a memslot replaced
 * by another, a mode change (CS.D, CR0.PE) or a CS base change. Each case runs on a byte-wise memory (where the
 * cache is on by default) and on the slot memory with the cache forced on, and is checked against the slot memory
 * without the cache.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { GuestExitReason, runGuest, type GuestMemory } from '../../src/guest/index.js';
import { cacheFor, insnCacheStats, setInsnCachePolicy, type InsnCachePolicy } from '../../src/guest/insn-cache.js';
import { NO_CODE_BITS } from '../../src/guest/run-context.js';
import { enterFlat32, makeVm, type Flavor, type Vm, type VmOptions } from './helpers.js';

/** The ways a case runs: memory flavour and cache policy. The first runs without the cache (the reference). */
const MODES: readonly { readonly name: string; readonly flavor: Flavor; readonly policy: InsnCachePolicy }[] = [
  { name: 'slot memory, no cache', flavor: 'lookup', policy: 'never' },
  { name: 'byte-wise memory (cache by default)', flavor: 'bytewise', policy: 'auto' },
  { name: 'slot memory, cache forced on', flavor: 'lookup', policy: 'always' },
  { name: 'slot memory (decoded forms by default in 32-bit protected mode)', flavor: 'lookup', policy: 'auto' },
];

afterEach(() => {
  setInsnCachePolicy('auto');
});

/** Runs `body` in every mode and returns each mode's result (the first: the reference without the cache). */
function inEveryMode<T>(body: (flavor: Flavor) => T): T[] {
  return MODES.map((m) => {
    setInsnCachePolicy(m.policy);
    try {
      return body(m.flavor);
    } finally {
      setInsnCachePolicy('auto');
    }
  });
}

interface Regs {
  readonly rax: number;
  readonly rbx: number;
  readonly rcx: number;
  readonly rip: number;
  readonly exit: number;
  readonly executed: number;
}

function regs(vm: Vm): Regs {
  const s = vm.state;
  return { rax: Number(s.rax), rbx: Number(s.rbx), rcx: Number(s.rcx), rip: Number(s.rip), exit: vm.exit.reason, executed: vm.exit.executed };
}

function expectSame<T>(results: readonly T[]): T {
  for (let i = 1; i < results.length; i++) expect(results[i], MODES[i]!.name).toEqual(results[0]);
  return results[0]!;
}

/** Runs `code` to its exit in every mode and returns the registers, the same in every mode. */
function runInEveryMode(code: readonly number[], opts?: VmOptions): Regs {
  return expectSame(inEveryMode((flavor) => {
    const vm = makeVm(flavor, code, opts);
    vm.run();
    return regs(vm);
  }));
}

describe('guest writes drop the cached instructions they overlap', () => {
  test('an increment of the immediate of the very next instruction, each time round a loop', () => {
    const code = [
      0xb9, 0x03, 0x00, //       1000 mov cx, 3
      0xfe, 0x06, 0x09, 0x10, // 1003 inc byte [0x1009]   (the immediate of the next instruction)
      0x90, //                   1007 nop
      0xb0, 0x11, //             1008 mov al, 0x11
      0x00, 0xc3, //             100a add bl, al
      0xe2, 0xf5, //             100c loop 1003
      0xf4, //                   100e hlt
    ];
    const r = runInEveryMode(code);
    expect(r.exit).toBe(GuestExitReason.Hlt);
    expect(r.rbx & 0xff).toBe(0x12 + 0x13 + 0x14);
  });

  test('a write into the instruction right after the current one (no instruction between)', () => {
    const code = [
      0xb9, 0x02, 0x00, //             1000 mov cx, 2
      0x80, 0x06, 0x09, 0x10, 0x10, // 1003 add byte [0x1009], 0x10   (the next instruction's immediate)
      0xb0, 0x11, //                   1008 mov al, 0x11
      0x00, 0xc3, //                   100a add bl, al
      0xe2, 0xf5, //                   100c loop 1003
      0xf4, //                         100e hlt
    ];
    const r = runInEveryMode(code);
    expect(r.rax & 0xff).toBe(0x31);
    expect(r.rbx & 0xff).toBe(0x21 + 0x31);
  });

  test('rep stosb over code already executed: the loop runs NOPs the second time', () => {
    const code = [
      0xba, 0x02, 0x00, //       1000 mov dx, 2
      0x43, //                   1003 inc bx          (overwritten with NOP after the first pass)
      0x43, //                   1004 inc bx
      0xbf, 0x03, 0x10, //       1005 mov di, 0x1003
      0xb9, 0x02, 0x00, //       1008 mov cx, 2
      0xb0, 0x90, //             100b mov al, 0x90
      0xf3, 0xaa, //             100d rep stosb
      0x4a, //                   100f dec dx
      0x75, 0xf1, //             1010 jnz 1003
      0xf4, //                   1012 hlt
    ];
    const r = runInEveryMode(code);
    expect(r.rbx & 0xffff).toBe(2);
  });

  test('a write into the part of an instruction that lies in the next page', () => {
    // mov ax, imm16 at 0x1fff: opcode in page 1, immediate in page 2; the loop patches the immediate's high byte.
    const at = 0x1ff0;
    const code = new Array<number>(0x20).fill(0x90);
    const put = (addr: number, bytes: readonly number[]): void => bytes.forEach((b, i) => (code[addr - at + i] = b));
    put(0x1ff0, [0xb9, 0x02, 0x00]); //              1ff0 mov cx, 2
    put(0x1ff3, [0xc6, 0x06, 0x01, 0x20, 0x00]); //  1ff3 mov byte [0x2001], 0   (zeroed on the first pass)
    put(0x1fff, [0xb8, 0x34, 0x12]); //              1fff mov ax, 0x1234  (0x2000–0x2001: the immediate)
    put(0x2002, [0x01, 0xc3]); //                    2002 add bx, ax
    put(0x2004, [0xfe, 0x06, 0x01, 0x20]); //        2004 inc byte [0x2001]
    put(0x2008, [0xe2, 0xf5]); //                    2008 loop 1fff
    put(0x200a, [0xf4]); //                          200a hlt
    const r = runInEveryMode(code, { at });
    expect(r.rbx & 0xffff).toBe(0x0034 + 0x0134);
  });
});

describe('changes between runs are found at the next run', () => {
  test('the VMM rewrites code in the memslot between two runs', () => {
    const code = [0xb0, 0x11, 0xf4]; // mov al, 0x11; hlt
    const r = expectSame(inEveryMode((flavor) => {
      const vm = makeVm(flavor, code);
      vm.run();
      const first = vm.state.rax & 0xff;
      vm.ram[0x1001] = 0x22;
      vm.state.rip = 0x1000;
      vm.run();
      return { first, second: vm.state.rax & 0xff };
    }));
    expect(r).toEqual({ first: 0x11, second: 0x22 });
  });

  test('a memslot replaced by another at the same address (KVM_SET_USER_MEMORY_REGION)', () => {
    // A memory whose slot list user space replaces between runs, as KVM_SET_USER_MEMORY_REGION does.
    const a = new Uint8Array(0x10000);
    const b = new Uint8Array(0x10000);
    a.set([0xb0, 0x11, 0xf4], 0x1000);
    b.set([0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0xf4], 0x1000); // mov eax, 0x12345678 (longer: the old length is stale)
    const r = expectSame(inEveryMode((flavor) => {
      const vm = makeVm(flavor, [0xf4]);
      let slot = a;
      const mem = { read8: (gpa: number): number => (gpa < slot.length ? slot[gpa]! : -1), write8: (): boolean => false };
      const memory =
        flavor === 'lookup'
          ? { ...mem, lookup: (gpa: number) => (gpa < slot.length ? { bytes: slot, base: 0, end: slot.length, readonly: false } : undefined) }
          : mem;
      const run = (): number => {
        vm.state.rip = 0x1000;
        return runWith(vm, memory);
      };
      run();
      const first = vm.state.rax;
      slot = b;
      run();
      return { first, second: vm.state.rax, rip: Number(vm.state.rip) };
    }));
    expect(r).toEqual({ first: 0x11, second: 0x12345678, rip: 0x1007 });
  });
});

describe('the mode an instruction was decoded in', () => {
  test('the same bytes in 16-bit code, then in 32-bit protected mode (CS.D = 1): decoded again', () => {
    const code = [0xb8, 0x01, 0x00, 0x00, 0x00, 0xf4]; // 16-bit: mov ax,1; add [bx+si],al; hlt — 32-bit: mov eax,1; hlt
    const results = inEveryMode((flavor) => {
      const vm = makeVm(flavor, code);
      vm.state.rbx = 0x3000;
      vm.run();
      const real = { rip: Number(vm.state.rip), mem: vm.ram[0x3000]! };
      const s = vm.state;
      enterFlat32(vm);
      s.rip = 0x1000;
      s.rax = 0;
      const fills = insnCacheStats.fills;
      vm.run();
      return { real, pm: { rip: Number(s.rip), rax: Number(s.rax) }, pmFills: insnCacheStats.fills - fills };
    });
    // Nothing decoded in real mode is used: protected-mode code decodes both instructions again (without the cache:
    // none).
    expect(results.map((x) => x.pmFills)).toEqual([0, 2, 2, 2]);
    const r = expectSame(results.map(({ real, pm }) => ({ real, pm })));
    expect(r).toEqual({ real: { rip: 0x1006, mem: 1 }, pm: { rip: 0x1006, rax: 1 } });
  });

  test('CR0.PE set with a 16-bit code segment, and a CS base that moves the code: the new bytes run', () => {
    const code = [0x40, 0x40, 0xf4]; // inc ax; inc ax; hlt
    const r = expectSame(inEveryMode((flavor) => {
      const vm = makeVm(flavor, code);
      vm.ram.set([0x43, 0xf4], 0x2000); // inc bx; hlt (at linear 0x2000)
      vm.run();
      const s = vm.state;
      s.cr0 |= 1n; // 16-bit protected mode: CS.D stays 0
      s.rip = 0x1000;
      vm.run();
      s.cr0 &= ~1n;
      s.cs.loadRealMode(0x100); // CS base 0x1000: offset 0x1000 is now linear 0x2000
      s.rip = 0x1000;
      vm.run();
      return { rax: s.rax & 0xffff, rbx: s.rbx & 0xffff, rip: Number(s.rip) };
    }));
    expect(r).toEqual({ rax: 4, rbx: 1, rip: 0x1002 });
  });
});

describe('the cache in use', () => {
  test('a backward jump into bytes never decoded: they are read from memory, not from the page cache', () => {
    const code = [
      0xeb, 0x0e, //       1000 jmp 1010
      0xb0, 0x33, //       1002 mov al, 0x33
      0xf4, //             1004 hlt
    ];
    const r = expectSame(inEveryMode((flavor) => {
      const vm = makeVm(flavor, [...code, ...new Array<number>(11).fill(0), 0xeb, 0xf0]); // 1010 jmp 1002
      vm.run();
      return regs(vm);
    }));
    expect(r.rax & 0xff).toBe(0x33);
    expect(r.exit).toBe(GuestExitReason.Hlt);
  });

  test('a loop on a byte-wise memory runs from the cache: one decode per instruction, hits after that', () => {
    const before = { ...insnCacheStats };
    const vm = makeVm('bytewise', [0xb9, 0x64, 0x00, 0x43, 0xe2, 0xfd, 0xf4]); // mov cx,100; l: inc bx; loop l; hlt
    vm.run();
    expect(Number(vm.state.rbx)).toBe(100);
    expect(vm.exit.executed).toBe(202);
    expect(insnCacheStats.fills - before.fills).toBe(4);
    // The next run compares each entry with memory once, at its first use, and decodes nothing.
    vm.state.rip = 0x1000;
    vm.run();
    expect(insnCacheStats.fills - before.fills).toBe(4);
    expect(insnCacheStats.checks - before.checks).toBe(4);
    // Real-mode code on the slot memory uses no cache unless forced.
    const mid = { ...insnCacheStats };
    makeVm('lookup', [0x43, 0xf4]).run();
    expect(insnCacheStats).toEqual(mid);
  });

  test('32-bit protected-mode code on the slot memory runs from the decoded forms: one decode per instruction', () => {
    const before = { ...insnCacheStats };
    const vm = makeVm('lookup', [0xb9, 0x64, 0x00, 0x00, 0x00, 0x43, 0xe2, 0xfd, 0xf4]); // mov ecx,100; l: inc ebx; loop l; hlt
    enterFlat32(vm);
    vm.run();
    expect(Number(vm.state.rbx)).toBe(100);
    expect(vm.exit.executed).toBe(202);
    expect(insnCacheStats.fills - before.fills).toBe(4);
    // With the policy 'never', none.
    setInsnCachePolicy('never');
    const mid = { ...insnCacheStats };
    vm.state.rip = 0x1000;
    vm.run();
    expect(Number(vm.state.rbx)).toBe(200);
    expect(insnCacheStats).toEqual(mid);
  });
});

describe('the code-page map', () => {
  test('a memory gets its own map at its first cached instruction; real-mode code on the slot memory never needs one', () => {
    const real = makeVm('lookup', [0xb9, 0x03, 0x00, 0x43, 0xe2, 0xfd, 0xf4]); // mov cx,3; l: inc bx; loop l; hlt
    real.run();
    expect(Number(real.state.rbx)).toBe(3);
    expect(cacheFor(real.memory).codeBits).toBe(NO_CODE_BITS);
    const prot = makeVm('lookup', [0x43, 0xf4]); // inc ebx; hlt
    enterFlat32(prot);
    prot.run();
    const bits = cacheFor(prot.memory).codeBits;
    expect(bits).not.toBe(NO_CODE_BITS);
    expect(bits[0x1000 >>> 17]! & (1 << ((0x1000 >>> 12) & 31))).not.toBe(0); // the page at 0x1000 holds code
    expect(NO_CODE_BITS.every((w) => w === 0)).toBe(true);
  });
});

describe('32-bit protected mode (decoded forms)', () => {
  /** Runs `code` at 0x1000 (or `at`) in flat 32-bit protected mode in every mode; the results must agree. */
  function pm32(code: readonly number[], at = 0x1000): Regs {
    return expectSame(inEveryMode((flavor) => {
      const vm = makeVm(flavor, code, { at });
      enterFlat32(vm);
      vm.run();
      return regs(vm);
    }));
  }

  test('an increment of the immediate of the very next instruction, each time round a loop', () => {
    const r = pm32([
      0xb9, 0x03, 0x00, 0x00, 0x00, //       1000 mov ecx, 3
      0xfe, 0x05, 0x0d, 0x10, 0x00, 0x00, // 1005 inc byte [0x100d]   (the immediate of the next instruction)
      0x90, //                               100b nop
      0xb0, 0x11, //                         100c mov al, 0x11
      0x00, 0xc3, //                         100e add bl, al
      0xe2, 0xf3, //                         1010 loop 1005
      0xf4, //                               1012 hlt
    ]);
    expect(r.exit).toBe(GuestExitReason.Hlt);
    expect(r.rbx & 0xff).toBe(0x12 + 0x13 + 0x14);
  });

  test('a write into the instruction right after the current one (no instruction between)', () => {
    const r = pm32([
      0xb9, 0x02, 0x00, 0x00, 0x00, //             1000 mov ecx, 2
      0x80, 0x05, 0x0d, 0x10, 0x00, 0x00, 0x10, // 1005 add byte [0x100d], 0x10   (the next instruction's immediate)
      0xb0, 0x11, //                               100c mov al, 0x11
      0x00, 0xc3, //                               100e add bl, al
      0xe2, 0xf3, //                               1010 loop 1005
      0xf4, //                                     1012 hlt
    ]);
    expect(r.rax & 0xff).toBe(0x31);
    expect(r.rbx & 0xff).toBe(0x21 + 0x31);
  });

  test('rep stosb over code already executed: the loop runs NOPs the second time', () => {
    const r = pm32([
      0xba, 0x02, 0x00, 0x00, 0x00, // 1000 mov edx, 2
      0x43, //                         1005 inc ebx          (overwritten with NOP after the first pass)
      0x43, //                         1006 inc ebx
      0xbf, 0x05, 0x10, 0x00, 0x00, // 1007 mov edi, 0x1005
      0xb9, 0x02, 0x00, 0x00, 0x00, // 100c mov ecx, 2
      0xb0, 0x90, //                   1011 mov al, 0x90
      0xf3, 0xaa, //                   1013 rep stosb
      0x4a, //                         1015 dec edx
      0x75, 0xed, //                   1016 jnz 1005
      0xf4, //                         1018 hlt
    ]);
    expect(r.rbx).toBe(2);
  });

  test('a write into the part of an instruction that lies in the next page', () => {
    // mov eax, imm32 at 0x1fff: opcode in page 1, immediate in page 2; the loop patches the immediate's third byte.
    const at = 0x1ff0;
    const code = new Array<number>(0x20).fill(0x90);
    const put = (addr: number, bytes: readonly number[]): void => bytes.forEach((b, i) => (code[addr - at + i] = b));
    put(0x1ff0, [0xb9, 0x02, 0x00, 0x00, 0x00]); //             1ff0 mov ecx, 2
    put(0x1ff5, [0xc6, 0x05, 0x02, 0x20, 0x00, 0x00, 0x00]); // 1ff5 mov byte [0x2002], 0   (zeroed on the first pass)
    put(0x1fff, [0xb8, 0x34, 0x12, 0x56, 0x78]); //             1fff mov eax, 0x78561234  (0x2000–0x2003 in page 2)
    put(0x2004, [0x01, 0xc3]); //                               2004 add ebx, eax
    put(0x2006, [0xfe, 0x05, 0x02, 0x20, 0x00, 0x00]); //       2006 inc byte [0x2002]
    put(0x200c, [0xe2, 0xf1]); //                               200c loop 1fff
    put(0x200e, [0xf4]); //                                     200e hlt
    const r = pm32(code, at);
    expect(r.rbx).toBe((0x78001234 + 0x78011234) >>> 0);
  });

  test('the VMM rewrites code between two runs; CS.D and the CS base change between runs', () => {
    const r = expectSame(inEveryMode((flavor) => {
      const vm = makeVm(flavor, [0xb8, 0x11, 0x00, 0x00, 0x00, 0xf4]); // 32-bit: mov eax, 0x11; hlt
      vm.ram.set([0x43, 0xf4], 0x2000); // inc ebx; hlt (at linear 0x2000)
      enterFlat32(vm);
      const s = vm.state;
      vm.run();
      const first = Number(s.rax);
      vm.ram[0x1001] = 0x22;
      s.rip = 0x1000;
      vm.run();
      const second = Number(s.rax);
      s.cs.db = 0; // 16-bit code: mov ax, 0x22; add [bx+si], al; hlt
      s.rip = 0x1000;
      s.rax = 0;
      s.rbx = 0x3000;
      vm.run();
      const third = { rax: Number(s.rax), mem: vm.ram[0x3000]!, rip: Number(s.rip) };
      s.cs.db = 1;
      s.cs.base = 0x1000; // offset 0x1000 is now linear 0x2000
      s.rip = 0x1000;
      vm.run();
      return { first, second, third, rbx: Number(s.rbx), rip: Number(s.rip) };
    }));
    expect(r).toEqual({ first: 0x11, second: 0x22, third: { rax: 0x22, mem: 0x22, rip: 0x1006 }, rbx: 0x3001, rip: 0x1002 });
  });
});

function runWith(vm: Vm, memory: GuestMemory): number {
  return runGuest(vm.state, memory, 10_000, vm.exit);
}
