/**
 * A whole VM saved and restored through the ABI (vmm.ts `saveVm` / `restoreVm` / `moveRealModeVm`): every GET/SET
 * pair round-trips, a VM saved and restored into another module saves the same state again, and a guest moved to
 * another module in the middle of its run prints exactly what an unmoved one prints and ends in the same state.
 */
import { KernelError, createHost, type Host, type Process } from '@vac/core';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  Asm16,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_ENABLE_CAP,
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_GET_IRQCHIP,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQ_LINE,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_UNINITIALIZED,
  KVM_REINJECT_CONTROL,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IRQCHIP,
  KVM_SET_LAPIC,
  KVM_EXIT_HLT,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_FPU,
  KVM_SET_MSRS,
  KVM_SET_REGS,
  KVM_SET_TSC_KHZ,
  KVM_SET_VCPU_EVENTS,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_TSC_KHZ,
  KVM_X86_SETUP_MCE,
  createRealModeVm,
  kvm,
  makeKvmCpuid2,
  makeKvmDebugregs,
  makeKvmFpu,
  makeKvmMsrs,
  makeKvmRegs,
  makeKvmVcpuEvents,
  makeKvmEnableCap,
  makeKvmIrqRouting,
  makeKvmIrqchip,
  makeKvmLapicState,
  makeKvmMpState,
  asm16,
  createRealModeVcpu,
  releaseRealModeVm,
  type IrqchipConfig,
  type SavedVm,
  type kvm_irq_routing_entry,
  moveRealModeVm,
  restoreVm,
  restoreVcpu,
  saveVcpu,
  saveVm,
  KVM_STATE_NESTED_FORMAT_SVM,
  KVM_STATE_NESTED_FORMAT_VMX,
  KVM_STATE_NESTED_GIF_SET,
  type RealModeVm,
  parseSavedVcpu,
  savedVcpuOf,
  parseSavedIrqchip,
  savedIrqchipOf,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

/** A host with kvm0 and kvm1 (two modules side by side) and a VMM. */
function twoModules(vendor: (typeof VENDORS)[number]): { host: Host; p: Process } {
  const host = createHost({ cpus: 2, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  return { host, p: host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' }) };
}

/**
 * The guest: per round, mixes AX/BX/DX, stores AX into a ring at 0x3000, reads IA32_SYSENTER_CS and folds it into
 * BX, prints AL on port 0x80; DI rounds, then HLT. Memory 64 KiB at 0, code at 0x1000.
 */
const GUEST = [
  0x01, 0xd8, // add ax,bx
  0xc1, 0xc3, 0x03, // rol bx,3
  0x31, 0xc2, // xor dx,ax
  0x89, 0x84, 0x00, 0x30, // mov [si+0x3000],ax
  0x83, 0xc6, 0x02, // add si,2
  0x81, 0xe6, 0xfe, 0x01, // and si,0x1fe
  0x50, 0x52, 0x51, // push ax; push dx; push cx
  0x66, 0xb9, 0x74, 0x01, 0x00, 0x00, // mov ecx,0x174
  0x0f, 0x32, // rdmsr
  0x01, 0xc3, // add bx,ax
  0x59, 0x5a, 0x58, // pop cx; pop dx; pop ax
  0xe6, 0x80, // out 0x80,al
  0x4f, // dec di
  0x75, 0xd9, // jnz (start): back 0x27 bytes to 0x1000
  0xf4, // hlt
];

/** Random vCPU state a VMM could set (valid for both vendors). */
const stateArb = fc.record({
  ax: fc.integer({ min: 0, max: 0xffff }),
  bx: fc.integer({ min: 0, max: 0xffff }),
  dx: fc.integer({ min: 0, max: 0xffff }),
  rounds: fc.integer({ min: 2, max: 12 }),
  high: fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }),
  sysenterCs: fc.integer({ min: 0, max: 0xffff }),
  star: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  lstar: fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }),
  pat: fc.constantFrom(0x0007040600070406n, 0x0606060606060606n, 0x0000000000000000n, 0x0407050600070106n),
  tsc: fc.bigInt({ min: 0n, max: (1n << 50n) }),
  fpr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  xmm: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  fcw: fc.integer({ min: 0, max: 0xffff }),
  db: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 4, maxLength: 4 }),
  dr7: fc.constantFrom(0x400n, 0x401n, 0x455n, 0xffff0400n),
  shadow: fc.constantFrom(0, 1, 2),
  nmiPending: fc.constantFrom(0, 1),
  banks: fc.integer({ min: 1, max: 32 }),
  faster: fc.boolean(),
  cpuidMax: fc.integer({ min: 1, max: 0xd }),
});

