/**
 * Bad input, table-driven (issue 6): every ioctl the KVM module implements × wrong fd kind, closed fd, fd of
 * another process, wrong argument type or shape, out-of-range values and oversized counts → the exact errno
 * Linux gives, never an exception other than KernelError, and no state change (`host.snapshot()` equal).
 *
 * Linux references: `kvm_dev_ioctl` / `kvm_vm_ioctl` / `kvm_vcpu_ioctl` (virt/kvm/kvm_main.c) and their x86
 * defaults (`kvm_arch_dev_ioctl` → EINVAL, `kvm_arch_vm_ioctl` → ENOTTY, `kvm_arch_vcpu_ioctl` → EINVAL); a
 * bad user pointer (here: an argument that is not a struct of the right shape) → EFAULT (`copy_from_user`);
 * `fdget` of a number that is not an open fd of the caller → EBADF; an ioctl on a file without one → ENOTTY.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { O_RDONLY, O_RDWR, checkInvariants, type ErrnoCode, type Host, type Process } from '@vac/core';
import {
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
} from '../../src/index.js';
import { GUESTS, VENDORS, expectFails, makeHost, readyVm, tally, type VendorEntry } from './support.js';

const kvm0 = kvm({ postfix: '0' });

afterAll(() => {
  console.log(`[bad-input] ${tally.badInputs} bad inputs checked`);
});

type Kind = 'sys' | 'vm' | 'vcpu';

/** Every ioctl the module implements, the fd kind that serves it, and a valid argument. */
const IOCTLS: ReadonlyArray<{ readonly name: string; readonly req: number; readonly kind: Kind; readonly arg: () => unknown }> = [
  { name: 'KVM_GET_API_VERSION', req: KVM_GET_API_VERSION, kind: 'sys', arg: () => 0 },
  { name: 'KVM_CREATE_VM', req: KVM_CREATE_VM, kind: 'sys', arg: () => 0 },
  { name: 'KVM_CHECK_EXTENSION', req: KVM_CHECK_EXTENSION, kind: 'sys', arg: () => 1 },
  { name: 'KVM_GET_VCPU_MMAP_SIZE', req: KVM_GET_VCPU_MMAP_SIZE, kind: 'sys', arg: () => 0 },
  { name: 'KVM_CREATE_VCPU', req: KVM_CREATE_VCPU, kind: 'vm', arg: () => 7 },
  { name: 'KVM_SET_USER_MEMORY_REGION', req: KVM_SET_USER_MEMORY_REGION, kind: 'vm', arg: () => ({ slot: 3, flags: 0, guest_phys_addr: 0x100000, memory_size: 0x1000, userspace_addr: 0 }) },
  { name: 'KVM_CREATE_IRQCHIP', req: KVM_CREATE_IRQCHIP, kind: 'vm', arg: () => 0 },
  { name: 'KVM_SET_TSS_ADDR', req: KVM_SET_TSS_ADDR, kind: 'vm', arg: () => 0xfffbd000 },
  { name: 'KVM_MEMORY_ENCRYPT_OP', req: KVM_MEMORY_ENCRYPT_OP, kind: 'vm', arg: () => ({ id: 0, data: 0, error: 0, sev_fd: 0 }) },
  { name: 'KVM_RUN', req: KVM_RUN, kind: 'vcpu', arg: () => 0 },
  { name: 'KVM_GET_REGS', req: KVM_GET_REGS, kind: 'vcpu', arg: () => makeKvmRegs() },
  { name: 'KVM_SET_REGS', req: KVM_SET_REGS, kind: 'vcpu', arg: () => makeKvmRegs({ rip: 0x1000n, rflags: 2n }) },
  { name: 'KVM_GET_SREGS', req: KVM_GET_SREGS, kind: 'vcpu', arg: () => makeKvmSregs() },
  { name: 'KVM_SET_SREGS', req: KVM_SET_SREGS, kind: 'vcpu', arg: () => makeKvmSregs() },
];

