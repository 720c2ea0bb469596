/**
 * An unchanged VMM: "No user space VMM changes are required, e.g. /dev/kvm can be presented to a VMM by
 * symlinking /dev/kvmX" (the RFC).
 *
 * `kvmHello` below is the classic minimal VMM (Josh Triplett's "Using the KVM API", LWN 2015) written line
 * for line as its C original: it opens /dev/kvm, checks the API version and KVM_CAP_USER_MEMORY, creates a
 * VM with one 4 KiB slot at 0x1000 holding 12 bytes of real-mode code, one vCPU, and runs it until HLT,
 * printing what the guest writes to port 0x3f8. It knows nothing of kvm0, kvm1 or VAC: it only does ioctls
 * on fds and reads the mmapped kvm_run. The host points /dev/kvm at /dev/kvm1 while kvm0 runs other VMs on
 * the same CPUs. Expected output: `4`, a newline, then `KVM_EXIT_HLT`.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { O_CLOEXEC, O_RDWR, checkInvariants, createHost, isKernelError, vacOf, type Process } from '@vac/core';
import {
  KVM_CAP_USER_MEMORY,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
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
  kvm,
  kvmInstance,
  makeKvmRegs,
  makeKvmSregs,
} from '@vac/kvm';
import { VPIDS, intel } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

// ---- the VMM, as in C ------------------------------------------------------------------------------

/** What `err`/`errx` do: print and exit(1). */
class Exit extends Error {}

/**
 * The minimal VMM. `sys` is the process's syscall interface; `stdout` its standard output. Each statement
 * is the C statement in the comment next to it.
 */