/** One drawn state. */
type State = typeof stateArb extends fc.Arbitrary<infer T> ? T : never;

/** Give a fresh VM's vCPU 0 the state `s` (through the ABI). */
function setUp(p: Process, vm: RealModeVm, s: State): void {
  const fd = vm.vcpus[0]!.fd;
  p.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2([
    { function: 0, eax: s.cpuidMax, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
    { function: 1, eax: 0x50657, edx: 0x781abfd },
  ]));
  const khz = p.ioctl(fd, KVM_GET_TSC_KHZ, 0);
  if (s.faster) p.ioctl(fd, KVM_SET_TSC_KHZ, khz * 2);
  p.ioctl(fd, KVM_X86_SETUP_MCE, [BigInt(s.banks) | (1n << 8n)]);
  p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rax: (s.high << 16n) | BigInt(s.ax), rbx: BigInt(s.bx), rdx: BigInt(s.dx), rdi: BigInt(s.rounds), rip: 0x1000n, rsp: 0x8000n, rflags: 2n, r9: s.high }));
  const f = makeKvmFpu({ fcw: s.fcw });
  f.fpr[2] = Uint8Array.from(s.fpr);
  f.xmm[7] = Uint8Array.from(s.xmm);
  p.ioctl(fd, KVM_SET_FPU, f);
  const msrs = [
    { index: 0x174, data: BigInt(s.sysenterCs) },
    { index: 0xc0000081, data: s.star },
    { index: 0xc0000082, data: s.lstar },
    { index: 0x277, data: s.pat },
    { index: 0x10, data: s.tsc },
    { index: 0x402, data: 0x1234n }, // MC0_ADDR
  ];
  expect(p.ioctl(fd, KVM_SET_MSRS, makeKvmMsrs(msrs))).toBe(msrs.length);
  p.ioctl(fd, KVM_SET_DEBUGREGS, makeKvmDebugregs({ db: [s.db[0]!, s.db[1]!, s.db[2]!, s.db[3]!], dr6: 0xffff0ff0n, dr7: s.dr7 }));
  const ev = makeKvmVcpuEvents();
  p.ioctl(fd, KVM_GET_VCPU_EVENTS, ev);
  ev.interrupt.shadow = s.shadow;
  ev.nmi.pending = s.nmiPending;
  ev.flags = 1 | 4; // NMI_PENDING | SHADOW
  p.ioctl(fd, KVM_SET_VCPU_EVENTS, ev);
}

/** A VM running GUEST on `dev` with state `s`. */
function makeGuest(p: Process, dev: string, s: State): RealModeVm {
  const vm = createRealModeVm(p, dev, { code: [], guestPhysAddr: 0, memorySize: 0x10000 });
  vm.memory.bytes.set(GUEST, 0x1000);
  // an NMI handler (IVT[2] → 0x2000: iret) in case an NMI is pending
  vm.memory.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4);
  vm.memory.bytes.set([0xcf], 0x2000);
  setUp(p, vm, s);
  return vm;
}

/** Run until HLT (or `stopAfter` outputs), collecting what the guest prints. */
function runGuestOut(p: Process, vm: RealModeVm, out: number[], stopAfter = Infinity): number {
  const v = vm.vcpus[0]!;
  let n = 0;
  while (n < stopAfter) {
    p.ioctl(v.fd, KVM_RUN, 0);
    if (v.run.exit_reason !== KVM_EXIT_IO) return v.run.exit_reason;
    out.push(v.run.bytes[v.run.io.data_offset]!);
    n++;
  }
  return KVM_EXIT_IO;
}

