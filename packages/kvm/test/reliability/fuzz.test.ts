/**
 * A random-ioctl fuzzer in the style of syzkaller's KVM description (sys/linux/dev_kvm.txt): random requests —
 * every KVM ioctl number of the ABI, random `_IO/_IOR/_IOW/_IOWR(0xAE, nr, size)` encodings and random 32-bit
 * numbers — with random arguments (integers, bigints, strings, null, arrays, well-formed structs with random
 * fields, structs with fields missing or out of range, memory regions over random guest bytes) against every
 * fd kind (/dev/kvmX, VM, vCPU, a non-KVM device, closed and bogus numbers), mixed with KVM_RUN of random
 * guest code, mmap, close, scheduler ticks and process kills.
 *
 * It checks that a call answers a non-negative number or throws a KernelError (nothing else ever), that a
 * failed call leaves the host exactly as it was, and that the invariants hold after every call.
 *
 * CI: a fixed seed and budget. `FUZZ_RUNS=…` runs more; a failure prints REPLAY_SEED / REPLAY_PATH (use them
 * with REPLAY_TEST=fuzz).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { KernelError, O_RDWR, checkInvariants, createHost, type Host, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import * as ABI from '../../src/abi/constants.js';
import { _IOC, _IOC_TYPE, KVMIO, KVM_RUN, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_USER_MEMORY_REGION, kvm, makeKvmRegs, makeKvmSregs } from '../../src/index.js';
import { firstDifference, turnEventLoopIfDue } from '@vac/test-support';
import { withoutKnownFindings } from './known-findings.js';
import { tally } from './support.js';

const CI_RUNS = 1000;
const CI_SEED = 0xf022;
const CALLS = 150;

const IMAGES = [kvm({ postfix: '0', syncRunLimit: 5000 }), kvm({ postfix: '1', syncRunLimit: 5000 })];

/** Every KVM ioctl number the ABI module exports (type byte 0xAE). */
const KNOWN: readonly number[] = [
  ...new Set(
    Object.entries(ABI)
      .filter(([k, v]) => k.startsWith('KVM_') && typeof v === 'number' && v >= 0xae00 && _IOC_TYPE(v) === KVMIO)
      .map(([, v]) => v as number),
  ),
].sort((a, b) => a - b);

/** Outcomes by request name: `KVM_CREATE_VCPU → ok` and friends (printed at the end). */
const outcomes = new Map<string, number>();
const NAMES = new Map<number, string>(Object.entries(ABI).filter(([k, v]) => k.startsWith('KVM_') && typeof v === 'number' && v >= 0xae00).map(([k, v]) => [v as number, k]));

afterAll(() => {
  const top = [...outcomes].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, n]) => `${k} ${n}`);
  console.log(`[fuzz] outcomes (top 40): ${top.join(', ')}`);
  console.log(`[fuzz] ${tally.fuzzCalls} calls (${KNOWN.length} known KVM ioctl numbers in the pool)`);
});

// ---- arguments ---------------------------------------------------------------------------------------

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const anyInt = fc.oneof(
  { weight: 4, arbitrary: fc.nat(8) },
  fc.integer({ min: -5, max: 5000 }),
  fc.integer(),
  fc.constantFrom(0, 1, -1, 4095, 4096, 32763, 32764, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 64),
  fc.double({ noNaN: false }),
);
const anyBig = fc.oneof(u64, fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }));
const field = fc.oneof({ weight: 4, arbitrary: anyInt }, { weight: 2, arbitrary: anyBig }, { weight: 1, arbitrary: fc.constantFrom<unknown>(undefined, null, '', '1', {}, []) });

/** A region over a real mapping (filled with random guest bytes), or a random one. */
type ArgPlan =
  | { readonly t: 'int'; readonly v: unknown }
  | { readonly t: 'junk'; readonly v: unknown }
  | { readonly t: 'region'; readonly slot: number; readonly gpaPage: number; readonly pages: number; readonly flags: number; readonly code: number[] }
  | { readonly t: 'regs'; readonly rip: number; readonly rax: bigint; readonly rflags: bigint }
  | { readonly t: 'sregs'; readonly cr0: bigint; readonly csBase: bigint; readonly csSel: number }
  | { readonly t: 'struct'; readonly base: 'regs' | 'sregs' | 'region' | 'sev'; readonly key: number; readonly v: unknown; readonly drop: boolean };

