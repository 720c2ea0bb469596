/**
 * The memory areas a vCPU is made of that outlive it, for the next vCPUs: its `kvm_run` area (zeroed memory, as the
 * page Linux allocates in `kvm_vm_ioctl_create_vcpu`: `alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)`) and the area
 * of its FPU image and machine-check banks (`vcpu-arch.ts`). The areas of destroyed vCPUs are kept (up to
 * {@link AREAS_KEPT} of each kind) and cleared again for the next ones, as the page allocator gives a freed page
 * back: making a 12 KiB `ArrayBuffer` and its views costs microseconds outside V8's heap per KVM_CREATE_VCPU, and
 * the external memory drives V8's full collections — a VM move creates and destroys one of each per vCPU.
 *
 * An area is given back only when its vCPU is destroyed, which `kvm_destroy_vm` does once nothing holds the VM: no
 * vCPU file and no mapping of one (a mapping holds its file). A `kvm_run` area's memory then moves to a new
 * `ArrayBuffer` (`ArrayBuffer` transfer), which detaches every view of the old one: a view user space kept past
 * `munmap` reads nothing (`undefined`, length 0, a `DataView` throws), as close as JavaScript comes to C's fault, and
 * never shows the vCPU — of any host in the process — that has the memory next. The FPU and machine-check area moves
 * the same way ({@link detachArea}): the destroyed vCPU's `VcpuArch` views of it are detached too.
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
  readonly #release: (area: T) => T;

  /**
   * @param make - a new area (cleared)
   * @param clear - clear an area taken back
   * @param release - what is kept of an area given back (the area itself unless given); called for every area
   *   given back, also when no more are kept
   */
  constructor(make: () => T, clear: (area: T) => void, release: (area: T) => T = (a) => a) {
    this.#make = make;
    this.#clear = clear;
    this.#release = release;
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
    const kept = this.#release(area);
    if (this.#kept.length < AREAS_KEPT) this.#kept.push(kept);
  }
}

/** The memory of an area given back, in a new buffer: every view of the old one is detached. */
export function detachArea(a: ArrayBuffer): ArrayBuffer {
  return structuredClone(a, { transfer: [a] });
}

/** The memory of a `kvm_run` area given back, in a new buffer: every view of the old one is detached. */
function detach(r: KvmRunView): KvmRunView {
  return new KvmRunView(detachArea(r.buffer));
}

/** The `kvm_run` areas. */
export const RUN_AREAS = new KeptAreas(
  () => new KvmRunView(new ArrayBuffer(KVM_VCPU_MMAP_SIZE)),
  (r) => r.bytes.fill(0),
  detach,
);
