/**
 * Rolling upgrade, the reason the RFC exists: "deploy fixes, mitigations, and/or new features without
 * having to drain all VMs from the host".
 *
 * A 16-CPU Intel host runs 24 VMs on kvm0. Each VM is its own VMM process with its own guest program, which
 * counts in its own memory and prints the count through port I/O, on its own vCPU thread. A fixed kvm1 is
 * loaded next to kvm0, and every VM is moved to it, one at a time, by user-space save/restore through the
 * ABI only (vmm.ts `saveVm` / `restoreVm`): stop the vCPU thread, save the VM (the pending I/O completed with
 * immediate_exit + KVM_RUN → EINTR, then kvmclock and the vCPU's whole state), create a VM on /dev/kvm1 over the
 * *same* guest memory (handed over, not copied) and restore the vCPU into it, start a new thread, close the old VM. The guest never notices: its counter goes on from where it
 * stopped. Meanwhile `rmmod kvm0` is refused; once the last VM has left, it succeeds.
 *
 * The whole run is recorded and written as a Chrome trace (open it in https://ui.perfetto.dev) and as an SVG
 * timeline, under out/ next to this file.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  O_RDWR,
  checkInvariants,
  createHost,
  isKernelError,
  recordEvents,
  renderTimelineSvg,
  toChromeTrace,
  vacOf,
  type Mapping,
  type Process,
  type Thread,
  type TimelineAnnotation,
} from '@vac/core';
import {
  Asm16,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_GET_API_VERSION,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KvmRunView,
  asm16,
  kvm,
  kvmInstance,
  makeKvmRegs,
  makeKvmSregs,
  restoreVm,
  saveVm,
  vcpuOf,
  type KvmInstance,
  type SavedVm,
  type Vcpu,
} from '@vac/kvm';
import { VPIDS, intel } from '@vac/vmx';
import { table } from '@vac/example-support';

const problems: string[] = [];
const expect = (ok: boolean, what: string): void => {
  if (!ok) problems.push(what);
};

// ---- the host ---------------------------------------------------------------------------------------

const CPUS = 16;
const NR_VMS = 24;
const host = createHost({ cpus: CPUS, hardware: intel() });
const recorder = recordEvents(host, { exclude: ['fd:open', 'fd:close'] });
const annotations: TimelineAnnotation[] = [];
const annotate = (label: string): void => {
  annotations.push({ at: host.events.seq, label });
};
const kvm0 = host.modprobe(kvm({ postfix: '0', version: '6.12' }));
const inst0 = kvmInstance(host, 'kvm0');

/** The serial port every guest prints on (COM1). */
const COM1 = 0x3f8;
/** Guest-physical address of the one memory slot; the counter lives at +0x800. */
const GUEST_BASE = 0x1000;
const COUNTER = 0x800;

/**
 * The guest: count in memory, print the count on COM1 (a 16-bit `out`), spin a while, repeat.
 * `busy` (the spin length) differs per VM, so each runs its own program at its own pace. 18 bytes of
 * real-mode code, assembled by asm16:
 *
 *     1000: mov dx, 0x3f8
 *     1003: inc word [0x1800]
 *     1007: mov ax, [0x1800]
 *     100a: out dx, ax
 *     100b: mov cx, busy
 *     100e: loop 100e
 *     1010: jmp 1003
 */
function guestProgram(busy: number): number[] {
  const counter = GUEST_BASE + COUNTER;
  return asm16({ org: GUEST_BASE })
    .mov('dx', COM1)
    .label('top').inc(Asm16.word(counter)).mov('ax', Asm16.mem(counter)).out('dx', 'ax')
    .mov('cx', busy).label('wait').loop('wait')
    .jmp('top')
    .bytes();
}

/** One VMM process with one VM of one vCPU, as user space sees it. */
interface GuestVm {
  readonly n: number;
  readonly proc: Process;
  readonly cpu: number;
  /** The guest memory, mapped once in the VMM and handed from module to module. */
  readonly mem: Mapping;
  /** Every value the guest printed, with the tick and module. */
  readonly printed: Array<{ readonly value: number; readonly tick: number; readonly dev: string }>;
  /** Ticks in which its vCPU executed guest instructions, by module. */
  readonly ran: Map<number, string>;
  /** The current incarnation on a module. */
  on: Incarnation;
  moveTick: number;
  vpids: string;
}