/** The answer of an fd kind to a request it does not serve (the x86 defaults). */
const UNKNOWN: Readonly<Record<Kind, ErrnoCode>> = { sys: 'EINVAL', vm: 'ENOTTY', vcpu: 'EINVAL' };
/** Requests served by more than one kind. */
const ALSO: ReadonlyArray<[number, Kind]> = [[KVM_CHECK_EXTENSION, 'vm']];

interface Setup {
  readonly host: Host;
  readonly p: Process;
  readonly other: Process;
  readonly fds: Record<Kind, number>;
  /** A root-only device with no ioctl handler. */
  readonly plain: number;
}

function setup(vendor: VendorEntry): Setup {
  const host = makeHost(vendor, 4);
  host.modprobe(kvm0);
  // A non-KVM character device (no ioctl, no mmap).
  host.devfs.miscRegister({ name: 'plain', minor: 255, fops: {}, mode: 0o666 });
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  const t = readyVm(p, '/dev/kvm0', GUESTS.hlt, 1);
  const plain = p.open('/dev/plain', O_RDWR);
  const other = host.spawn({ uid: 1000, groups: ['kvm'], name: 'other' });
  return { host, p, other, fds: { sys: t.sys, vm: t.vm, vcpu: t.vcpus[0] as number }, plain };
}

function bad(s: Setup, fn: () => unknown, code: ErrnoCode, what: string): void {
  expectFails(s.host, fn, code, what);
  tally.badInputs++;
}

/** Integers C can pass but that are out of range, and values C cannot pass at all. */
const NOT_AN_INT: readonly unknown[] = ['0', '', 1.5, NaN, Infinity, -Infinity, {}, [], [0], null, true, 2n ** 64n, -(2n ** 63n) - 1n, 2 ** 64, Symbol('x')];

/** Shapes that are not a struct: what a bad pointer is to copy_from_user. */
const NOT_A_STRUCT: readonly unknown[] = [undefined, null, 0, 1, -1, 0x7fff0000, 'struct', 5n, [], [1, 2, 3], true, () => 0];

