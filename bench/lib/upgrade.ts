/**
 * The rolling-upgrade scenario, at `scale` times its base size (16 CPUs, 24 VMs of 2 vCPUs on kvm0):
 *
 * 1. a host with `kvm0`; a VMM creates the VMs through /dev/kvm0 and runs every vCPU once (on CPU
 *    `(2·vm + vcpu) mod cpus`);
 * 2. `kvm1` is loaded next to it (the new version);
 * 3. each VM moves: the VMM saves every vCPU's registers (KVM_GET_REGS, KVM_GET_SREGS), creates a VM on
 *    /dev/kvm1 over the **same user memory** (KVM_SET_USER_MEMORY_REGION with the same `userspace_addr`),
 *    creates and restores the vCPUs (KVM_SET_SREGS, KVM_SET_REGS), runs each once on the same CPU — the guest
 *    continues where it stopped — and then closes the old VM (unmaps the old `kvm_run` areas, closes the old
 *    vCPU and VM fds: the VM is destroyed, its VPIDs go back to VAC);
 * 4. the VMM closes /dev/kvm0 and `rmmod kvm0` succeeds.
 *
 * Everything goes through the ABI. Checks (not timed: they throw) are made by the caller with
 * {@link verifyUpgrade}.
 */
import { O_RDWR, checkInvariants, type Host, type Process } from '@vac/core';
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_IO,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
} from '@vac/kvm';
import { intel } from '@vac/vmx';
import { GUEST_BASE, KVM_RUN_MMAP_BYTES, OUT_LOOP, makeHost, makeVm, mapRun, type VcpuHandle } from './guest.js';

/** What one run of the scenario leaves behind for the checks. */
export interface UpgradeOutcome {
  readonly host: Host;
  readonly vmsMoved: number;
  readonly vcpusMoved: number;
  /** Guest runs after the move that did not end with the expected I/O exit. */
  readonly badRuns: number;
}

/** Base size of the scenario. */
export const UPGRADE_BASE = { cpus: 16, vms: 24, vcpusPerVm: 2 } as const;


/** Run the scenario at `scale` × its base size. */
export function rollingUpgrade(scale: number): UpgradeOutcome {
  const cpus = UPGRADE_BASE.cpus * scale;
  const nVms = UPGRADE_BASE.vms * scale;
  const per = UPGRADE_BASE.vcpusPerVm;
  const host = makeHost(intel(), cpus);
  host.modprobe(kvm({ postfix: '0', version: '6.12' }));
  const proc: Process = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm', nofile: 1 << 16 });
  const sys0 = proc.open('/dev/kvm0', O_RDWR);

  // 1. The VMs on kvm0, each vCPU run once.
  const vms = [];
  for (let i = 0; i < nVms; i++) {
    const vm = makeVm(proc, sys0, OUT_LOOP, per);
    vm.vcpus.forEach((v, j) => {
      proc.setAffinity((i * per + j) % cpus);
      proc.ioctl(v.fd, KVM_RUN, 0);
    });
    vms.push(vm);
  }

  // 2. The new version next to the old one.
  host.modprobe(kvm({ postfix: '1', version: '6.12-fix' }));
  const sys1 = proc.open('/dev/kvm1', O_RDWR);

  // 3. Move every VM.
  let badRuns = 0;
  const regs = makeKvmRegs();
  const sregs = makeKvmSregs();
  for (let i = 0; i < vms.length; i++) {
    const old = vms[i] as (typeof vms)[number];
    const vm = proc.ioctl(sys1, KVM_CREATE_VM, 0);
    proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: GUEST_BASE, memory_size: 0x1000, userspace_addr: old.mem.addr });
    for (let j = 0; j < old.vcpus.length; j++) {
      const ov = old.vcpus[j] as VcpuHandle;
      proc.ioctl(ov.fd, KVM_GET_REGS, regs);
      proc.ioctl(ov.fd, KVM_GET_SREGS, sregs);
      const fd = proc.ioctl(vm, KVM_CREATE_VCPU, j);
      const { run } = mapRun(proc, fd);
      proc.ioctl(fd, KVM_SET_SREGS, sregs);
      proc.ioctl(fd, KVM_SET_REGS, regs);
      proc.setAffinity((i * per + j) % cpus);
      proc.ioctl(fd, KVM_RUN, 0);
      if (run.exit_reason !== KVM_EXIT_IO || run.io.port !== 0x3f8) badRuns++;
    }
    for (const ov of old.vcpus) {
      proc.munmap(ov.mapAddr, KVM_RUN_MMAP_BYTES);
      proc.close(ov.fd);
    }
    proc.close(old.vm);
  }

  // 4. The old module goes.
  proc.close(sys0);
  host.rmmod('kvm0');
  return { host, vmsMoved: nVms, vcpusMoved: nVms * per, badRuns };
}

/** The checks of one run (correctness, not timing): throws when anything is off. */
export function verifyUpgrade(o: UpgradeOutcome, scale: number): void {
  const problems: string[] = [];
  if (o.badRuns > 0) problems.push(`${o.badRuns} guest runs after the move did not exit with KVM_EXIT_IO on port 0x3f8`);
  if (o.host.lsmod().some((m) => m.name === 'kvm0')) problems.push('kvm0 is still loaded');
  const v = checkInvariants(o.host);
  if (v.length > 0) problems.push(`invariants: ${v.map((x) => x.message).join('; ')}`);
  const inst = o.host.modules.exportsOf<{ vms: ReadonlySet<unknown> }>('kvm1');
  if (inst?.vms.size !== UPGRADE_BASE.vms * scale) problems.push(`kvm1 runs ${inst?.vms.size} VMs, expected ${UPGRADE_BASE.vms * scale}`);
  if (problems.length > 0) throw new Error(`rolling upgrade ×${scale}: ${problems.join(' | ')}`);
}
