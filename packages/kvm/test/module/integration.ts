/**
 * Shared pieces of the @vac/kvm integration tests: errno-and-unchanged-host assertions, access to loaded
 * instances, simulated VMM threads that record what they saw, and a seeded PRNG.
 */
import { KernelError, errnoOf, isKernelError, vacOf, type ErrnoCode, type Host, type HostOptions, type Process, type Thread, type Vac } from '@vac/core';
import { expectKernelError, prng, thrown } from '@vac/test-support';
import { expect } from 'vitest';
import {
  KVM_CREATE_VCPU,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_GET_SREGS,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KvmRunView,
  makeKvmRegs,
  kvm,
  kvmInstance,
  makeKvmSregs,
  vcpuOf,
  type KvmInstance,
  type Vcpu,
} from '../../src/index.js';
import { SPIN, makeHost, makeVm, vmmProcess } from './helpers.js';

export { thrown };

/** Run `fn` and expect a {@link KernelError} with `code` (name and errno). Returns the error. */
export function expectCode(fn: () => unknown, code: ErrnoCode): KernelError {
  const e = thrown(fn);
  expect(isKernelError(e) ? e.code : e, `expected KernelError ${code}`).toBe(code);
  const ke = e as KernelError;
  expect(ke.errno).toBe(errnoOf(code));
  return ke;
}

/**
 * Run `fn`, expect a {@link KernelError} with `code` (name and errno) and `host.snapshot()` exactly as
 * before (docs/spec.md §4 invariant 7). Returns the error.
 */
export function expectFail(host: Host, fn: () => unknown, code: ErrnoCode): KernelError {
  return expectKernelError(host, fn, code);
}

/** The loaded VAC. */
export function vacIn(host: Host): Vac {
  const v = vacOf(host);
  if (v === undefined) throw new Error('vac is not loaded');
  return v;
}

/** A loaded KVM instance by module name (the public {@link kvmInstance}). */
export const inst: (host: Host, name: string) => KvmInstance = kvmInstance;

export { vcpuOf };

/** A seeded PRNG (the shared mulberry32), so "random" points are the same on every run. */
export const rng: (seed: number) => () => number = prng;

/** A simulated VMM thread driving one vCPU, and what it saw. */
export interface VcpuThread {
  readonly thread: Thread;
  /** `kvm0/vm1/vcpu0`. */
  readonly label: string;
  /** The vCPU. */
  readonly vcpu: Vcpu;
  /** True while the thread is inside KVM_RUN (between ticks: suspended in guest mode). */
  inRun: boolean;
  /** Exit reasons of successful KVM_RUNs, in order. */
  readonly exits: number[];
  /** Error codes of failed KVM_RUNs, in order. */
  readonly errors: string[];
  /** Bytes the guest wrote with OUT. */
  readonly out: number[];
}

/** Options of {@link spawnVcpuThread}. */
export interface VcpuThreadOptions {
  /** Pin the thread to this CPU. */
  readonly cpu?: number;
  /** After each exit handled in user space, yield the rest of the slice (the thread is then in user space). */
  readonly yieldInUser?: boolean;
  /** Leave the loop on EINTR instead of re-entering. */
  readonly stopOnEintr?: boolean;
}

/**
 * Spawn the classic VMM loop as a simulated thread: KVM_RUN; on KVM_EXIT_IO record OUT bytes and run again;
 * on EINTR re-enter (unless `stopOnEintr`); any other exit or error ends the thread.
 */
export function spawnVcpuThread(host: Host, proc: Process, fd: number, run: KvmRunView, opts: VcpuThreadOptions = {}): VcpuThread {
  const vcpu = vcpuOf(proc, fd);
  const st = { label: vcpu.label, vcpu, inRun: false, exits: [] as number[], errors: [] as string[], out: [] as number[] } as VcpuThread;
  const thread = host.scheduler.spawn(proc, { name: vcpu.label, ...(opts.cpu === undefined ? {} : { cpu: opts.cpu }) }, function* (t) {
    for (;;) {
      st.inRun = true;
      try {
        yield* t.ioctl(fd, KVM_RUN, 0);
      } catch (e) {
        st.inRun = false;
        if (!isKernelError(e)) throw e;
        st.errors.push(e.code);
        if (e.code === 'EINTR' && opts.stopOnEintr !== true) continue;
        return;
      } finally {
        st.inRun = false;
      }
      st.exits.push(run.exit_reason);
      if (run.exit_reason !== KVM_EXIT_IO) return;
      if (run.io.direction === KVM_EXIT_IO_OUT) st.out.push(run.bytes[run.io.data_offset] as number);
      if (opts.yieldInUser === true) yield* t.yield();
    }
  });
  (st as { thread: Thread }).thread = thread;
  return st;
}

/**
 * A 4-CPU host with kvm0 and kvm1, one VM of two spinning vCPUs on each, and four vCPU threads pinned to CPUs
 * 0–3 (kvm0's on 0 and 1, kvm1's on 2 and 3), three ticks in: every vCPU in guest mode on its own CPU.
 */
export function fourPinnedSpinners(hardware: HostOptions['hardware']): { host: Host; threads: VcpuThread[] } {
  const host = makeHost(hardware, 4);
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  const p = vmmProcess(host);
  const threads: VcpuThread[] = [];
  for (const dev of ['/dev/kvm0', '/dev/kvm1']) {
    const vm = makeVm(p, dev, SPIN, 2);
    vm.vcpus.forEach((v) => threads.push(spawnVcpuThread(host, p, v.fd, v.run, { cpu: threads.length })));
  }
  host.scheduler.run(3);
  return { host, threads };
}

/**
 * What a PMI on `cpu` must be attributed to: the vCPU of the thread the scheduler has current on `cpu`, if
 * that thread is inside KVM_RUN (in guest mode); else nobody.
 */
export function expectedOwner(host: Host, threads: readonly VcpuThread[], cpu: number): string | undefined {
  const cur = host.scheduler.currentOn(cpu);
  const st = threads.find((s) => s.thread === cur);
  return st !== undefined && st.inRun ? st.label : undefined;
}

/** A guest that does port I/O forever: `mov dx,0x3f8; l: out dx,al; inc ax; jmp l`. */
export const IO_LOOP = [0xba, 0xf8, 0x03, 0xee, 0x40, 0xeb, 0xfc];

/** Add vCPU `id` to a VM, set up like {@link makeVm}'s (real mode, RIP 0x1000), with its kvm_run mapped. */
export function addVcpu(proc: Process, vm: number, id: number): { readonly fd: number; readonly run: KvmRunView } {
  const fd = proc.ioctl(vm, KVM_CREATE_VCPU, id);
  const m = proc.mmap(fd, 12288);
  const sregs = makeKvmSregs();
  proc.ioctl(fd, KVM_GET_SREGS, sregs);
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  proc.ioctl(fd, KVM_SET_SREGS, sregs);
  proc.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n }));
  return { fd, run: new KvmRunView(m.bytes.buffer, m.bytes.byteOffset) };
}