describe.each(VENDORS)('save and restore of a whole VM on $name', (vendor) => {
  test('saved on kvm0, restored on kvm1 and saved again: the same state (every GET/SET pair round-trips)', () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: 0, max: 5 }), (s, ran) => {
        const { p } = twoModules(vendor);
        const vm = makeGuest(p, '/dev/kvm0', s);
        runGuestOut(p, vm, [], ran); // mid-run: an OUT pending completion, or none
        const saved = saveVm(p, vm);
        const next = restoreVm(p, '/dev/kvm1', saved, { slots: [{ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: vm.memory.addr }] });
        expect(saveVm(p, next)).toEqual(saved);
      }),
      { numRuns: 25 },
    );
  });

  test('a guest moved to kvm1 mid-run prints exactly what an unmoved one prints, and ends in the same state', () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: 0, max: 11 }), (s, moveAt) => {
        // the reference: never moved
        const ref = twoModules(vendor);
        const a = makeGuest(ref.p, '/dev/kvm0', s);
        const outA: number[] = [];
        expect(runGuestOut(ref.p, a, outA)).toBe(KVM_EXIT_HLT);
        // the same guest, moved after `moveAt` outputs
        const mov = twoModules(vendor);
        let b = makeGuest(mov.p, '/dev/kvm0', s);
        const outB: number[] = [];
        const r = runGuestOut(mov.p, b, outB, moveAt);
        if (r === KVM_EXIT_IO) {
          b = moveRealModeVm(mov.p, b, '/dev/kvm1');
          mov.host.rmmod('kvm0'); // nothing holds kvm0 any more
          expect(runGuestOut(mov.p, b, outB)).toBe(KVM_EXIT_HLT);
        }
        expect(outB).toEqual(outA);
        expect([...b.memory.bytes]).toEqual([...a.memory.bytes]);
        expect(saveVm(mov.p, b)).toEqual(saveVm(ref.p, a));
      }),
      { numRuns: 25 },
    );
  });
});

// ---- with the in-kernel interrupt controllers ----------------------------------------------------------------

/** The irqchip a VMM makes: full (with or without a PIT, with or without its own routing) or split. */
const chipArb = fc.record({
  split: fc.boolean(),
  splitPins: fc.integer({ min: 0, max: 24 }),
  pit: fc.boolean(),
  speakerDummy: fc.boolean(),
  reinject: fc.boolean(),
  ownRouting: fc.boolean(),
  vcpus: fc.integer({ min: 1, max: 2 }),
  tpr: fc.integer({ min: 0, max: 15 }),
  lvt0Masked: fc.boolean(),
  tmict: fc.integer({ min: 0, max: 0xffffff }),
  tdcr: fc.constantFrom(0, 1, 3, 0xb),
  redir: fc.array(fc.bigInt({ min: 0n, max: (1n << 17n) - 1n }), { minLength: 4, maxLength: 4 }),
  pitCount: fc.integer({ min: 200, max: 0xffff }),
  raise: fc.array(fc.integer({ min: 0, max: 15 }), { maxLength: 3 }),
});

type Chip = typeof chipArb extends fc.Arbitrary<infer T> ? T : never;

/** A routing table a VMM could set: GSI n → PIC pin n (< 16) and IOAPIC pin n, GSI 0 → IOAPIC pin 2, and one MSI. */
function ownRouting(): kvm_irq_routing_entry[] {
  const r: kvm_irq_routing_entry[] = [];
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi < 16 && gsi !== 2) r.push({ gsi, type: 1, flags: 0, irqchip: { irqchip: gsi < 8 ? 0 : 1, pin: gsi & 7 } });
    r.push({ gsi, type: 1, flags: 0, irqchip: { irqchip: 2, pin: gsi === 0 ? 2 : gsi } });
  }
  r.push({ gsi: 30, type: 2, flags: 0, msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x41, devid: 0 } });
  return r;
}

