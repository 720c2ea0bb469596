/**
 * Legacy collisions: why the RFC moves "system-wide virtualization resource management to a new base module
 * to avoid collisions between different KVM modules".
 *
 * Each scenario loads kvm0 and kvm1 on a fresh 4-CPU Intel host in the pre-VAC layout — `legacy: true` (the
 * module owns everything itself and does not need vac) or a narrower list of the resources it keeps
 * private — and does what a user would: load both, create VMs, run a guest, take a PMI. Each collision
 * Linux would hit shows up, with the errno or warning Linux gives. Then the same steps with VAC: none of them.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { O_RDWR, PERF_GUEST_ACTIVE, checkInvariants, createHost, isKernelError, vacOf, type Host, type Process } from '@vac/core';
import {
  KVM_CREATE_VM,
  KVM_RUN,
  createRealModeVm,
  kvm,
  type LegacyResource,
} from '@vac/kvm';
import { VPIDS, intel } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

/** Run `f`; its KernelError as `CODE (op)`, or `ok`. */
function attempt(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (isKernelError(e)) return `${e.code} (${e.op})`;
    throw e;
  }
}

type Legacy = boolean | readonly LegacyResource[];

/** A fresh host with kvm0 and kvm1 in the given layouts; the load results. */
function twoModules(l0: Legacy, l1: Legacy, params: Record<string, string> = {}): { host: Host; load0: string; load1: string; vmm: Process } {
  const host = createHost({ cpus: 4, hardware: intel() });
  const load0 = attempt(() => host.modprobe(kvm({ postfix: '0', legacy: l0 }), params));
  const load1 = attempt(() => host.modprobe(kvm({ postfix: '1', legacy: l1 }), params));
  return { host, load0, load1, vmm: host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' }) };
}

/** A VM on /dev/`dev` with `n` vCPUs spinning in real mode (`inc ax; jmp $-3`). Returns the vCPU fds. */
function spinningVm(p: Process, dev: string, n: number): number[] {
  return createRealModeVm(p, `/dev/${dev}`, { code: [0x40, 0xeb, 0xfd], vcpus: n }).vcpus.map((v) => v.fd);
}

/** Run one vCPU for a tick on `cpu` in a thread (left in guest mode), then raise a PMI there. */
function pmiOnGuest(host: Host, p: Process, fd: number, cpu: number): string {
  host.scheduler.spawn(p, { cpu, name: `pmi-target@${cpu}` }, function* (t) {
    yield* t.ioctl(fd, KVM_RUN, 0);
  });
  host.scheduler.tick();
  const r = host.raisePmi(cpu);
  return r.state & PERF_GUEST_ACTIVE ? `guest PMI, attributed to ${r.attributedTo ?? '?'}` : 'host PMI: the guest sample is lost';
}

const warningsOf = (host: Host, source: string, text: string): string[] => host.warnings.filter((w) => w.source === source && w.message.includes(text)).map((w) => w.message);

interface Row {
  readonly Collision: string;
  readonly 'Layout (kvm0, kvm1)': string;
  readonly 'What Linux does': string;
  readonly 'What happened here': string;
  readonly 'With VAC': string;
}
const rows: Row[] = [];

// ---- without VAC ----------------------------------------------------------------------------------------

// 1. The full pre-VAC layout: the second kvm_init finds the fixed hotplug state taken.
const full = twoModules(true, true);
expect(full.load0 === 'ok' && full.load1.startsWith('EBUSY (cpuhp_setup_state)'), `legacy: true twice → kvm1 fails to load with EBUSY at cpuhp_setup_state (got ${full.load1})`);
expect(full.host.lsmod().every((m) => m.name !== 'vac'), 'legacy: true needs no vac');

// 2. Only the device minor kept: both ask misc for 232.
const minor = twoModules(['minor'], ['minor']);
expect(minor.load1.startsWith('EBUSY (misc_register)'), `legacy ['minor'] twice → misc_register EBUSY (got ${minor.load1})`);

// 3. Each module does VMXON itself (virtualization enabled at KVM_CREATE_VM, not at load).
const virt = twoModules(['virt'], ['virt'], { enable_virt_at_load: 'N' });
const vm0 = attempt(() => virt.vmm.ioctl(virt.vmm.open('/dev/kvm0', O_RDWR), KVM_CREATE_VM, 0));
const vm1 = attempt(() => virt.vmm.ioctl(virt.vmm.open('/dev/kvm1', O_RDWR), KVM_CREATE_VM, 0));
const enableFailed = warningsOf(virt.host, 'vac', 'enabling virtualization on CPU').length;
const emergencyIgnored = warningsOf(virt.host, 'kernel', 'cpu_emergency_register_virt_callback').length;
const virtViolations = checkInvariants(virt.host);
expect(vm0 === 'ok' && vm1.startsWith('EBUSY'), `legacy ['virt']: kvm0's VM ok, kvm1's KVM_CREATE_VM → EBUSY (got ${vm0}, ${vm1})`);
expect(enableFailed === 4, `"enabling virtualization on CPUn failed" logged for each of the 4 CPUs (got ${enableFailed})`);
expect(emergencyIgnored >= 1, 'a second emergency virt callback is warned about and ignored');
expect(virtViolations.some((v) => v.invariant === 1), 'checkInvariants reports CPUs in VMX operation that VAC did not enable');

// 4. Each module registers its own perf guest callbacks.
const irq = twoModules(false, ['irq']);
const [irqFd] = spinningVm(irq.vmm, 'kvm1', 1);
const irqPmi = pmiOnGuest(irq.host, irq.vmm, irqFd ?? -1, 1);
const perfIgnored = warningsOf(irq.host, 'perf', 'already registered');
expect(perfIgnored.length === 1, `kvm1's perf callbacks are warned about and ignored (got ${perfIgnored.length} warnings)`);
expect(irqPmi.startsWith('host PMI'), `a PMI on kvm1's running guest is taken for a host PMI (got ${irqPmi})`);

// 5. Each module has its own VPID bitmap.
const vpid = twoModules(['vpid'], ['vpid']);
spinningVm(vpid.vmm, 'kvm0', 2);
spinningVm(vpid.vmm, 'kvm1', 2);
const dupVpids = checkInvariants(vpid.host).filter((v) => v.invariant === 2);
expect(dupVpids.length === 2, `checkInvariants reports 2 shared VPIDs (got ${dupVpids.map((v) => v.message).join('; ')})`);

// ---- with VAC: the same steps ---------------------------------------------------------------------------

const vac = twoModules(false, false, { enable_virt_at_load: 'N' });
const vacVm0 = attempt(() => vac.vmm.ioctl(vac.vmm.open('/dev/kvm0', O_RDWR), KVM_CREATE_VM, 0));
const vacVm1 = attempt(() => vac.vmm.ioctl(vac.vmm.open('/dev/kvm1', O_RDWR), KVM_CREATE_VM, 0));
spinningVm(vac.vmm, 'kvm0', 2);
const [vacFd] = spinningVm(vac.vmm, 'kvm1', 2);
const vacPmi = pmiOnGuest(vac.host, vac.vmm, vacFd ?? -1, 1);
const devs = vac.host.devfs.list().filter((d) => d.type === 'char' && d.path.startsWith('/dev/kvm'));
const vacViolations = checkInvariants(vac.host);
expect(vac.load0 === 'ok' && vac.load1 === 'ok', 'with VAC both modules load');
expect(vacVm0 === 'ok' && vacVm1 === 'ok', 'with VAC both modules create VMs');
expect(devs.every((d) => d.type === 'char' && d.minor !== 232), 'with VAC the postfixed devices get dynamic minors');
expect(vacPmi === 'guest PMI, attributed to kvm1/vm2/vcpu0', `with VAC the PMI reaches kvm1's vCPU (got ${vacPmi})`);
expect(vac.host.warnings.length === 0, `with VAC nothing is warned about (got ${vac.host.warnings.map((w) => w.message).join('; ')})`);
expect(vacViolations.length === 0, `with VAC the invariants hold (got ${vacViolations.map((v) => v.message).join('; ')})`);
const vacVpids = vacOf(vac.host)?.resource(VPIDS).holders() ?? [];

rows.push(
  {
    Collision: 'hotplug state CPUHP_AP_KVM_ONLINE',
    'Layout (kvm0, kvm1)': 'legacy: true, true',
    'What Linux does': '2nd cpuhp_setup_state: -EBUSY, load fails',
    'What happened here': `modprobe kvm1: ${full.load1}`,
    'With VAC': 'registered once; both load',
  },
  {
    Collision: 'misc minor 232',
    'Layout (kvm0, kvm1)': "['minor'], ['minor']",
    'What Linux does': '2nd misc_register: -EBUSY, load fails',
    'What happened here': `modprobe kvm1: ${minor.load1}`,
    'With VAC': `minors ${devs.map((d) => (d.type === 'char' ? d.minor : '')).join(', ')}`,
  },
  {
    Collision: 'VMXON on a CPU in VMX operation',
    'Layout (kvm0, kvm1)': "['virt'], ['virt'] *",
    'What Linux does': 'enable fails on every CPU; KVM_CREATE_VM: -EBUSY',
    'What happened here': `kvm1 KVM_CREATE_VM: ${vm1}`,
    'With VAC': `both VMs ${vacVm0 === 'ok' && vacVm1 === 'ok' ? 'ok' : 'FAILED'}`,
  },
  {
    Collision: 'emergency virt callback',
    'Layout (kvm0, kvm1)': "['virt'], ['virt'] *",
    'What Linux does': '2nd registration: WARN, ignored',
    'What happened here': `${emergencyIgnored} registrations ignored`,
    'With VAC': 'one callback for all',
  },
  {
    Collision: 'perf guest-info callbacks',
    'Layout (kvm0, kvm1)': "VAC, ['irq']",
    'What Linux does': "2nd registration: WARN, ignored",
    'What happened here': irqPmi.startsWith('host') ? "kvm1 guest's PMI → host (lost)" : irqPmi,
    'With VAC': `PMI → ${vacPmi.replace('guest PMI, attributed to ', '')}`,
  },
  {
    Collision: 'VPIDs',
    'Layout (kvm0, kvm1)': "['vpid'], ['vpid']",
    'What Linux does': 'two bitmaps hand out the same VPIDs',
    'What happened here': `${dupVpids.length} VPIDs shared`,
    'With VAC': `VPIDs ${vacVpids.map((h) => h.vpid).join(', ')}, unique`,
  },
);

console.log('Two KVM modules on one 4-CPU Intel host without VAC (legacy layouts), then with VAC\n');
table(rows.map((r) => ({ ...r })));
console.log("\n* vac is still loaded for the resources the modules share; its own emergency callback came first.");
console.log('\nDetails');
console.log(`  hotplug:   ${full.load1}; lsmod: ${full.host.lsmod().map((m) => m.name).join(', ')} (legacy: true needs no vac)`);
console.log(`  VMXON:     ${warningsOf(virt.host, 'vac', 'enabling virtualization on CPU').join('; ')}`);
console.log(`             checkInvariants: ${virtViolations.map((v) => v.message).slice(0, 2).join('; ')}; …`);
console.log(`  emergency: ${warningsOf(virt.host, 'kernel', 'cpu_emergency_register_virt_callback')[0] ?? '-'}`);
console.log(`  perf:      ${perfIgnored[0] ?? '-'}`);
console.log(`  VPIDs:     checkInvariants: ${dupVpids.map((v) => v.message).join('; ')}`);
console.log(`  with VAC:  ${vac.host.warnings.length} warnings, ${vacViolations.length} invariant violations; ${vacVpids.map((h) => `${h.vpid}=${h.holder}`).join(' ')}`);

checks.conclude(`All checks hold: ${rows.length} collisions without VAC, none with it (no warnings, invariants clean).`);
