/**
 * canMove and moveVm (builds/compat.ts): each reason on its own with exact facts, and a property over random pairs
 * of shipped builds on both vendors — a move canMove accepts round-trips the VM's state (and comes back when the
 * way back is open), one it refuses fails at the step it names, with the source VM as it was.
 */
import { ARCH_REQ_XCOMP_GUEST_PERM, createHost, type Host, type Process, O_RDWR, UsageError } from '@vac/core';
import { intel } from '@vac/vmx';
import { turnEventLoopIfDue } from '@vac/test-support';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_DISABLE_QUIRKS,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_X86_DISABLE_EXITS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  KVM_GET_IRQCHIP,
  KVM_GET_SUPPORTED_CPUID,
  KVM_IRQCHIP_IOAPIC,
  KVM_SET_CPUID2,
  KVM_SET_IRQCHIP,
  KVM_SET_MSRS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  LINUX_5_16,
  LINUX_5_7,
  LINUX_6_1,
  LINUX_6_12,
  LINUX_6_18,
  MOVE_STEPS,
  MoveError,
  SHIPPED_BUILDS,
  canMove,
  createRealModeVcpu,
  kvm,
  makeKvmCpuid2,
  makeKvmEnableCap,
  makeKvmIrqchip,
  makeKvmMsrs,
  makeKvmXcrs,
  moveVm,
  probeModule,
  restoreVm,
  saveVm,
  type EnabledCap,
  type KvmBuild,
  type ModuleFacts,
  type MoveSource,
  type SavedVm,
  parseSavedVcpu,
  savedVcpuOf,
  parseSavedIrqchip,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

const MSR_KVM_ASYNC_PF_INT = 0x4b564d06;

/** A guest that counts in AX forever: `inc ax; jmp $-3`. */
const SPIN = [0x40, 0xeb, 0xfd];

interface Setup {
  readonly host: Host;
  readonly p: Process;
}

/** A vendor of the tests: the two of the module tests, and an Intel host with AMX whose VMM asks for it. */
type Vendor = (typeof VENDORS)[number] | typeof AMX;

/** An Intel host with AMX (`intel({ amx: true })`); its VMM asks for the guest permission before its first vCPU. */
const AMX = { name: 'intel-amx', hardware: () => intel({ amx: true }), amx: true } as const;

function twoBuilds(hardware: Vendor, a: KvmBuild, b: KvmBuild, mitigate1 = false): Setup {
  const host = createHost({ cpus: 2, hardware: hardware.hardware() });
  host.modprobe(kvm({ postfix: '0', build: a }));
  host.modprobe(kvm({ postfix: '1', build: b }), mitigate1 ? { mitigate_smt_rsb: 'Y' } : {});
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  if ('amx' in hardware) p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18); // as QEMU does for -cpu with AMX
  return { host, p };
}

/** XCR0 with AMX tile state: x87 SSE AVX XTILECFG XTILEDATA. */
const XCR0_AMX = 0x60007n;

/**
 * Give an AMX guest tile state as it would have after using AMX: XCR0 with the tile components, and an XSAVE area
 * (KVM_SET_XSAVE of the vCPU's 11008 bytes) whose XSTATE_BV has them, with a tile configuration and tile data.
 */
function useTiles(p: Process, vcpuFd: number): void {
  const xcrs = makeKvmXcrs({ nr_xcrs: 1 });
  xcrs.xcrs[0] = { xcr: 0, value: XCR0_AMX };
  p.ioctl(vcpuFd, KVM_SET_XCRS, xcrs);
  const area = new Uint8Array(11008);
  const dv = new DataView(area.buffer);
  dv.setUint16(0, 0x37f, true); // FCW
  dv.setUint32(24, 0x1f80, true); // MXCSR
  dv.setBigUint64(512, XCR0_AMX, true); // XSTATE_BV
  area[2752] = 1; // XTILECFG: palette 1
  area.fill(0xa5, 2816, 2816 + 8192); // XTILEDATA
  p.ioctl(vcpuFd, KVM_SET_XSAVE, area);
}

interface VmSpec {
  readonly caps: readonly EnabledCap[];
  /** Give the guest KVM's paravirtual leaf (0x40000001) as the module supports it. */
  readonly pvCpuid: boolean;
  readonly irqchip: boolean;
  /** MSR_KVM_ASYNC_PF_INT's vector, written when the module has the MSR and the VM an irqchip. */
  readonly apfVector: number;
  /** Give the guest AMX tile state ({@link useTiles}) when the module offers AMX to the process. */
  readonly tiles?: boolean;
}

