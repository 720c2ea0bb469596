/**
 * Module builds (builds/): each shipped build's differences from 6.12, seen through the ABI of two modules loaded
 * side by side — lsmod and sysfs, KVM_CHECK_EXTENSION, KVM_ENABLE_CAP's errno, KVM_GET_MSR_INDEX_LIST,
 * KVM_GET/SET_MSRS, KVM_GET_SUPPORTED_CPUID, VAC's usage count — and the 6.18 build against the real 6.18 kernel's
 * golden facts where 6.12 differs from it.
 */
import { readFileSync } from 'node:fs';
import { createHost, isKernelError, O_RDWR, UsageError, type Host, type HostOptions, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_ASYNC_PF_INT,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_X86_DISABLE_EXITS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  KVM_GET_MSRS,
  KVM_GET_SUPPORTED_CPUID,
  KVM_SET_MSRS,
  KVM_EXIT_HLT,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  KVM_X86_DISABLE_EXITS_HLT,
  KVM_X86_DISABLE_EXITS_MWAIT,
  KVM_X86_DISABLE_EXITS_PAUSE,
  LINUX_5_7,
  LINUX_6_1,
  LINUX_6_1_12,
  LINUX_6_11,
  LINUX_6_12,
  LINUX_6_14,
  LINUX_6_18,
  SHIPPED_BUILDS,
  createRealModeVcpu,
  kvm,
  makeKvmCpuid2,
  makeKvmEnableCap,
  makeKvmMsrs,
  msrIndexList,
  type KvmBuild,
} from '../../src/index.js';
import { vacIn } from '../module/integration.js';

const MSR_KVM_ASYNC_PF_INT = 0x4b564d06;
const MSR_KVM_ASYNC_PF_ACK = 0x4b564d07;

/** kvm0 of build `a` and kvm1 of build `b` on one host, and a VMM with both opened. */
function pair(a: KvmBuild, b: KvmBuild, hardware: HostOptions['hardware'] = intel(), params1: Record<string, string> = {}): { host: Host; p: Process; s0: number; s1: number } {
  const host = createHost({ cpus: 2, hardware });
  host.modprobe(kvm({ postfix: '0', build: a }));
  host.modprobe(kvm({ postfix: '1', build: b }), params1);
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  return { host, p, s0: p.open('/dev/kvm0', O_RDWR), s1: p.open('/dev/kvm1', O_RDWR) };
}

const check = (p: Process, fd: number, cap: number): number => p.ioctl(fd, KVM_CHECK_EXTENSION, cap);

function enableCap(p: Process, vm: number, cap: number, arg0: bigint): number {
  return p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [arg0, 0n, 0n, 0n] }));
}

function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (isKernelError(e)) return e.code;
    throw e;
  }
}

function supportedLeaf(p: Process, sys: number, fn: number): { eax: number; ebx: number; ecx: number; edx: number } | undefined {
  const c = makeKvmCpuid2(256);
  p.ioctl(sys, KVM_GET_SUPPORTED_CPUID, c);
  return c.entries.slice(0, c.nent).find((e) => e.function === fn && e.index === 0);
}