const argPlan: fc.Arbitrary<ArgPlan> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('int' as const), v: fc.oneof(anyInt, anyBig) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('junk' as const), v: fc.oneof(fc.string(), fc.constantFrom<unknown>(undefined, null, true, {}, [], [1n], () => 1), fc.object({ maxDepth: 1 })) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('region' as const),
      slot: fc.oneof(fc.nat(3), fc.constantFrom(0x10000, 32763, 32764)),
      gpaPage: fc.nat(16),
      pages: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 })),
      flags: fc.constantFrom(0, 0, 1, 2, 3, 4),
      code: fc.array(fc.nat(255), { minLength: 0, maxLength: 48 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('regs' as const), rip: fc.oneof(fc.integer({ min: 0, max: 0x11000 }), fc.nat()), rax: u64, rflags: u64 }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('sregs' as const), cr0: fc.constantFrom(0n, 0x60000010n, 1n, 0x80000001n, 0x80000000n), csBase: fc.constantFrom(0n, 0xffff0000n, 0x10000n), csSel: fc.nat(0xffff) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('struct' as const), base: fc.constantFrom('regs' as const, 'sregs' as const, 'region' as const, 'sev' as const), key: fc.nat(40), v: field, drop: fc.boolean() }) },
);

/** The ioctls the module implements, with the fd kind that serves them (syzkaller's "resources"). */
const IMPLEMENTED: ReadonlyArray<readonly [number, 'sys' | 'vm' | 'vcpu']> = [
  [ABI.KVM_GET_API_VERSION, 'sys'],
  [ABI.KVM_CREATE_VM, 'sys'],
  [ABI.KVM_CHECK_EXTENSION, 'sys'],
  [ABI.KVM_GET_VCPU_MMAP_SIZE, 'sys'],
  [ABI.KVM_CREATE_VCPU, 'vm'],
  [ABI.KVM_SET_USER_MEMORY_REGION, 'vm'],
  [ABI.KVM_CHECK_EXTENSION, 'vm'],
  [ABI.KVM_CREATE_IRQCHIP, 'vm'],
  [ABI.KVM_SET_TSS_ADDR, 'vm'],
  [ABI.KVM_MEMORY_ENCRYPT_OP, 'vm'],
  [ABI.KVM_RUN, 'vcpu'],
  [ABI.KVM_GET_REGS, 'vcpu'],
  [ABI.KVM_SET_REGS, 'vcpu'],
  [ABI.KVM_GET_SREGS, 'vcpu'],
  [ABI.KVM_SET_SREGS, 'vcpu'],
];
const KIND_OF = new Map<number, 'sys' | 'vm' | 'vcpu'>(IMPLEMENTED.map(([r, k]) => [r, k]));

/** A request: an implemented ioctl, a known KVM number, a random 0xAE encoding, or anything. */
const requestArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...IMPLEMENTED.map(([r]) => r)) },
  { weight: 4, arbitrary: fc.constantFrom(...KNOWN) },
  { weight: 3, arbitrary: fc.tuple(fc.nat(3), fc.nat(255), fc.nat(0x3fff)).map(([dir, nr, size]) => _IOC(dir, KVMIO, nr, size)) },
  { weight: 1, arbitrary: fc.oneof(fc.nat({ max: 0xffffffff }), fc.integer({ min: -(2 ** 31), max: -1 })) },
);

type Call =
  | { readonly k: 'ioctl'; readonly actor: number; readonly fd: number; readonly req: number; readonly arg: ArgPlan }
  | { readonly k: 'run'; readonly actor: number; readonly fd: number }
  | { readonly k: 'open'; readonly actor: number; readonly dev: number }
  | { readonly k: 'close'; readonly actor: number; readonly fd: number }
  | { readonly k: 'mmap'; readonly actor: number; readonly fd: number; readonly pages: number; readonly off: number }
  | { readonly k: 'tick'; readonly n: number }
  | { readonly k: 'kill'; readonly actor: number };

