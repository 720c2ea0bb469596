/**
 * SEV through the ABI on AMD (issue 4, "Done means" 6): KVM_MEMORY_ENCRYPT_OP with KVM_SEV_INIT /
 * KVM_SEV_ES_INIT takes one ASID per VM from VAC's host-wide SEV space, shared by every module.
 */
import { O_RDWR, checkInvariants, type Host, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_X86_SMM,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_GET_SREGS,
  KvmRunView,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
  type Vm,
  vmOf,
} from '../../src/index.js';
import { HELLO, makeHost, vmmProcess } from './helpers.js';
import { expectFail, inst, vacIn, vcpuOf } from './integration.js';
import { SEV_ASIDS } from '@vac/svm';

/** KVM_MEMORY_ENCRYPT_OP is `_IOWR(KVMIO, 0xba, unsigned long)`. */
const ENCRYPT_OP = 0xc008aeba;
const KVM_SEV_INIT = 0;
const KVM_SEV_ES_INIT = 1;
const cmd = (id: number): { id: number; data: number; error: number; sev_fd: number } => ({ id, data: 0, error: 0xdead, sev_fd: 0 });

/** SEV ASIDs 3…4, SEV-ES ASIDs 1…2. */
function sevHost(): { host: Host; p: Process; sys: Record<string, number> } {
  const host = makeHost(amd({ maxSevAsid: 4, minSevAsid: 3 }));
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  host.modprobe(kvm({ postfix: '2' }), { sev: 0 });
  host.modprobe(kvm({ postfix: '3' }), { sev_es: 0 });
  const p = vmmProcess(host);
  const sys: Record<string, number> = {};
  for (const m of ['kvm0', 'kvm1', 'kvm2', 'kvm3']) sys[m] = p.open(`/dev/${m}`, O_RDWR);
  return { host, p, sys };
}

const holders = (host: Host): Array<[number, string]> => vacIn(host).resource(SEV_ASIDS).state().inUse.map((u) => [u.asid, u.holder]);

