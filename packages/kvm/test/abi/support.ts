/**
 * Shared setup for the ABI tests: a host of either vendor with kvm0 loaded, a VMM process with `/dev/kvm0` open,
 * a VM and vCPUs, and the facts recorded from a real /dev/kvm (`test/fixtures/real-kvm/linux-6.18.json`).
 */
import { KernelError, O_RDWR, UsageError, type Host, type Process } from '@vac/core';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, kvm, mapKvmRun, type KvmInstance, type KvmRunView, type StructCodec } from '../../src/index.js';
import { makeHost, vmmProcess, type VENDORS } from '../module/helpers.js';

/** A host with kvm0 and a VMM that has `/dev/kvm0` open. */
export interface Sys {
  readonly host: Host;
  readonly p: Process;
  readonly sys: number;
  /** The module instance (for the tests that compare with its tables). */
  readonly inst: KvmInstance;
}

/** A host of `vendor` with kvm0 and a VMM holding `/dev/kvm0`. */
export function openSys(vendor: (typeof VENDORS)[number], cpus = 2): Sys {
  const host = makeHost(vendor.hardware(), cpus);
  const inst = host.modprobe(kvm({ postfix: '0' })).exports as KvmInstance;
  const p = vmmProcess(host);
  return { host, p, sys: p.open('/dev/kvm0', O_RDWR), inst };
}

/** A VM and `n` vCPUs (ids 0 … n − 1) with their `kvm_run` mapped. */
export interface VmSetup extends Sys {
  readonly vm: number;
  readonly vcpus: number[];
  readonly runs: KvmRunView[];
}

/** {@link openSys}, `KVM_CREATE_VM` and `n` vCPUs. */
export function openVm(vendor: (typeof VENDORS)[number], n = 1): VmSetup {
  const s = openSys(vendor);
  const vm = s.p.ioctl(s.sys, KVM_CREATE_VM, 0);
  const vcpus: number[] = [];
  const runs: KvmRunView[] = [];
  for (let i = 0; i < n; i++) {
    const fd = s.p.ioctl(vm, KVM_CREATE_VCPU, i);
    vcpus.push(fd);
    runs.push(mapKvmRun(s.p, s.sys, fd));
  }
  return { ...s, vm, vcpus, runs };
}

/** The errno code `fn` fails with (a KernelError), after checking that the host did not change. */
export function errnoOf(host: Host, fn: () => unknown): string {
  const before = host.snapshot();
  let e: unknown;
  try {
    fn();
  } catch (x) {
    e = x;
  }
  if (!(e instanceof KernelError)) throw new Error(`expected a KernelError, got ${e instanceof UsageError ? `UsageError ${e.code}` : String(e)}`);
  expect(host.snapshot()).toEqual(before);
  return e.code;
}

/** What the real /dev/kvm answered (see `test/fixtures/real-kvm/README.md`). */
export const REAL: RealKvm = JSON.parse(readFileSync(new URL('../fixtures/real-kvm/linux-6.18.json', import.meta.url), 'utf8')) as RealKvm;

/** The recorded facts (the parts the tests read). */
export interface RealKvm {
  readonly kernel: string;
  readonly caps: { readonly system: Readonly<Record<string, number>>; readonly vm: Readonly<Record<string, number>> };
  readonly msr_index_list: Readonly<Record<string, unknown>> & { readonly indices: readonly string[] };
  readonly msr_feature_index_list: Readonly<Record<string, unknown>> & { readonly indices: readonly string[] };
  readonly supported_cpuid: Readonly<Record<string, unknown>>;
  readonly emulated_cpuid: Readonly<Record<string, unknown>>;
  readonly mce_cap_supported: { readonly ret: number; readonly value: string };
  readonly reset: Readonly<Record<string, unknown>>;
  readonly vcpu_msrs: Readonly<Record<string, unknown>>;
  readonly errno: Readonly<Record<string, string>>;
  readonly vm_stats: Readonly<Record<string, unknown>>;
  readonly vcpu_stats: Readonly<Record<string, unknown>>;
  readonly run: Readonly<Record<string, unknown>>;
}

/** A recorded number (`"0x…"` or a JSON number). */
export function num(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'string') return BigInt(v);
  throw new Error(`not a recorded number: ${JSON.stringify(v)}`);
}

/**
 * A GET ioctl `req` of `codec`'s structure on two vCPUs that should hold the same state, both ways: the C bytes one
 * writes (into a buffer longer than the structure, nothing written past it) are the other's object form encoded.
 * @returns the object form each read (of `a`, then of `b`)
 */
export function expectSameGetBothWays<T extends object>(
  codec: StructCodec<T>,
  req: number,
  make: () => T,
  a: { readonly p: Process; readonly fd: number },
  b: { readonly p: Process; readonly fd: number },
): [T, T] {
  const objects: T[] = [];
  for (const [x, y] of [[a, b], [b, a]] as const) {
    const got = new Uint8Array(codec.size + 8).fill(0xa5);
    x.p.ioctl(x.fd, req, got);
    const obj = make();
    y.p.ioctl(y.fd, req, obj);
    expect(got.subarray(0, codec.size)).toEqual(codec.toBytes(obj));
    expect(got.subarray(codec.size)).toEqual(new Uint8Array(8).fill(0xa5)); // nothing past the structure
    objects.push(obj);
  }
  return [objects[1] as T, objects[0] as T];
}
