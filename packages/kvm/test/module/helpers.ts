/** Shared setup for the KVM module tests: hosts on both vendors, a VMM process, guest programs. */
import { KernelError, createHost, type Host, type HostOptions, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { createRealModeVm, type KvmRunView } from '../../src/index.js';

/** The two vendors every vendor-neutral test runs on. */
export const VENDORS = [
  { name: 'intel', hardware: (): HostOptions['hardware'] => intel() },
  { name: 'amd', hardware: (): HostOptions['hardware'] => amd() },
] as const;

/** The classic minimal VMM guest: `mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; mov al,'\n'; out dx,al; hlt`. */
export const HELLO = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];

/** A guest that loops forever: `inc ax; jmp $-3`. */
export const SPIN = [0x40, 0xeb, 0xfd];

/** The errno code `f` fails with (a `KernelError`), or 'ok' when it returns; any other error is rethrown. */
export function errnoOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
}

/** A host of `cpus` CPUs on `hardware`. */
export function makeHost(hardware: HostOptions['hardware'], cpus = 4): Host {
  return createHost({ cpus, hardware });
}

/** A VMM process in group kvm. */
export function vmmProcess(host: Host): Process {
  return host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
}

/** A VM with one memory slot at 0x1000 holding `code`, and `n` vCPUs set up to run it in real mode. */
export interface TestVm {
  readonly sys: number;
  readonly vm: number;
  readonly mem: { readonly addr: number; readonly bytes: Uint8Array };
  readonly vcpus: Array<{ readonly fd: number; readonly run: KvmRunView }>;
}

/** Create a {@link TestVm} through the ABI (with the VMM helper {@link createRealModeVm}). */
export function makeVm(proc: Process, dev: string, code: readonly number[], n = 1, regs: Partial<Record<'rax' | 'rbx', bigint>> = {}): TestVm {
  const { sys, vm, memory, vcpus } = createRealModeVm(proc, dev, { code, vcpus: n, regs });
  return { sys, vm, mem: memory, vcpus };
}
