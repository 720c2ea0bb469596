/**
 * The memory areas a vCPU is made of that outlive it, for the next vCPUs: its `kvm_run` area (zeroed memory, as the
 * page Linux allocates in `kvm_vm_ioctl_create_vcpu`: `alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)`) and the area
 * of its FPU image and machine-check banks (`vcpu-arch.ts`). The areas of destroyed vCPUs are kept (up to
 * {@link AREAS_KEPT} of each kind) and cleared again for the next ones, as the page allocator gives a freed page
 * back: making a 12 KiB `ArrayBuffer` and its views costs microseconds outside V8's heap per KVM_CREATE_VCPU, and
 * the external memory drives V8's full collections — a VM move creates and destroys one of each per vCPU.
 *
 * An area is given back only when its vCPU is destroyed, which `kvm_destroy_vm` does once nothing holds the VM: no
 * vCPU file and no mapping of one (a mapping holds its file). A `kvm_run` view user space kept after `munmap` then
 * shows whatever vCPU has the area next — in C that access would fault.
 *
 * @module
 */
import { KVM_VCPU_MMAP_SIZE } from '../abi/constants.js';
import { KvmRunView } from '../abi/kvm-run.js';

/** How many areas of each kind destroyed vCPUs leave for new ones (64 `kvm_run` areas: 768 KiB). */
export const AREAS_KEPT = 64;

/** Areas of one kind: made new, or taken back from a destroyed vCPU and cleared. */
export class KeptAreas<T> {
  readonly #kept: T[] = [];
  readonly #make: () => T;
  readonly #clear: (area: T) => void;

  /**
   * @param make - a new area (cleared)
   * @param clear - clear an area taken back
   */
  constructor(make: () => T, clear: (area: T) => void) {
    this.#make = make;
    this.#clear = clear;
  }

  /** An area for a new vCPU, cleared. */
  take(): T {
    const a = this.#kept.pop();
    if (a === undefined) return this.#make();
    this.#clear(a);
    return a;
  }

  /** Give back the area of a destroyed vCPU. */
  give(area: T): void {
    if (this.#kept.length < AREAS_KEPT) this.#kept.push(area);
  }
}

/** The `kvm_run` areas. */
export const RUN_AREAS = new KeptAreas(
  () => new KvmRunView(new ArrayBuffer(KVM_VCPU_MMAP_SIZE)),
  (r) => r.bytes.fill(0),
);