const callArb: fc.Arbitrary<Call> = fc.oneof(
  { weight: 14, arbitrary: fc.record({ k: fc.constant('ioctl' as const), actor: fc.nat(3), fd: fc.nat(40), req: requestArb, arg: argPlan }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('run' as const), actor: fc.nat(3), fd: fc.nat(40) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('open' as const), actor: fc.nat(3), dev: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('close' as const), actor: fc.nat(3), fd: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('mmap' as const), actor: fc.nat(3), fd: fc.nat(40), pages: fc.integer({ min: 0, max: 4 }), off: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('tick' as const), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('kill' as const), actor: fc.nat(3) }) },
);

// ---- the harness ---------------------------------------------------------------------------------------

class Fuzz {
  readonly host: Host;
  readonly procs: Process[];
  constructor(vendor: 'intel' | 'amd', evalAtLoad: [number, number]) {
    this.host = createHost({ cpus: 3, hardware: vendor === 'intel' ? intel() : amd() });
    this.host.modprobe(IMAGES[0] as never, { enable_virt_at_load: evalAtLoad[0] });
    this.host.modprobe(IMAGES[1] as never, { enable_virt_at_load: evalAtLoad[1] });
    this.host.devfs.miscRegister({ name: 'plain', minor: 255, fops: {}, mode: 0o666 });
    this.procs = [
      this.host.spawn({ uid: 1000, groups: ['kvm'], nofile: 51, name: 'vmm0' }),
      this.host.spawn({ uid: 0, nofile: 51, name: 'root', cpu: 1 }),
      this.host.spawn({ uid: 1001, nofile: 51, name: 'stranger', cpu: 2 }),
    ];
    for (const p of this.procs.slice(0, 2)) {
      const sys = p.open('/dev/kvm0', O_RDWR);
      p.open('/dev/kvm1', O_RDWR);
      p.open('/dev/plain', O_RDWR);
      const vm = p.ioctl(sys, ABI.KVM_CREATE_VM, 0);
      const mem = p.mmapAnonymous(0x2000);
      mem.bytes.set([0xba, 0xf8, 0x03, 0xee, 0x40, 0xeb, 0xfc]);
      p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x2000, userspace_addr: mem.addr });
      for (let id = 0; id < 2; id++) {
        const fd = p.ioctl(vm, ABI.KVM_CREATE_VCPU, id);
        const sr = makeKvmSregs();
        p.ioctl(fd, ABI.KVM_GET_SREGS, sr);
        sr.cs.base = 0n;
        sr.cs.selector = 0;
        p.ioctl(fd, KVM_SET_SREGS, sr);
        p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n }));
      }
    }
  }

  #proc(i: number): Process | undefined {
    const live = this.procs.filter((p) => p.alive);
    return live.length === 0 ? undefined : live[i % live.length];
  }

  /** An fd number: mostly one the process has (of `kind` when it has one), sometimes any number. */
  #fd(p: Process, n: number, kind?: 'sys' | 'vm' | 'vcpu'): number {
    const all = p.fds();
    const ofKind = all.filter((f) => (kind === 'sys' ? f.path.startsWith('/dev/kvm') : kind === 'vm' ? f.path === 'anon_inode:kvm-vm' : kind === 'vcpu' ? f.path.startsWith('anon_inode:kvm-vcpu') : false));
    const fds = kind !== undefined && ofKind.length > 0 && n % 4 !== 0 ? ofKind : all;
    if (n < 32 && fds.length > 0) return (fds[n % fds.length] as { fd: number }).fd;
    return n;
  }

  #arg(p: Process, plan: ArgPlan): unknown {
    switch (plan.t) {
      case 'int':
      case 'junk':
        return plan.v;
      case 'region': {
        const size = plan.pages * 0x1000;
        let uaddr = 0;
        if (size > 0) {
          const m = p.mmapAnonymous(size);
          m.bytes.set(plan.code.slice(0, size));
          uaddr = m.addr;
        }
        return { slot: plan.slot, flags: plan.flags, guest_phys_addr: plan.gpaPage * 0x1000, memory_size: size, userspace_addr: uaddr };
      }
      case 'regs':
        return makeKvmRegs({ rip: BigInt(plan.rip), rax: plan.rax, rflags: plan.rflags });
      case 'sregs': {
        const s = makeKvmSregs({ cr0: plan.cr0 });
        s.cs.base = plan.csBase;
        s.cs.selector = plan.csSel;
        return s;
      }
      case 'struct': {
        const base: Record<string, unknown> =
          plan.base === 'regs'
            ? { ...makeKvmRegs() }
            : plan.base === 'sregs'
              ? { ...makeKvmSregs() }
              : plan.base === 'region'
                ? { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x1000, userspace_addr: 0 }
                : { id: 0, data: 0, error: 0, sev_fd: 0 };
        const keys = Object.keys(base);
        const key = keys[plan.key % keys.length] as string;
        if (plan.drop) delete base[key];
        else base[key] = plan.v;
        return base;
      }
    }
  }

  /** Run a call; throws on anything but a number ≥ 0 or a KernelError, or on a failed call that changed the host. */
  exec(c: Call): void {
    const host = this.host;
    if (c.k === 'tick') {
      host.scheduler.run(c.n);
      return;
    }
    const p = this.#proc(c.actor);
    if (p === undefined) return;
    let fn: () => unknown;
    switch (c.k) {
      case 'ioctl': {
        const fd = this.#fd(p, c.fd, KIND_OF.get(c.req >>> 0));
        let arg: unknown;
        try {
          arg = this.#arg(p, c.arg);
        } catch (e) {
          if (e instanceof KernelError) return; // the mmap behind a region failed (EMFILE/ENOMEM): nothing to call
          throw e;
        }
        fn = () => p.ioctl(fd, c.req, arg);
        break;
      }
      case 'run': {
        const fd = this.#fd(p, c.fd, 'vcpu');
        fn = () => p.ioctl(fd, KVM_RUN, 0);
        break;
      }
      case 'open': {
        const dev = ['/dev/kvm0', '/dev/kvm1', '/dev/plain', '/dev/kvm', '/dev/nope'][c.dev] as string;
        fn = () => p.open(dev, O_RDWR);
        break;
      }
      case 'close': {
        const fd = this.#fd(p, c.fd);
        fn = () => p.close(fd);
        break;
      }
      case 'mmap': {
        const fd = this.#fd(p, c.fd, 'vcpu');
        fn = () => p.mmap(fd, c.pages * 4096, c.off * 4096);
        break;
      }
      case 'kill':
        if (p === this.procs[0]) return; // keep one VMM alive
        fn = () => p.kill();
        break;
    }
    tally.fuzzCalls++;
    const before = host.snapshot();
    let result: unknown;
    let error: unknown;
    try {
      result = fn();
    } catch (e) {
      error = e;
    }
    const what = JSON.stringify(c, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    const name = c.k === 'ioctl' ? (NAMES.get(c.req >>> 0) ?? 'other') : c.k;
    const key = `${name}→${error instanceof KernelError ? error.code : error === undefined ? 'ok' : 'THROW'}`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    if (error !== undefined) {
      if (!(error instanceof KernelError)) throw new Error(`${what}: threw ${error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error)}`);
      // KVM_RUN runs guest code before it can fail with EINTR (or EFAULT on an unbacked slot), and an SMI it takes with
      // no SMRAM to save the state in kills the VM (EIO, `kvm_vm_dead`, smm.ts): not a no-op.
      const ran = (c.k === 'run' || (c.k === 'ioctl' && c.req === KVM_RUN)) && (error.code === 'EINTR' || error.code === 'EFAULT' || error.code === 'EIO');
      if (!ran) {
        const d = firstDifference(before, host.snapshot());
        if (d !== undefined) throw new Error(`${what}: failed with ${error.code} but changed the host at ${d}`);
      }
    } else if (c.k !== 'kill' && c.k !== 'close' && c.k !== 'mmap') {
      if (typeof result !== 'number' || !Number.isInteger(result) || result < 0) throw new Error(`${what}: returned ${String(result)}`);
    }
    const v = withoutKnownFindings(checkInvariants(host));
    if (v.length > 0) throw new Error(`${what}: invariant violations ${JSON.stringify(v)}`);
  }
}