/** The VM on one module: its fds, its kvm_run mapping, its vCPU thread. */
interface Incarnation {
  readonly dev: string;
  readonly sys: number;
  readonly vm: number;
  readonly vcpu: number;
  readonly runMap: Mapping;
  readonly run: KvmRunView;
  /** The module's vCPU (introspection only, for the ticks it ran). */
  readonly model: Vcpu;
  thread: Thread | undefined;
  stop: boolean;
  lastInstructions: number;
}

/** Open /dev/`dev`, create a VM over the VMM's existing guest memory and one vCPU (registers not yet set). */
function createOn(g: Omit<GuestVm, 'on' | 'moveTick' | 'vpids'>, dev: string): Incarnation {
  const p = g.proc;
  const sys = p.open(`/dev/${dev}`, O_RDWR);
  expect(p.ioctl(sys, KVM_GET_API_VERSION, 0) === 12, `${dev}: KVM_GET_API_VERSION is 12`);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: GUEST_BASE, memory_size: g.mem.length, userspace_addr: g.mem.addr });
  const vcpu = p.ioctl(vm, KVM_CREATE_VCPU, 0);
  const runMap = p.mmap(vcpu, p.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0));
  const model = vcpuOf(p, vcpu);
  return { dev, sys, vm, vcpu, runMap, run: new KvmRunView(runMap.bytes.buffer, runMap.bytes.byteOffset), model, thread: undefined, stop: false, lastInstructions: 0 };
}

/** The VM restored on /dev/`dev` from `saved`, over the VMM's existing guest memory. */
function restoredOn(g: Omit<GuestVm, 'on' | 'moveTick' | 'vpids'>, dev: string, saved: SavedVm): Incarnation {
  const p = g.proc;
  const r = restoreVm(p, `/dev/${dev}`, saved, { slots: [{ slot: 0, flags: 0, guest_phys_addr: GUEST_BASE, memory_size: g.mem.length, userspace_addr: g.mem.addr }] });
  expect(p.ioctl(r.sys, KVM_GET_API_VERSION, 0) === 12, `${dev}: KVM_GET_API_VERSION is 12`);
  const v = r.vcpus[0];
  if (v === undefined) throw new Error(`no vCPU of ${p.name} on ${dev}`);
  return { dev, sys: r.sys, vm: r.vm, vcpu: v.fd, runMap: v.runMapping, run: v.run, model: vcpuOf(p, v.fd), thread: undefined, stop: false, lastInstructions: 0 };
}

/** Start the vCPU thread: KVM_RUN, print what the guest wrote to COM1, repeat until told to stop. */
function startThread(g: GuestVm): void {
  const on = g.on;
  on.thread = host.scheduler.spawn(g.proc, { cpu: g.cpu, name: `${g.proc.name}/vcpu0@${on.dev}` }, function* (t) {
    for (;;) {
      if (on.stop) return;
      try {
        yield* t.ioctl(on.vcpu, KVM_RUN, 0);
      } catch (e) {
        if (isKernelError(e, 'EINTR')) continue; // a signal: look at the stop flag
        throw e;
      }
      const run = on.run;
      if (run.exit_reason !== KVM_EXIT_IO || run.io.direction !== KVM_EXIT_IO_OUT || run.io.port !== COM1 || run.io.size !== 2) {
        problems.push(`vm${g.n}: unexpected exit ${run.exit_reason} on ${on.dev}`);
        return;
      }
      const o = run.io.data_offset;
      g.printed.push({ value: (run.bytes[o] ?? 0) | ((run.bytes[o + 1] ?? 0) << 8), tick: host.events.tick, dev: on.dev });
      yield* t.yield(); // the VMM's own work takes the rest of the time slice
    }
  });
}

/** Run `n` ticks; after each, note which VMs executed guest code and on which module. */
function step(n: number): void {
  for (let i = 0; i < n; i++) {
    host.scheduler.tick();
    for (const g of vms) {
      const on = g.on;
      const now = on.model.stats.instructions;
      if (now > on.lastInstructions) g.ran.set(host.events.tick, on.dev);
      on.lastInstructions = now;
    }
  }
}

const vpidOf = (g: GuestVm, dev: string): number | undefined =>
  vacOf(host)
    ?.resource(VPIDS)
    .holders()
    .find((h) => h.holder.startsWith(`${dev}/`) && h.holder === `${g.on.model.label}`)?.vpid;

// ---- 24 VMs on kvm0 -------------------------------------------------------------------------------