describe('the library', () => {
  test('seven builds beside the baseline, each change citing upstream commits', () => {
    expect(SHIPPED_BUILDS.map((b) => b.name)).toEqual(['linux-6.18', 'linux-6.14', 'linux-6.12', 'linux-6.11', 'linux-6.1.12', 'linux-6.1', 'linux-5.16', 'linux-5.7']);
    const changes = new Set(SHIPPED_BUILDS.flatMap((b) => b.changes));
    expect(changes.size).toBe(9);
    for (const c of changes) for (const h of c.commits) expect(h).toMatch(/^[0-9a-f]{12,40}$/);
  });

  test('lsmod shows each module\'s release; sysfs shows the parameters its build has', () => {
    const { host } = pair(LINUX_6_11, LINUX_6_18);
    const rows = new Map(host.lsmod().map((r) => [r.name, r.version]));
    expect(rows.get('kvm0')).toBe('6.11');
    expect(rows.get('kvm1')).toBe('6.18');
    expect(() => host.readParam('kvm0', 'enable_virt_at_load')).toThrow(/No such file/);
    expect(host.readParam('kvm1', 'enable_virt_at_load')).toBe('Y');
    expect(host.readParam('kvm1', 'mitigate_smt_rsb')).toBe('N');
  });

  test('a malformed build is a UsageError before anything is loaded', () => {
    const host = createHost({ cpus: 1, hardware: intel() });
    const bad = (build: unknown): void => {
      expect(() => kvm({ postfix: '0', build: build as KvmBuild })).toThrow(UsageError);
    };
    bad(null);
    bad({ name: 'X', linux: '6.1', changes: [] });
    bad({ name: 'x', linux: 'six', changes: [] });
    const base = { id: 'c', direction: '-', commits: ['6f0f2d5ef895'], subject: 's', since: '6.2', summary: 's', linux: [] };
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, commits: ['HEAD'] }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { params: { no_such_param: null } } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { params: { halt_poll_ns: 'many' } } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { quirks: { add: 1 << 20 } } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: {} }, { ...base, effects: {} }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { msrs: { remove: 0x10 } } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { cpuid: [{ function: 1, index: 0, reg: 'esp', mask: 1 }] } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { capsRemoved: [-1] } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, direction: '+', effects: { errnos: ['no-such-change'] } }] });
    bad({ name: 'x', linux: '6.1', changes: [{ ...base, effects: { errnos: ['disable-exits-after-vcpus'] } }] });
    expect(host.lsmod().map((r) => r.name)).toEqual([]);
  });

  test('a build may give a parameter another default: sysfs and the ABI follow it', () => {
    const hardened: KvmBuild = {
      name: 'linux-6.12-ctrp-on',
      linux: '6.12',
      changes: [{ id: 'ctrp-default-on', direction: '+', commits: ['6f0f2d5ef895'], subject: 'distro: mitigate_smt_rsb=Y by default', since: '6.12', summary: 'The CVE-2022-27672 mitigation is on by default.', linux: [], effects: { params: { mitigate_smt_rsb: true } } }],
    };
    const { host, p, s0, s1 } = pair(LINUX_6_12, hardened);
    expect(host.readParam('kvm1', 'mitigate_smt_rsb')).toBe('Y');
    expect(check(p, s0, KVM_CAP_X86_DISABLE_EXITS) & KVM_X86_DISABLE_EXITS_HLT).toBe(KVM_X86_DISABLE_EXITS_HLT);
    expect(check(p, s1, KVM_CAP_X86_DISABLE_EXITS)).toBe(KVM_X86_DISABLE_EXITS_PAUSE);
  });
});

describe('6.11 (before enable_virt_at_load and KVM_X86_QUIRK_SLOT_ZAP_ALL)', () => {
  test('the module takes no usage reference at load; its first VM does', () => {
    const host = createHost({ cpus: 2, hardware: intel() });
    host.modprobe(kvm({ postfix: '0', build: LINUX_6_11 }));
    expect(vacIn(host).usageCount).toBe(0);
    const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
    const vm = p.ioctl(p.open('/dev/kvm0', O_RDWR), KVM_CREATE_VM, 0);
    expect(vacIn(host).usageCount).toBe(1);
    p.close(vm);
    expect(vacIn(host).usageCount).toBe(0);
    host.modprobe(kvm({ postfix: '1', build: LINUX_6_12 }));
    expect(vacIn(host).usageCount).toBe(1);
  });

  test('KVM_CAP_DISABLE_QUIRKS2 lacks bit 7, and disabling it is EINVAL there only', () => {
    const { p, s0, s1 } = pair(LINUX_6_11, LINUX_6_12);
    expect(check(p, s0, KVM_CAP_DISABLE_QUIRKS2)).toBe(0x17f);
    expect(check(p, s1, KVM_CAP_DISABLE_QUIRKS2)).toBe(0x1ff);
    const vm0 = p.ioctl(s0, KVM_CREATE_VM, 0);
    const vm1 = p.ioctl(s1, KVM_CREATE_VM, 0);
    expect(errnoOf(() => enableCap(p, vm0, KVM_CAP_DISABLE_QUIRKS2, 1n << 7n))).toBe('EINVAL');
    expect(enableCap(p, vm1, KVM_CAP_DISABLE_QUIRKS2, 1n << 7n)).toBe(0);
  });
});

