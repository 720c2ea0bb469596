/**
 * Shared by the VMM start-up tests: a host with kvm0, a VMM process holding /dev/kvm0, and checks of each answer.
 *
 * Every start-up test performs one VMM's sequence in its source order and checks each answer exactly: a result,
 * or the errno with the host's state unchanged. A capability is checked against what Linux 6.12 answers for the
 * vendor; where the model deliberately answers otherwise the test accepts it only if `CAP_DIVERGENCES` (caps.ts)
 * records that capability with that Linux value, so an unrecorded difference fails.
 */
import { O_RDWR, type Host, type Process } from '@vac/core';
import { expect } from 'vitest';
import { CAP_DIVERGENCES, KVM_CHECK_EXTENSION, capabilityName, kvm, type KvmInstance } from '../../src/index.js';
import { errnoOf } from '../abi/support.js';
import { makeHost, vmmProcess, type VENDORS } from '../module/helpers.js';

/** A host of `vendor` with kvm0 and a VMM with /dev/kvm0 open. */
export interface StartupHost {
  readonly host: Host;
  readonly p: Process;
  readonly sys: number;
  readonly inst: KvmInstance;
}

/** A 2-CPU host (as the recorded QEMU runs) with kvm0, a VMM process and its /dev/kvm0 fd (the VMM's `open`). */
export function startupHost(vendor: (typeof VENDORS)[number]): StartupHost {
  const host = makeHost(vendor.hardware(), 2);
  const inst = host.modprobe(kvm({ postfix: '0' })).exports as KvmInstance;
  const p = vmmProcess(host);
  return { host, p, sys: p.open('/dev/kvm0', O_RDWR), inst };
}

/**
 * `KVM_CHECK_EXTENSION(cap)` on `fd`: expect Linux 6.12's answer `linux`, or a recorded divergence (the model
 * answers 0 and `CAP_DIVERGENCES` gives Linux's value as `linux`).
 * @returns the model's answer (what the VMM goes on with)
 */
export function expectCap(s: StartupHost, fd: number, cap: number, linux: number): number {
  const got = s.p.ioctl(fd, KVM_CHECK_EXTENSION, cap);
  const div = CAP_DIVERGENCES.get(cap);
  if (got !== linux && div !== undefined) {
    expect(got, `${capabilityName(cap)}: a recorded divergence answers 0`).toBe(0);
    expect(div.linux(s.inst, undefined), `${capabilityName(cap)}: CAP_DIVERGENCES records Linux's answer`).toBe(linux);
    return got;
  }
  expect(got, capabilityName(cap)).toBe(linux);
  return got;
}

/** The errno `fn` fails with, the host unchanged (re-exported for the start-up tests). */
export const fails = errnoOf;