const vms: GuestVm[] = [];
for (let n = 1; n <= NR_VMS; n++) {
  const cpu = (n - 1) % CPUS;
  const proc = host.spawn({ uid: 1000, groups: ['kvm'], name: `vmm${String(n).padStart(2, '0')}`, cpu });
  const mem = proc.mmapAnonymous(0x1000);
  mem.bytes.set(guestProgram(900 + 61 * n));
  const base = { n, proc, cpu, mem, printed: [], ran: new Map<number, string>() };
  const on = createOn(base, 'kvm0');
  const sregs = makeKvmSregs();
  proc.ioctl(on.vcpu, KVM_GET_SREGS, sregs);
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  proc.ioctl(on.vcpu, KVM_SET_SREGS, sregs);
  proc.ioctl(on.vcpu, KVM_SET_REGS, makeKvmRegs({ rip: BigInt(GUEST_BASE), rflags: 2n }));
  const g: GuestVm = { ...base, on, moveTick: -1, vpids: '' };
  g.vpids = String(vpidOf(g, 'kvm0') ?? '?');
  vms.push(g);
  startThread(g);
}
const WARMUP = 12;
step(WARMUP);

// ---- kvm1: the fixed image, next to kvm0 --------------------------------------------------------

const kvm1 = host.modprobe(kvm({ postfix: '1', version: '6.12-l1tf-fix' }), { vmentry_l1d_flush: 'always' });
const inst1 = kvmInstance(host, 'kvm1');
annotate('kvm1 loaded');
const lsmodBefore = host.lsmod();
step(4); // kvm1 sits idle next to kvm0 for a moment

// ---- move every VM, one at a time ------------------------------------------------------------------

const BETWEEN = 3; // ticks every VM runs between two moves
let refusals = 0;
let stopTicksTotal = 0;
for (const g of vms) {
  const p = g.proc;
  const old = g.on;
  if (g.n === 1 || g.n === NR_VMS) annotate(`${g.n === 1 ? 'first' : 'last'} move (vm${String(g.n).padStart(2, '0')})`);
  // 1. Stop the vCPU thread: a signal makes KVM_RUN return EINTR; the thread sees its stop flag and exits.
  old.stop = true;
  old.thread?.signal();
  const stopStart = host.events.tick;
  while (old.thread?.alive === true) step(1);
  stopTicksTotal += host.events.tick - stopStart;
  g.moveTick = host.events.tick;
  // 2. Save the whole VM (vmm.ts saveVm): the `out` its last exit reported is completed first (immediate_exit = 1:
  //    KVM_RUN finishes it and returns EINTR without entering the guest, leaving exit_reason as it was), then
  //    kvmclock and the vCPU's state: CPUID, registers, system registers, XSAVE, events, MSRs, … .
  const lastExit = old.run.exit_reason;
  const saved = saveVm(p, { sys: old.sys, vm: old.vm, vcpus: [{ id: 0, fd: old.vcpu, run: old.run }] });
  expect(old.run.exit_reason === lastExit, `vm${g.n}: immediate_exit leaves exit_reason as the last exit left it`);
  expect(saved.vcpus[0]?.regs.rip !== undefined, `vm${g.n}: the vCPU was saved`);
  // 3. A VM on /dev/kvm1 over the same guest memory (same userspace_addr: nothing is copied), with the vCPU
  //    restored into it (vmm.ts restoreVm).
  const next = restoredOn(g, 'kvm1', saved);
  // 4. Close the old VM: its fds and its kvm_run mapping (which also pins the vCPU file).
  p.munmap(old.runMap.addr, old.runMap.length);
  p.close(old.vcpu);
  p.close(old.vm);
  p.close(old.sys);
  g.on = next;
  g.vpids += ` → ${vpidOf(g, 'kvm1') ?? '?'}`;
  startThread(g);
  // kvm0 cannot go while any VM is left on it.
  const left = inst0.vms.size;
  if (left > 0) {
    try {
      host.rmmod('kvm0');
      problems.push(`rmmod kvm0 succeeded with ${left} VMs left`);
    } catch (e) {
      if (isKernelError(e, 'EWOULDBLOCK')) {
        if (refusals === 0) annotate('rmmod kvm0: EWOULDBLOCK');
        refusals++;
      }
      else problems.push(`rmmod kvm0 with ${left} VMs left: ${String(e)} (expected EWOULDBLOCK)`);
    }
  }
  const bad = checkInvariants(host);
  expect(bad.length === 0, `after moving vm${g.n}: ${bad.map((v) => v.message).join('; ')}`);
  step(BETWEEN);
}

// ---- kvm0 is empty: unload it --------------------------------------------------------------------