/** A VM on kvm0 running GUEST with the irqchip `c` and state `s` set up through the ABI; its irqchip config. */
function makeChipGuest(p: Process, s: State, c: Chip): { vm: RealModeVm; config: IrqchipConfig } {
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [], guestPhysAddr: 0, memorySize: 0x10000, vcpus: 0 });
  vm.memory.bytes.set(GUEST, 0x1000);
  vm.memory.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4);
  vm.memory.bytes.set([0xcf], 0x2000);
  let config: IrqchipConfig;
  if (c.split) {
    p.ioctl(vm.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_SPLIT_IRQCHIP, args: [BigInt(c.splitPins), 0n, 0n, 0n] }));
    config = { mode: 'split', splitPins: c.splitPins };
  } else {
    p.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
    config = { mode: 'kernel' };
    if (c.pit) {
      p.ioctl(vm.vm, KVM_CREATE_PIT2, { flags: c.speakerDummy ? 1 : 0 });
      config = { ...config, pitFlags: c.speakerDummy ? 1 : 0 };
      if (!c.reinject) {
        p.ioctl(vm.vm, KVM_REINJECT_CONTROL, { pit_reinject: 0 });
        config = { ...config, pitReinject: false };
      }
    }
    if (c.ownRouting) {
      p.ioctl(vm.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting(ownRouting()));
      config = { ...config, routing: ownRouting() };
    }
    // IOAPIC redirection entries (masked: nothing is delivered through them)
    const io = makeKvmIrqchip({ chip_id: KVM_IRQCHIP_IOAPIC });
    p.ioctl(vm.vm, KVM_GET_IRQCHIP, io);
    if ('ioapic' in io.chip) c.redir.forEach((bits, i) => ((io.chip as { ioapic: { redirtbl: bigint[] } }).ioapic.redirtbl[4 + i] = bits | (1n << 16n)));
    p.ioctl(vm.vm, KVM_SET_IRQCHIP, io);
    for (const irq of c.raise) p.ioctl(vm.vm, KVM_IRQ_LINE, { irq, level: 1 });
  }
  for (let id = 0; id < c.vcpus; id++) vm.vcpus.push(createRealModeVcpu(p, vm.sys, vm.vm, { id, guestPhysAddr: 0x1000 }));
  setUp(p, vm, s);
  // The AP's TSC with the BSP's: KVM treats host writes less than a second of TSC apart as one synchronized TSC
  // (kvm_synchronize_tsc), so a restore of unsynchronized vCPUs would not give them back their values.
  for (const v of vm.vcpus.slice(1)) expect(p.ioctl(v.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: 0x10, data: s.tsc }]))).toBe(1);
  // LAPIC registers: TPR, LVT0, a one-shot timer (masked) counting down
  const fd = vm.vcpus[0]!.fd;
  const l = makeKvmLapicState();
  p.ioctl(fd, KVM_GET_LAPIC, l);
  const dv = new DataView(l.regs.buffer, l.regs.byteOffset);
  dv.setUint32(0x80, c.tpr << 4, true);
  dv.setUint32(0x350, (dv.getUint32(0x350, true) & ~0x10000) | (c.lvt0Masked ? 0x10000 : 0), true);
  dv.setUint32(0x320, 0x10030, true); // LVTT: vector 0x30, masked, one-shot
  dv.setUint32(0x3e0, c.tdcr, true);
  dv.setUint32(0x380, c.tmict, true);
  p.ioctl(fd, KVM_SET_LAPIC, l);
  return { vm, config };
}

/**
 * `saved` with the count_load_time of PIT channels 1 and 2 replaced by `t`: KVM_SET_PIT2 reloads every count
 * (`kvm_pit_load_count`), and `pit_load_count` stamps the load time of channels 1 and 2 only (channel 0 restarts its
 * timer and keeps the time copied in).
 */