function settings(): { runs: number; seed: number; path: string | undefined; mode: string } {
  const env = process.env;
  if (env['REPLAY_TEST'] === 'fuzz' && env['REPLAY_SEED'] !== undefined) return { runs: 1, seed: Number(env['REPLAY_SEED']), path: env['REPLAY_PATH'], mode: 'replay' };
  if (env['FUZZ_RUNS'] !== undefined) return { runs: Number(env['FUZZ_RUNS']), seed: Number(env['FUZZ_SEED'] ?? Date.now() % 2 ** 31), path: undefined, mode: 'long' };
  return { runs: CI_RUNS, seed: CI_SEED, path: undefined, mode: 'ci' };
}

describe('random-ioctl fuzzer (syzkaller style)', () => {
  const s = settings();
  test(`${s.mode}: ${s.runs} programs of up to ${CALLS} calls (seed ${s.seed})`, async () => {
    expect(KNOWN.length).toBeGreaterThan(60);
    expect(KNOWN).toContain(KVM_SET_USER_MEMORY_REGION);
    expect(KNOWN).toContain(KVM_SET_REGS);
    expect(KNOWN).toContain(KVM_SET_SREGS);
    const t0 = performance.now();
    const calls0 = tally.fuzzCalls;
    // Asynchronous only to turn the worker's event loop about once a second (turnEventLoopIfDue): the programs are
    // the seed's, whatever the load.
    const prop = fc.asyncProperty(
      fc.constantFrom<'intel' | 'amd'>('intel', 'amd'),
      fc.tuple(fc.nat(1), fc.nat(1)),
      fc.array(callArb, { minLength: 1, maxLength: CALLS, size: 'max' }),
      async (vendor, evalAtLoad, calls) => {
        const f = new Fuzz(vendor, evalAtLoad);
        for (const c of calls) f.exec(c);
        // Everything goes away cleanly.
        for (const p of f.procs) if (p.alive) p.kill();
        f.host.rmmod('kvm0');
        f.host.rmmod('kvm1');
        const v = withoutKnownFindings(checkInvariants(f.host));
        if (v.length > 0) throw new Error(`after teardown: ${JSON.stringify(v)}`);
        if (f.host.cpus.some((c) => f.host.hardware.virt.isEnabled(c.id))) throw new Error('a CPU is still enabled after teardown');
        await turnEventLoopIfDue();
      },
    );
    // Chunk i runs with seed + i (a failure names the chunk's seed), so the worker stays responsive.
    const chunk = s.mode === 'replay' ? 1 : 50;
    for (let done = 0, i = 0; done < s.runs; done += chunk, i++) {
      const seed = s.seed + i;
      const out = await fc.check(prop, { seed, numRuns: Math.min(chunk, s.runs - done), ...(s.path === undefined ? {} : { path: s.path, endOnFailure: true }) });
      if (out.failed) {
        throw new Error(
          `fuzzer failed (seed ${out.seed}, path ${out.counterexamplePath ?? '?'})\nreplay: REPLAY_TEST=fuzz REPLAY_SEED=${out.seed} REPLAY_PATH=${out.counterexamplePath ?? ''} npx vitest run --project kvm test/reliability/fuzz\n${fc.defaultReportMessage(out) ?? ''}`,
        );
      }
      await new Promise((r) => setImmediate(r));
    }
    console.log(`[fuzz] ${s.mode}: ${s.runs} programs, ${tally.fuzzCalls - calls0} calls in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 24 * 3600 * 1000);
});
