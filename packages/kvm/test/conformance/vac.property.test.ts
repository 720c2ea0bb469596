/**
 * Property-based tests of VAC on both setups: random sequences of usage references by several instances,
 * CPU hotplug, VPID/ASID/SEV allocations and frees, user-return MSR writes and returns to user space,
 * vcpu_load/vcpu_put, suspend/resume, PMIs/NMIs/PI wakeups, failed enables and instances leaving and
 * coming back — checked against a small model after every step:
 *
 * - `checkInvariants(host)` is empty;
 * - the usage count, each CPU's enable state (VAC's and the hardware's) and online state are the model's;
 * - every PMI (and NMI) reaches the instance that last loaded on that CPU, or none; PI wakeups reach all;
 * - every user-return MSR holds the guest value last written, or its host value;
 * - a failed operation has its errno and leaves the host as it was;
 *
 * and after releasing everything and detaching: count 0, every CPU disabled, every allocator empty, every
 * user-return MSR at its host value, and `rmmod vac` gives every hook back.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { PERF_GUEST_ACTIVE, checkInvariants } from '@vac/core';
import type { Host, Vac, VcpuTag } from '@vac/core';
import { FakeKvm, expectFailure, hardwareOn, hooksOf, vacIn } from './support.js';
import { SYSCALL_MSRS, VENDORS } from './vendors.js';
import type { VendorSetup } from './vendors.js';
import { VPIDS } from '@vac/vmx';
import { ASIDS, SEV_ASIDS } from '@vac/svm';

const NR_CPUS = 4;
const NR_INSTANCES = 3;
const HOLDERS = ['', 'vm1', 'vm2'] as const;
/** AMD geometry: ordinary ASIDs 5 … 15 (11 per generation, so runs roll over); SEV 3 … 4, SEV-ES 1 … 2. */
const ASID_SPACE = { nrAsids: 16, maxSevAsid: 4, minSevAsid: 3 } as const;
const MIN_ASID = ASID_SPACE.maxSevAsid + 1;
const MAX_ASID = ASID_SPACE.nrAsids - 1;
const SEV_RANGE = { sev: [3, 4], es: [1, 2] } as const;

type Holder = (typeof HOLDERS)[number];

type Op =
  | { readonly k: 'get'; readonly i: number; readonly h: Holder }
  | { readonly k: 'put'; readonly i: number; readonly h: Holder; readonly pick: number }
  | { readonly k: 'getFail'; readonly i: number; readonly cpu: number; readonly how: 'fault' | 'foreign' }
  | { readonly k: 'down'; readonly cpu: number }
  | { readonly k: 'up'; readonly cpu: number }
  | { readonly k: 'upFail'; readonly cpu: number }
  | { readonly k: 'load'; readonly i: number; readonly pick: number }
  | { readonly k: 'unload'; readonly pick: number }
  | { readonly k: 'pmi'; readonly cpu: number }
  | { readonly k: 'nmi'; readonly cpu: number }
  | { readonly k: 'pi'; readonly cpu: number }
  | { readonly k: 'tlb'; readonly i: number; readonly vcpu: number; readonly pick: number }
  | { readonly k: 'tlbFree'; readonly pick: number }
  | { readonly k: 'tlbSteal'; readonly i: number; readonly pick: number }
  | { readonly k: 'sev'; readonly i: number; readonly es: boolean }
  | { readonly k: 'sevFree'; readonly pick: number }
  | { readonly k: 'sevSteal'; readonly i: number; readonly pick: number }
  | { readonly k: 'uretAdd'; readonly i: number; readonly m: number }
  | { readonly k: 'uretSet'; readonly pick: number; readonly m: number; readonly value: bigint }
  | { readonly k: 'ret'; readonly cpu: number }
  | { readonly k: 'suspend'; readonly failCpu: number | undefined }
  | { readonly k: 'reattach'; readonly i: number };

