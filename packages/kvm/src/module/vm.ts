/**
 * A VM (`struct kvm`) and the ioctls of its fd (virt/kvm/kvm_main.c `kvm_vm_ioctl`,
 * arch/x86/kvm/x86.c `kvm_arch_vm_ioctl`).
 *
 * The VM is alive while its fd or any of its vCPU fds is open (`kvm_get_kvm` / `kvm_put_kvm`); the last
 * reference destroys it (`kvm_destroy_vm`): vCPUs freed (VPIDs, VMCSs, ASIDs), the vendor part (SEV ASID
 * to the reclaim bitmap), the usage reference dropped.
 *
 * @module
 */
import { KernelError, type Process, type VcpuTag, type VendorVm } from '@vac/core';
import { GUEST_DEFAULT_QUIRKS } from '../guest/interpreter.js';
import type { GuestMemory } from '../guest/memory.js';
import { Memslots } from './memslots.js';
import type { KvmInstance } from './instance.js';
import type { Vcpu } from './vcpu.js';
import type { VmIrqchip } from './vm-irqchip.js';

/** A VM of a KVM module. */
export class Vm {
  /** The VM number within its module (1, 2, …). */
  readonly id: number;
  /** The module that runs it. */
  readonly instance: KvmInstance;
  /** The process whose address space it uses (`kvm->mm`). */
  readonly owner: Process;
  /** VAC's name for it. */
  readonly tag: VcpuTag;
  /** `kvm0/vm1`. */
  readonly label: string;
  /** The vendor part. */
  readonly vendor: VendorVm;
  /** Guest memory. */
  readonly memslots = new Memslots();
  /** vCPUs by id. */
  readonly vcpus = new Map<number, Vcpu>();
  /** `created_vcpus`. */
  createdVcpus = 0;
  /**
   * The in-kernel irqchip (`kvm->arch.irqchip_mode` not NONE): made by KVM_CREATE_IRQCHIP (PIC, IOAPIC, LAPICs) or
   * KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) (LAPICs only). With one, HLT blocks in the kernel instead of exiting.
   */
  irq: VmIrqchip | undefined;

  /** `irqchip_in_kernel`: the VM has an in-kernel irqchip (full or split). */
  get irqchip(): boolean {
    return this.irq !== undefined;
  }
  /** Destroyed. */
  dead = false;
  /**
   * `kvm->vm_dead` (`kvm_vm_dead`): the VM lives on until its last reference goes, but every ioctl of it and of its
   * vCPUs is EIO — what a VM whose encryption context moved away (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) becomes.
   */
  vmDead = false;
  /** What runs when it is destroyed, after the vendor part (a mirror's `kvm_put_kvm` of the VM it mirrors). */
  readonly onDestroy: Array<() => void> = [];
  /** References: the VM fd plus one per vCPU fd. */
  users = 1;
  /** The KVM quirks in force for its guest (`KVM_X86_QUIRK_*`; KVM_CAP_DISABLE_QUIRKS2 turns them off). */
  quirks = GUEST_DEFAULT_QUIRKS;
  /** Some guest writes may be handled in the kernel (an ioeventfd or a coalesced zone exists): `kernel-io.ts`. */
  kernelIo = false;
  /**
   * The memory the guest runs on: the memory slots themselves, or — while a slot logs dirty pages — a view that
   * marks every page the guest writes (`dirty-log.ts`).
   */
  guestMemory: GuestMemory;
  /**
   * A view the owner of the memory puts over {@link Vm.guestMemory} (`@vac/bridge`: guest RAM that lives in a real
   * VMM, fetched on the guest's first touch of a page and written back where the guest wrote). Reapplied whenever
   * the memory the guest runs on is picked again (dirty logging turned on or off), so the view always wraps it.
   * Unset (the default), the guest runs on the slots themselves, at no cost.
   */
  guestMemoryView: ((memory: GuestMemory) => GuestMemory) | undefined = undefined;
  /**
   * Address space 1's slots as a vCPU in SMM writes them: the slots themselves, or — while one of them logs dirty
   * pages — a view that marks every page the guest writes (`dirty-log.ts`).
   */
  smmSlotsMemory: GuestMemory;
  /** {@link Vm.smmMemory} and what it was made of. */
  #smm: { readonly view: ((memory: GuestMemory) => GuestMemory) | undefined; readonly slots: GuestMemory; readonly memory: GuestMemory } | undefined;

  /**
   * The memory a vCPU in SMM runs on (`kvm_arch_vcpu_memslots_id` = 1): {@link Vm.smmSlotsMemory}, under
   * {@link Vm.guestMemoryView} when there is one.
   */
  get smmMemory(): GuestMemory {
    const view = this.guestMemoryView;
    const slots = this.smmSlotsMemory;
    let s = this.#smm;
    if (s === undefined || s.view !== view || s.slots !== slots) {
      s = { view, slots, memory: view === undefined ? slots : view(slots) };
      this.#smm = s;
    }
    return s.memory;
  }

  /** @internal */
  constructor(instance: KvmInstance, id: number, owner: Process, vendor: VendorVm) {
    this.instance = instance;
    this.id = id;
    this.owner = owner;
    this.tag = { instance: instance.name, vm: id, vcpu: -1 };
    this.label = `${instance.name}/vm${id}`;
    this.vendor = vendor;
    this.guestMemory = this.memslots;
    this.smmSlotsMemory = this.memslots.smm;
  }

  /** `kvm_put_kvm`: drop a reference; the last one destroys the VM. */
  put(): void {
    if (--this.users === 0) this.instance.destroyVm(this);
  }

  /** The calling process must be the VM's (`kvm->mm != current->mm` → EIO). */
  checkCaller(proc: Process, op: string): void {
    if (proc !== this.owner) throw new KernelError('EIO', op, 'the VM belongs to another process');
    if (this.dead || this.vmDead) throw new KernelError('EIO', op, 'the VM is dead');
  }
}
