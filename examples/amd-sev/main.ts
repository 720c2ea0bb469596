/**
 * The quickstart on an AMD host, with SEV: kvm0 and kvm1 share VAC's SEV ASID space.
 *
 * The host's firmware reports a deliberately small SEV range (CPUID 0x8000001F: max SEV ASID 6, min SEV ASID
 * 4), so SEV guests get ASIDs 4–6 and SEV-ES guests 1–3. VMs of both modules take them through
 * KVM_MEMORY_ENCRYPT_OP (KVM_SEV_INIT / KVM_SEV_ES_INIT) from the one allocator in VAC: the range runs out
 * across modules (EBUSY), a VM's ASID is not reused when the VM dies but only after a flush (WBINVD on every
 * CPU + the firmware's DF_FLUSH), which the next allocation that finds the range full performs. In the RFC
 * each module kept its own bitmap, and two modules could hand out the same ASID. Every VM then runs real
 * guest code, and VAC's per-CPU ASID state shows the plain VMs' ASIDs above the SEV range.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { O_RDWR, checkInvariants, createHost, isKernelError, vacOf, type Process } from '@vac/core';
import {
  KVM_CREATE_VM,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SEV_ES_INIT,
  KVM_SEV_INIT,
  asm16,
  createRealModeVcpu,
  kvm,
  makeKvmSevCmd,
  vmOf,
} from '@vac/kvm';
import { ASIDS, SEV_ASIDS, amd, isAmdHardware } from '@vac/svm';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

// 1. An AMD host with a small SEV range, and two KVM modules.
const host = createHost({ cpus: 4, hardware: amd({ maxSevAsid: 6, minSevAsid: 4 }) });
const hw = host.hardware;
if (!isAmdHardware(hw)) throw new Error('expected AMD hardware');
host.modprobe(kvm({ postfix: '0', version: '6.12' }));
host.modprobe(kvm({ postfix: '1', version: '6.12-sev-fix' }));
const vac = vacOf(host);
if (vac === undefined) throw new Error('vac is not loaded');

/** The quickstart's guest: count down from 4096, print the digit in BL, halt. */
const GUEST = asm16()
  .mov('cx', 0x1000).label('wait').loop('wait')
  .mov('al', 'bl').add('al', '0'.charCodeAt(0))
  .mov('dx', 0x3f8).out('dx', 'al')
  .hlt()
  .bytes();

/** One VM, owned by its own VMM process (killing the process is how the VM dies). */
interface Guest {
  readonly name: string;
  readonly dev: string;
  readonly proc: Process;
  readonly sys: number;
  readonly vm: number;
  kind: 'plain' | 'SEV' | 'SEV-ES';
  asid: number | string;
  alive: boolean;
}
const guests: Guest[] = [];

function newVm(name: string, dev: string): Guest {
  const proc = host.spawn({ uid: 1000, groups: ['kvm'], name });
  const sys = proc.open(`/dev/${dev}`, O_RDWR);
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  const g: Guest = { name, dev, proc, sys, vm, kind: 'plain', asid: '-', alive: true };
  guests.push(g);
  return g;
}

/** KVM_MEMORY_ENCRYPT_OP(KVM_SEV_INIT or KVM_SEV_ES_INIT) on the VM fd: `ok` or the errno. */
function sevInit(g: Guest, es: boolean): string {
  const cmd = makeKvmSevCmd({ id: es ? KVM_SEV_ES_INIT : KVM_SEV_INIT });
  try {
    g.proc.ioctl(g.vm, KVM_MEMORY_ENCRYPT_OP, cmd);
  } catch (e) {
    if (isKernelError(e)) return e.code;
    throw e;
  }
  g.kind = es ? 'SEV-ES' : 'SEV';
  g.asid = vac?.resource(SEV_ASIDS).state().inUse.find((u) => u.holder === `${g.dev}/vm${vmNumber(g)}`)?.asid ?? '?';
  return 'ok';
}

/** The VM's number within its module (`kvm0/vm3` → 3), as the module's introspection shows it. */
function vmNumber(g: Guest): number {
  return vmOf(g.proc, g.vm).id;
}