function pitLoadedAt(saved: SavedVm, t: bigint | undefined): SavedVm {
  if (saved.irqchip === undefined || t === undefined) return saved;
  const chip = parseSavedIrqchip(saved.irqchip);
  const pit = chip.pit;
  if (pit === undefined) return saved;
  const channels = pit.channels.map((ch, i) => (i === 0 ? ch : { ...ch, count_load_time: t })) as unknown as typeof pit.channels;
  return { ...saved, irqchip: savedIrqchipOf({ ...chip, pit: { ...pit, channels } }) };
}

/**
 * The PIT guest: PIC (IRQ 0 only) and PIT channel 0 in mode 2 with `count`; `sti`, then `hlt` until `ticks` ticks.
 * Its IRQ 0 handler (IVT 8) mixes AX/BX/DX as GUEST does, stores AX in a ring at 0x3000, EOIs the PIC and prints the
 * tick count on port 0x80; after the last tick the guest prints 0xff and halts with IF = 0.
 */
function pitGuest(count: number, ticks: number): Asm16 {
  const a = asm16();
  a.mov('al', 0x11).out(0x20, 'al').mov('al', 0x08).out(0x21, 'al').mov('al', 0x04).out(0x21, 'al').mov('al', 0x01).out(0x21, 'al').mov('al', 0xfe).out(0x21, 'al');
  a.mov('al', 0x34).out(0x43, 'al').mov('al', count & 0xff).out(0x40, 'al').mov('al', count >> 8).out(0x40, 'al');
  a.sti().label('idle').hlt().cmp(Asm16.word(0x500), ticks).jb('idle').cli().mov('al', 0xff).out(0x80, 'al').hlt();
  a.label('irq0').db(0x01, 0xd8, 0xc1, 0xc3, 0x03, 0x31, 0xc2, 0x89, 0x84, 0x00, 0x30, 0x83, 0xc6, 0x02, 0x81, 0xe6, 0xfe, 0x01);
  a.inc(Asm16.word(0x500)).push('ax').mov('al', 0x20).out(0x20, 'al').mov('al', Asm16.byte(0x500)).out(0x80, 'al').pop('ax').iret();
  return a;
}

/** A VM with a full irqchip and a PIT running pitGuest on `dev`. */
function makePitGuest(p: Process, s: State, count: number, ticks: number): RealModeVm {
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [], guestPhysAddr: 0, memorySize: 0x10000, vcpus: 0 });
  const a = pitGuest(count, ticks);
  vm.memory.bytes.set(a.bytes(), 0x1000);
  const at = a.addressOf('irq0');
  vm.memory.bytes.set([at & 0xff, at >> 8, 0, 0], 8 * 4);
  vm.memory.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4); // NMI → 0x2000: iret
  vm.memory.bytes.set([0xcf], 0x2000);
  p.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
  p.ioctl(vm.vm, KVM_CREATE_PIT2, { flags: 0 });
  vm.vcpus.push(createRealModeVcpu(p, vm.sys, vm.vm, { id: 0, guestPhysAddr: 0x1000 }));
  setUp(p, vm, s);
  return vm;
}

/** Run until the guest prints 0xff (or `stopAfter` outputs), collecting what it prints. */
function runPitOut(p: Process, vm: RealModeVm, out: number[], stopAfter = Infinity): 'done' | 'stopped' {
  const v = vm.vcpus[0]!;
  for (let n = 0; n < stopAfter; n++) {
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_IO);
    const b = v.run.bytes[v.run.io.data_offset]!;
    out.push(b);
    if (b === 0xff) return 'done';
  }
  return 'stopped';
}

