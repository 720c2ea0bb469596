/**
 * The `kvm_run` areas of vCPUs: a new vCPU's is zeroed memory, as the page Linux allocates (`kvm_vm_ioctl_create_vcpu`:
 * `alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)`). The areas of destroyed vCPUs are kept (up to {@link RUN_AREAS_KEPT})
 * and zeroed again for the next ones, as the page allocator gives a freed page back: making a 12 KiB `ArrayBuffer`
 * and the view's dozen sub-views costs microseconds outside V8's heap per KVM_CREATE_VCPU, and the external memory
 * drives V8's full collections — a VM move creates and destroys one area per vCPU.
 *
 * An area is given back only when its vCPU is destroyed, which `kvm_destroy_vm` does once nothing holds the VM: no
 * vCPU file and no mapping of one (a mapping holds its file). A view user space kept after `munmap` then shows
 * whatever vCPU has the area next — in C that access would fault.
 *
 * @module
 */
import { KVM_VCPU_MMAP_SIZE } from '../abi/constants.js';
import { KvmRunView } from '../abi/kvm-run.js';

/** How many areas of destroyed vCPUs are kept for new ones (768 KiB). */
export const RUN_AREAS_KEPT = 64;

const kept: KvmRunView[] = [];

/** A zeroed `kvm_run` area for a new vCPU. */
export function newRunArea(): KvmRunView {
  const r = kept.pop();
  if (r === undefined) return new KvmRunView(new ArrayBuffer(KVM_VCPU_MMAP_SIZE));
  r.bytes.fill(0);
  return r;
}

/** Give back the area of a destroyed vCPU. */
export function freeRunArea(r: KvmRunView): void {
  if (kept.length < RUN_AREAS_KEPT) kept.push(r);
}