describe('6.14 and 6.18 (new quirks)', () => {
  test.each([
    ['intel', '6.14', intel, LINUX_6_14, 0x3ff],
    ['amd', '6.14', amd, LINUX_6_14, 0x1ff],
    ['intel', '6.18', intel, LINUX_6_18, 0x7ff],
    ['amd', '6.18', amd, LINUX_6_18, 0x5ff],
  ] as const)('%s, %s: KVM_CAP_DISABLE_QUIRKS2 is %i on both fds; bits 9 and 10 can be disabled where offered only', (_n, _v, hw, build, expected) => {
    const { p, s0, s1 } = pair(LINUX_6_12, build, hw());
    expect(check(p, s1, KVM_CAP_DISABLE_QUIRKS2)).toBe(expected);
    const vm1 = p.ioctl(s1, KVM_CREATE_VM, 0);
    expect(check(p, vm1, KVM_CAP_DISABLE_QUIRKS2)).toBe(expected);
    expect(check(p, s0, KVM_CAP_DISABLE_QUIRKS2)).toBe(0x1ff);
    const vm0 = p.ioctl(s0, KVM_CREATE_VM, 0);
    for (const bit of [9n, 10n]) {
      const offered = (BigInt(expected) >> bit) & 1n;
      expect(errnoOf(() => enableCap(p, vm1, KVM_CAP_DISABLE_QUIRKS2, 1n << bit))).toBe(offered === 1n ? undefined : 'EINVAL');
      expect(errnoOf(() => enableCap(p, vm0, KVM_CAP_DISABLE_QUIRKS2, 1n << bit))).toBe('EINVAL');
    }
  });

  test('6.18 answers what the real 6.18 kernel answered (conformance/golden/caps.json) where 6.12 does not', () => {
    const golden = JSON.parse(readFileSync(new URL('../../../../conformance/golden/caps.json', import.meta.url), 'utf8')) as { facts: Array<{ id: string; steps: Array<{ ret: unknown }> }> };
    const ret = (id: string): unknown => golden.facts.find((f) => f.id === id)?.steps.at(-1)?.ret;
    // The recording machine's vendor module is not VMX, so IGNORE_GUEST_PAT is not offered: as on AMD here.
    const { p, s0, s1 } = pair(LINUX_6_12, LINUX_6_18, amd());
    const vm1 = p.ioctl(s1, KVM_CREATE_VM, 0);
    expect(check(p, s1, KVM_CAP_DISABLE_QUIRKS2)).toBe(ret('cap.system.KVM_CAP_DISABLE_QUIRKS2'));
    expect(check(p, vm1, KVM_CAP_DISABLE_QUIRKS2)).toBe(ret('cap.vm.KVM_CAP_DISABLE_QUIRKS2'));
    expect(check(p, s0, KVM_CAP_DISABLE_QUIRKS2)).not.toBe(ret('cap.system.KVM_CAP_DISABLE_QUIRKS2'));
  });
});

describe('6.1 and 6.1.12 (CVE-2022-27672, mitigate_smt_rsb)', () => {
  test('6.1.12 loaded with the mitigation does not let a VM disable HLT exits (offers only PAUSE, ignores HLT); 6.1 cannot be asked to', () => {
    const { host, p, s0, s1 } = pair(LINUX_6_1, LINUX_6_1_12, intel(), { mitigate_smt_rsb: 'Y' });
    expect(() => host.readParam('kvm0', 'mitigate_smt_rsb')).toThrow(/No such file/);
    expect(host.readParam('kvm1', 'mitigate_smt_rsb')).toBe('Y');
    expect(check(p, s0, KVM_CAP_X86_DISABLE_EXITS) & KVM_X86_DISABLE_EXITS_HLT).toBe(KVM_X86_DISABLE_EXITS_HLT);
    expect(check(p, s1, KVM_CAP_X86_DISABLE_EXITS)).toBe(KVM_X86_DISABLE_EXITS_PAUSE);
    const vm0 = hltVm(p, s0);
    const vm1 = hltVm(p, s1);
    expect(enableCap(p, vm0, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_HLT))).toBe(0);
    // Before 6.14 (c829ccd4d9dc) the call is taken and the exits KVM does not allow are left on.
    expect(enableCap(p, vm1, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_PAUSE))).toBe(0);
    expect(runHlt(p, s0, vm0, 0)).toBe('EINTR');
    expect(runHlt(p, s1, vm1, 0)).toBe('hlt');
  });

  test('6.1 ignores mitigate_smt_rsb=Y with the loader\'s warning, and keeps offering HLT', () => {
    const host = createHost({ cpus: 1, hardware: intel() });
    host.modprobe(kvm({ postfix: '0', build: LINUX_6_1 }), { mitigate_smt_rsb: 'Y' });
    const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
    const sys = p.open('/dev/kvm0', O_RDWR);
    expect(check(p, sys, KVM_CAP_X86_DISABLE_EXITS) & KVM_X86_DISABLE_EXITS_HLT).toBe(KVM_X86_DISABLE_EXITS_HLT);
  });
});