describe.each(VENDORS)('bad input on $name', (vendor) => {
  describe.each(IOCTLS)('$name', ({ name, req, kind, arg }) => {
    test('on the wrong fd kind, on a file that is not KVM, on a closed fd, on another process’s fd', () => {
      const s = setup(vendor);
      for (const k of ['sys', 'vm', 'vcpu'] as Kind[]) {
        if (k === kind || ALSO.some(([r, kk]) => r === req && kk === k)) continue;
        // Argument shapes do not matter: the request is not served by this kind.
        bad(s, () => s.p.ioctl(s.fds[k], req, arg()), UNKNOWN[k], `${name} on a ${k} fd`);
      }
      bad(s, () => s.p.ioctl(s.plain, req, arg()), 'ENOTTY', `${name} on /dev/plain`);
      for (const fd of [0, 1, 2, 99, -1, 2 ** 31, 1.5, NaN]) bad(s, () => s.p.ioctl(fd, req, arg()), 'EBADF', `${name} on fd ${String(fd)}`);
      // fds are per process: the other process has none of these numbers.
      bad(s, () => s.other.ioctl(s.fds[kind], req, arg()), 'EBADF', `${name} on another process's fd`);
      const dup = s.p.open('/dev/kvm0', O_RDWR);
      s.p.close(dup);
      bad(s, () => s.p.ioctl(dup, req, arg()), 'EBADF', `${name} on a closed fd`);
    });
  });

  test('integer arguments: not an integer, or not representable in an unsigned long → EINVAL', () => {
    const s = setup(vendor);
    const intIoctls: Array<[string, number, Kind]> = [
      ['KVM_GET_API_VERSION', KVM_GET_API_VERSION, 'sys'],
      ['KVM_CREATE_VM', KVM_CREATE_VM, 'sys'],
      ['KVM_CHECK_EXTENSION', KVM_CHECK_EXTENSION, 'sys'],
      ['KVM_CHECK_EXTENSION (VM)', KVM_CHECK_EXTENSION, 'vm'],
      ['KVM_GET_VCPU_MMAP_SIZE', KVM_GET_VCPU_MMAP_SIZE, 'sys'],
      ['KVM_CREATE_VCPU', KVM_CREATE_VCPU, 'vm'],
      ['KVM_SET_TSS_ADDR', KVM_SET_TSS_ADDR, 'vm'],
      ['KVM_RUN', KVM_RUN, 'vcpu'],
    ];
    for (const [name, req, k] of intIoctls) {
      for (const a of NOT_AN_INT) bad(s, () => s.p.ioctl(s.fds[k], req, a), 'EINVAL', `${name}(${typeof a === 'symbol' ? 'symbol' : String(a)})`);
    }
  });

  test('integer arguments: out of range → EINVAL (API version, VM type, mmap size, vCPU ids, TSS address, KVM_RUN)', () => {
    const s = setup(vendor);
    for (const a of [1, -1, 12, 2 ** 32, 1n, -1n]) {
      bad(s, () => s.p.ioctl(s.fds.sys, KVM_GET_API_VERSION, a), 'EINVAL', `KVM_GET_API_VERSION(${String(a)})`);
      bad(s, () => s.p.ioctl(s.fds.sys, KVM_GET_VCPU_MMAP_SIZE, a), 'EINVAL', `KVM_GET_VCPU_MMAP_SIZE(${String(a)})`);
      bad(s, () => s.p.ioctl(s.fds.vcpu, KVM_RUN, a), 'EINVAL', `KVM_RUN(${String(a)})`);
    }
    // KVM_X86_DEFAULT_VM is the only VM type without a vendor-specific VM type.
    for (const a of [1, 2, 3, 4, -1, 2 ** 32, 0xffffffffn]) bad(s, () => s.p.ioctl(s.fds.sys, KVM_CREATE_VM, a), 'EINVAL', `KVM_CREATE_VM(${String(a)})`);
    // vCPU ids: [0, KVM_MAX_VCPU_IDS = 4096).
    for (const a of [4096, 4097, 2 ** 31, 2 ** 32, 2 ** 32 + 1, -1, -4096, 2n ** 63n, -1n]) bad(s, () => s.p.ioctl(s.fds.vm, KVM_CREATE_VCPU, a), 'EINVAL', `KVM_CREATE_VCPU(${String(a)})`);
    bad(s, () => s.p.ioctl(s.fds.vm, KVM_CREATE_VCPU, 0), 'EEXIST', 'KVM_CREATE_VCPU(0) twice');
    // The TSS's three pages must lie below 4 GiB (kvm_vm_ioctl_set_tss_addr).
    for (const a of [0xffffe000, 0xfffff000, 2 ** 32, 2 ** 40, -4096, -1n]) bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_TSS_ADDR, a), 'EINVAL', `KVM_SET_TSS_ADDR(${String(a)})`);
    // Unknown capabilities are 0, not an error.
    for (const a of [-1, 2 ** 32 + 1, 99999, 2n ** 63n]) expect(s.p.ioctl(s.fds.sys, KVM_CHECK_EXTENSION, a)).toBe(0);
  });

  test('struct arguments: not a struct → EFAULT', () => {
    const s = setup(vendor);
    const structIoctls: Array<[string, number, Kind]> = [
      ['KVM_SET_USER_MEMORY_REGION', KVM_SET_USER_MEMORY_REGION, 'vm'],
      ['KVM_GET_REGS', KVM_GET_REGS, 'vcpu'],
      ['KVM_SET_REGS', KVM_SET_REGS, 'vcpu'],
      ['KVM_GET_SREGS', KVM_GET_SREGS, 'vcpu'],
      ['KVM_SET_SREGS', KVM_SET_SREGS, 'vcpu'],
    ];
    if (vendor.name === 'amd') structIoctls.push(['KVM_MEMORY_ENCRYPT_OP', KVM_MEMORY_ENCRYPT_OP, 'vm']);
    for (const [name, req, k] of structIoctls) {
      for (const a of NOT_A_STRUCT) bad(s, () => s.p.ioctl(s.fds[k], req, a), 'EFAULT', `${name}(${typeof a === 'function' ? 'function' : String(a)})`);
    }
  });

  test('struct arguments: missing fields, wrong field types, fields out of the C type’s range → EFAULT', () => {
    const s = setup(vendor);
    const region = { slot: 3, flags: 0, guest_phys_addr: 0x100000, memory_size: 0x1000, userspace_addr: 0 };
    const mutations: Array<[string, unknown]> = [
      ['missing', undefined],
      ['string', '1'],
      ['bigint', 1n],
      ['negative', -1],
      ['fraction', 0.5],
      ['null', null],
      ['object', {}],
    ];
    for (const field of Object.keys(region)) {
      for (const [what, v] of mutations) {
        const a: Record<string, unknown> = { ...region };
        if (what === 'missing') delete a[field];
        else a[field] = v;
        bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, a), 'EFAULT', `region.${field} ${what}`);
      }
    }
    // Values no __u32 / __u64 can hold are a bad pointer (EFAULT)...
    for (const [field, v] of [['slot', 2 ** 32], ['flags', 2 ** 32], ['memory_size', 2 ** 64], ['userspace_addr', Number.MAX_VALUE]] as const) {
      bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, { ...region, [field]: v }), 'EFAULT', `region.${field} = ${v}`);
    }
    // ...while a __u64 above 2^53 is a value C can pass, and __kvm_set_memory_region rejects it: EINVAL.
    for (const [field, v] of [['guest_phys_addr', 2 ** 53], ['memory_size', 2 ** 53], ['userspace_addr', 2 ** 60], ['guest_phys_addr', 2 ** 64 - 2 ** 12]] as const) {
      bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, { ...region, [field]: v }), 'EINVAL', `region.${field} = ${v}`);
    }
    // kvm_regs: every field a __u64 bigint.
    const regs = makeKvmRegs();
    for (const field of Object.keys(regs)) {
      for (const v of [undefined, 1, '1', -1n, 2n ** 64n, null]) {
        bad(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_REGS, { ...regs, [field]: v }), 'EFAULT', `regs.${field} = ${String(v)}`);
      }
    }
    // kvm_sregs: segments, descriptor tables, u64s, the interrupt bitmap.
    const sregsMut: Array<[string, (x: Record<string, unknown>) => void]> = [
      ['cs missing', (x) => delete x['cs']],
      ['cs.base number', (x) => ((x['cs'] as Record<string, unknown>)['base'] = 0)],
      ['cs.limit bigint', (x) => ((x['cs'] as Record<string, unknown>)['limit'] = 0n)],
      ['cs.selector 2^16', (x) => ((x['cs'] as Record<string, unknown>)['selector'] = 2 ** 16)],
      ['cs.type 256', (x) => ((x['cs'] as Record<string, unknown>)['type'] = 256)],
      ['gdt.limit -1', (x) => ((x['gdt'] as Record<string, unknown>)['limit'] = -1)],
      ['idt missing', (x) => delete x['idt']],
      ['cr0 number', (x) => (x['cr0'] = 0)],
      ['efer 2^64', (x) => (x['efer'] = 2n ** 64n)],
      ['interrupt_bitmap short', (x) => (x['interrupt_bitmap'] = [0n, 0n, 0n])],
      ['interrupt_bitmap numbers', (x) => (x['interrupt_bitmap'] = [0, 0, 0, 0])],
    ];
    for (const [what, mut] of sregsMut) {
      const sr = makeKvmSregs() as unknown as Record<string, unknown>;
      const copy = JSON.parse(JSON.stringify(sr, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)), (_k, v: unknown) => (typeof v === 'string' && /^-?\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as Record<string, unknown>;
      mut(copy);
      bad(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_SREGS, copy), 'EFAULT', `sregs ${what}`);
      // An output is the caller's buffer: KVM_GET_SREGS fills it whatever it held (missing members are added).
      expect(s.p.ioctl(s.fds.vcpu, KVM_GET_SREGS, copy)).toBe(0);
      const want = makeKvmSregs();
      s.p.ioctl(s.fds.vcpu, KVM_GET_SREGS, want);
      expect(copy).toEqual(want);
    }
    // ...but not a value where a nested structure or array belongs, nor a frozen object.
    for (const [what, out] of [['cs a number', { ...makeKvmSregs(), cs: 5 }], ['interrupt_bitmap a string', { ...makeKvmSregs(), interrupt_bitmap: 'x' }], ['frozen', Object.freeze(makeKvmSregs())]] as const) {
      bad(s, () => s.p.ioctl(s.fds.vcpu, KVM_GET_SREGS, out), 'EFAULT', `get sregs into ${what}`);
    }
    // kvm_sregs semantics: CR0.PG without CR0.PE.
    const pg = makeKvmSregs({ cr0: 0x80000000n });
    bad(s, () => s.p.ioctl(s.fds.vcpu, KVM_SET_SREGS, pg), 'EINVAL', 'CR0.PG without PE');
  });

  test('KVM_SET_USER_MEMORY_REGION: out-of-range slots, sizes, addresses and flags', () => {
    const s = setup(vendor);
    const m = s.p.mmapAnonymous(0x4000);
    const r = (o: Record<string, number>): Record<string, number> => ({ slot: 3, flags: 0, guest_phys_addr: 0x100000, memory_size: 0x2000, userspace_addr: m.addr, ...o });
    const cases: Array<[string, Record<string, number>, ErrnoCode]> = [
      ['slot 32764 (KVM_USER_MEM_SLOTS)', r({ slot: 32764 }), 'EINVAL'],
      ['slot 0xffff', r({ slot: 0xffff }), 'EINVAL'],
      ['address space 2', r({ slot: 0x20000 }), 'EINVAL'],
      ['address space 0xffff', r({ slot: 0xffff0000 }), 'EINVAL'],
      ['flags bit 2 (KVM_MEM_GUEST_MEMFD)', r({ flags: 4 }), 'EINVAL'],
      ['flags bit 31', r({ flags: 0x80000000 }), 'EINVAL'],
      ['size not page-aligned', r({ memory_size: 0x1001 }), 'EINVAL'],
      ['size 1', r({ memory_size: 1 }), 'EINVAL'],
      ['gpa not page-aligned', r({ guest_phys_addr: 0x100800 }), 'EINVAL'],
      ['userspace_addr not page-aligned', r({ userspace_addr: m.addr + 8 }), 'EINVAL'],
      ['userspace_addr + size beyond TASK_SIZE', r({ userspace_addr: 2 ** 47 - 0x1000 }), 'EINVAL'],
      ['gpa + size beyond 2^52', r({ guest_phys_addr: 2 ** 52 - 0x1000 }), 'EINVAL'],
      ['more than KVM_MEM_MAX_NR_PAGES pages', r({ memory_size: 2 ** 31 * 4096, userspace_addr: 0 }), 'EINVAL'],
      ['delete a slot that does not exist', r({ slot: 9, memory_size: 0 }), 'EINVAL'],
      ['overlap the code slot', r({ guest_phys_addr: 0 }), 'EEXIST'],
    ];
    for (const [what, a, code] of cases) bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, a), code, what);
    // An existing slot cannot change size, address or read-only flag.
    expect(s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, r({}))).toBe(0);
    bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, r({ memory_size: 0x1000 })), 'EINVAL', 'resize');
    bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, r({ userspace_addr: m.addr + 0x1000, memory_size: 0x1000 })), 'EINVAL', 'new address');
    bad(s, () => s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, r({ flags: 2 })), 'EINVAL', 'now read-only');
    // Address space 1 (SMM) is valid on x86.
    expect(s.p.ioctl(s.fds.vm, KVM_SET_USER_MEMORY_REGION, r({ slot: 0x10003 }))).toBe(0);
    expect(checkInvariants(s.host)).toEqual([]);
  });

  test('oversized counts: the 1025th vCPU, vCPUs beyond RLIMIT_NOFILE, a second irqchip, irqchip after vCPUs', () => {
    const host = makeHost(vendor, 2);
    host.modprobe(kvm0);
    const p = host.spawn({ uid: 1000, groups: ['kvm'], nofile: 2000 });
    const sys = p.open('/dev/kvm0', O_RDWR);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    for (let i = 0; i < 1024; i++) p.ioctl(vm, KVM_CREATE_VCPU, i * 3);
    const s = { host } as Setup;
    bad(s, () => p.ioctl(vm, KVM_CREATE_VCPU, 4095), 'EINVAL', 'vCPU #1025');
    bad(s, () => p.ioctl(vm, KVM_CREATE_IRQCHIP, 0), 'EINVAL', 'irqchip after vCPUs');
    const q = host.spawn({ uid: 1000, groups: ['kvm'], nofile: 8 });
    const t = readyVm(q, '/dev/kvm0', GUESTS.hlt, 0);
    expect(q.ioctl(t.vm, KVM_CREATE_IRQCHIP, 0)).toBe(0);
    bad(s, () => q.ioctl(t.vm, KVM_CREATE_IRQCHIP, 0), 'EEXIST', 'second irqchip');
    q.ioctl(t.vm, KVM_CREATE_VCPU, 0);
    q.ioctl(t.vm, KVM_CREATE_VCPU, 1);
    q.ioctl(t.vm, KVM_CREATE_VCPU, 2);
    bad(s, () => q.ioctl(t.vm, KVM_CREATE_VCPU, 3), 'EMFILE', 'vCPU beyond RLIMIT_NOFILE');
    bad(s, () => q.ioctl(t.sys, KVM_CREATE_VM, 0), 'EMFILE', 'VM beyond RLIMIT_NOFILE');
    bad(s, () => q.open('/dev/kvm0', O_RDWR), 'EMFILE', 'open beyond RLIMIT_NOFILE');
  });

  test('KVM_MEMORY_ENCRYPT_OP: ENOTTY without SEV, EINVAL for unknown commands, twice, or after vCPUs', () => {
    const s = setup(vendor);
    const op = (id: number) => ({ id, data: 0, error: 0, sev_fd: 0 });
    if (vendor.name === 'intel') {
      for (const a of [op(0), op(1), op(99), 'x', undefined]) bad(s, () => s.p.ioctl(s.fds.vm, KVM_MEMORY_ENCRYPT_OP, a), 'ENOTTY', `SEV op on Intel (${JSON.stringify(a)})`);
      return;
    }
    bad(s, () => s.p.ioctl(s.fds.vm, KVM_MEMORY_ENCRYPT_OP, op(0)), 'EINVAL', 'SEV_INIT after vCPUs');
    const vm = s.p.ioctl(s.fds.sys, KVM_CREATE_VM, 0);
    for (const id of [2, 3, 7, 22, 100, 2 ** 31]) bad(s, () => s.p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, op(id)), 'EINVAL', `SEV command ${id}`);
    expect(s.p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, op(0))).toBe(0);
    bad(s, () => s.p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, op(0)), 'EINVAL', 'SEV_INIT twice');
    bad(s, () => s.p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, op(1)), 'EINVAL', 'SEV_ES_INIT after SEV_INIT');
    // A module loaded with sev=0 has no memory encryption at all.
    const h2 = makeHost(vendor, 2);
    h2.modprobe(kvm0, { sev: 0 });
    const p2 = h2.spawn({ uid: 1000, groups: ['kvm'] });
    const t2 = readyVm(p2, '/dev/kvm0', GUESTS.hlt, 0);
    bad({ host: h2 } as Setup, () => p2.ioctl(t2.vm, KVM_MEMORY_ENCRYPT_OP, op(0)), 'ENOTTY', 'sev=0');
    const h3 = makeHost(vendor, 2);
    h3.modprobe(kvm0, { sev_es: 0 });
    const p3 = h3.spawn({ uid: 1000, groups: ['kvm'] });
    const t3 = readyVm(p3, '/dev/kvm0', GUESTS.hlt, 0);
    bad({ host: h3 } as Setup, () => p3.ioctl(t3.vm, KVM_MEMORY_ENCRYPT_OP, op(1)), 'ENOTTY', 'sev_es=0');
  });

  test('mmap, munmap, open, close and module operations with bad arguments', () => {
    const s = setup(vendor);
    const { host, p } = s;
    for (const len of [0, -1, 1.5, NaN]) bad(s, () => p.mmap(s.fds.vcpu, len), 'EINVAL', `mmap length ${len}`);
    bad(s, () => p.mmap(s.fds.vcpu, 12289), 'EINVAL', 'mmap beyond the vCPU area');
    bad(s, () => p.mmap(s.fds.vcpu, 4096, 3 * 4096), 'EINVAL', 'mmap at page 3');
    bad(s, () => p.mmap(s.fds.vcpu, 4096, 100), 'EINVAL', 'unaligned offset');
    bad(s, () => p.mmap(s.fds.vcpu, 4096, -4096), 'EINVAL', 'negative offset');
    bad(s, () => p.mmap(s.fds.sys, 4096), 'ENODEV', 'mmap /dev/kvm0');
    bad(s, () => p.mmap(s.fds.vm, 4096), 'ENODEV', 'mmap a VM fd');
    bad(s, () => p.mmap(s.plain, 4096), 'ENODEV', 'mmap /dev/plain');
    bad(s, () => p.mmap(42, 4096), 'EBADF', 'mmap a bad fd');
    bad(s, () => p.mmapAnonymous(2 ** 60), 'ENOMEM', 'a 2^60-byte anonymous mapping');
    bad(s, () => p.munmap(4097, 4096), 'EINVAL', 'munmap unaligned');
    for (const path of ['/dev/kvm9', '/nope', '', '/dev/kvm9/']) bad(s, () => p.open(path, O_RDWR), 'ENOENT', `open ${JSON.stringify(path)}`);
    for (const path of ['/dev/', '/', '/dev/..']) bad(s, () => p.open(path, O_RDWR), 'EISDIR', `open ${JSON.stringify(path)}`);
    bad(s, () => p.open('/dev/kvm0/', O_RDWR), 'ENOTDIR', 'open /dev/kvm0/');
    bad(s, () => p.open(`/dev/${'k'.repeat(256)}`, O_RDWR), 'ENAMETOOLONG', 'open a 256-byte name');
    host.symlink('/dev/loop1', '/dev/loop0');
    host.symlink('/dev/loop0', '/dev/loop1');
    bad(s, () => p.open('/dev/loop0', O_RDWR), 'ELOOP', 'symlink loop');
    for (const fd of [-1, 99, 0, NaN]) bad(s, () => p.close(fd), 'EBADF', `close ${fd}`);
    bad(s, () => host.insmod(kvm0), 'EEXIST', 'insmod twice');
    bad(s, () => host.rmmod('kvm7'), 'ENOENT', 'rmmod unknown');
    bad(s, () => host.rmmod('vac'), 'EWOULDBLOCK', 'rmmod vac under kvm0');
    bad(s, () => host.rmmod('kvm0'), 'EWOULDBLOCK', 'rmmod kvm0 with open fds');
    bad(s, () => host.modprobe('kvm-nope'), 'ENOENT', 'modprobe unknown');
    for (const [param, v] of [['enable_virt_at_load', 'maybe'], ['halt_poll_ns', -1], ['halt_poll_ns', '0x1ffffffff'], ['nx_huge_pages', 'sometimes'], [vendor.name === 'intel' ? 'vmentry_l1d_flush' : 'avic', 'x']] as const) {
      bad(s, () => host.insmod(kvm({ postfix: '5' }), { [param]: v }), 'EINVAL', `${param}=${v}`);
    }
    bad(s, () => host.insmod(kvm({ postfix: '5' }), { enable_virt_at_load: 1 }, { as: p }), 'EPERM', 'insmod as a user');
    bad(s, () => host.modules.writeParam('kvm0', 'enable_virt_at_load', '0'), 'EACCES', 'write a read-only parameter');
    bad(s, () => host.readParam('kvm0', 'nope'), 'ENOENT', 'read an unknown parameter');
    bad(s, () => host.readParam('kvm0', 'constructor'), 'ENOENT', 'read a prototype property as a parameter');
    // Read-only opens are allowed (0660 root:kvm); a user outside group kvm gets EACCES either way.
    const ro = p.open('/dev/kvm0', O_RDONLY);
    p.close(ro);
    const stranger = host.spawn({ uid: 1001 });
    bad(s, () => stranger.open('/dev/kvm0', O_RDONLY), 'EACCES', 'read-only open outside group kvm');
  });
});