describe.each(VENDORS)('save and restore of a VM with its interrupt controllers on $name', (vendor) => {
  test('saved on kvm0, restored on kvm1 and saved again: the same LAPICs, PICs, IOAPIC, PIT, MP states and configuration', () => {
    fc.assert(
      fc.property(stateArb, chipArb, fc.integer({ min: 0, max: 3 }), (s, c, ran) => {
        const { host, p } = twoModules(vendor);
        const { vm, config } = makeChipGuest(p, s, c);
        try {
          runGuestOut(p, vm, [], ran);
        } catch (e) {
          // its HLT blocks with an in-kernel irqchip: a direct KVM_RUN ends as a signal would, the vCPU HALTED
          if (!(e instanceof KernelError && e.code === 'EINTR')) throw e;
          expect(saveVm(p, { ...vm, irqchip: config }).vcpus[0]!.mpState).toBe(KVM_MP_STATE_HALTED);
        }
        const saved = saveVm(p, { ...vm, irqchip: config });
        expect(saved.irqchip?.config).toEqual(config);
        expect(saved.irqchip?.pic !== undefined).toBe(!c.split);
        expect(saved.irqchip?.pit !== undefined).toBe(!c.split && c.pit);
        saved.vcpus.forEach((v) => expect(v.lapic?.length).toBe(0x400));
        if (c.vcpus > 1) expect(saved.vcpus[1]!.mpState).toBe(KVM_MP_STATE_UNINITIALIZED);
        const restoredAt = host.clock.now;
        const next = restoreVm(p, '/dev/kvm1', saved, { slots: [{ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: vm.memory.addr }] });
        const again = saveVm(p, { ...next, irqchip: config });
        // KVM_SET_PIT2 reloads each channel's count now (kvm_pit_load_count): its load time is the restore's
        expect(again).toEqual(pitLoadedAt(saved, again.irqchip?.pit === undefined ? undefined : restoredAt));
      }),
      { numRuns: 25 },
    );
  });

  test('a VM whose mode the VmHandle misstates is a UsageError; without an irqchip nothing of it is saved', () => {
    const { p } = twoModules(vendor);
    const plain = createRealModeVm(p, '/dev/kvm0', { code: [0xf4], guestPhysAddr: 0, memorySize: 0x10000 });
    expect(saveVm(p, plain).irqchip).toBeUndefined();
    expect(saveVm(p, plain).vcpus[0]!.lapic).toBeUndefined();
    const chip = createRealModeVm(p, '/dev/kvm0', { code: [0xf4], guestPhysAddr: 0, memorySize: 0x10000, vcpus: 0 });
    p.ioctl(chip.vm, KVM_CREATE_IRQCHIP, 0);
    chip.vcpus.push(createRealModeVcpu(p, chip.sys, chip.vm, { id: 0, guestPhysAddr: 0 }));
    expect(() => saveVm(p, { ...chip, irqchip: { mode: 'split' } })).toThrow(/irqchip is 'kernel'/);
    expect(saveVm(p, chip).irqchip?.config).toEqual({ mode: 'kernel' });
  });

  test('a halted vCPU (KVM_MP_STATE_HALTED) is moved halted: it sleeps on kvm1 until an interrupt', () => {
    const { host, p } = twoModules(vendor);
    const a = asm16();
    a.mov('al', 0x11).out(0x20, 'al').mov('al', 0x08).out(0x21, 'al').mov('al', 0x04).out(0x21, 'al').mov('al', 0x01).out(0x21, 'al').mov('al', 0xf7).out(0x21, 'al');
    a.sti().hlt().out(0x80, 'al').hlt();
    a.label('irq3').inc(Asm16.word(0x500)).mov('al', 0x20).out(0x20, 'al').iret();
    let vm = createRealModeVm(p, '/dev/kvm0', { code: [], guestPhysAddr: 0, memorySize: 0x10000, vcpus: 0 });
    vm.memory.bytes.set(a.bytes(), 0x1000);
    vm.memory.bytes.set([a.addressOf('irq3') & 0xff, a.addressOf('irq3') >> 8, 0, 0], 11 * 4);
    p.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
    vm.vcpus.push(createRealModeVcpu(p, vm.sys, vm.vm, { id: 0, guestPhysAddr: 0x1000, regs: { rsp: 0x8000n } }));
    expect(() => p.ioctl(vm.vcpus[0]!.fd, KVM_RUN, 0)).toThrow(KernelError);
    vm = moveRealModeVm(p, vm, '/dev/kvm1');
    host.rmmod('kvm0');
    const { fd, run } = vm.vcpus[0]!;
    const st = makeKvmMpState();
    p.ioctl(fd, KVM_GET_MP_STATE, st);
    expect(st.mp_state).toBe(KVM_MP_STATE_HALTED);
    expect(() => p.ioctl(fd, KVM_RUN, 0)).toThrow(KernelError);
    expect(run.exit_reason).toBe(KVM_EXIT_INTR);
    p.ioctl(vm.vm, KVM_IRQ_LINE, { irq: 3, level: 1 });
    p.ioctl(fd, KVM_RUN, 0);
    expect([run.exit_reason, run.io.port, vm.memory.bytes[0x500]]).toEqual([KVM_EXIT_IO, 0x80, 1]);
  });

  test('a guest taking PIT interrupts through its IVT, moved to kvm1 mid-run, prints what an unmoved one prints and ends in the same state but for the PIT\'s restart', () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: 300, max: 5000 }), fc.integer({ min: 2, max: 8 }), fc.integer({ min: 0, max: 8 }), (s, count, ticks, moveAt) => {
        const ref = twoModules(vendor);
        const a = makePitGuest(ref.p, s, count, ticks);
        const outA: number[] = [];
        expect(runPitOut(ref.p, a, outA)).toBe('done');
        const mov = twoModules(vendor);
        let b = makePitGuest(mov.p, s, count, ticks);
        const outB: number[] = [];
        let movedAt: bigint | undefined;
        if (runPitOut(mov.p, b, outB, moveAt) === 'stopped') {
          b = moveRealModeVm(mov.p, b, '/dev/kvm1');
          movedAt = mov.host.clock.now;
          mov.host.rmmod('kvm0');
          expect(runPitOut(mov.p, b, outB)).toBe('done');
        }
        expect(outB).toEqual(outA);
        expect(outA).toEqual([...Array.from({ length: ticks }, (_, i) => i + 1), 0xff]);
        expect([...b.memory.bytes]).toEqual([...a.memory.bytes]);
        const sa = saveVm(ref.p, a);
        const sb = saveVm(mov.p, b);
        if (movedAt === undefined) {
          expect(sb).toEqual(sa);
          return;
        }
        // The moved PIT restarted its period at the move (kvm_pit_load_count): its ticks, and so the guest's end,
        // come later by less than one period; everything but time is the same.
        const late = mov.host.clock.now - ref.host.clock.now;
        const period = (BigInt(count) * 1_000_000_000n) / 1_193_182n;
        expect(late).toBeGreaterThanOrEqual(0n);
        expect(late).toBeLessThanOrEqual(period);
        expect(parseSavedIrqchip(sb.irqchip!).pit?.channels[1].count_load_time).toBe(movedAt);
        const timeless = (x: SavedVm): unknown => ({
          ...pitLoadedAt(x, 0n),
          clock: undefined,
          vcpus: x.vcpus.map((v) => ({ ...parseSavedVcpu(v), msrs: parseSavedVcpu(v).msrs.filter((m) => m.index !== 0x10) })),
        });
        expect(timeless(sb)).toEqual(timeless(sa));
      }),
      { numRuns: 20 },
    );
  });

  test('the VMM\'s GSI routing is made again before the vCPUs: GSI 10 routed to PIC pin 3 still reaches IVT 11 on kvm1 (with the default routing it would not)', () => {
    const routing = [{ gsi: 10, type: 1, flags: 0, irqchip: { irqchip: 0, pin: 3 } }];
    const moved = (withRouting: boolean): { p: Process; vm: RealModeVm; counter: () => number } => {
      const { host, p } = twoModules(vendor);
      const a = asm16();
      a.mov('al', 0x11).out(0x20, 'al').mov('al', 0x08).out(0x21, 'al').mov('al', 0x04).out(0x21, 'al').mov('al', 0x01).out(0x21, 'al').mov('al', 0xf7).out(0x21, 'al');
      a.out(0x81, 'al').sti().label('l').hlt().jmp('l');
      a.label('irq3').inc(Asm16.word(0x500)).mov('al', 0x20).out(0x20, 'al').mov('al', Asm16.byte(0x500)).out(0x80, 'al').iret();
      const vm = createRealModeVm(p, '/dev/kvm0', { code: [], guestPhysAddr: 0, memorySize: 0x10000, vcpus: 0 });
      vm.memory.bytes.set(a.bytes(), 0x1000);
      vm.memory.bytes.set([a.addressOf('irq3') & 0xff, a.addressOf('irq3') >> 8, 0, 0], 11 * 4);
      p.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
      p.ioctl(vm.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting(routing));
      vm.vcpus.push(createRealModeVcpu(p, vm.sys, vm.vm, { id: 0, guestPhysAddr: 0x1000, regs: { rsp: 0x8000n } }));
      p.ioctl(vm.vcpus[0]!.fd, KVM_RUN, 0); // the PIC is programmed: out 0x81
      expect(vm.vcpus[0]!.run.io.port).toBe(0x81);
      const saved = saveVm(p, { ...vm, irqchip: withRouting ? { mode: 'kernel', routing } : { mode: 'kernel' } });
      releaseRealModeVm(p, vm);
      host.rmmod('kvm0');
      const next = restoreVm(p, '/dev/kvm1', saved, { slots: [{ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: vm.memory.addr }] });
      return { p, vm: { ...vm, sys: next.sys, vm: next.vm, vcpus: next.vcpus }, counter: () => vm.memory.bytes[0x500]! };
    };
    const good = moved(true);
    good.p.ioctl(good.vm.vm, KVM_IRQ_LINE, { irq: 10, level: 1 });
    good.p.ioctl(good.vm.vm, KVM_IRQ_LINE, { irq: 10, level: 0 });
    good.p.ioctl(good.vm.vcpus[0]!.fd, KVM_RUN, 0);
    expect([good.vm.vcpus[0]!.run.io.port, good.counter()]).toEqual([0x80, 1]);
    // restored without the VMM's table: KVM's default routing sends GSI 10 to the slave PIC, masked by the guest
    const bad = moved(false);
    bad.p.ioctl(bad.vm.vm, KVM_IRQ_LINE, { irq: 10, level: 1 });
    bad.p.ioctl(bad.vm.vm, KVM_IRQ_LINE, { irq: 10, level: 0 });
    expect(() => bad.p.ioctl(bad.vm.vcpus[0]!.fd, KVM_RUN, 0)).toThrow(KernelError);
    expect(bad.counter()).toBe(0);
  });
});