/** A real-mode vCPU `id` of `vm` at `hlt` (0x1000), run once: `'hlt'` if HLT exited, else the errno of KVM_RUN. */
function runHlt(p: Process, sys: number, vm: number, id: number): string {
  const v = createRealModeVcpu(p, sys, vm, { id, guestPhysAddr: 0x1000 });
  try {
    p.ioctl(v.fd, KVM_RUN, 0);
    return v.run.exit_reason === KVM_EXIT_HLT ? 'hlt' : `exit ${v.run.exit_reason}`;
  } catch (e) {
    if (isKernelError(e)) return e.code;
    throw e;
  }
}

/** A VM of `sys` with one page holding `hlt` at guest-physical 0x1000. */
function hltVm(p: Process, sys: number): number {
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const m = p.mmapAnonymous(0x1000);
  m.bytes.set([0xf4]);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: m.addr });
  return vm;
}

describe('6.14 and 6.18: the errno of KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) changed (04cd8f8628d8, c829ccd4d9dc)', () => {
  test.each([['6.14', LINUX_6_14], ['6.18', LINUX_6_18]] as const)('after a vCPU exists: 6.12 takes it (only vCPUs created later stay in the guest on HLT), %s refuses with EINVAL and changes nothing', (_v, build) => {
    const { host, p, s0, s1 } = pair(LINUX_6_12, build);
    const vm0 = hltVm(p, s0);
    const vm1 = hltVm(p, s1);
    const early0 = createRealModeVcpu(p, s0, vm0, { id: 0, guestPhysAddr: 0x1000 });
    createRealModeVcpu(p, s1, vm1, { id: 0, guestPhysAddr: 0x1000 });
    expect(enableCap(p, vm0, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_HLT))).toBe(0);
    const before = host.snapshot();
    expect(errnoOf(() => enableCap(p, vm1, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_HLT)))).toBe('EINVAL');
    expect(host.snapshot()).toEqual(before);
    // 6.12: the vCPU that existed keeps its HLT intercept; one created now runs HLT in the guest (blocks: EINTR).
    p.ioctl(early0.fd, KVM_RUN, 0);
    expect(early0.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(runHlt(p, s0, vm0, 1)).toBe('EINTR');
    // 6.14+: nothing was disabled, so a new vCPU's HLT exits.
    expect(runHlt(p, s1, vm1, 1)).toBe('hlt');
  });

  test('6.18 answers as the real 6.18 kernel did after vCPU creation (packages/kvm/test/fixtures/real-kvm/linux-6.18.json); 6.12 does not', () => {
    const real = JSON.parse(readFileSync(new URL('../fixtures/real-kvm/linux-6.18.json', import.meta.url), 'utf8')) as { errno: Record<string, { ret: number; errno: string | null }> };
    expect(real.errno['enable_cap_disable_exits_pause_after_vcpus']).toEqual({ ret: -1, errno: 'EINVAL' });
    const { p, s0, s1 } = pair(LINUX_6_12, LINUX_6_18, amd());
    const vm0 = p.ioctl(s0, KVM_CREATE_VM, 0);
    const vm1 = p.ioctl(s1, KVM_CREATE_VM, 0);
    p.ioctl(vm0, KVM_CREATE_VCPU, 0);
    p.ioctl(vm1, KVM_CREATE_VCPU, 0);
    expect(errnoOf(() => enableCap(p, vm1, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_PAUSE)))).toBe('EINVAL');
    expect(errnoOf(() => enableCap(p, vm0, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_PAUSE)))).toBeUndefined();
  });

  test('an exit KVM does not offer (MWAIT without MONITOR on the AMD model; HLT under mitigate_smt_rsb): 6.12 takes and ignores it, 6.14 refuses it', () => {
    const { host, p, s0, s1 } = pair(LINUX_6_12, LINUX_6_14, amd());
    expect(check(p, s0, KVM_CAP_X86_DISABLE_EXITS) & KVM_X86_DISABLE_EXITS_MWAIT).toBe(0);
    expect(check(p, s1, KVM_CAP_X86_DISABLE_EXITS) & KVM_X86_DISABLE_EXITS_MWAIT).toBe(0);
    const vm0 = p.ioctl(s0, KVM_CREATE_VM, 0);
    const vm1 = p.ioctl(s1, KVM_CREATE_VM, 0);
    const before = host.snapshot();
    expect(enableCap(p, vm0, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_MWAIT))).toBe(0);
    expect(host.snapshot()).toEqual(before); // taken, and nothing disabled
    expect(errnoOf(() => enableCap(p, vm1, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_MWAIT)))).toBe('EINVAL');
    expect(errnoOf(() => enableCap(p, vm1, KVM_CAP_X86_DISABLE_EXITS, 0x10n))).toBe('EINVAL');
    expect(errnoOf(() => enableCap(p, vm0, KVM_CAP_X86_DISABLE_EXITS, 0x10n))).toBe('EINVAL'); // not in KVM_X86_DISABLE_VALID_EXITS

    const m = pair(LINUX_6_12, LINUX_6_14, intel(), { mitigate_smt_rsb: 'Y' });
    const hm = createHost({ cpus: 1, hardware: intel() });
    hm.modprobe(kvm({ postfix: '0', build: LINUX_6_12 }), { mitigate_smt_rsb: 'Y' });
    const pm = hm.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
    const sm = pm.open('/dev/kvm0', O_RDWR);
    const vmm = hltVm(pm, sm);
    expect(enableCap(pm, vmm, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_HLT))).toBe(0);
    expect(runHlt(pm, sm, vmm, 0)).toBe('hlt'); // ignored: HLT still exits
    const vm14 = m.p.ioctl(m.s1, KVM_CREATE_VM, 0);
    expect(errnoOf(() => enableCap(m.p, vm14, KVM_CAP_X86_DISABLE_EXITS, BigInt(KVM_X86_DISABLE_EXITS_HLT)))).toBe('EINVAL');
  });
});