function kvmHello(sys: Process, stdout: { write(s: string): void }): number {
  const errx = (msg: string): never => {
    throw new Exit(msg);
  };
  const err = (msg: string, e: unknown): never => {
    throw new Exit(`${msg}: ${isKernelError(e) ? e.code : String(e)}`);
  };
  // const uint8_t code[] = { 0xba, 0xf8, 0x03, /* mov $0x3f8, %dx */ 0x00, 0xd8, /* add %bl, %al */
  //   0x04, '0', /* add $'0', %al */ 0xee, /* out %al, (%dx) */ 0xb0, '\n', /* mov $'\n', %al */
  //   0xee, /* out %al, (%dx) */ 0xf4, /* hlt */ };
  const code = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];

  let kvm: number, vmfd: number, vcpufd: number, ret: number;
  try {
    kvm = sys.open('/dev/kvm', O_RDWR | O_CLOEXEC); //                  kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  } catch (e) {
    return err('/dev/kvm', e);
  }
  ret = sys.ioctl(kvm, KVM_GET_API_VERSION, 0); //                      ret = ioctl(kvm, KVM_GET_API_VERSION, NULL);
  if (ret !== 12) errx(`KVM_GET_API_VERSION ${ret}, expected 12`);
  ret = sys.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY); //    ret = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
  if (ret !== 1) errx('Required extension KVM_CAP_USER_MEM not available');
  vmfd = sys.ioctl(kvm, KVM_CREATE_VM, 0); //                           vmfd = ioctl(kvm, KVM_CREATE_VM, (unsigned long)0);
  const mem = sys.mmapAnonymous(0x1000); //                             mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  mem.bytes.set(code); //                                               memcpy(mem, code, sizeof(code));
  const region = { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: mem.addr };
  sys.ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, region); //               ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region);
  vcpufd = sys.ioctl(vmfd, KVM_CREATE_VCPU, 0); //                      vcpufd = ioctl(vmfd, KVM_CREATE_VCPU, (unsigned long)0);
  const mmapSize = sys.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0); //        mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, NULL);
  if (mmapSize < 2352) errx('KVM_GET_VCPU_MMAP_SIZE unexpectedly small'); // if (mmap_size < sizeof(*run)) errx(...);
  const m = sys.mmap(vcpufd, mmapSize); //                              run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpufd, 0);
  const run = new KvmRunView(m.bytes.buffer, m.bytes.byteOffset);
  const sregs = makeKvmSregs();
  sys.ioctl(vcpufd, KVM_GET_SREGS, sregs); //                           ioctl(vcpufd, KVM_GET_SREGS, &sregs);
  sregs.cs.base = 0n; //                                                sregs.cs.base = 0;
  sregs.cs.selector = 0; //                                             sregs.cs.selector = 0;
  sys.ioctl(vcpufd, KVM_SET_SREGS, sregs); //                           ioctl(vcpufd, KVM_SET_SREGS, &sregs);
  const regs = makeKvmRegs({ rip: 0x1000n, rax: 2n, rbx: 2n, rflags: 0x2n }); // struct kvm_regs regs = { .rip = 0x1000, .rax = 2, .rbx = 2, .rflags = 0x2 };
  sys.ioctl(vcpufd, KVM_SET_REGS, regs); //                             ioctl(vcpufd, KVM_SET_REGS, &regs);

  for (;;) {
    try {
      sys.ioctl(vcpufd, KVM_RUN, 0); //                                 ret = ioctl(vcpufd, KVM_RUN, NULL);
    } catch (e) {
      err('KVM_RUN', e); //                                             if (ret == -1) err(1, "KVM_RUN");
    }
    switch (run.exit_reason) {
      case KVM_EXIT_HLT:
        stdout.write('KVM_EXIT_HLT\n'); //                              puts("KVM_EXIT_HLT");
        return 0;
      case KVM_EXIT_IO:
        if (run.io.direction === KVM_EXIT_IO_OUT && run.io.size === 1 && run.io.port === 0x3f8 && run.io.count === 1)
          stdout.write(String.fromCharCode(run.bytes[run.io.data_offset] ?? 0)); // putchar(*(((char *)run) + run->io.data_offset));
        else errx('unhandled KVM_EXIT_IO');
        break;
      case KVM_EXIT_FAIL_ENTRY:
        errx(`KVM_EXIT_FAIL_ENTRY: hardware_entry_failure_reason = 0x${run.fail_entry.hardware_entry_failure_reason.toString(16)}`);
        break;
      case KVM_EXIT_INTERNAL_ERROR:
        errx(`KVM_EXIT_INTERNAL_ERROR: suberror = 0x${run.emulation_failure.suberror.toString(16)}`);
        break;
      default:
        errx(`exit_reason = 0x${run.exit_reason.toString(16)}`);
    }
  }
}

// ---- the host: kvm0 busy with its own VMs, /dev/kvm -> /dev/kvm1 ---------------------------------------

const host = createHost({ cpus: 4, hardware: intel() });
host.modprobe(kvm({ postfix: '0', version: '6.12' }));
host.modprobe(kvm({ postfix: '1', version: '6.12-fix' }));
host.symlink('/dev/kvm1', '/dev/kvm');

/** kvm0's own VMs: `inc ax; jmp $-3` forever, one thread each on CPUs 0–3. */
const SPIN = [0x40, 0xeb, 0xfd];
for (let cpu = 0; cpu < 4; cpu++) {
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: `fleet${cpu}`, cpu });
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const mem = p.mmapAnonymous(0x1000);
  mem.bytes.set(SPIN);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: mem.addr });
  const fd = p.ioctl(vm, KVM_CREATE_VCPU, 0);
  const sregs = makeKvmSregs();
  p.ioctl(fd, KVM_GET_SREGS, sregs);
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  p.ioctl(fd, KVM_SET_SREGS, sregs);
  p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n }));
  host.scheduler.spawn(p, { cpu, name: `fleet${cpu}/vcpu0` }, function* (t) {
    yield* t.ioctl(fd, KVM_RUN, 0); // never exits on its own; the example ends with the process
  });
}
const kvm0 = kvmInstance(host, 'kvm0');
const fleetInstructions = (): number => [...kvm0.allVcpus()].reduce((a, v) => a + v.stats.instructions, 0);
host.scheduler.run(5);
const before = fleetInstructions();