/** A VM on `dev` as a VMM builds one: capabilities, irqchip, memory, one vCPU with the module's supported CPUID. */
function makeVm(p: Process, dev: string, spec: VmSpec): MoveSource {
  const sys = p.open(dev, O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  for (const c of spec.caps) p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: c.cap, args: [c.flags, 0n, 0n, 0n] }));
  if (spec.irqchip) p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  const mem = p.mmapAnonymous(0x10000);
  mem.bytes.set(SPIN, 0x1000);
  const slot = { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: mem.addr };
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, slot);
  const v = createRealModeVcpu(p, sys, vm, { guestPhysAddr: 0x1000 });
  const cpuid = makeKvmCpuid2(256);
  p.ioctl(sys, KVM_GET_SUPPORTED_CPUID, cpuid);
  let entries = cpuid.entries.slice(0, cpuid.nent);
  if (!spec.pvCpuid) entries = entries.filter((e) => e.function !== 0x40000001);
  // The hardware models define no leaf 0x80000008, so KVM reports 0 physical-address bits; a VMM picks its own
  // (QEMU's phys-bits), else KVM_SET_SREGS would refuse the APIC base above MAXPHYADDR 0.
  entries = entries.map((e) => (e.function === 0x80000008 && (e.eax & 0xff) === 0 ? { ...e, eax: e.eax | 39 } : e));
  p.ioctl(v.fd, KVM_SET_CPUID2, makeKvmCpuid2(entries));
  if (spec.irqchip && spec.apfVector !== 0) p.ioctl(v.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_KVM_ASYNC_PF_INT, data: BigInt(spec.apfVector) }]));
  const xcr0 = entries.find((e) => e.function === 0xd && e.index === 0);
  if (spec.tiles === true && xcr0 !== undefined && (xcr0.eax & 0x60000) === 0x60000) useTiles(p, v.fd);
  return { handle: { sys, vm, vcpus: [{ id: 0, fd: v.fd, run: v.run }] }, slots: [slot], enabledCaps: spec.caps, irqchip: spec.irqchip, runMappings: [v.runMapping] };
}

/** The same state, except MSRs only one side lists (each at 0 on the side that has it). */
function expectSameState(a: SavedVm, b: SavedVm): void {
  expect(b.clock).toEqual(a.clock);
  expect(b.vcpus.length).toBe(a.vcpus.length);
  a.vcpus.forEach((va, i) => {
    const vb = b.vcpus[i]!;
    const { msrs: ma, xsave: xa, ...ra } = parseSavedVcpu(va);
    const { msrs: mb, xsave: xb, ...rb } = parseSavedVcpu(vb);
    expect(rb).toEqual(ra);
    // The XSAVE area is as large as the module's KVM_CAP_XSAVE2 (4096 bytes without it): the same state, zeros beyond.
    const words = Math.max(xa.region.length, xb.region.length);
    const pad = (r: Uint32Array): Uint32Array => {
      const out = new Uint32Array(words);
      out.set(r);
      return out;
    };
    expect(pad(xb.region)).toEqual(pad(xa.region));
    const ia = new Map(ma.map((m) => [m.index, m.data]));
    const ib = new Map(mb.map((m) => [m.index, m.data]));
    for (const [k, d] of ia) expect([k, ib.has(k) ? ib.get(k) : 0n]).toEqual([k, d]);
    for (const [k, d] of ib) if (!ia.has(k)) expect([k, d]).toEqual([k, 0n]);
  });
}

function facts(over: Partial<ModuleFacts>): ModuleFacts {
  return { devPath: '/dev/kvmX', caps: new Map(), msrIndexList: [], supportedCpuid: [], xsaveSize: 4096, supportedXcr0: 3n, ...over };
}

/** A saved VM with one vCPU, from a real save, for the pure checks. */
function sampleSaved(): SavedVm {
  const { p } = twoBuilds(VENDORS[0], LINUX_6_12, LINUX_6_12);
  const s = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: true, irqchip: true, apfVector: 0x30 });
  return saveVm(p, s.handle);
}