const inst = fc.integer({ min: 0, max: NR_INSTANCES - 1 });
const anyCpu = fc.integer({ min: 0, max: NR_CPUS - 1 });
const nonBoot = fc.integer({ min: 1, max: NR_CPUS - 1 });
/** Which of the currently valid targets an op acts on (taken modulo their number). */
const pick = fc.nat(63);
const holder = fc.constantFrom<Holder>(...HOLDERS);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('get' as const), i: inst, h: holder }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('put' as const), i: inst, h: holder, pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('getFail' as const), i: inst, cpu: anyCpu, how: fc.constantFrom<'fault' | 'foreign'>('fault', 'foreign') }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('down' as const), cpu: nonBoot }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('up' as const), cpu: nonBoot }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('upFail' as const), cpu: nonBoot }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('load' as const), i: inst, pick }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('unload' as const), pick }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('pmi' as const), cpu: anyCpu }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('nmi' as const), cpu: anyCpu }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('pi' as const), cpu: anyCpu }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('tlb' as const), i: inst, vcpu: fc.nat(3), pick }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('tlbFree' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('tlbSteal' as const), i: inst, pick }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('sev' as const), i: inst, es: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('sevFree' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('sevSteal' as const), i: inst, pick }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('uretAdd' as const), i: inst, m: fc.nat(SYSCALL_MSRS.length - 1) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('uretSet' as const),
      pick,
      m: fc.nat(SYSCALL_MSRS.length - 1),
      value: fc.bigInt({ min: 0n, max: 0xffffn }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ret' as const), cpu: anyCpu }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('suspend' as const), failCpu: fc.option(nonBoot, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reattach' as const), i: inst }) },
);

const ALL_ONES = (1n << 64n) - 1n;

/** One instance as the model sees it. */
interface ModelInstance {
  fake: FakeKvm;
  readonly refs: Map<Holder, number>;
  readonly vpids: number[];
  /** vCPU tags (the same object per vCPU, as `newAsid` requires) that were given ASIDs. */
  readonly asidTags: Set<VcpuTag>;
  readonly tags: Map<number, VcpuTag>;
  readonly sev: number[];
  readonly msrs: number[];
}

/** The run of one op sequence on one vendor. */
class Run {
  readonly host: Host;
  readonly vac: Vac;
  readonly #v: VendorSetup;
  readonly insts: ModelInstance[] = [];
  count = 0;
  /** Instance indices in attach order (the fan-out order of PI wakeups). */
  order: number[] = [];
  readonly online: boolean[] = Array.from({ length: NR_CPUS }, () => true);
  /** The instance that last loaded on each CPU and has not put. */
  readonly lastLoaded: Array<number | undefined> = Array.from({ length: NR_CPUS }, () => undefined);
  readonly vpidSet = new Set<number>();
  readonly sevInUse = new Set<number>();
  readonly sevReclaim = new Set<number>();
  sevFlushes = 0;
  /** user-return slots: MSR per slot and registrations. */
  readonly slots: Array<{ msr: number; refs: number } | undefined> = [];
  /** Boot value of every pool MSR on every CPU. */
  readonly boot: bigint[][];
  /** Guest values loaded per CPU (MSR → value). */
  readonly guest: Array<Map<number, bigint>> = Array.from({ length: NR_CPUS }, () => new Map());
  readonly baseHooks: ReturnType<typeof hooksOf>;

  constructor(v: VendorSetup) {
    this.#v = v;
    this.host = v.host({ cpus: NR_CPUS, ...ASID_SPACE, loadVac: false });
    this.baseHooks = hooksOf(this.host);
    this.host.modprobe('vac');
    this.vac = vacIn(this.host);
    this.boot = this.host.cpus.map((c) => SYSCALL_MSRS.map((m) => c.rdmsrSafe(m) ?? -1n));
    for (let i = 0; i < NR_INSTANCES; i++) this.insts.push(this.#newInstance(i));
    this.order = this.insts.map((_, i) => i);
  }

  get svm(): boolean {
    return this.#v.virt === 'svm';
  }

  #newInstance(i: number): ModelInstance {
    return { fake: new FakeKvm(this.vac, `kvm${i}`, i), refs: new Map(), vpids: [], asidTags: new Set(), tags: new Map(), sev: [], msrs: [] };
  }