const sevLine = (): { inUse: string; awaiting: string; flushes: string } => {
  const s = vac.resource(SEV_ASIDS).state();
  return {
    inUse: s?.inUse.map((u) => `${u.asid}=${u.holder}`).join(' ') || '-',
    awaiting: s?.awaitingReclaim.join(',') || '-',
    flushes: `${s?.flushes ?? 0}/${s?.recycles ?? 0}`,
  };
};
const steps: Array<Record<string, string | number>> = [];
const step = (what: string, result: string): void => {
  const s = sevLine();
  steps.push({ '#': steps.length + 1, Step: what, Result: result, 'SEV ASIDs in use': s.inUse, 'awaiting flush': s.awaiting, 'flushes/recycles': s.flushes });
};
const wbinvd = (): number => host.cpus.reduce((a, c) => a + hw.counters(c.id).wbinvd, 0);

// 2. SEV guests on both modules until the SEV range [4, 6] runs out.
const a = newVm('sev-a', 'kvm0');
const b = newVm('sev-b', 'kvm1');
const c = newVm('sev-c', 'kvm0');
const d = newVm('sev-d', 'kvm1');
const rA = sevInit(a, false);
step('kvm0: sev-a KVM_SEV_INIT', `${rA} → ASID ${a.asid}`);
const rB = sevInit(b, false);
step('kvm1: sev-b KVM_SEV_INIT', `${rB} → ASID ${b.asid}`);
const rC = sevInit(c, false);
step('kvm0: sev-c KVM_SEV_INIT', `${rC} → ASID ${c.asid}`);
const rD1 = sevInit(d, false);
step('kvm1: sev-d KVM_SEV_INIT', rD1);
expect(rA === 'ok' && rB === 'ok' && rC === 'ok', 'three SEV VMs on two modules get ASIDs');
expect(new Set([a.asid, b.asid, c.asid]).size === 3 && [a.asid, b.asid, c.asid].every((x) => typeof x === 'number' && x >= 4 && x <= 6), 'they hold three different ASIDs of 4–6');
expect(rD1 === 'EBUSY', `the fourth SEV VM gets EBUSY: the range is shared (got ${rD1})`);

// 3. sev-a's VMM dies: its ASID waits for a flush; the next SEV_INIT that finds the range full flushes.
const wb0 = wbinvd();
a.proc.kill();
a.alive = false;
step('sev-a\'s VMM is killed', `ASID ${a.asid} freed to the reclaim bitmap`);
expect(vac.resource(SEV_ASIDS).state().awaitingReclaim.includes(a.asid as number) === true, "sev-a's ASID awaits reclaim, not reusable yet");
const wb1 = wbinvd();
const rD2 = sevInit(d, false);
step('kvm1: sev-d KVM_SEV_INIT again', `${rD2} → ASID ${d.asid} (after WBINVD on all CPUs + DF_FLUSH)`);
expect(rD2 === 'ok' && d.asid === a.asid, `sev-d gets sev-a's recycled ASID ${a.asid} (got ${rD2}, ${d.asid})`);
expect((vac.resource(SEV_ASIDS).state().flushes ?? 0) === 1 && (vac.resource(SEV_ASIDS).state().recycles ?? 0) === 1, 'exactly one flush and one recycle');
expect(wb1 - wb0 === host.cpus.length && wbinvd() - wb1 === host.cpus.length, 'a WBINVD on every CPU when the VM died (sev_vm_destroy) and again for the flush');

// 4. SEV-ES guests: ASIDs 1–3. A dead VM's ASID is skipped while others are free.
const e1 = newVm('es-1', 'kvm0');
const e2 = newVm('es-2', 'kvm1');
const rE1 = sevInit(e1, true);
const rE2 = sevInit(e2, true);
step('kvm0 es-1, kvm1 es-2: KVM_SEV_ES_INIT', `${rE1}, ${rE2} → ASIDs ${e1.asid}, ${e2.asid}`);
e1.proc.kill();
e1.alive = false;
const e3 = newVm('es-3', 'kvm0');
const rE3 = sevInit(e3, true);
step('es-1 dies; kvm0 es-3 KVM_SEV_ES_INIT', `${rE3} → ASID ${e3.asid} (${e1.asid} not reused before a flush)`);
const e4 = newVm('es-4', 'kvm1');
const rE4 = sevInit(e4, true);
step('kvm1 es-4 KVM_SEV_ES_INIT', `${rE4} → ASID ${e4.asid} (range full: flush, recycle)`);
const e5 = newVm('es-5', 'kvm0');
const rE5 = sevInit(e5, true);
/** A VMM that cannot get its SEV-ES guest gives up and exits. */
function es5Exits(): void {
  e5.proc.kill();
  e5.alive = false;
}
step('kvm0 es-5 KVM_SEV_ES_INIT', `${rE5} (its VMM gives up and exits)`);
es5Exits();
expect(rE1 === 'ok' && rE2 === 'ok' && e1.asid === 1 && e2.asid === 2, 'SEV-ES VMs take ASIDs 1 and 2');
expect(rE3 === 'ok' && e3.asid === 3, "es-3 gets 3, not es-1's freed 1");
expect(rE4 === 'ok' && e4.asid === 1, "es-4 finds the range full, flushes and gets es-1's 1");
expect(rE5 === 'EBUSY', `es-5 gets EBUSY: all SEV-ES ASIDs are held (got ${rE5})`);
expect(vac.resource(SEV_ASIDS).state().flushes === 2, 'two flushes in all');