describe('canMove: each reason', () => {
  const saved = sampleSaved();
  const v0 = parseSavedVcpu(saved.vcpus[0]!);
  const listed = v0.msrs.map((m) => m.index);

  test('nothing differs: ok, the way back open', () => {
    const f = facts({ msrIndexList: listed, supportedCpuid: v0.cpuid });
    expect(canMove({ saved }, f, f)).toEqual({ ok: true, reasons: [], rollback: { possible: true, reasons: [], hazards: [] } });
  });

  test('a capability the target lacks or flags it does not offer: fails at KVM_ENABLE_CAP; unknown old-style quirks are lost', () => {
    const from = facts({ caps: new Map([[KVM_CAP_DISABLE_QUIRKS2, 0x1ff], [KVM_CAP_X86_DISABLE_EXITS, 0xf]]), msrIndexList: listed });
    const to = facts({ caps: new Map([[KVM_CAP_DISABLE_QUIRKS2, 0x17f], [KVM_CAP_X86_DISABLE_EXITS, 0x1]]), msrIndexList: listed });
    const v = canMove({ saved, enabledCaps: [{ cap: KVM_CAP_DISABLE_QUIRKS2, flags: 0x80n }, { cap: KVM_CAP_X86_DISABLE_EXITS, flags: 0x2n }, { cap: KVM_CAP_DISABLE_QUIRKS, flags: 0x81n }, { cap: 999, flags: 1n }] }, from, to);
    expect(v.ok).toBe(false);
    expect(v.reasons.map((r) => [r.kind, r.step])).toEqual([
      ['fails', 'KVM_ENABLE_CAP'],
      ['fails', 'KVM_ENABLE_CAP'],
      ['loses-state', 'KVM_ENABLE_CAP'],
      ['fails', 'KVM_ENABLE_CAP'],
    ]);
    expect(v.reasons[0]!.detail).toBe('capability 213 with 0x80: the target offers only 0x17f (EINVAL)');
    expect(v.reasons[2]!.detail).toBe('KVM_CAP_DISABLE_QUIRKS 0x81: the target does not know quirks 0x80 and leaves them on without an error');
    // the way back meets only the capability neither module has; the target offers nothing the source lacks
    expect(v.rollback).toEqual({ possible: false, reasons: [{ kind: 'fails', step: 'KVM_ENABLE_CAP', detail: 'capability 999 (enabled with 0x1): the target does not have it' }], hazards: [] });
  });

  test('a CPUID feature the guest has from the source that the target does not offer: fails at cpuid-check', () => {
    const to = v0.cpuid.map((e) => (e.function === 0x40000001 ? { ...e, eax: e.eax & ~(1 << 14) } : e));
    const v = canMove({ saved }, facts({ msrIndexList: listed, supportedCpuid: v0.cpuid }), facts({ msrIndexList: listed, supportedCpuid: to }));
    expect(v.reasons).toEqual([{ kind: 'fails', step: 'cpuid-check', detail: 'CPUID 0x40000001.0.eax bits 0x4000: the guest has them, the target\'s KVM_GET_SUPPORTED_CPUID does not offer them' }]);
    // back: the target offers less, so nothing stands in the way back, and nothing is a hazard
    expect(v.rollback).toEqual({ possible: true, reasons: [], hazards: [] });
  });

  test('XSAVE components or XCR0 bits the target does not support: fails at KVM_SET_XSAVE / KVM_SET_XCRS', () => {
    const region = v0.xsave.region.slice();
    region[128] = 0x7; // XSTATE_BV: x87 SSE AVX
    const xcr0Is7 = makeKvmXcrs({ nr_xcrs: 1 });
    xcr0Is7.xcrs[0] = { xcr: 0, value: 7n };
    const xsaved: SavedVm = { ...saved, vcpus: [savedVcpuOf({ ...v0, xsave: { region }, xcrs: xcr0Is7 })] };
    const v = canMove({ saved: xsaved }, facts({ msrIndexList: listed, supportedXcr0: 7n, xsaveSize: 4096 }), facts({ msrIndexList: listed, supportedXcr0: 3n }));
    expect(v.reasons.map((r) => [r.kind, r.step, r.detail])).toEqual([
      ['fails', 'KVM_SET_XSAVE', 'XSTATE_BV 0x7: the target does not support components 0x4 (EINVAL)'],
      ['fails', 'KVM_SET_XCRS', 'XCR0 0x7: the target does not support 0x4 (EINVAL)'],
    ]);
    // A larger area matters only for the components it holds: AVX state fits 4096 bytes whatever the source offers …
    const avx = canMove({ saved: xsaved }, facts({ msrIndexList: listed, supportedXcr0: 7n, xsaveSize: 11008 }), facts({ msrIndexList: listed, supportedXcr0: 7n, xsaveSize: 4096 }));
    expect(avx.reasons).toEqual([]);
    // … AMX tile data (8192 bytes at 2816, by the source's leaf 0xD) does not.
    const tiles = v0.xsave.region.slice();
    tiles[128] = 0x60007;
    const xcr0Tiles = makeKvmXcrs({ nr_xcrs: 1 });
    xcr0Tiles.xcrs[0] = { xcr: 0, value: 0x60007n };
    const tiled: SavedVm = { ...saved, vcpus: [savedVcpuOf({ ...v0, xsave: { region: tiles }, xcrs: xcr0Tiles })] };
    const leafD = [
      { function: 0xd, index: 17, flags: 1, eax: 64, ebx: 2752, ecx: 2, edx: 0 },
      { function: 0xd, index: 18, flags: 1, eax: 8192, ebx: 2816, ecx: 6, edx: 0 },
    ];
    const big = canMove({ saved: tiled }, facts({ msrIndexList: listed, supportedXcr0: 0x60007n, xsaveSize: 11008, supportedCpuid: leafD }), facts({ msrIndexList: listed, supportedXcr0: 0x60007n, xsaveSize: 4096 }));
    expect(big.reasons).toEqual([{ kind: 'fails', step: 'KVM_SET_XSAVE', detail: 'the XSAVE area is 11008 bytes (XSTATE_BV 0x60007), the target takes 4096' }]);
  });

  test('a saved MSR the target does not list: lost when not 0, a note when 0; the target\'s extra MSRs are a hazard for the way back', () => {
    const without = listed.filter((m) => m !== MSR_KVM_ASYNC_PF_INT && m !== 0x4b564d07);
    const v = canMove({ saved }, facts({ msrIndexList: listed }), facts({ msrIndexList: without }));
    expect(v.reasons).toEqual([
      { kind: 'loses-state', step: 'KVM_SET_MSRS', detail: 'vCPU 0: MSR 0x4b564d06 = 0x30 is not in the target\'s KVM_GET_MSR_INDEX_LIST: its value would be lost' },
      { kind: 'note', step: 'KVM_SET_MSRS', detail: 'MSR 0x4b564d07 is not in the target\'s list; it is 0, so nothing is lost' },
    ]);
    expect(v.ok).toBe(false);
    const back = canMove({ saved: { ...saved, vcpus: [savedVcpuOf({ ...v0, msrs: v0.msrs.filter((m) => without.includes(m.index)) })] } }, facts({ msrIndexList: without }), facts({ msrIndexList: listed }));
    expect(back.ok).toBe(true);
    expect(back.rollback).toEqual({ possible: 'conditional', reasons: [], hazards: ['the guest writes MSR 0x4b564d06, 0x4b564d07 (the target lists them, the source does not)'] });
  });

  test('malformed input is a UsageError', () => {
    const f = facts({});
    expect(() => canMove(null as never, f, f)).toThrow(UsageError);
    expect(() => canMove({ saved: {} } as never, f, f)).toThrow(UsageError);
    expect(() => canMove({ saved, enabledCaps: [{ cap: 1, flags: 1 }] } as never, f, f)).toThrow(UsageError);
    expect(() => canMove({ saved }, { ...f, caps: {} } as never, f)).toThrow(/canMove: from must be ModuleFacts/);
    expect(() => canMove({ saved }, f, undefined as never)).toThrow(/canMove: to must be ModuleFacts/);
  });

  test('MOVE_STEPS is the order of reasons', () => {
    expect(MOVE_STEPS).toEqual(['KVM_ENABLE_CAP', 'cpuid-check', 'KVM_SET_XSAVE', 'KVM_SET_XCRS', 'KVM_SET_MSRS']);
  });
});