// ---- run the VMM: its main thread on CPU 1, which it shares with one of kvm0's vCPU threads -------------------

const vmm = host.spawn({ uid: 1000, groups: ['kvm'], name: 'kvm-hello', cpu: 1 });
let out = '';
let status = -1;
let vpidsDuring: Array<{ readonly vpid: number; readonly holder: string }> = [];
let lsmodDuring = host.lsmod();
console.log(`$ ls -l /dev/kvm\n/dev/kvm -> ${host.readlink('/dev/kvm')}\n`);
console.log('$ ./kvm-hello');
// main() runs within one time slice of the process's thread (its KVM_RUN calls are short); the scheduler puts
// kvm0's vCPU on CPU 1 aside for it, and gives the CPU back at the next tick.
const main = host.scheduler.spawn(vmm, { cpu: 1, name: 'kvm-hello/main' }, function* () {
  try {
    status = kvmHello(vmm, {
      write: (s) => {
        out += s;
        process.stdout.write(s);
      },
    });
  } catch (e) {
    if (!(e instanceof Exit)) throw e;
    console.log(`kvm-hello: ${e.message}`);
    status = 1;
  }
  vpidsDuring = vacOf(host)?.resource(VPIDS).holders() ?? [];
  lsmodDuring = host.lsmod();
});
while (main.alive) host.scheduler.run(1);
expect(main.state === 'done', `kvm-hello's thread ended normally (${main.state}: ${String(main.error)})`);
vmm.kill(); // exit(status): the kernel closes its fds
host.scheduler.run(5);

// ---- the account -------------------------------------------------------------------------------------

console.log(`\n(exit status ${status})\n`);
console.log('While kvm-hello ran:');
table(lsmodDuring.map((m) => ({ Module: m.name, 'Used by': `${m.refcount} ${m.usedBy.join(',')}`.trim() })));
console.log('');
table(vpidsDuring.map((h) => ({ VPID: h.vpid, vCPU: h.holder })));
console.log(`kvm0's fleet executed ${fleetInstructions() - before} more guest instructions in the tick kvm-hello ran and the 5 after; kvm1 refcount after exit: ${host.lsmod().find((m) => m.name === 'kvm1')?.refcount}`);

expect(status === 0, 'kvm-hello exits 0');
expect(out === '4\nKVM_EXIT_HLT\n', `kvm-hello prints "4", a newline, "KVM_EXIT_HLT" (got ${JSON.stringify(out)})`);
expect(host.readlink('/dev/kvm') === '/dev/kvm1', '/dev/kvm points at /dev/kvm1');
expect(lsmodDuring.find((m) => m.name === 'kvm1')?.refcount === 3, 'kvm-hello pinned kvm1 (its /dev/kvm, VM and vCPU fds)');
expect(vpidsDuring.some((h) => h.holder === 'kvm1/vm1/vcpu0') && vpidsDuring.filter((h) => h.holder.startsWith('kvm0/')).length === 4, "the VMM's vCPU is kvm1's, next to kvm0's four");
expect(new Set(vpidsDuring.map((h) => h.vpid)).size === vpidsDuring.length, 'VPIDs are unique across kvm0 and kvm1');
expect(fleetInstructions() - before === 4 * 6 * host.scheduler.quantum, "kvm0's four vCPUs ran a full slice in each of those 6 ticks");
expect(host.scheduler.threads().filter((t) => t.name.startsWith('fleet')).length === 4, "kvm0's four vCPU threads are still in KVM_RUN (no failed entry)");
expect(host.lsmod().find((m) => m.name === 'kvm1')?.refcount === 0, 'after the VMM exits, kvm1 is unused again');
const bad = checkInvariants(host);
expect(bad.length === 0, `invariants: ${bad.map((v) => v.message).join('; ')}`);

checks.conclude('All checks hold: the unchanged VMM ran on kvm1 through the /dev/kvm symlink, next to kvm0, and saw the exits it sees on Linux.');