describe.each(VENDORS)('the nested state in a saved vCPU on $name', (vendor) => {
  test('saveVcpu holds KVM_GET_NESTED_STATE\'s header (KVM_CAP_NESTED_STATE is there); restoreVcpu sets it (a changed format is refused)', () => {
    const { p } = twoModules(vendor);
    const a = createRealModeVm(p, '/dev/kvm0', { code: [0xf4] });
    const b = createRealModeVm(p, '/dev/kvm1', { code: [0xf4] });
    const saved = saveVcpu(p, a.sys, a.vcpus[0]!.fd, 0);
    const nested = parseSavedVcpu(saved).nestedState;
    const intel = vendor.name === 'intel';
    expect(nested?.format).toBe(intel ? KVM_STATE_NESTED_FORMAT_VMX : KVM_STATE_NESTED_FORMAT_SVM);
    expect(nested?.flags).toBe(intel ? 0 : KVM_STATE_NESTED_GIF_SET);
    expect(nested?.size).toBe(128);
    restoreVcpu(p, b.vcpus[0]!.fd, saved);
    expect(saveVcpu(p, b.sys, b.vcpus[0]!.fd, 0).nestedState).toEqual(saved.nestedState);
    const other = savedVcpuOf({ ...parseSavedVcpu(saved), nestedState: { ...nested!, format: intel ? KVM_STATE_NESTED_FORMAT_SVM : KVM_STATE_NESTED_FORMAT_VMX } });
    expect(() => restoreVcpu(p, b.vcpus[0]!.fd, other)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as unknown as Error);
  });
});