/** What {@link checkMove} sets up: which part of what the source offers the VMM enables, and the guest's state. */
interface MoveCase {
  /** A mask over the quirks KVM_CAP_DISABLE_QUIRKS2 offers. */
  readonly quirks: number;
  /** A mask over the exits KVM_CAP_X86_DISABLE_EXITS offers. */
  readonly exits: number;
  readonly pvCpuid: boolean;
  readonly irqchip: boolean;
  readonly apfVector: number;
  /** Load the target with mitigate_smt_rsb=Y (when its build has the parameter). */
  readonly mitigate: boolean;
}

/**
 * Build a VM on kvm0 (build `a`), ask canMove about kvm1 (build `b`), and make the move: a refused move must fail at
 * the step canMove names first with the source unchanged; an accepted one must round-trip the state, and come back
 * (or fail at the step the rollback verdict names). @returns the outcome
 */
function checkMove(vendor: Vendor, a: KvmBuild, b: KvmBuild, r: MoveCase): string {
  const { p } = twoBuilds(vendor, a, b, r.mitigate && b.changes.every((c) => c.id !== 'mitigate-smt-rsb'));
  // The VMM asks the source what it may enable, and enables a random part of it.
  const s0 = p.open('/dev/kvm0', O_RDWR);
  const quirks = BigInt(r.quirks & p.ioctl(s0, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2));
  const exits = BigInt(r.exits & p.ioctl(s0, KVM_CHECK_EXTENSION, KVM_CAP_X86_DISABLE_EXITS));
  p.close(s0);
  const caps: EnabledCap[] = [];
  if (quirks !== 0n) caps.push({ cap: KVM_CAP_DISABLE_QUIRKS2, flags: quirks });
  if (exits !== 0n) caps.push({ cap: KVM_CAP_X86_DISABLE_EXITS, flags: exits });
  const hasApf = a.changes.every((c) => c.id !== 'async-pf-int');
  const src = makeVm(p, '/dev/kvm0', { caps, pvCpuid: r.pvCpuid, irqchip: r.irqchip, apfVector: hasApf ? r.apfVector : 0, tiles: true });
  const saved = saveVm(p, src.handle);
  const f0 = probeModule(p, '/dev/kvm0');
  const f1 = probeModule(p, '/dev/kvm1');
  const verdict = canMove({ saved, enabledCaps: caps }, f0, f1);
  if (!verdict.ok) {
    const first = verdict.reasons.find((x) => x.kind !== 'note')!;
    let err: unknown;
    try {
      moveVm(p, src, '/dev/kvm1');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MoveError);
    expect((err as MoveError).step).toBe(first.step);
    expect(saveVm(p, src.handle)).toEqual(saved);
    return `refused at ${first.step}`;
  }
  const moved = moveVm(p, src, '/dev/kvm1');
  expectSameState(saved, saveVm(p, moved.handle));
  const back = { handle: moved.handle, slots: src.slots, enabledCaps: caps, irqchip: r.irqchip, runMappings: moved.runMappings };
  if (verdict.rollback.possible === false) {
    let err: unknown;
    try {
      moveVm(p, back, '/dev/kvm0');
    } catch (e) {
      err = e;
    }
    expect((err as MoveError).step).toBe(verdict.rollback.reasons[0]!.step);
    return 'moved, no way back';
  }
  // The hazards did not happen (the guest did not run): the way back is open and restores the state exactly.
  const home = moveVm(p, back, '/dev/kvm0');
  expect(saveVm(p, home.handle)).toEqual(saved);
  return `moved and back (${String(verdict.rollback.possible)})`;
}