let unloaded = false;
try {
  host.rmmod('kvm0');
  unloaded = true;
  annotate('rmmod kvm0');
} catch (e) {
  problems.push(`rmmod kvm0 after the last move: ${String(e)}`);
}
const TAIL = 12;
step(TAIL);
const lastTick = host.events.tick;

// Stop every thread (as at shutdown), then check each guest's story.
for (const g of vms) {
  g.on.stop = true;
  g.on.thread?.signal();
}
host.scheduler.runUntilIdle(10);

// ---- checks --------------------------------------------------------------------------------------

const vac = vacOf(host);
let maxStopped = 0;
for (const g of vms) {
  const label = `vm${g.n}`;
  const values = g.printed.map((p) => p.value);
  expect(
    values.every((v, i) => v === i + 1),
    `${label}: the counter runs 1, 2, 3, … without a gap or a repeat (got …${values.slice(-5).join(',')})`,
  );
  const before = g.printed.filter((p) => p.dev === 'kvm0');
  const after = g.printed.filter((p) => p.dev === 'kvm1');
  expect(before.length > 0 && after.length > 0, `${label} printed on both modules`);
  expect((after[0]?.value ?? 0) === (before.at(-1)?.value ?? -1) + 1, `${label}: the first count on kvm1 follows the last on kvm0`);
  // The guest's writes on kvm1 land in the VMM's own mapping: the memory was handed over, not copied.
  const inMemory = (g.mem.bytes[COUNTER] ?? 0) | ((g.mem.bytes[COUNTER + 1] ?? 0) << 8);
  const last = values.at(-1) ?? 0;
  expect(inMemory === last || inMemory === last + 1, `${label}: the counter in the VMM's memory (${inMemory}) is the guest's (${last})`);
  const slots = [...inst1.vms].find((v) => v.owner === g.proc)?.memslots.list() ?? [];
  expect(slots.length === 1 && slots[0]?.userspaceAddr === g.mem.addr, `${label}: kvm1's memslot is the VMM's original mapping`);
  const ticks0 = [...g.ran].filter(([, d]) => d === 'kvm0').map(([t]) => t);
  const ticks1 = [...g.ran].filter(([, d]) => d === 'kvm1').map(([t]) => t);
  const gap = Math.min(...ticks1) - Math.max(...ticks0) - 1;
  maxStopped = Math.max(maxStopped, gap);
  expect(gap <= 1, `${label} was stopped ${gap} ticks (at most one move, 1 tick)`);
  // Outside its own move, the VM ran in every tick.
  for (let t = 1; t <= lastTick; t++) {
    if (t !== g.moveTick && !g.ran.has(t)) problems.push(`${label} did not run in tick ${t}, which is not its move`);
  }
}
expect(refusals === NR_VMS - 1, `rmmod kvm0 refused ${refusals} times (expected ${NR_VMS - 1}: after every move but the last)`);
expect(unloaded && host.lsmod().every((m) => m.name !== 'kvm0'), 'kvm0 unloads once empty');
expect(inst1.vms.size === NR_VMS, `kvm1 runs all ${NR_VMS} VMs`);
expect(vac?.usageHolders().every(([h]) => h.startsWith('kvm1')) === true, 'every usage reference left is kvm1’s');
const finalBad = checkInvariants(host);
expect(finalBad.length === 0, `invariants at the end: ${finalBad.map((v) => v.message).join('; ')}`);

// ---- the account ---------------------------------------------------------------------------------

console.log(`Rolling upgrade on a ${CPUS}-CPU Intel host: ${NR_VMS} VMs moved from kvm0 to kvm1 through the /dev/kvm ABI\n`);
console.log('$ lsmod   (after loading kvm1)');
table(lsmodBefore.map((m) => ({ Module: m.name, Version: m.version ?? '', 'Used by': `${m.refcount} ${m.usedBy.join(',')}`.trim() })));

