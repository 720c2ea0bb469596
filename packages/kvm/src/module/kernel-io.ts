/**
 * The I/O a VM's kernel side handles without exiting to user space (virt/kvm/eventfd.c ioeventfds,
 * virt/kvm/coalesced_mmio.c): a guest write that an ioeventfd matches signals its eventfd; one inside a coalesced
 * zone is appended to the VM's coalesced ring. Either way the guest goes on, and KVM_RUN does not return.
 *
 * The ring (`kvm->coalesced_mmio_ring`) is one page that Linux maps as page 2 of every vCPU's mmap area. The model's
 * vCPU areas are separate buffers, so the ring is kept in step in each of them: an append adopts the `first`
 * index user space advanced in any vCPU's copy, then writes the entry and `last` to every copy
 * (docs/fidelity.md).
 *
 * @module
 */
import { KVM_COALESCED_MMIO_MAX, PAGE_SIZE } from '../abi/constants.js';
import { KVM_LAYOUTS } from '../abi/layout.js';
import type { Vcpu } from './vcpu.js';
import { vmArch, type CoalescedZone, type IoEventFd } from './vm-arch.js';
import type { Vm } from './vm.js';

const RING = 2 * PAGE_SIZE;
const ENTRY = KVM_LAYOUTS.kvm_coalesced_mmio.size;
const ENTRIES = RING + KVM_LAYOUTS.kvm_coalesced_mmio_ring.offsetOf('coalesced_mmio');

/** `ioeventfd_in_range`: the exact address, then the length (0 = any), then the value unless wildcard. */
function ioeventfdMatches(p: IoEventFd, addr: number, len: number, value: bigint): boolean {
  if (addr !== p.addr) return false;
  if (p.length === 0) return true;
  if (len !== p.length) return false;
  return p.datamatch === undefined || p.datamatch === value;
}

/** `coalesced_mmio_in_range`. */
export function inZone(z: CoalescedZone, addr: number, len: number): boolean {
  return len >= 0 && addr >= z.addr && addr + len <= z.addr + z.size;
}

/** The little-endian value of the first `len` bytes of `data`. */
function valueOf(data: Uint8Array, len: number): bigint {
  let v = 0n;
  for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i] as number);
  return v;
}

/** `coalesced_mmio_write`: append to the ring, or false when the ring is full (then the access exits as usual). */
function appendCoalesced(vm: Vm, z: CoalescedZone, addr: number, len: number, data: Uint8Array): boolean {
  const vcpus = [...vm.vcpus.values()];
  const a = vmArch(vm);
  // The `first` user space last wrote, in whichever vCPU's copy.
  let first = a.ringFirst;
  for (const v of vcpus) {
    if (!v.runAllocated) continue;
    const f = v.run.view.getUint32(RING, true);
    if (f !== a.ringFirst) first = f;
  }
  a.ringFirst = first;
  const insert = a.ringLast;
  if (insert >= KVM_COALESCED_MMIO_MAX || (insert + 1) % KVM_COALESCED_MMIO_MAX === first) return false;
  a.ringLast = (insert + 1) % KVM_COALESCED_MMIO_MAX;
  for (const v of vcpus) writeRing(v, first, a.ringLast, insert, addr, len, data, z.pio);
  return true;
}

/** Write one ring entry and the indices into a vCPU's copy of the ring page. */
function writeRing(v: Vcpu, first: number, last: number, insert: number, addr: number, len: number, data: Uint8Array, pio: boolean): void {
  const dv = v.run.view;
  const at = ENTRIES + insert * ENTRY;
  dv.setBigUint64(at, BigInt(addr), true);
  dv.setUint32(at + 8, len, true);
  dv.setUint32(at + 12, pio ? 1 : 0, true);
  const bytes = v.run.bytes;
  for (let i = 0; i < 8; i++) bytes[at + 16 + i] = i < len ? (data[i] as number) : 0;
  dv.setUint32(RING, first, true);
  dv.setUint32(RING + 4, last, true);
}

/** Bring a new vCPU's ring copy up to date (its mapping shows the VM's ring). */
export function syncRingCopy(v: Vcpu, from: Vcpu | undefined): void {
  if (from === undefined || !from.runAllocated) return;
  v.run.bytes.set(from.run.bytes.subarray(RING, RING + PAGE_SIZE), RING);
}

/**
 * A guest write of `len` bytes of `data` to port or guest-physical `addr`: handled in the kernel (an ioeventfd or
 * a coalesced zone took it) or not. `kvm_io_bus_write` tries the devices registered on the bus.
 */
export function kernelWrite(vm: Vm, pio: boolean, addr: number, len: number, data: Uint8Array): boolean {
  const a = vmArch(vm);
  const bus = pio ? 'pio' : 'mmio';
  if (a.ioeventfds.length > 0) {
    const value = valueOf(data, len);
    for (const p of a.ioeventfds) {
      if (p.bus === bus && ioeventfdMatches(p, addr, len, value)) {
        p.eventfd.signal();
        return true;
      }
    }
  }
  for (const z of a.coalesced) {
    if (z.pio === pio && inZone(z, addr, len)) return appendCoalesced(vm, z, addr, len, data);
  }
  return false;
}