describe.each(VENDORS)('moving between shipped builds on $name', (vendor) => {
  test('6.12 → 5.7 with the paravirtual CPUID: refused at cpuid-check, the source untouched; 5.7 → 6.12: moves, comes back while the guest leaves the new MSRs alone', () => {
    const { p } = twoBuilds(vendor, LINUX_6_12, LINUX_5_7);
    const src = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: true, irqchip: false, apfVector: 0 });
    const before = saveVm(p, src.handle);
    const v = canMove({ saved: before }, probeModule(p, '/dev/kvm0'), probeModule(p, '/dev/kvm1'));
    expect(v.reasons[0]).toEqual({ kind: 'fails', step: 'cpuid-check', detail: 'CPUID 0x40000001.0.eax bits 0x4000: the guest has them, the target\'s KVM_GET_SUPPORTED_CPUID does not offer them' });
    const err = (() => {
      try {
        moveVm(p, src, '/dev/kvm1');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(MoveError);
    expect((err as MoveError).step).toBe('cpuid-check');
    expect(saveVm(p, src.handle)).toEqual(before);
  });

  test('the real rollback example: 5.7 → 6.12 moves; back is conditional on MSR_KVM_ASYNC_PF_INT/ACK and KVM_FEATURE_ASYNC_PF_INT', () => {
    const { p } = twoBuilds(vendor, LINUX_5_7, LINUX_6_12);
    const src = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: true, irqchip: true, apfVector: 0 });
    const saved = saveVm(p, src.handle);
    const f0 = probeModule(p, '/dev/kvm0');
    const f1 = probeModule(p, '/dev/kvm1');
    const v = canMove({ saved }, f0, f1);
    expect(v.ok).toBe(true);
    expect(v.rollback.possible).toBe('conditional');
    expect(v.rollback.hazards).toEqual([
      'the guest writes MSR 0x4b564d06, 0x4b564d07 (the target lists them, the source does not)',
      'the VMM gives the guest CPUID 0x40000001.0.eax bits 0x4000 (the target offers them, the source does not)',
      'the VMM enables capability 213 with flags 0x80 (the target offers them, the source does not)',
    ]);
    const moved = moveVm(p, { ...src }, '/dev/kvm1');
    expectSameState(saved, saveVm(p, moved.handle));
    // The hazard happens: the guest (or a VMM replaying a newer guest's MSRs) turns on interrupt-based APF.
    p.ioctl(moved.handle.vcpus[0]!.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_KVM_ASYNC_PF_INT, data: 0x30n }]));
    const now = saveVm(p, moved.handle);
    const back = canMove({ saved: now }, f1, f0);
    expect(back.reasons).toEqual([{ kind: 'loses-state', step: 'KVM_SET_MSRS', detail: 'vCPU 0: MSR 0x4b564d06 = 0x30 is not in the target\'s KVM_GET_MSR_INDEX_LIST: its value would be lost' }, { kind: 'note', step: 'KVM_SET_MSRS', detail: 'MSR 0x4b564d07 is not in the target\'s list; it is 0, so nothing is lost' }]);
    const target = { handle: moved.handle, slots: src.slots, irqchip: true, runMappings: moved.runMappings };
    expect(() => moveVm(p, target, '/dev/kvm0')).toThrow(MoveError);
    try {
      moveVm(p, target, '/dev/kvm0');
    } catch (e) {
      expect((e as MoveError).step).toBe('KVM_SET_MSRS');
    }
    expect(saveVm(p, moved.handle)).toEqual(now);
  });

  test('property: for random pairs of shipped builds, canMove and moveVm agree, both directions', async () => {
    const n = SHIPPED_BUILDS.length;
    const tally = new Map<string, number>();
    const count = (k: string): void => void tally.set(k, (tally.get(k) ?? 0) + 1);
    // Asynchronous only to turn the worker's event loop about once a second (turnEventLoopIfDue).
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: n - 1 }),
        fc.integer({ min: 0, max: n - 1 }),
        fc.record({ quirks: fc.integer({ min: 0, max: 0x7ff }), exits: fc.integer({ min: 0, max: 0xf }), pvCpuid: fc.boolean(), irqchip: fc.boolean(), apfVector: fc.constantFrom(0, 0x30, 0xef), mitigate: fc.boolean() }),
        async (i, j, r) => {
          const a = SHIPPED_BUILDS[i]!;
          const b = SHIPPED_BUILDS[j]!;
          count(checkMove(vendor, a, b, r));
          await turnEventLoopIfDue();
        },
      ),
      { numRuns: 60, seed: 16 },
    );
    if (process.env['VAC_TALLY'] !== undefined) console.log(vendor.name, Object.fromEntries(tally));
    // Both outcomes happen in the run (the seed is fixed, so this is deterministic).
    expect([...tally.keys()].some((k) => k.startsWith('refused'))).toBe(true);
    expect([...tally.keys()].some((k) => k.startsWith('moved'))).toBe(true);
  });
});