const SCALE = 2;
const bar = (g: GuestVm): string => {
  let s = '';
  for (let t = 1; t <= lastTick; t += SCALE) {
    const group = Array.from({ length: SCALE }, (_, i) => t + i).filter((x) => x <= lastTick);
    const on = group.map((x) => g.ran.get(x));
    s += on.some((d) => d === undefined) ? '.' : on.some((d) => d === 'kvm1') ? '#' : '=';
  }
  return s;
};
const span = (ticks: number[]): string => (ticks.length === 0 ? '-' : `${Math.min(...ticks)}–${Math.max(...ticks)}`);
console.log(`\nPer VM (ticks 1–${lastTick}; timeline: one character = ${SCALE} ticks, = on kvm0, . stopped, # on kvm1)`);
table(
  vms.map((g) => {
    const t0 = [...g.ran].filter(([, d]) => d === 'kvm0').map(([t]) => t);
    const t1 = [...g.ran].filter(([, d]) => d === 'kvm1').map(([t]) => t);
    const before = g.printed.filter((p) => p.dev === 'kvm0');
    return {
      VM: `vm${String(g.n).padStart(2, '0')}`,
      CPU: g.cpu,
      'on kvm0': span(t0),
      'moved at': g.moveTick,
      stopped: Math.min(...t1) - Math.max(...t0) - 1,
      'on kvm1': span(t1),
      counter: `${before.at(-1)?.value ?? 0} → ${g.printed.find((p) => p.dev === 'kvm1')?.value ?? '?'} … ${g.printed.at(-1)?.value ?? 0}`,
      VPID: g.vpids,
      timeline: bar(g),
    };
  }),
);

const sum = (inst: KvmInstance | undefined, f: (v: Vcpu) => number): number => {
  let n = 0;
  for (const v of inst?.allVcpus() ?? []) n += f(v);
  return n;
};
console.log('\nTotals');
table([
  { What: 'VMs moved kvm0 → kvm1', Value: `${vms.filter((g) => g.on.dev === 'kvm1').length} / ${NR_VMS}` },
  { What: 'ticks simulated', Value: lastTick },
  { What: 'longest stop of one VM (ticks)', Value: maxStopped },
  { What: 'ticks spent stopping threads, all moves', Value: stopTicksTotal },
  { What: 'counts printed on kvm0 / kvm1', Value: `${vms.reduce((a, g) => a + g.printed.filter((p) => p.dev === 'kvm0').length, 0)} / ${vms.reduce((a, g) => a + g.printed.filter((p) => p.dev === 'kvm1').length, 0)}` },
  { What: 'guest instructions on kvm1 (its live vCPUs)', Value: sum(inst1, (v) => v.stats.instructions) },
  { What: 'L1D flushes on kvm1 (vmentry_l1d_flush=always)', Value: sum(inst1, (v) => v.vendor.stats['l1dFlushes'] ?? 0) },
  { What: '`rmmod kvm0` refused (EWOULDBLOCK)', Value: refusals },
  { What: '`rmmod kvm0` after the last move', Value: unloaded ? 'ok' : 'FAILED' },
  { What: 'VAC usage count / holders', Value: `${vac?.usageCount ?? 0} (${vac?.usageHolders().length ?? 0} holders, all kvm1)` },
]);
console.log('\n$ lsmod   (at the end)');
table(host.lsmod().map((m) => ({ Module: m.name, Version: m.version ?? '', 'Used by': `${m.refcount} ${m.usedBy.join(',')}`.trim() })));

// ---- the pictures: a Chrome trace and an SVG timeline of the whole run ---------------------------------

recorder.stop();
const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, 'out');
mkdirSync(outDir, { recursive: true });
const events = recorder.events();
const traceFile = join(outDir, 'rolling-upgrade.trace.json');
writeFileSync(traceFile, JSON.stringify(toChromeTrace(events, { cpus: CPUS, title: 'rolling upgrade: 24 VMs from kvm0 to kvm1' })));
const svgFile = join(outDir, 'rolling-upgrade.svg');
const svg = renderTimelineSvg(events, {
  cpus: CPUS,
  title: `Rolling upgrade: ${NR_VMS} VMs move from kvm0 to kvm1 one at a time, then kvm0 unloads`,
  annotations,
  width: 1400,
  flushes: false,
});
writeFileSync(svgFile, svg);
// `VAC_PICTURES_DIR` puts a copy where the guides embed it (`npx --yes pnpm@10.34.9 pictures`).
const picturesDir = process.env['VAC_PICTURES_DIR'];
if (picturesDir !== undefined) {
  mkdirSync(picturesDir, { recursive: true });
  writeFileSync(join(picturesDir, 'rolling-upgrade.svg'), svg);
}
const root = resolve(here, '../..');
console.log(`\nTrace (${events.length} events; open in https://ui.perfetto.dev): ${relative(root, traceFile)}`);
console.log(`Timeline picture: ${relative(root, svgFile)}`);

if (problems.length > 0) {
  console.error(`\nFAILED:\n- ${problems.slice(0, 30).join('\n- ')}${problems.length > 30 ? `\n- … and ${problems.length - 30} more` : ''}`);
  process.exit(1);
}
console.log(`\nAll checks hold: every guest kept counting across its move, no VM stopped longer than ${maxStopped} tick, kvm0 refused to unload until empty, invariants clean.`);