// 5. A plain VM per module, then every live VM runs the quickstart guest (one vCPU each, CPU = index % 4).
const p0 = newVm('plain-0', 'kvm0');
const p1 = newVm('plain-1', 'kvm1');
const printed = new Map<Guest, string>();
const live = guests.filter((g) => g.alive);
live.forEach((g, i) => {
  const proc = g.proc;
  const mem = proc.mmapAnonymous(0x1000);
  mem.bytes.set(GUEST);
  proc.ioctl(g.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: mem.addr });
  const { fd, run } = createRealModeVcpu(proc, g.sys, g.vm, { regs: { rbx: BigInt(i % 10) } });
  proc.setAffinity(i % host.cpus.length);
  let out = '';
  for (;;) {
    proc.ioctl(fd, KVM_RUN, 0);
    if (run.exit_reason === KVM_EXIT_IO) out += String.fromCharCode(run.bytes[run.io.data_offset] ?? 0);
    else break;
  }
  expect(run.exit_reason === KVM_EXIT_HLT && out === String(i % 10), `${g.name} prints ${i % 10} and halts (got ${JSON.stringify(out)}, exit ${run.exit_reason})`);
  printed.set(g, out);
});

// ---- the account ---------------------------------------------------------------------------------------

const range = vac.resource(SEV_ASIDS).state().range;
console.log(`SEV on an AMD host with two KVM modules: SEV ASIDs ${range?.sev.join('–')}, SEV-ES ASIDs ${range?.sevEs.join('–')}, one allocator in VAC\n`);
console.log('$ lsmod');
table(host.lsmod().map((m) => ({ Module: m.name, Version: m.version ?? '', 'Used by': `${m.refcount} ${m.usedBy.join(',')}`.trim() })));
console.log('\nSEV ASIDs, step by step (vacOf(host).resource(SEV_ASIDS).state())');
table(steps);
console.log('\nLive VMs running the quickstart guest');
table(
  live.map((g, i) => ({
    VM: g.name,
    Module: g.dev,
    Type: g.kind,
    'SEV ASID': g.asid,
    CPU: i % host.cpus.length,
    Printed: printed.get(g) ?? '',
  })),
);
console.log('\nVAC\'s per-CPU ASIDs (plain guests take ASIDs above the SEV range; SEV guests use their SEV ASID)');
table(
  host.cpus.map((cpu) => {
    const s = vac.resource(ASIDS).cpuState(cpu.id);
    return { CPU: cpu.id, generation: s?.generation ?? 0, 'next ASID': s?.nextAsid ?? 0, holders: s?.holders.map((h) => `${h.asid}=${h.holder}`).join(' ') || '-' };
  }),
);

const plainAsids = host.cpus.flatMap((cpu) => vac.resource(ASIDS).cpuState(cpu.id).holders).map((h) => h.asid);
expect(plainAsids.length === 2 && plainAsids.every((x) => x > 6), `the plain VMs' ASIDs lie above the SEV range (got ${plainAsids.join(',')})`);
expect(p0.kind === 'plain' && p1.kind === 'plain', 'plain VMs stay plain');
const bad = checkInvariants(host);
expect(bad.length === 0, `invariants: ${bad.map((v) => v.message).join('; ')}`);

checks.conclude('All checks hold: SEV and SEV-ES ASIDs unique across kvm0 and kvm1, exhaustion is EBUSY, freed ASIDs come back only after a flush; invariants clean.');