describe.each([...VENDORS, AMX] as Vendor[])('every ordered pair of shipped builds on $name', (vendor) => {
  // Each pair, both directions (the list has (a, b) and (b, a)), with a VM that uses everything the source offers
  // (all quirks and exits it lets the VMM disable, its paravirtual CPUID, an irqchip, interrupt-based APF where it has
  // it); the same with the target loaded with mitigate_smt_rsb=Y; and a VM that enables no capability, so that the
  // later steps (CPUID, MSRs) decide.
  const pairs = SHIPPED_BUILDS.flatMap((a) => SHIPPED_BUILDS.map((b) => [a, b] as const));
  const all: MoveCase = { quirks: 0x7ff, exits: 0xf, pvCpuid: true, irqchip: true, apfVector: 0x30, mitigate: false };
  const configs: ReadonlyArray<readonly [string, MoveCase]> = [
    ['everything the source offers', all],
    ['everything the source offers, the target with mitigate_smt_rsb=Y', { ...all, mitigate: true }],
    ['no capability enabled', { ...all, quirks: 0, exits: 0 }],
  ];
  // On the AMX host (the guest with tile state where the source offers AMX) one configuration, no capability
  // enabled, so that CPUID and XSAVE decide: the others repeat the Intel host's outcomes for the capabilities.
  test.each('amx' in vendor ? configs.slice(2) : configs)(`canMove and moveVm agree on all ${SHIPPED_BUILDS.length ** 2}: %s`, async (_name, config) => {
    const outcomes = new Map<string, string>();
    for (const [a, b] of pairs) {
      outcomes.set(`${a.linux} → ${b.linux}`, checkMove(vendor, a, b, config));
      await turnEventLoopIfDue();
    }
    if (process.env['VAC_TALLY'] !== undefined) console.log(vendor.name, _name, Object.fromEntries(outcomes));
    expect(outcomes.size).toBe(SHIPPED_BUILDS.length ** 2);
    // A build to itself always moves and comes back (the parameter aside).
    for (const b of SHIPPED_BUILDS) if (!config.mitigate) expect(outcomes.get(`${b.linux} → ${b.linux}`)).toBe('moved and back (true)');
    // The rollback example (docs/builds.md): forward moves; the way back is conditional on interrupt-based APF.
    if (config === all) expect(outcomes.get('5.7 → 6.12')).toBe('moved and back (conditional)');
    if (config.quirks === 0) expect(outcomes.get('6.12 → 5.7')).toBe('refused at cpuid-check');
    // AMX (docs/builds.md): a guest with tile state cannot go to a release before 5.17; one from 5.16 goes forward,
    // and back while the VMM gives it no AMX.
    if ('amx' in vendor) {
      expect(outcomes.get('6.12 → 5.16')).toBe('refused at cpuid-check');
      expect(outcomes.get('6.18 → 5.7')).toBe('refused at cpuid-check');
      expect(outcomes.get('5.16 → 6.12')).toBe('moved and back (conditional)');
    }
  });
});

