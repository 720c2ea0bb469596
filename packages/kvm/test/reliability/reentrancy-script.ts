/**
 * The material of the re-entrancy suite: a fixed script of host operations that together emit every event the host
 * has (core's, the vendors', KVM's), and the public entry points a listener may call back. Both are deterministic, and
 * an entry point finds what it acts on in the host itself (the process named `vmm`, its newest fd, its VM fd), never
 * in variables the script sets after a call returned: a listener runs before the caller gets the call's result.
 *
 * @module
 */
import { KernelError, O_RDWR, UsageError, type Host, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { createHost } from '@vac/core';
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_SREGS,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_VCPU_MMAP_SIZE,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
  type KvmInstance,
} from '../../src/index.js';

/** The vendors the suite runs on. */
export type Vendor = 'intel' | 'amd';

const IMAGES = { kvm0: kvm({ postfix: '0' }), kvm1: kvm({ postfix: '1' }), kvm2: kvm({ postfix: '2' }) };

/** The guest: at 0x1000 `mov dx,0x3f8; L: out dx,al; inc ax; jmp L` (every run exits with I/O); at 0x1010 `L: inc ax; jmp L` (spins). */
const CODE = [0xba, 0xf8, 0x03, 0xee, 0x40, 0xeb, 0xfc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xeb, 0xfd];

/** A fresh 4-CPU host of `vendor` whose module library has kvm0, kvm1 and kvm2. */
export function scriptHost(vendor: Vendor): Host {
  return createHost({ cpus: 4, hardware: vendor === 'intel' ? intel() : amd(), modules: Object.values(IMAGES) });
}

/** What a step or an entry point ended with: `ok`, or the errno of its KernelError. */
export type Outcome = string;

/**
 * Run `fn` and say how it ended. A KernelError is an answer (its code); anything else — a UsageError, a TypeError —
 * is a bug the suite must report, so it is rethrown.
 */
export function attempt(fn: () => unknown): Outcome {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    if (e instanceof UsageError) return `UsageError ${e.code}: ${e.message}`;
    throw e;
  }
}

/** The process called `name`, alive. */
export function processNamed(host: Host, name: string): Process | undefined {
  return host.processes().find((p) => p.name === name);
}

/** The newest fd of `p` whose path starts with `prefix`. */
function newestFd(p: Process, prefix: string): number | undefined {
  const fds = p.fds().filter((f) => f.path.startsWith(prefix));
  return fds.at(-1)?.fd;
}

/** The vmm, or an answer for when there is none (the entry point is then skipped: `no vmm`). */
function withVmm(host: Host, fn: (vmm: Process) => unknown): () => unknown {
  return () => {
    const vmm = processNamed(host, 'vmm');
    if (vmm === undefined) throw new KernelError('ESRCH', 'test', 'no vmm');
    return fn(vmm);
  };
}

function fdOrBadf(fd: number | undefined): number {
  return fd ?? -1;
}

/** One step of the script. */
export interface Step {
  readonly name: string;
  run(host: Host): unknown;
}

/** Real mode at CS base 0, RIP `rip`. */
function setUp(p: Process, fd: number, rip: bigint): void {
  const s = makeKvmSregs();
  p.ioctl(fd, KVM_GET_SREGS, s);
  s.cs.base = 0n;
  s.cs.selector = 0;
  p.ioctl(fd, KVM_SET_SREGS, s);
  p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip, rflags: 2n }));
}

/**
 * The script: every step is a public call (or, for VAC's handle and a module's `destroyVm`, a kernel API the exports
 * expose). Over the whole script every event of the host is emitted at least once (l1d:flush on Intel only); a
 * `crash` variant ends with a crash instead of the reboot.
 */