describe('KVM_MEMORY_ENCRYPT_OP on AMD', () => {
  test('the constant is 0xC008AEBA', () => {
    expect(KVM_MEMORY_ENCRYPT_OP).toBe(ENCRYPT_OP);
  });

  test('KVM_CAP_X86_SMM on an SEV-ES VM\'s fd is 0 (svm_has_emulated_msr: no SMBASE for SEV-ES), 1 on an SEV VM\'s', () => {
    const { p, sys } = sevHost();
    const es = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    const sev = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    expect(p.ioctl(es, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM)).toBe(1);
    expect(p.ioctl(es, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT))).toBe(0);
    expect(p.ioctl(sev, ENCRYPT_OP, cmd(KVM_SEV_INIT))).toBe(0);
    expect(p.ioctl(es, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM)).toBe(0);
    expect(p.ioctl(sev, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM)).toBe(1);
    expect(p.ioctl(sys['kvm0']!, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM)).toBe(1);
  });

  test('KVM_SEV_INIT / KVM_SEV_ES_INIT take ASIDs from VAC; EBUSY when exhausted, recycled after VMs die', () => {
    const { host, p, sys } = sevHost();
    const vac = vacIn(host);
    expect(vac.tryResource(SEV_ASIDS)?.state()!.range).toEqual({ sev: [3, 4], sevEs: [1, 2] });
    const a = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    const c = cmd(KVM_SEV_INIT);
    expect(p.ioctl(a, ENCRYPT_OP, c)).toBe(0);
    expect(c.error).toBe(0); // SEV_RET_SUCCESS, copied back
    expect(vmOf(p, a).vendor.encryption).toBe('sev');
    expect(holders(host)).toEqual([[3, 'kvm0/vm1']]);
    // Another module's SEV VM never gets the same ASID.
    const b = p.ioctl(sys['kvm1']!, KVM_CREATE_VM, 0);
    expect(p.ioctl(b, ENCRYPT_OP, cmd(KVM_SEV_INIT))).toBe(0);
    expect(holders(host)).toEqual([
      [3, 'kvm0/vm1'],
      [4, 'kvm1/vm1'],
    ]);
    // The SEV range is exhausted, nothing awaits reclaim: EBUSY, nothing changes (no flush either).
    const d = p.ioctl(sys['kvm1']!, KVM_CREATE_VM, 0);
    expectFail(host, () => p.ioctl(d, ENCRYPT_OP, cmd(KVM_SEV_INIT)), 'EBUSY');
    expect(vac.tryResource(SEV_ASIDS)?.state()!.flushes).toBe(0);
    // SEV-ES guests use 1…2, from any module.
    const e = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    const f = p.ioctl(sys['kvm1']!, KVM_CREATE_VM, 0);
    expect(p.ioctl(e, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT))).toBe(0);
    expect(p.ioctl(f, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT))).toBe(0);
    expect(vmOf(p, f).vendor.encryption).toBe('sev-es');
    const g = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    expectFail(host, () => p.ioctl(g, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT)), 'EBUSY');
    expect(holders(host)).toEqual([
      [1, 'kvm0/vm2'],
      [2, 'kvm1/vm3'],
      [3, 'kvm0/vm1'],
      [4, 'kvm1/vm1'],
    ]);
    expect(checkInvariants(host)).toEqual([]);
    // kvm0's SEV VM dies: ASID 3 awaits reclaim (not reusable before a flush), then the next SEV_INIT
    // recycles it (WBINVD + DF_FLUSH) — for a VM of the other module.
    p.close(a);
    expect(vac.tryResource(SEV_ASIDS)?.state()!.awaitingReclaim).toEqual([3]);
    expect(p.ioctl(d, ENCRYPT_OP, cmd(KVM_SEV_INIT))).toBe(0);
    expect(vac.tryResource(SEV_ASIDS)?.state()).toMatchObject({ awaitingReclaim: [], flushes: 1, recycles: 1 });
    expect(holders(host)).toContainEqual([3, 'kvm1/vm2']);
    // An SEV-ES ASID freed by kvm1 comes back to kvm0 the same way.
    p.close(f);
    expect(p.ioctl(g, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT))).toBe(0);
    expect(holders(host)).toContainEqual([2, 'kvm0/vm3']);
    expect(checkInvariants(host)).toEqual([]);
    p.kill();
    expect(vac.tryResource(SEV_ASIDS)?.state()!.inUse).toEqual([]);
    for (const m of ['kvm3', 'kvm2', 'kvm1', 'kvm0', 'vac']) host.rmmod(m);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('ENOTTY on a module loaded with sev=N (and SEV-ES on sev_es=N); EINVAL with vCPUs, when already SEV, or for other commands', () => {
    const { host, p, sys } = sevHost();
    const off = p.ioctl(sys['kvm2']!, KVM_CREATE_VM, 0);
    expectFail(host, () => p.ioctl(off, ENCRYPT_OP, cmd(KVM_SEV_INIT)), 'ENOTTY');
    expectFail(host, () => p.ioctl(off, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT)), 'ENOTTY');
    expectFail(host, () => p.ioctl(off, ENCRYPT_OP, 'not a struct'), 'ENOTTY'); // before the argument is read
    const noEs = p.ioctl(sys['kvm3']!, KVM_CREATE_VM, 0);
    expectFail(host, () => p.ioctl(noEs, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT)), 'ENOTTY');
    expect(p.ioctl(noEs, ENCRYPT_OP, cmd(KVM_SEV_INIT))).toBe(0);
    const withVcpu = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    p.ioctl(withVcpu, KVM_CREATE_VCPU, 0);
    expectFail(host, () => p.ioctl(withVcpu, ENCRYPT_OP, cmd(KVM_SEV_INIT)), 'EINVAL');
    expectFail(host, () => p.ioctl(withVcpu, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT)), 'EINVAL');
    const vm = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, ENCRYPT_OP, cmd(KVM_SEV_INIT))).toBe(0);
    expectFail(host, () => p.ioctl(vm, ENCRYPT_OP, cmd(KVM_SEV_INIT)), 'EINVAL');
    expectFail(host, () => p.ioctl(vm, ENCRYPT_OP, cmd(KVM_SEV_ES_INIT)), 'EINVAL');
    const fresh = p.ioctl(sys['kvm0']!, KVM_CREATE_VM, 0);
    expectFail(host, () => p.ioctl(fresh, ENCRYPT_OP, cmd(2)), 'EINVAL'); // KVM_SEV_LAUNCH_START: not modelled
    expectFail(host, () => p.ioctl(fresh, ENCRYPT_OP, { id: 0 }), 'EFAULT');
    expect(checkInvariants(host)).toEqual([]);
  });

  test('an SEV guest runs with its SEV ASID (vCPUs created after KVM_SEV_INIT)', () => {
    const { host, p, sys } = sevHost();
    const vm = p.ioctl(sys['kvm1']!, KVM_CREATE_VM, 0);
    p.ioctl(vm, ENCRYPT_OP, cmd(KVM_SEV_INIT));
    const mem = p.mmapAnonymous(0x1000);
    mem.bytes.set(HELLO);
    p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: mem.addr });
    const fd = p.ioctl(vm, KVM_CREATE_VCPU, 0);
    const s = makeKvmSregs();
    p.ioctl(fd, KVM_GET_SREGS, s);
    s.cs.base = 0n;
    s.cs.selector = 0;
    p.ioctl(fd, KVM_SET_SREGS, s);
    p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n, rax: 2n, rbx: 2n }));
    const m = p.mmap(fd, 12288);
    const run = new KvmRunView(m.bytes.buffer, m.bytes.byteOffset);
    let out = '';
    for (;;) {
      p.ioctl(fd, KVM_RUN, 0);
      if (run.exit_reason !== KVM_EXIT_IO) break;
      out += String.fromCharCode(run.bytes[run.io.data_offset]!);
    }
    expect(out).toBe('4\n');
    expect(run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(vcpuOf(p, fd).vendor.tlbTag()).toEqual({ kind: 'asid', value: 3 });
    expect(inst(host, 'kvm1').snapshot()).toMatchObject([{ vm: 1, encryption: 'sev' }]);
    expect(checkInvariants(host)).toEqual([]);
  });
});