/** The MoveError `move` throws; the test fails when it throws nothing or something else. */
function moveErrorOf(move: () => unknown): MoveError {
  try {
    move();
  } catch (e) {
    expect(e).toBeInstanceOf(MoveError);
    return e as MoveError;
  }
  throw new Error('the move did not fail');
}

describe('AMX between 6.12 and 5.16 (the XSAVE-size change)', () => {
  test('6.12 → 5.16 of a guest with tile state: every reason in move order, moveVm stops at cpuid-check, the source as it was', () => {
    const { p } = twoBuilds(AMX, LINUX_6_12, LINUX_5_16);
    const src = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: true, irqchip: true, apfVector: 0, tiles: true });
    const saved = saveVm(p, src.handle);
    expect(saved.vcpus[0]!.xsave.length).toBe(11008); // KVM_GET_XSAVE2
    const f0 = probeModule(p, '/dev/kvm0');
    const f1 = probeModule(p, '/dev/kvm1');
    expect([f0.xsaveSize, f1.xsaveSize]).toEqual([11008, 4096]);
    const v = canMove({ saved }, f0, f1);
    expect(v.reasons).toEqual([
      { kind: 'fails', step: 'cpuid-check', detail: "CPUID 0x7.0.edx bits 0x3400000: the guest has them, the target's KVM_GET_SUPPORTED_CPUID does not offer them" },
      { kind: 'fails', step: 'cpuid-check', detail: "CPUID 0xd.0.eax bits 0x60000: the guest has them, the target's KVM_GET_SUPPORTED_CPUID does not offer them" },
      { kind: 'fails', step: 'KVM_SET_XSAVE', detail: 'XSTATE_BV 0x60007: the target does not support components 0x60000 (EINVAL)' },
      { kind: 'fails', step: 'KVM_SET_XCRS', detail: 'XCR0 0x60007: the target does not support 0x60000 (EINVAL)' },
      { kind: 'note', step: 'KVM_SET_MSRS', detail: "MSR 0x1c4 is not in the target's list; it is 0, so nothing is lost" },
      { kind: 'note', step: 'KVM_SET_MSRS', detail: "MSR 0x1c5 is not in the target's list; it is 0, so nothing is lost" },
    ]);
    expect(moveErrorOf(() => moveVm(p, src, '/dev/kvm1')).step).toBe('cpuid-check');
    expect(saveVm(p, src.handle)).toEqual(saved);
  });

  test('5.16 → 6.12 moves; the way back closes once the VMM gives the guest AMX on 6.12 and the guest uses it', () => {
    const { p } = twoBuilds(AMX, LINUX_5_16, LINUX_6_12);
    const src = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: true, irqchip: true, apfVector: 0, tiles: true });
    const saved = saveVm(p, src.handle);
    expect(saved.vcpus[0]!.xsave.length).toBe(4096); // 5.16: KVM_GET_XSAVE, no tile state
    const f0 = probeModule(p, '/dev/kvm0');
    const f1 = probeModule(p, '/dev/kvm1');
    const v = canMove({ saved }, f0, f1);
    expect(v.ok).toBe(true);
    expect(v.rollback.possible).toBe('conditional');
    expect(v.rollback.hazards).toEqual([
      'the guest writes MSR 0x1c4, 0x1c5 (the target lists them, the source does not)',
      'the VMM gives the guest CPUID 0x7.0.edx bits 0x3400000 (the target offers them, the source does not)',
      'the VMM gives the guest CPUID 0xd.0.eax bits 0x60000 (the target offers them, the source does not)',
      'the VMM enables capability 213 with flags 0x80 (the target offers them, the source does not)', // 5.16 has no SLOT_ZAP_ALL
    ]);
    const moved = moveVm(p, src, '/dev/kvm1');
    // The hazard: on 6.12 the VMM gives the guest AMX (before it runs) and the guest fills its tiles.
    const fd = moved.handle.vcpus[0]!.fd;
    const cpuid = makeKvmCpuid2(256);
    p.ioctl(moved.handle.sys, KVM_GET_SUPPORTED_CPUID, cpuid);
    const entries = cpuid.entries.slice(0, cpuid.nent).map((e) => (e.function === 0x80000008 && (e.eax & 0xff) === 0 ? { ...e, eax: e.eax | 39 } : e));
    p.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2(entries));
    useTiles(p, fd);
    const now = saveVm(p, moved.handle);
    const back = canMove({ saved: now }, f1, f0);
    expect(back.reasons[0]).toEqual({ kind: 'fails', step: 'cpuid-check', detail: "CPUID 0x7.0.edx bits 0x3400000: the guest has them, the target's KVM_GET_SUPPORTED_CPUID does not offer them" });
    const home = { handle: moved.handle, slots: src.slots, irqchip: true, runMappings: moved.runMappings };
    expect(moveErrorOf(() => moveVm(p, home, '/dev/kvm0')).step).toBe('cpuid-check');
    expect(saveVm(p, moved.handle)).toEqual(now);
  });
});

