/**
 * Exits and their completions: the classic minimal KVM program, port I/O (with KVM's deferred RIP skip),
 * HLT, MMIO reads and writes, emulation failures, shutdown, and budget slicing.
 */

import { describe, expect, test } from 'vitest';
import {
  GUEST_INTERNAL_ERROR_EMULATION,
  GUEST_QUIRK_OUT_7E_INC_RIP,
  GuestCpuState,
  GuestExit,
  GuestExitReason,
  GuestIoDirection,
  GuestPending,
  SlotListMemory,
  X86_EFLAGS_FIXED,
  completeIn,
  completeMmioRead,
  runGuest,
} from '../../src/guest/index.js';
import { FLAVORS, makeMemory, makeVm, word } from './helpers.js';

const { Io, Hlt, Mmio, InternalError, Budget, Shutdown } = GuestExitReason;

describe.each(FLAVORS)('guest exits (%s memory)', (flavor) => {
  test('the classic minimal KVM program prints "4\\n" and halts', () => {
    // mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; mov al,'\n'; out dx,al; hlt
    const vm = makeVm(flavor, [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4]);
    vm.state.rax = 2;
    vm.state.rbx = 2;
    vm.state.rflags = X86_EFLAGS_FIXED;

    expect(vm.run()).toBe(Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.Out, ioSize: 1, ioPort: 0x3f8, ioCount: 1 });
    expect(String.fromCharCode(vm.exit.data[0]!)).toBe('4');
    expect(vm.exit.executed).toBe(4);
    expect(vm.state.rip).toBe(0x1007); // KVM skips the OUT only when the next KVM_RUN completes it

    expect(vm.run()).toBe(Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.Out, ioSize: 1, ioPort: 0x3f8 });
    expect(vm.exit.data[0]).toBe(0x0a);
    expect(vm.exit.executed).toBe(2);

    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rip).toBe(0x100c); // kvm_emulate_halt skips HLT before exiting
    expect(vm.state.rax & 0xffff).toBe(0x0a);
    expect(vm.state.rdx).toBe(0x3f8);
  });

  test('HLT exits again on every run after the first halt (no interrupts wake it)', () => {
    const vm = makeVm(flavor, [0xf4, 0xf4]);
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rip).toBe(0x1001);
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rip).toBe(0x1002);
  });

  test('OUT sizes and ports: imm8 and DX forms, 8/16/32 bits', () => {
    // out 0x80,al; out 0x81,ax; out dx,ax; 66 out dx,eax; 66 out 0x82,eax
    const vm = makeVm(flavor, [0xe6, 0x80, 0xe7, 0x81, 0xef, 0x66, 0xef, 0x66, 0xe7, 0x82, 0xf4]);
    vm.state.rax = 0x12345678;
    vm.state.rdx = 0xabcd;
    const seen: [number, number, number[]][] = [];
    for (let i = 0; i < 5; i++) {
      expect(vm.run()).toBe(Io);
      expect(vm.exit.ioDirection).toBe(GuestIoDirection.Out);
      seen.push([vm.exit.ioPort, vm.exit.ioSize, [...vm.exit.data.slice(0, 4)]]);
    }
    expect(seen).toEqual([
      [0x80, 1, [0x78, 0, 0, 0]],
      [0x81, 2, [0x78, 0x56, 0, 0]],
      [0xabcd, 2, [0x78, 0x56, 0, 0]],
      [0xabcd, 4, [0x78, 0x56, 0x34, 0x12]],
      [0x82, 4, [0x78, 0x56, 0x34, 0x12]],
    ]);
    expect(vm.run()).toBe(Hlt);
  });

  test('OUT to port 0x7e advances RIP before the exit (KVM_X86_QUIRK_OUT_7E_INC_RIP)', () => {
    const vm = makeVm(flavor, [0xe6, 0x7e, 0xf4]);
    expect(vm.run()).toBe(Io);
    expect(vm.state.rip).toBe(0x1002);
    expect(vm.state.pending).toBe(GuestPending.None);
    expect(vm.run()).toBe(Hlt);

    const noQuirk = makeVm(flavor, [0xe6, 0x7e, 0xf4], { quirks: 0 });
    expect(noQuirk.run()).toBe(Io);
    expect(noQuirk.state.rip).toBe(0x1000);
    expect(noQuirk.run()).toBe(Hlt);
    expect(GUEST_QUIRK_OUT_7E_INC_RIP).toBe(8);
  });

  test('IN completes on the next run from exit.data (complete_fast_pio_in)', () => {
    // in al,0x60; in ax,dx; 66 in eax,dx; hlt
    const vm = makeVm(flavor, [0xe4, 0x60, 0xed, 0x66, 0xed, 0xf4]);
    vm.state.rax = 0xaabbccdd;
    vm.state.rdx = 0x71;
    expect(vm.run()).toBe(Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.In, ioSize: 1, ioPort: 0x60, ioCount: 1 });
    expect(vm.state.rip).toBe(0x1000);
    expect(vm.state.rax).toBe(0xaabbccdd); // nothing loaded until user space answers
    vm.exit.data.set([0x42]);

    expect(vm.run()).toBe(Io);
    expect(vm.state.rax).toBe(0xaabbcc42); // 1 byte merged into AL
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.In, ioSize: 2, ioPort: 0x71 });
    vm.exit.data.set([0x34, 0x12]);

    expect(vm.run()).toBe(Io);
    expect(vm.state.rax).toBe(0xaabb1234); // 2 bytes merged into AX
    expect(vm.exit).toMatchObject({ ioSize: 4, ioPort: 0x71 });
    vm.exit.data.set([1, 2, 3, 4]);

    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rax).toBe(0x04030201);
  });

  test('IN AL,DX and OUT DX,AL to port 0x7e (the one-byte DX forms)', () => {
    // in al,dx ; out dx,al ; hlt   with DX = 0x7e: only the OUT is skipped early by the quirk
    const vm = makeVm(flavor, [0xec, 0xee, 0xf4]);
    vm.state.rdx = 0x7e;
    expect(vm.run()).toBe(Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.In, ioSize: 1, ioPort: 0x7e });
    expect(vm.state.rip).toBe(0x1000);
    vm.exit.data[0] = 0xa5;
    expect(vm.run()).toBe(Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.Out, ioSize: 1, ioPort: 0x7e });
    expect(vm.exit.data[0]).toBe(0xa5);
    expect(vm.state.rip).toBe(0x1002);
    expect(vm.run()).toBe(Hlt);
    expect(vm.exit.executed).toBe(1);
  });

  test('a 4-byte IN zero-extends into RAX, as complete_fast_pio_in does', () => {
    const vm = makeVm(flavor, [0x66, 0xe5, 0x10, 0xf4]);
    vm.state.rax = 2 ** 40 + 5;
    expect(vm.run()).toBe(Io);
    expect(completeIn(vm.state, Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toBe(true);
    expect(vm.state.rax).toBe(0xffffffff);
    expect(vm.state.rip).toBe(0x1003);
    expect(vm.run()).toBe(Hlt);
  });

  test('completeIn drops the data when user space moved RIP (cui_linear_rip check)', () => {
    const vm = makeVm(flavor, [0xe4, 0x60, 0xf4, 0xb0, 0x55, 0xf4]);
    expect(vm.run()).toBe(Io);
    vm.state.rip = 0x1003; // KVM_SET_REGS between the exit and the next KVM_RUN
    vm.exit.data[0] = 0x99;
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rax & 0xff).toBe(0x55);
    expect(vm.state.rip).toBe(0x1006);
  });

  test('explicit completeIn, then runGuest does not complete twice', () => {
    const vm = makeVm(flavor, [0xe4, 0x60, 0xf4]);
    expect(vm.run()).toBe(Io);
    expect(completeIn(vm.state, Uint8Array.of(0x7a))).toBe(true);
    expect(vm.state.pending).toBe(GuestPending.None);
    expect(completeIn(vm.state, Uint8Array.of(0x00))).toBe(false);
    vm.exit.data[0] = 0x11; // ignored: nothing pending any more
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rax & 0xff).toBe(0x7a);
  });

  test('a write to a memory hole is an MMIO exit carrying the data; RIP is already past it', () => {
    // mov [0x5000],ax ; mov byte [bx+1],0x77 ; hlt — RAM is only 0..0x3fff
    const vm = makeVm(flavor, [0x89, 0x06, 0x00, 0x50, 0xc6, 0x47, 0x01, 0x77, 0xf4], { ramSize: 0x4000 });
    vm.state.rax = 0xbeef;
    vm.state.rbx = 0x6000;
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit).toMatchObject({ mmioPhysAddr: 0x5000, mmioLen: 2, mmioIsWrite: 1 });
    expect([...vm.exit.data]).toEqual([0xef, 0xbe, 0, 0, 0, 0, 0, 0]);
    expect(vm.state.rip).toBe(0x1004);
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit).toMatchObject({ mmioPhysAddr: 0x6001, mmioLen: 1, mmioIsWrite: 1 });
    expect(vm.exit.data[0]).toBe(0x77);
    expect(vm.run()).toBe(Hlt);
  });

  test('a read from a hole exits with RIP unchanged, then re-executes with the answer', () => {
    // mov ax,[0x5000]; mov cl,[0x5004]; hlt
    const vm = makeVm(flavor, [0xa1, 0x00, 0x50, 0x8a, 0x0e, 0x04, 0x50, 0xf4], { ramSize: 0x4000 });
    vm.state.rax = 0x1111;
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit).toMatchObject({ mmioPhysAddr: 0x5000, mmioLen: 2, mmioIsWrite: 0 });
    expect(vm.state.rip).toBe(0x1000);
    expect(vm.state.rax).toBe(0x1111);
    expect(vm.state.pending).toBe(GuestPending.MmioRead);
    vm.exit.data.set([0x34, 0x12]);
    expect(vm.run()).toBe(Mmio);
    expect(vm.state.rax).toBe(0x1234);
    expect(vm.exit).toMatchObject({ mmioPhysAddr: 0x5004, mmioLen: 1, mmioIsWrite: 0 });
    expect(completeMmioRead(vm.state, Uint8Array.of(0xab))).toBe(true);
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rcx & 0xff).toBe(0xab);
    expect(vm.state.mmioCacheCount).toBe(0);
  });

  test('read-modify-write on MMIO: a read exit, then a write exit with the result and flags', () => {
    // add [0x5000],ax ; hlt
    const vm = makeVm(flavor, [0x01, 0x06, 0x00, 0x50, 0xf4], { ramSize: 0x4000 });
    vm.state.rax = 0x0001;
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit.mmioIsWrite).toBe(0);
    vm.exit.data.set([0xff, 0xff]);
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit).toMatchObject({ mmioPhysAddr: 0x5000, mmioLen: 2, mmioIsWrite: 1 });
    expect([...vm.exit.data.slice(0, 2)]).toEqual([0, 0]);
    expect(vm.state.rflags & 0x8d5).toBe(0x55); // CF PF AF ZF
    expect(vm.state.rip).toBe(0x1004);
    expect(vm.run()).toBe(Hlt);
  });

  test('an instruction with two MMIO reads exits twice, then completes (CMPSW)', () => {
    // cmpsw ; hlt  with DS:SI and ES:DI both in the hole
    const vm = makeVm(flavor, [0xa7, 0xf4], { ramSize: 0x4000 });
    vm.state.rsi = 0x5000;
    vm.state.rdi = 0x6000;
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit.mmioPhysAddr).toBe(0x5000);
    vm.exit.data.set([5, 0]);
    expect(vm.run()).toBe(Mmio);
    expect(vm.exit.mmioPhysAddr).toBe(0x6000);
    vm.exit.data.set([5, 0]);
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rflags & 0x40).toBe(0x40); // equal
    expect(vm.state.rsi).toBe(0x5002);
    expect(vm.state.rdi).toBe(0x6002);
  });

  test('writes to a read-only slot are MMIO; reads from it are RAM', () => {
    const rom = Uint8Array.of(0x5a, 0xa5);
    // mov ax,[0x5000] ; mov [0x5000],bx ; hlt
    const vm = makeVm(flavor, [0xa1, 0x00, 0x50, 0x89, 0x1e, 0x00, 0x50, 0xf4], {
      ramSize: 0x4000,
      extra: [{ guestPhysAddr: 0x5000, bytes: rom, readonly: true }],
    });
    vm.state.rbx = 0x0102;
    expect(vm.run()).toBe(Mmio);
    expect(vm.state.rax & 0xffff).toBe(0xa55a);
    expect(vm.exit).toMatchObject({ mmioPhysAddr: 0x5000, mmioLen: 2, mmioIsWrite: 1 });
    expect([...rom]).toEqual([0x5a, 0xa5]);
    expect(vm.run()).toBe(Hlt);
  });

  test('an unimplemented opcode is an emulation failure with the instruction bytes', () => {
    // mov al,1 ; movups xmm0, [bx+si] (0f 10 00) ; hlt
    const vm = makeVm(flavor, [0xb0, 0x01, 0x0f, 0x10, 0x00, 0xf4]);
    expect(vm.run()).toBe(InternalError);
    expect(vm.exit.suberror).toBe(GUEST_INTERNAL_ERROR_EMULATION);
    expect(vm.exit.insnSize).toBe(2);
    expect(vm.exit.flags).toBe(1);
    expect([...vm.exit.insnBytes]).toEqual([0x0f, 0x10, ...Array<number>(13).fill(0x90)]);
    expect(vm.exit.executed).toBe(1);
    expect(vm.state.rip).toBe(0x1002); // still on the failing instruction
    expect(vm.exit.detail).toMatch(/not implemented/);
    // It keeps failing; it never skips.
    expect(vm.run()).toBe(InternalError);
    expect(vm.state.rip).toBe(0x1002);
  });

  test.each([
    ['x87 FADD', [0xd8, 0xc1]],
    ['CMPXCHG8B', [0x0f, 0xc7, 0x0f]],
    ['XSAVE', [0x0f, 0xae, 0x20]],
    ['x87 FLD1', [0xd9, 0xe8]],
    ['TZCNT', [0xf3, 0x0f, 0xbc, 0xc0]],
  ])('%s is reported, not skipped', (_name, bytes) => {
    const vm = makeVm(flavor, [...bytes, 0xf4]);
    expect(vm.run()).toBe(InternalError);
    expect(vm.state.rip).toBe(0x1000);
    expect(vm.exit.insnSize).toBeGreaterThan(0);
    expect(vm.exit.insnBytes[0]).toBe(bytes[0]);
  });

  test('fetching from memory that is not RAM is an emulation failure with no bytes', () => {
    const vm = makeVm(flavor, [], { ramSize: 0x4000 });
    vm.state.rip = 0x8000;
    expect(vm.run()).toBe(InternalError);
    expect(vm.exit.suberror).toBe(GUEST_INTERNAL_ERROR_EMULATION);
    expect(vm.exit.insnSize).toBe(0);
    expect(vm.exit.flags).toBe(0);
    expect(vm.exit.executed).toBe(0);
    expect(vm.exit.detail).toMatch(/fetch/);
  });

  test('an instruction running off the end of RAM reports the bytes it had', () => {
    const vm = makeVm(flavor, [0xb8, 0x34], { at: 0x3ffe, ramSize: 0x4000 });
    expect(vm.run()).toBe(InternalError);
    expect(vm.exit.insnSize).toBe(2);
    expect([...vm.exit.insnBytes.slice(0, 3)]).toEqual([0xb8, 0x34, 0x90]);
  });

  test('an instruction longer than 15 bytes is an emulation failure', () => {
    const vm = makeVm(flavor, [...Array<number>(15).fill(0x66), 0x90]);
    expect(vm.run()).toBe(InternalError);
    expect(vm.exit.insnSize).toBe(15);
  });

  test('int n beyond the IDT limit raises #GP with IP at the int (SDM INT n, real-address mode)', () => {
    const vm = makeVm(flavor, [0xcd, 0x10]);
    vm.state.idtLimit = 0x3f; // vectors 0..15 only: #GP (13) is reachable
    vm.ram.set([0x00, 0x20, 0x00, 0x00], 13 * 4); // #GP handler at 0000:2000: hlt
    vm.ram[0x2000] = 0xf4;
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rip).toBe(0x2001);
    expect(vm.state.rsp).toBe(0x8000 - 6);
    expect(word(vm.ram, 0x8000 - 6)).toBe(0x1000); // the faulting int, not the next instruction
  });

  test('a fault while delivering #GP is a double fault; one while delivering #DF shuts the vCPU down', () => {
    const vm = makeVm(flavor, [0xcd, 0x10]);
    vm.state.idtLimit = 0x1f; // vectors 0..7: int 0x10 → #GP → (13 beyond too) #DF → (8 beyond) triple fault
    expect(vm.run()).toBe(Shutdown);
    expect(vm.state.rip).toBe(0x1000);
    expect(vm.state.rsp).toBe(0x8000);
  });

  test('budget exhaustion stops between instructions and resumes exactly there', () => {
    // mov cx,50 ; l: inc ax ; add bx,ax ; loop l ; hlt
    const code = [0xb9, 0x32, 0x00, 0x40, 0x01, 0xc3, 0xe2, 0xfb, 0xf4];
    const whole = makeVm(flavor, code);
    expect(whole.run()).toBe(Hlt);
    const total = whole.exit.executed;
    expect(total).toBe(1 + 50 * 3 + 1);

    const sliced = makeVm(flavor, code);
    let executed = 0;
    let reason;
    let slices = 0;
    do {
      reason = sliced.run(7);
      executed += sliced.exit.executed;
      slices++;
      if (reason === Budget) expect(sliced.exit.executed).toBe(7);
    } while (reason === Budget);
    expect(reason).toBe(Hlt);
    expect(executed).toBe(total);
    expect(slices).toBe(Math.ceil(total / 7));
    expect(sliced.state).toEqual(whole.state);
  });

  test('budget 0 executes nothing but still completes a pending IN', () => {
    const vm = makeVm(flavor, [0xe4, 0x60, 0xf4]);
    expect(vm.run()).toBe(Io);
    vm.exit.data[0] = 3;
    expect(vm.run(0)).toBe(Budget);
    expect(vm.exit.executed).toBe(0);
    expect(vm.state.rax & 0xff).toBe(3);
    expect(vm.state.rip).toBe(0x1002);
  });

  test('REP string instructions take one budget unit per iteration and resume mid-way', () => {
    // rep stosb ; hlt — CX=10
    const vm = makeVm(flavor, [0xf3, 0xaa, 0xf4]);
    vm.state.rcx = 10;
    vm.state.rax = 0xcc;
    vm.state.rdi = 0x2000;
    expect(vm.run(4)).toBe(Budget);
    expect(vm.state.rip).toBe(0x1000);
    expect(vm.state.rcx).toBe(6);
    expect([...vm.ram.slice(0x2000, 0x2006)]).toEqual([0xcc, 0xcc, 0xcc, 0xcc, 0, 0]);
    expect(vm.run()).toBe(Hlt);
    expect(vm.state.rcx).toBe(0);
    expect(vm.state.rdi).toBe(0x200a);
    expect(vm.ram[0x2009]).toBe(0xcc);
    expect(vm.ram[0x200a]).toBe(0);
  });
});

