/**
 * Arguments are copied once (issue 14): every ioctl of every KVM file, tried with getters, Proxies whose traps
 * throw, revoked Proxies, missing fields, number/bigint confusion, frozen, read-only and accessor outputs, and
 * value arguments no `unsigned long` can hold. Each must fail with a KernelError (EFAULT for a structure the
 * kernel cannot copy, EINVAL for a bad value) or a UsageError — never a raw TypeError or RangeError — and leave the
 * host exactly as it was (and an output object untouched).
 */
import { KernelError, O_RDWR, UsageError, createHost, type Host, type Process } from '@vac/core';
import { turnEventLoopIfDue } from '@vac/test-support';
import { describe, expect, test } from 'vitest';
import {
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_IOCTL_TABLE,
  KVM_MEM_READONLY,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_EXIT_MMIO,
  createRealModeVcpu,
  createRealModeVm,
  kvm,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  makeKvmCpuid2,
  makeKvmRegs,
  makeKvmSregs,
  type IoctlFd,
  type KvmIoctlInfo,
  type KvmRunView,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { BAD_VALUES, badInputs, badOutputs, sampleArg } from './bad-arguments.js';

interface Setup {
  readonly host: Host;
  readonly p: Process;
  readonly fds: Record<IoctlFd, number>;
  readonly run: KvmRunView;
  readonly mem: { readonly addr: number; readonly bytes: Uint8Array };
}

function setup(vendor: (typeof VENDORS)[number]): Setup {
  const host = createHost({ cpus: 2, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  // a guest that writes one byte to 0x2000 and halts: mov byte [0x2000], 0x55; hlt
  const { sys, vm, vcpus: none, memory } = createRealModeVm(p, '/dev/kvm0', { code: [0xc6, 0x06, 0x00, 0x20, 0x55, 0xf4], vcpus: 0 });
  // With the in-kernel irqchip and PIT, so that their ioctls get as far as copying their arguments.
  p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  p.ioctl(vm, KVM_CREATE_PIT2, { flags: 0 });
  const v = [...none, createRealModeVcpu(p, sys, vm)][0];
  if (v === undefined) throw new Error('no vCPU');
  return { host, p, fds: { system: sys, vm, vcpu: v.fd }, run: v.run, mem: memory };
}

/** What `fn` threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** The errno code `fn` fails with, asserting it is a KernelError or UsageError and the host is unchanged. */
function failure(s: Setup, fn: () => unknown, what: string): string {
  const before = s.host.snapshot();
  const e = thrown(fn);
  if (!(e instanceof KernelError) && !(e instanceof UsageError)) {
    throw new Error(`${what}: expected a KernelError or UsageError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  expect(s.host.snapshot(), `${what}: the host changed`).toEqual(before);
  return e instanceof KernelError ? e.code : e.code;
}

/** A deep copy of what `x` holds (its own data properties, accessors as markers; a Proxy as a marker). */
function snapshotOf(x: unknown): unknown {
  try {
    return structuredClone(x);
  } catch {
    if (typeof x !== 'object' || x === null) return x;
    const out: Record<string, unknown> = {};
    for (const k of Reflect.ownKeys(x)) {
      const d = Object.getOwnPropertyDescriptor(x, k);
      out[String(k)] = d === undefined ? undefined : 'value' in d ? snapshotOf(d.value) : '<accessor>';
    }
    return out;
  }
}

/**
 * Entries a flexible argument needs to get past the checks before the kernel copies the entries (a list shorter than
 * the kernel's is E2BIG before any entry is touched; a signal mask must be 8 bytes).
 */
const SAMPLE_COUNT: Readonly<Record<string, number>> = {
  KVM_GET_MSR_INDEX_LIST: 128,
  KVM_GET_MSR_FEATURE_INDEX_LIST: 128,
  KVM_GET_SUPPORTED_CPUID: 256,
  KVM_GET_EMULATED_CPUID: 256,
  KVM_SET_SIGNAL_MASK: 8,
};

/** State an ioctl needs before its argument is used at all (KVM_GET_CPUID2 copies out only the entries set). */
function prepare(s: Setup, name: string): void {
  if (name === 'KVM_GET_CPUID2') s.p.ioctl(s.fds.vcpu, KVM_SET_CPUID2, makeKvmCpuid2([{ function: 0, eax: 1 }]));
}

/**
 * A well-formed argument for the ioctl: for a list the kernel fills (its count is written back), exactly as many
 * entries as it fills, learnt from one successful call — so that every entry of the sample is one the kernel writes.
 */
function sampleFor(s: Setup, info: KvmIoctlInfo): unknown {
  const count = SAMPLE_COUNT[info.name];
  const spec = info.arg;
  if (spec.dir === 'none' || spec.dir === 'value' || spec.flex?.header !== 'inout' || !('countField' in spec.codec)) return sampleArg(spec, count);
  const probe = sampleArg(spec, count) as Record<string, unknown>;
  s.p.ioctl(s.fds[info.fd], info.request, probe);
  return sampleArg(spec, probe[spec.codec.countField] as number);
}

const structIoctls = KVM_IOCTL_TABLE.filter((i): i is KvmIoctlInfo & { arg: { dir: 'in' | 'out' | 'inout' } } => i.arg.dir !== 'none' && i.arg.dir !== 'value');
const valueIoctls = KVM_IOCTL_TABLE.filter((i) => i.arg.dir === 'value' && i.name !== 'KVM_RUN' && i.name !== 'KVM_CREATE_VM' && i.name !== 'KVM_CREATE_VCPU');

describe.each(VENDORS)('ioctl arguments on $name', (vendor) => {
  test('the table covers the struct ioctls', () => {
    expect(structIoctls.length).toBeGreaterThan(0);
  });

  test.each(structIoctls.filter((i) => i.arg.dir !== 'out').map((i) => [i.name, i] as const))('%s: hostile inputs', (_name, info) => {
    const s = setup(vendor);
    prepare(s, info.name);
    // What a bad pointer gets (EFAULT, unless the ioctl fails earlier, e.g. ENOTTY without SEV).
    const baseline = failure(s, () => s.p.ioctl(s.fds[info.fd], info.request, 'not a struct'), `${info.name}('not a struct')`);
    for (const bad of badInputs(sampleFor(s, info), info.arg)) {
      const code = failure(s, () => s.p.ioctl(s.fds[info.fd], info.request, bad.make()), `${info.name}: ${bad.what}`);
      expect(code, `${info.name}: ${bad.what}`).toBe(baseline);
    }
  });

  test.each(structIoctls.filter((i) => i.arg.dir !== 'in').map((i) => [i.name, i] as const))('%s: hostile outputs', async (_name, info) => {
    const s = setup(vendor);
    prepare(s, info.name);
    for (const bad of badOutputs(sampleFor(s, info), info.arg)) {
      const arg = bad.make();
      const copy = snapshotOf(arg);
      const code = failure(s, () => s.p.ioctl(s.fds[info.fd], info.request, arg), `${info.name}: ${bad.what}`);
      if (info.arg.dir === 'out') expect(code, `${info.name}: ${bad.what}`).toBe('EFAULT');
      expect(snapshotOf(arg), `${info.name}: ${bad.what} was written`).toEqual(copy);
      await turnEventLoopIfDue(); // KVM_GET_SUPPORTED_CPUID's hundreds of cases: seconds on a loaded machine
    }
  });

  test.each(valueIoctls.map((i) => [i.name, i] as const))('%s: values no unsigned long can hold → EINVAL', (_name, info) => {
    const s = setup(vendor);
    for (const bad of BAD_VALUES) {
      expect(failure(s, () => s.p.ioctl(s.fds[info.fd], info.request, bad.make()), `${info.name}(${bad.what})`)).toBe('EINVAL');
    }
  });
});

describe('the kernel reads each field once and acts on that copy', () => {
  test('a memslot recorded read-only stays read-only, whatever the argument says later', () => {
    const s = setup(VENDORS[0]);
    const m = s.p.mmapAnonymous(0x1000);
    let reads = 0;
    const flip = new Proxy(
      { slot: 1, flags: KVM_MEM_READONLY, guest_phys_addr: 0x2000, memory_size: 0x1000, userspace_addr: m.addr },
      {
        getOwnPropertyDescriptor(t, k) {
          const d = Reflect.getOwnPropertyDescriptor(t, k);
          if (k === 'flags' && d !== undefined) return { ...d, value: reads++ === 0 ? KVM_MEM_READONLY : 0 };
          return d;
        },
      },
    );
    expect(s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, flip)).toBe(0);
    expect(reads).toBe(1);
    // The guest's write to 0x2000 is an MMIO exit, not a write to the slot's memory.
    s.p.ioctl(s.fds.vcpu, KVM_RUN, 0);
    expect(s.run.exit_reason).toBe(KVM_EXIT_MMIO);
    expect(s.run.mmio.phys_addr).toBe(0x2000);
    expect(m.bytes[0]).toBe(0);
  });

  test('KVM_SET_SREGS validates the value it applies (CR0.PG without PE is refused even if a later read says PE)', () => {
    const s = setup(VENDORS[0]);
    const sregs = makeKvmSregs();
    s.p.ioctl(s.fds.vcpu, KVM_GET_SREGS, sregs);
    let reads = 0;
    const arg = new Proxy(sregs, {
      getOwnPropertyDescriptor(t, k) {
        const d = Reflect.getOwnPropertyDescriptor(t, k);
        if (k === 'cr0' && d !== undefined) return { ...d, value: reads++ === 0 ? 0x80000010n : 0x80000011n };
        return d;
      },
    });
    expect(failure(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_SREGS, arg), 'PG without PE')).toBe('EINVAL');
    expect(reads).toBe(1);
  });

  test('a getter half-way through kvm_regs changes no register', () => {
    const s = setup(VENDORS[1]);
    const before = makeKvmRegs();
    s.p.ioctl(s.fds.vcpu, KVM_GET_REGS, before);
    const regs = makeKvmRegs({ rax: 1n, rbx: 2n, rcx: 3n });
    Object.defineProperty(regs, 'r15', { get: () => 15n, enumerable: true });
    expect(failure(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_REGS, regs), 'getter on r15')).toBe('EFAULT');
    const after = makeKvmRegs();
    s.p.ioctl(s.fds.vcpu, KVM_GET_REGS, after);
    expect(after).toEqual(before);
  });

  test('a NaN RIP is refused at the copy, so KVM_GET_REGS keeps working', () => {
    const s = setup(VENDORS[0]);
    expect(failure(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_REGS, { ...makeKvmRegs(), rip: Number.NaN }), 'NaN rip')).toBe('EFAULT');
    expect(s.p.ioctl(s.fds.vcpu, KVM_GET_REGS, makeKvmRegs())).toBe(0);
  });

  test('struct arguments may be the C bytes (a Uint8Array), in and out', () => {
    const s = setup(VENDORS[0]);
    const bytes = new Uint8Array(144);
    expect(s.p.ioctl(s.fds.vcpu, KVM_GET_REGS, bytes)).toBe(0);
    const dv = new DataView(bytes.buffer);
    expect(dv.getBigUint64(128, true)).toBe(0x1000n); // rip
    dv.setBigUint64(0, 0x1234n, true); // rax
    expect(s.p.ioctl(s.fds.vcpu, KVM_SET_REGS, bytes)).toBe(0);
    const r = makeKvmRegs();
    s.p.ioctl(s.fds.vcpu, KVM_GET_REGS, r);
    expect(r.rax).toBe(0x1234n);
    expect(failure(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_REGS, new Uint8Array(143)), 'short bytes')).toBe('EFAULT');
  });
});

test('every fd kind is exercised', () => {
  expect(new Set(KVM_IOCTL_TABLE.map((i) => i.fd))).toEqual(new Set(['system', 'vm', 'vcpu']));
  expect(O_RDWR).toBe(2);
});