describe('the builds behind the example', () => {
  test('6.1 → 6.18 and 6.18 → 6.1 of a VM with quirk 10 disabled on 6.18: refused at KVM_ENABLE_CAP by 6.1 with EINVAL', () => {
    const { p } = twoBuilds(VENDORS[1], LINUX_6_18, LINUX_6_1);
    const caps = [{ cap: KVM_CAP_DISABLE_QUIRKS2, flags: 1n << 10n }];
    const src = makeVm(p, '/dev/kvm0', { caps, pvCpuid: true, irqchip: false, apfVector: 0 });
    const saved = saveVm(p, src.handle);
    const v = canMove({ saved, enabledCaps: caps }, probeModule(p, '/dev/kvm0'), probeModule(p, '/dev/kvm1'));
    expect(v.reasons).toEqual([{ kind: 'fails', step: 'KVM_ENABLE_CAP', detail: 'capability 213 with 0x400: the target offers only 0x17f (EINVAL)' }]);
    try {
      moveVm(p, { ...src, enabledCaps: caps }, '/dev/kvm1');
      expect.unreachable();
    } catch (e) {
      expect((e as MoveError).step).toBe('KVM_ENABLE_CAP');
      expect(((e as MoveError).cause as { code: string }).code).toBe('EINVAL');
    }
  });
});

describe.each(VENDORS)('restoring the whole VM on $name', (vendor) => {
  test('restoreVm to a build without an MSR the state has (at 0): the listed ones restored, the others reported as dropped', () => {
    const { p } = twoBuilds(vendor, LINUX_6_12, LINUX_5_7);
    const src = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: false, irqchip: true, apfVector: 0 });
    const saved = saveVm(p, src.handle);
    expect(parseSavedVcpu(saved.vcpus[0]!).msrs.map((m) => m.index)).toContain(MSR_KVM_ASYNC_PF_INT);
    const copy = restoreVm(p, '/dev/kvm1', saved, { slots: src.slots });
    expect(copy.droppedMsrs).toEqual([MSR_KVM_ASYNC_PF_INT, MSR_KVM_ASYNC_PF_INT + 1]);
    const again = saveVm(p, { sys: copy.sys, vm: copy.vm, vcpus: copy.vcpus });
    expectSameState(saved, again);
    expect(parseSavedVcpu(again.vcpus[0]!).msrs.some((m) => m.index === MSR_KVM_ASYNC_PF_INT)).toBe(false);
    // The VMM that already has the target's list passes it; to the same module nothing is dropped.
    const same = restoreVm(p, '/dev/kvm0', saved, { slots: src.slots, msrIndexList: probeModule(p, '/dev/kvm0').msrIndexList });
    expect(same.droppedMsrs).toEqual([]);
    expect(saveVm(p, { sys: same.sys, vm: same.vm, vcpus: same.vcpus })).toEqual(saved);
  });

  test('moveVm carries the irqchip state (the IOAPIC\'s redirection entries), not only the vCPUs', () => {
    const { p } = twoBuilds(vendor, LINUX_6_12, LINUX_6_12);
    const src = makeVm(p, '/dev/kvm0', { caps: [], pvCpuid: true, irqchip: true, apfVector: 0 });
    const io = makeKvmIrqchip({ chip_id: KVM_IRQCHIP_IOAPIC });
    p.ioctl(src.handle.vm, KVM_GET_IRQCHIP, io);
    if (!('ioapic' in io.chip)) throw new Error('no IOAPIC');
    io.chip.ioapic.redirtbl[5] = 0x10031n | (1n << 16n); // masked: nothing is delivered through it
    p.ioctl(src.handle.vm, KVM_SET_IRQCHIP, io);
    const before = saveVm(p, { ...src.handle, irqchip: { mode: 'kernel' } });
    expect(parseSavedIrqchip(before.irqchip!).ioapic?.redirtbl[5]).toBe(0x10031n);
    const moved = moveVm(p, src, '/dev/kvm1');
    expect(saveVm(p, moved.handle).irqchip).toEqual(before.irqchip);
  });
});