describe('runGuest contract', () => {
  test('a GuestMemory implemented with methods is called with the right `this`', () => {
    const ram = new Uint8Array(0x2000);
    ram.set([0xb0, 0x07, 0xa2, 0x00, 0x18, 0xf4], 0x1000);
    const slot = { bytes: ram, base: 0, end: ram.length, readonly: false };
    class Mem {
      readonly slot = slot;
      read8(gpa: number): number {
        return gpa < this.slot.end ? this.slot.bytes[gpa]! : -1;
      }
      write8(gpa: number, v: number): boolean {
        if (gpa >= this.slot.end) return false;
        this.slot.bytes[gpa] = v;
        return true;
      }
      lookup(gpa: number): typeof slot | undefined {
        return gpa < this.slot.end ? this.slot : undefined;
      }
    }
    const state = new GuestCpuState();
    state.cs.loadRealMode(0);
    state.rip = 0x1000;
    const exit = new GuestExit();
    expect(runGuest(state, new Mem(), 100, exit)).toBe(Hlt);
    expect(ram[0x1800]).toBe(7);
  });

  test('runs cannot nest', () => {
    const ram = new Uint8Array(0x2000);
    ram.set([0xa0, 0x00, 0x18, 0xf4], 0x1000);
    const inner = makeVm('lookup', [0xf4]);
    const state = new GuestCpuState();
    state.cs.loadRealMode(0);
    state.rip = 0x1000;
    const memory = {
      read8: (gpa: number): number => {
        if (gpa === 0x1800) inner.run();
        return ram[gpa] ?? -1;
      },
      write8: (): boolean => false,
    };
    expect(() => runGuest(state, memory, 10, new GuestExit())).toThrow(expect.objectContaining({ name: "UsageError", code: "ERR_INVALID_STATE" }));
    // …and the interpreter is usable again afterwards.
    expect(inner.run()).toBe(Hlt);
  });

  test('an exception from guest memory propagates and leaves the interpreter usable', () => {
    const state = new GuestCpuState();
    const boom = { read8: (): number => { throw new RangeError('boom'); }, write8: (): boolean => false };
    expect(() => runGuest(state, boom, 10, new GuestExit())).toThrow(RangeError);
    const vm = makeVm('lookup', [0xf4]);
    expect(vm.run()).toBe(Hlt);
  });

  test('a fresh vCPU is in KVM reset state and starts at 0xfffffff0', () => {
    const s = new GuestCpuState();
    expect(s.cs.selector).toBe(0xf000);
    expect(s.cs.base).toBe(0xffff0000);
    expect(s.rip).toBe(0xfff0);
    expect(s.rflags).toBe(2);
    expect(s.rdx).toBe(0x600);
    // A ROM at the top of 4 GiB: jmp short $+2 ; hlt  at 0xfffffff0
    const rom = new Uint8Array(0x10000);
    rom.set([0xeb, 0x00, 0xf4], 0xfff0);
    const memory = makeMemory('lookup', [{ guestPhysAddr: 0xffff0000, bytes: rom, readonly: true }]);
    const exit = new GuestExit();
    expect(runGuest(s, memory, 10, exit)).toBe(Hlt);
    expect(s.rip).toBe(0xfff3);
  });

  test('clone and copy helpers copy every field', () => {
    const vm = makeVm('lookup', [0xe4, 0x60]);
    vm.run();
    const c = vm.state.clone();
    expect(c).toEqual(vm.state);
    expect(c.cs).not.toBe(vm.state.cs);
    c.cs.base = 5;
    expect(vm.state.cs.base).toBe(0);
    const d = new GuestCpuState();
    d.copyRegsFrom(vm.state);
    expect(d.rip).toBe(vm.state.rip);
    expect(d.pending).toBe(GuestPending.None);
    d.copySregsFrom(vm.state);
    expect(d.cs.base).toBe(0);
  });

  test('SlotListMemory rejects overlapping slots and answers per byte', () => {
    expect(
      () =>
        new SlotListMemory([
          { guestPhysAddr: 0, bytes: new Uint8Array(0x2000) },
          { guestPhysAddr: 0x1000, bytes: new Uint8Array(0x10) },
        ]),
    ).toThrow(expect.objectContaining({ name: "UsageError", code: "ERR_INVALID_ARG" }));
    const rom = Uint8Array.of(1, 2);
    const m = new SlotListMemory([
      { guestPhysAddr: 0, bytes: new Uint8Array(4) },
      { guestPhysAddr: 0x100, bytes: rom, readonly: true },
    ]);
    expect(m.read8(0x101)).toBe(2);
    expect(m.read8(4)).toBe(-1);
    expect(m.write8(0x100, 9)).toBe(false);
    expect(m.write8(3, 9)).toBe(true);
    expect(m.read8(3)).toBe(9);
    expect(m.lookup(0x100)?.readonly).toBe(true);
    expect(m.lookup(0x102)).toBeUndefined();
    expect(word(rom, 0)).toBe(0x0201);
  });
});