describe('5.7 (before interrupt-based async page faults)', () => {
  test.each([['intel', intel], ['amd', amd]] as const)('%s: the MSR list, the MSR ioctls, the supported CPUID and the cap all lack it', (_n, hw) => {
    const { p, s0, s1 } = pair(LINUX_5_7, LINUX_6_12, hw());
    const l0 = msrIndexList(p, s0);
    const l1 = msrIndexList(p, s1);
    expect(l1.filter((m) => !l0.includes(m))).toEqual([MSR_KVM_ASYNC_PF_INT, MSR_KVM_ASYNC_PF_ACK]);
    expect(l0.filter((m) => !l1.includes(m))).toEqual([]);
    expect(check(p, s0, KVM_CAP_ASYNC_PF_INT)).toBe(0);
    expect(check(p, s1, KVM_CAP_ASYNC_PF_INT)).toBe(1);
    expect((supportedLeaf(p, s0, 0x40000001)?.eax ?? 0) & (1 << 14)).toBe(0);
    expect((supportedLeaf(p, s1, 0x40000001)?.eax ?? 0) & (1 << 14)).toBe(1 << 14);
    // KVM_GET_MSRS / KVM_SET_MSRS: 6.12 reads and takes 0; 5.7 has no handler and stops at the first entry.
    for (const [sys, n] of [[s0, 0], [s1, 1]] as const) {
      const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
      const vcpu = p.ioctl(vm, KVM_CREATE_VCPU, 0);
      expect(p.ioctl(vcpu, KVM_GET_MSRS, makeKvmMsrs([{ index: MSR_KVM_ASYNC_PF_INT, data: 0n }]))).toBe(n);
      expect(p.ioctl(vcpu, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_KVM_ASYNC_PF_ACK, data: 0n }]))).toBe(n);
    }
  });
});