export function script(ending: 'reboot' | 'crash'): readonly Step[] {
  const vmmDo = (name: string, fn: (vmm: Process, host: Host) => unknown): Step => ({ name, run: (host) => withVmm(host, (vmm) => fn(vmm, host))() });
  return [
    { name: 'modprobe kvm0 (vac pulled in, enable_virt_at_load=1)', run: (h) => h.modprobe(IMAGES.kvm0) },
    { name: 'insmod kvm1 (enable_virt_at_load=0, an unknown parameter)', run: (h) => h.insmod(IMAGES.kvm1, { enable_virt_at_load: 0, bogus: 1 }) },
    { name: 'spawn the vmm', run: (h) => h.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm', cpu: 1 }) },
    vmmDo('open /dev/kvm0', (vmm) => vmm.open('/dev/kvm0', O_RDWR)),
    vmmDo('KVM_CREATE_VM', (vmm) => vmm.ioctl(fdOrBadf(newestFd(vmm, '/dev/kvm0')), KVM_CREATE_VM, 0)),
    vmmDo('guest memory', (vmm) => {
      const m = vmm.mmapAnonymous(0x1000);
      m.bytes.set(CODE);
      return vmm.ioctl(fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vm')), KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: m.addr });
    }),
    vmmDo('KVM_CREATE_VCPU 0', (vmm) => vmm.ioctl(fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vm')), KVM_CREATE_VCPU, 0)),
    vmmDo('KVM_CREATE_VCPU 1', (vmm) => vmm.ioctl(fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vm')), KVM_CREATE_VCPU, 1)),
    vmmDo('set up the vCPUs, map vCPU 0', (vmm) => {
      setUp(vmm, fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vcpu:0')), 0x1000n);
      setUp(vmm, fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vcpu:1')), 0x1010n);
      return vmm.mmap(fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vcpu:0')), KVM_VCPU_MMAP_SIZE);
    }),
    vmmDo('KVM_RUN vCPU 0 (direct)', (vmm) => vmm.ioctl(fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vcpu:0')), KVM_RUN, 0)),
    vmmDo('a thread runs vCPU 1 on CPU 1 (spins)', (vmm, h) => {
      const fd = fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vcpu:1'));
      h.scheduler.spawn(vmm, { name: 'vcpu1', cpu: 1 }, function* (t) {
        for (;;) {
          try {
            yield* t.ioctl(fd, KVM_RUN, 0);
          } catch (e) {
            if (!(e instanceof KernelError)) throw e;
          }
          yield;
        }
      });
      h.scheduler.run(2);
    }),
    { name: 'PMI on CPU 1', run: (h) => h.raisePmi(1) },
    { name: 'NMI and a posted-interrupt wakeup on CPU 1', run: (h) => [h.raiseNmi(1), h.raisePostedIntrWakeup(1)] },
    { name: 'cpuDown 3', run: (h) => h.cpuDown(3) },
    { name: 'cpuUp 3', run: (h) => h.cpuUp(3) },
    { name: 'suspend', run: (h) => h.suspend() },
    { name: 'resume', run: (h) => h.resume() },
    { name: 'tick', run: (h) => h.scheduler.run(1) },
    {
      name: "root's VM on kvm1, destroyed through kvm1's exports",
      run: (h) => {
        const root = h.spawn({ name: 'root' });
        const sys = root.open('/dev/kvm1', O_RDWR);
        root.ioctl(sys, KVM_CREATE_VM, 0);
        const inst = h.modules.exportsOf<KvmInstance>('kvm1');
        const vm = inst === undefined ? undefined : [...inst.vms].at(-1);
        if (inst !== undefined && vm !== undefined) inst.destroyVm(vm);
        root.kill();
      },
    },
    vmmDo('close vCPU 0', (vmm) => vmm.close(fdOrBadf(newestFd(vmm, 'anon_inode:kvm-vcpu:0')))),
    vmmDo('kill the vmm', (vmm) => vmm.kill()),
    { name: 'rmmod kvm1', run: (h) => h.rmmod('kvm1') },
    { name: 'rmmod kvm0', run: (h) => h.rmmod('kvm0') },
    { name: 'rmmod vac', run: (h) => h.rmmod('vac') },
    { name: 'modprobe kvm0 again', run: (h) => h.modprobe('kvm0') },
    ending === 'reboot' ? { name: 'reboot', run: (h) => h.reboot() } : { name: 'crash', run: (h) => h.crash() },
  ];
}

/** A public entry point a listener calls back into. */
export interface EntryPoint {
  readonly name: string;
  call(host: Host): unknown;
}

/** The entry points: module loading, processes and files, KVM ioctls, the scheduler, hotplug, power, hardware events. */
export function entryPoints(): readonly EntryPoint[] {
  const vmm = (name: string, fn: (p: Process, h: Host) => unknown): EntryPoint => ({ name, call: (h) => withVmm(h, (p) => fn(p, h))() });
  return [
    { name: 'modprobe kvm2', call: (h) => h.modprobe('kvm2') },
    { name: 'insmod kvm1', call: (h) => h.insmod(IMAGES.kvm1) },
    { name: 'rmmod kvm0', call: (h) => h.rmmod('kvm0') },
    { name: 'rmmod vac', call: (h) => h.rmmod('vac') },
    { name: 'spawn', call: (h) => h.spawn({ name: 'extra' }) },
    vmm('kill', (p) => p.kill()),
    vmm('open', (p) => p.open('/dev/kvm0', O_RDWR)),
    vmm('close', (p) => p.close(fdOrBadf(p.fds().at(-1)?.fd))),
    vmm('mmap', (p) => p.mmap(fdOrBadf(newestFd(p, 'anon_inode:kvm-vcpu:0')), KVM_VCPU_MMAP_SIZE)),
    vmm('munmap', (p) => {
      const m = p.mappings().at(-1);
      return m === undefined ? 0 : p.munmap(m.addr, m.length);
    }),
    vmm('KVM_CREATE_VM', (p) => p.ioctl(fdOrBadf(newestFd(p, '/dev/kvm0')), KVM_CREATE_VM, 0)),
    vmm('KVM_CREATE_VCPU', (p) => p.ioctl(fdOrBadf(newestFd(p, 'anon_inode:kvm-vm')), KVM_CREATE_VCPU, 7)),
    vmm('KVM_RUN', (p) => p.ioctl(fdOrBadf(newestFd(p, 'anon_inode:kvm-vcpu:0')), KVM_RUN, 0)),
    vmm('setAffinity', (p) => p.setAffinity(2)),
    vmm('destroyVm', (_p, h) => {
      const inst = h.modules.exportsOf<KvmInstance>('kvm0');
      const vm = inst === undefined ? undefined : [...inst.vms][0];
      return vm === undefined ? 0 : inst?.destroyVm(vm);
    }),
    { name: 'tick', call: (h) => h.scheduler.tick() },
    { name: 'cpuDown 2', call: (h) => h.cpuDown(2) },
    { name: 'cpuUp 3', call: (h) => h.cpuUp(3) },
    { name: 'suspend', call: (h) => h.suspend() },
    { name: 'resume', call: (h) => h.resume() },
    { name: 'reboot', call: (h) => h.reboot() },
    { name: 'crash', call: (h) => h.crash() },
    { name: 'raisePmi', call: (h) => h.raisePmi(1) },
    { name: 'raiseNmi', call: (h) => h.raiseNmi(1) },
    { name: 'raisePostedIntrWakeup', call: (h) => h.raisePostedIntrWakeup(1) },
  ];
}