  #inst(i: number): ModelInstance {
    const x = this.insts[i];
    if (x === undefined) throw new Error(`no instance ${i}`);
    return x;
  }

  #holdsVm(x: ModelInstance): boolean {
    return [...x.refs.keys()].some((h) => h !== '');
  }

  /** Every online CPU was disabled (1→0, or a suspend): guest MSR values are back to the host's. */
  #dropAll(): void {
    for (const g of this.guest) g.clear();
  }

  #tag(x: ModelInstance, i: number, vcpu: number): VcpuTag {
    let t = x.tags.get(vcpu);
    if (t === undefined) {
      t = { instance: `kvm${i}`, vm: 1, vcpu };
      x.tags.set(vcpu, t);
    }
    return t;
  }

  /** `list[pick mod length]`, or undefined for an empty list. */
  static #choose<T>(list: readonly T[], pick: number): T | undefined {
    return list.length === 0 ? undefined : list[pick % list.length];
  }

  /** (instance, CPU) pairs where the instance's vCPU is the one running (it loaded last there). */
  #running(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const [cpu, i] of this.lastLoaded.entries()) if (i !== undefined) out.push([i, cpu]);
    return out;
  }

  #get(x: ModelInstance, h: Holder): void {
    x.fake.handle.enableVirtualization(h);
    x.refs.set(h, (x.refs.get(h) ?? 0) + 1);
    this.count++;
  }

  #putAll(x: ModelInstance, i: number): void {
    for (const cpu of [...x.fake.loaded]) {
      x.fake.put(cpu);
      if (this.lastLoaded[cpu] === i) this.lastLoaded[cpu] = undefined;
    }
  }

  step(op: Op): void {
    const host = this.host;
    switch (op.k) {
      case 'get': {
        this.#get(this.#inst(op.i), op.h);
        return;
      }
      case 'put': {
        const unheld = this.#inst(op.i);
        if (op.pick % 5 === 0 && (unheld.refs.get(op.h) ?? 0) === 0) {
          expectFailure(host, () => unheld.fake.handle.disableVirtualization(op.h), 'EINVAL');
          return;
        }
        const held = this.insts.flatMap((x, i) => [...x.refs.keys()].map((h) => [i, h] as const));
        const target = Run.#choose(held, op.pick);
        if (target === undefined) return;
        const [i, h] = target;
        const x = this.#inst(i);
        const n = x.refs.get(h) ?? 0;
        // A VM going away puts its vCPUs first: the instance's last VM reference takes its loads with it.
        if (h !== '' && [...x.refs].filter(([k]) => k !== '').reduce((sum, [, c]) => sum + c, 0) === 1) this.#putAll(x, i);
        x.fake.handle.disableVirtualization(h);
        if (n === 1) x.refs.delete(h);
        else x.refs.set(h, n - 1);
        this.count--;
        if (this.count === 0) this.#dropAll();
        return;
      }
      case 'getFail': {
        if (this.count !== 0 || this.online[op.cpu] !== true) return;
        const x = this.#inst(op.i);
        if (op.how === 'fault') {
          host.hardware.injectEnableFault(op.cpu, 'once');
          expectFailure(host, () => x.fake.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
          host.hardware.injectEnableFault(op.cpu, 'off');
        } else {
          host.hardware.setForeignOwner(op.cpu, true);
          expectFailure(host, () => x.fake.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
          expect(host.hardware.virt.isEnabled(op.cpu)).toBe(true); // still the foreign owner's
          host.hardware.setForeignOwner(op.cpu, false);
        }
        return;
      }
      case 'down': {
        if (this.online[op.cpu] !== true) return;
        host.cpuDown(op.cpu);
        this.online[op.cpu] = false;
        this.lastLoaded[op.cpu] = undefined;
        this.guest[op.cpu]?.clear();
        for (const x of this.insts) expect(x.fake.loaded.has(op.cpu)).toBe(false);
        return;
      }
      case 'up': {
        if (this.online[op.cpu] === true) return;
        host.cpuUp(op.cpu);
        this.online[op.cpu] = true;
        return;
      }
      case 'upFail': {
        if (this.online[op.cpu] === true || this.count === 0) return;
        host.hardware.injectEnableFault(op.cpu, 'always');
        expectFailure(host, () => host.cpuUp(op.cpu), 'EIO');
        host.hardware.injectEnableFault(op.cpu, 'off');
        return;
      }
      case 'load': {
        // KVM_RUN of a vCPU of one of the instance's VMs (creating a VM first if it has none).
        const x = this.#inst(op.i);
        const cpu = Run.#choose(
          this.online.flatMap((on, c) => (on ? [c] : [])),
          op.pick,
        ) as number;
        if (!this.#holdsVm(x)) this.#get(x, 'vm1');
        // One CPU runs one vCPU: another instance's is scheduled out first (VAC refuses the load otherwise).
        const prev = this.lastLoaded[cpu];
        if (prev !== undefined && prev !== op.i) {
          expectFailure(host, () => x.fake.load(cpu), 'EBUSY');
          this.#inst(prev).fake.put(cpu);
        }
        x.fake.load(cpu);
        this.lastLoaded[cpu] = op.i;
        return;
      }
      case 'unload': {
        const loaded = this.insts.flatMap((x, i) => [...x.fake.loaded].map((cpu) => [i, cpu] as const));
        const target = Run.#choose(loaded, op.pick);
        if (target === undefined) return;
        const [i, cpu] = target;
        this.#inst(i).fake.put(cpu);
        if (this.lastLoaded[cpu] === i) this.lastLoaded[cpu] = undefined;
        return;
      }
      case 'pmi': {
        for (const x of this.insts) x.fake.take();
        const r = host.raisePmi(op.cpu);
        const owner = this.lastLoaded[op.cpu];
        const o = owner === undefined ? undefined : this.#inst(owner).fake;
        expect(r.callbacks).toBe('vac');
        expect(r.state).toBe(o === undefined ? 0 : PERF_GUEST_ACTIVE);
        expect(r.attributedTo).toBe(o?.label(op.cpu));
        expect(r.ip).toBe(o?.ip(op.cpu));
        for (const x of this.insts) expect(x.fake.take()).toEqual(x.fake === o ? [`pmi:state:${op.cpu}`, `pmi:ip:${op.cpu}`, `pmi:exit:${op.cpu}`] : []);
        return;
      }
      case 'nmi': {
        const owner = this.lastLoaded[op.cpu];
        expect(host.raiseNmi(op.cpu)).toEqual(owner === undefined ? [] : [this.#inst(owner).fake.label(op.cpu)]);
        return;
      }
      case 'pi': {
        for (const [i, x] of this.insts.entries()) x.fake.blocked.set(op.cpu, [`kvm${i}/vm1/vcpu${op.cpu}`]);
        expect(host.raisePostedIntrWakeup(op.cpu)).toEqual(this.order.map((i) => `kvm${i}/vm1/vcpu${op.cpu}`));
        expect(this.vac.instances()).toEqual(this.order.map((i) => `kvm${i}`));
        return;
      }
      case 'tlb': {
        const x = this.#inst(op.i);
        if (this.svm) {
          // new_asid runs at VM entry, on the CPU where the instance's vCPU is loaded.
          const target = Run.#choose(this.#running(), op.pick);
          if (target === undefined) return;
          const [i, cpu] = target;
          const y = this.#inst(i);
          const t = this.#tag(y, i, op.vcpu);
          const g = y.fake.handle.resource(ASIDS).newAsid(cpu, t);
          expect(g.asid).toBeGreaterThanOrEqual(MIN_ASID);
          expect(g.asid).toBeLessThanOrEqual(MAX_ASID);
          expect(y.fake.handle.resource(ASIDS).isCurrent(cpu, g.generation)).toBe(true);
          y.asidTags.add(t);
          const held = this.vac.tryResource(ASIDS)?.cpuState(cpu)?.holders.map((h) => h.asid) ?? [];
          expect(new Set(held).size).toBe(held.length);
        } else {
          let want = 1;
          while (this.vpidSet.has(want)) want++;
          expect(x.fake.handle.resource(VPIDS).allocate({ instance: `kvm${op.i}`, vm: 1, vcpu: op.vcpu })).toBe(want);
          x.vpids.push(want);
          this.vpidSet.add(want);
        }
        return;
      }
      case 'tlbFree': {
        if (this.svm) {
          const target = Run.#choose(this.insts.flatMap((x) => [...x.asidTags].map((t) => [x, t] as const)), op.pick);
          if (target === undefined) return;
          const [x, t] = target;
          x.fake.handle.resource(ASIDS).release(t);
          x.asidTags.delete(t);
        } else {
          const target = Run.#choose(this.insts.flatMap((x) => x.vpids.map((vpid) => [x, vpid] as const)), op.pick);
          if (target === undefined) return;
          const [x, vpid] = target;
          x.fake.handle.resource(VPIDS).free(vpid);
          x.vpids.splice(x.vpids.indexOf(vpid), 1);
          this.vpidSet.delete(vpid);
        }
        return;
      }
      case 'tlbSteal': {
        const x = this.#inst(op.i);
        const other = this.#inst((op.i + 1) % NR_INSTANCES);
        if (this.svm) {
          const victim = this.#tag(other, (op.i + 1) % NR_INSTANCES, op.pick % 4);
          expectFailure(host, () => x.fake.handle.resource(ASIDS).newAsid(0, victim), 'EPERM');
        } else {
          const vpid = other.vpids[op.pick % Math.max(1, other.vpids.length)] ?? 1 + op.pick;
          if (x.vpids.includes(vpid)) return;
          expectFailure(host, () => x.fake.handle.resource(VPIDS).free(vpid), 'EPERM');
        }
        return;
      }
      case 'sev': {
        if (!this.svm) return;
        const x = this.#inst(op.i);
        const [min, max] = op.es ? SEV_RANGE.es : SEV_RANGE.sev;
        const free = (): number | undefined => {
          for (let a = min; a <= max; a++) if (!this.sevInUse.has(a) && !this.sevReclaim.has(a)) return a;
          return undefined;
        };
        let want = free();
        if (want === undefined && [...this.sevReclaim].some((a) => a >= min && a <= max)) {
          this.sevReclaim.clear(); // flush + recycle: every reclaimable ASID, both ranges
          this.sevFlushes++;
          want = free();
        }
        const t: VcpuTag = { instance: `kvm${op.i}`, vm: 2, vcpu: 0 };
        if (want === undefined) {
          expectFailure(host, () => x.fake.handle.resource(SEV_ASIDS).alloc(op.es, t), 'EBUSY');
        } else {
          expect(x.fake.handle.resource(SEV_ASIDS).alloc(op.es, t)).toBe(want);
          this.sevInUse.add(want);
          x.sev.push(want);
        }
        expect(this.vac.tryResource(SEV_ASIDS)?.state()).toMatchObject({ flushes: this.sevFlushes, recycles: this.sevFlushes });
        return;
      }
      case 'sevFree': {
        const target = Run.#choose(this.insts.flatMap((x) => x.sev.map((a) => [x, a] as const)), op.pick);
        if (target === undefined) return;
        const [x, a] = target;
        x.fake.handle.resource(SEV_ASIDS).free(a);
        x.sev.splice(x.sev.indexOf(a), 1);
        this.sevInUse.delete(a);
        this.sevReclaim.add(a);
        return;
      }
      case 'sevSteal': {
        if (!this.svm) return;
        const x = this.#inst(op.i);
        const other = this.#inst((op.i + 1) % NR_INSTANCES);
        const a = other.sev[op.pick % Math.max(1, other.sev.length)];
        if (a === undefined) return;
        expectFailure(host, () => x.fake.handle.resource(SEV_ASIDS).free(a), 'EPERM');
        return;
      }
      case 'uretAdd': {
        const x = this.#inst(op.i);
        const msr = SYSCALL_MSRS[op.m] as number;
        let slot = this.slots.findIndex((s) => s?.msr === msr);
        if (slot >= 0) (this.slots[slot] as { refs: number }).refs++;
        else {
          slot = this.slots.findIndex((s) => s === undefined);
          if (slot < 0) slot = this.slots.length;
          this.slots[slot] = { msr, refs: 1 };
        }
        expect(x.fake.handle.addUserReturnMsr(msr)).toBe(slot);
        x.msrs.push(msr);
        return;
      }
      case 'uretSet': {
        // kvm_set_user_return_msr runs with the vCPU loaded on this CPU, for a slot the module registered.
        const target = Run.#choose(this.#running(), op.pick);
        if (target === undefined) return;
        const [i, cpu] = target;
        const x = this.#inst(i);
        if (x.msrs.length === 0) this.step({ k: 'uretAdd', i, m: op.m });
        const msr = Run.#choose(x.msrs, op.m) as number;
        const slot = x.fake.handle.findUserReturnMsr(msr);
        expect(x.fake.handle.setUserReturnMsr(cpu, slot, op.value, ALL_ONES)).toBe(0);
        this.guest[cpu]?.set(msr, op.value);
        return;
      }
      case 'ret': {
        this.#inst(0).fake.handle.returnToUser(op.cpu);
        this.guest[op.cpu]?.clear();
        return;
      }
      case 'suspend': {
        for (const x of this.insts) x.fake.take();
        host.suspend();
        for (const x of this.insts) expect(x.fake.take()[0]).toBe('kickAll:suspend');
        for (let cpu = 1; cpu < NR_CPUS; cpu++) this.lastLoaded[cpu] = undefined;
        if (this.count > 0) this.#dropAll();
        expect(hardwareOn(host)).toEqual(Array.from({ length: NR_CPUS }, () => false));
        expect(checkInvariants(host)).toEqual([]);
        const fail = op.failCpu !== undefined && this.online[op.failCpu] === true && this.count > 0 ? op.failCpu : undefined;
        if (fail !== undefined) host.hardware.injectEnableFault(fail, 'once');
        const w = host.warnings.length;
        host.resume();
        if (fail !== undefined) {
          expect(host.warnings.slice(w).map((x) => x.message)).toContain(`Error taking CPU${fail} up: -5`);
          this.online[fail] = false;
        }
        return;
      }
      case 'reattach': {
        const x = this.#inst(op.i);
        const busy = this.#holdsVm(x) || x.fake.loaded.size > 0 || x.vpids.length > 0 || x.asidTags.size > 0 || x.sev.length > 0;
        if (busy) return;
        x.fake.handle.detach();
        this.count -= x.refs.get('') ?? 0;
        if (this.count === 0) this.#dropAll();
        for (const msr of x.msrs) {
          const slot = this.slots.findIndex((s) => s?.msr === msr);
          const s = this.slots[slot] as { refs: number };
          if (--s.refs === 0) {
            this.slots[slot] = undefined;
            for (const g of this.guest) g.delete(msr);
          }
        }
        this.insts[op.i] = this.#newInstance(op.i);
        this.order = [...this.order.filter((i) => i !== op.i), op.i];
        return;
      }
    }
  }

  /** Everything the model predicts, after every step. */
  check(): void {
    const host = this.host;
    const vac = this.vac;
    expect(checkInvariants(host)).toEqual([]);
    expect(vac.usageCount).toBe(this.count);
    expect(host.cpus.map((c) => c.online)).toEqual(this.online);
    const want = this.online.map((on) => on && this.count > 0);
    expect(vac.cpus().map((c) => c.enabled)).toEqual(want);
    expect(hardwareOn(host)).toEqual(want);
    expect(host.cpus.map((c) => vac.runningInstance(c.id))).toEqual(this.lastLoaded.map((i) => (i === undefined ? undefined : `kvm${i}`)));
    for (const c of host.cpus) {
      const g = this.guest[c.id] as Map<number, bigint>;
      const got = SYSCALL_MSRS.map((m) => c.rdmsrSafe(m));
      expect(got).toEqual(SYSCALL_MSRS.map((m, k) => g.get(m) ?? this.boot[c.id]?.[k]));
    }
  }

  /** Release everything, detach every instance, and check that nothing is left; then unload VAC. */
  finish(): void {
    const host = this.host;
    const vac = this.vac;
    for (const [i, x] of this.insts.entries()) {
      this.#putAll(x, i);
      for (const vpid of x.vpids) x.fake.handle.resource(VPIDS).free(vpid);
      for (const t of x.asidTags) x.fake.handle.resource(ASIDS).release(t);
      for (const a of x.sev) x.fake.handle.resource(SEV_ASIDS).free(a);
      for (const [h, n] of x.refs) if (h !== '') for (let k = 0; k < n; k++) x.fake.handle.disableVirtualization(h);
      x.fake.handle.detach();
      expect(checkInvariants(host)).toEqual([]);
    }
    expect(vac.instances()).toEqual([]);
    expect(vac.usageCount).toBe(0);
    expect(vac.usageHolders()).toEqual([]);
    expect(vac.cpus().map((c) => c.enabled)).toEqual(Array.from({ length: NR_CPUS }, () => false));
    expect(hardwareOn(host)).toEqual(Array.from({ length: NR_CPUS }, () => false));
    expect((vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([]);
    for (const c of host.cpus) expect(vac.tryResource(ASIDS)?.cpuState(c.id)?.holders ?? []).toEqual([]);
    expect(vac.tryResource(SEV_ASIDS)?.state()?.inUse ?? []).toEqual([]);
    expect(vac.userReturnSlots()).toEqual([]);
    for (const c of host.cpus) {
      expect(vac.userReturnState(c.id).registered).toBe(false);
      expect(SYSCALL_MSRS.map((m) => c.rdmsrSafe(m))).toEqual(this.boot[c.id]);
    }
    for (const c of host.cpus) expect(vac.runningInstance(c.id)).toBeUndefined();
    expect(checkInvariants(host)).toEqual([]);
    host.rmmod('vac');
    expect(hooksOf(host)).toEqual(this.baseHooks);
    expect(checkInvariants(host)).toEqual([]);
  }
}

describe.each(VENDORS)('VAC properties on $name', (v: VendorSetup) => {
  test('random operation sequences keep every invariant, and everything is released at the end', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 5, maxLength: 60, size: 'max' }), (ops) => {
        const run = new Run(v);
        run.check();
        for (const op of ops) {
          run.step(op);
          run.check();
        }
        run.finish();
      }),
      { numRuns: 150 },
    );
  }, 30_000);
});
