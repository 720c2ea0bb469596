/**
 * Every known difference between the model and the real Linux KVM the golden files were recorded on, in one
 * place. The conformance test fails on a difference no entry covers, and on an entry (or a fact id in it)
 * that no longer differs — so when the model learns something, the only change needed here is to delete the
 * fact ids (or the entry) the test names.
 *
 * The classes (see `DivergenceClass`): `not-modelled` (the model lacks it yet), `emulator-vendor` (the
 * recording machine's vendor module, kvm_pvm, runs guests through KVM's instruction emulator and differs from
 * VMX/SVM, which the model follows), `host-config` (the recording kernel's configuration, CPU or module
 * parameters), `linux-version` (Linux 6.18 there, 6.12 in the model), `deliberate` (docs/fidelity.md).
 *
 * Each entry names its facts exactly where it can, so each fact flips on its own; `where` says which of
 * their differences it covers (a fact implemented with a wrong answer then shows up as a new difference).
 *
 * @module
 */
import type { Mismatch } from './replay/compare.js';
import type { Divergence } from './replay/explain.js';

/** Both fds' facts of each capability: `cap.system.KVM_CAP_X` and `cap.vm.KVM_CAP_X`. */
function caps(...names: readonly string[]): string[] {
  return names.flatMap((n) => [`cap.system.KVM_CAP_${n}`, `cap.vm.KVM_CAP_${n}`]);
}

/** `prefix.` + each name. */
function ids(prefix: string, ...names: readonly string[]): string[] {
  return names.map((n) => `${prefix}.${n}`);
}

/** The model answers an ioctl it does not have as an unknown one: −1 with EINVAL (system, vCPU fd) or ENOTTY (VM fd). */
function unknownIoctl(m: Mismatch): boolean {
  if (m.path.endsWith('.ret')) return m.actual === '-1';
  return m.path.endsWith('.errno') && (m.actual === 'EINVAL' || m.actual === 'ENOTTY');
}

/** A capability the model answers 0 for. */
function capZero(m: Mismatch): boolean {
  return m.path.endsWith('.ret') && m.actual === '0';
}

/** The divergence list. */
export const DIVERGENCES: readonly Divergence[] = [
  // ---- not-modelled: capabilities --------------------------------------------------------------------------
  {
    id: 'caps-irqchip',
    class: 'not-modelled',
    summary: 'KVM_CAP_VAPIC is 0 in the model: the TPR shadow of KVM_SET_VAPIC_ADDR is kept but never synchronized with guest memory.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension'],
    facts: caps('VAPIC'),
    where: capZero,
  },
  {
    id: 'caps-x2apic-api-6.18',
    class: 'linux-version',
    summary: 'KVM_CAP_X2APIC_API is KVM_X2APIC_API_VALID_FLAGS: 3 in Linux 6.12 (USE_32BIT_IDS | DISABLE_BROADCAST_QUIRK), which the model answers; the recording 6.18 kernel adds two suppress-EOI-broadcast flags (15 on /dev/kvm, 11 on a VM fd).',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_X2APIC_API)', 'arch/x86/include/uapi/asm/kvm.h KVM_X2APIC_API_*'],
    facts: caps('X2APIC_API'),
    where: (m) => m.path.endsWith('.ret') && m.actual === '3',
  },
  {
    id: 'caps-vcpu-state',
    class: 'not-modelled',
    summary: 'KVM_CAP_STEAL_TIME is 0 in the model: steal time (MSR_KVM_STEAL_TIME, the guest\'s record of the time its vCPU waited for a host CPU) is not modelled, so KVM_FEATURE_STEAL_TIME is not offered either.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension'],
    facts: caps('STEAL_TIME'),
    where: capZero,
  },
  {
    id: 'caps-vm',
    class: 'not-modelled',
    summary: 'KVM_CAP_DEVICE_CTRL (KVM_CREATE_DEVICE: no in-kernel devices), KVM_CAP_EXIT_HYPERCALL (the guest\'s VMCALL/VMMCALL is not executed, so KVM_HC_MAP_GPA_RANGE never exits) and KVM_CAP_PCI_SEGMENT (MSI routing ignores the segment, KVM_MSI_VALID_DEVID) are 0 in the model.',
    linux: ['virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic', 'arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension'],
    facts: caps('DEVICE_CTRL', 'EXIT_HYPERCALL', 'PCI_SEGMENT'),
    where: capZero,
  },

  // ---- not-modelled: /dev/kvm ioctls -----------------------------------------------------------------------

  // ---- not-modelled: VM ioctls -----------------------------------------------------------------------------

  // ---- not-modelled: vCPU ioctls ---------------------------------------------------------------------------

  // ---- not-modelled: details of what the model has ------------------------------------------------------
  {
    id: 'reset-tr-svm',
    class: 'emulator-vendor',
    summary: 'SVM resets TR as a busy 16-bit TSS (type 3); VMX, and the recording machine\'s vendor module, as a busy 32-bit TSS (type 11).',
    linux: ['arch/x86/kvm/svm/svm.c init_vmcb (init_sys_seg(&save->tr, SEG_TYPE_BUSY_TSS16))', 'arch/x86/kvm/vmx/vmx.c __vmx_vcpu_reset / vmx_vcpu_reset (TR type 11)'],
    facts: ['vcpu.reset.sregs', 'vcpu.round-trip.sregs', 'vcpu.reset.sregs2', 'vcpu.round-trip.sregs2'],
    where: (m) => m.path.endsWith('.out.tr.type'),
    vendors: ['amd'],
  },

  {
    id: 'dirty-ring-emulated-writes',
    class: 'emulator-vendor',
    summary:
      'Under the dirty ring every write of a real-mode guest pushes an entry on the recording machine, a page written twice twice (also again after its entry is harvested, before KVM_RESET_DIRTY_RINGS), so a loop writing one page 300 times fills a 256-entry ring past its soft limit (192) before KVM_EXIT_DIRTY_RING_FULL comes, at the next entry — whether the emulator returns to that entry after 256 writes or only after the loop differs from one recording to the next; in the model, as for writes the CPU executes under VMX/SVM, only the first write to a write-protected page pushes (the page stays writable until KVM_RESET_DIRTY_RINGS re-protects it), so the entries, the reset count and the exits that follow differ.',
    linux: [
      'virt/kvm/kvm_main.c mark_page_dirty_in_slot (kvm_dirty_ring_push on every call with a ring)',
      'arch/x86/kvm/x86.c emulator_write_phys / kvm_vcpu_write_guest (each emulated write marks its page)',
      'arch/x86/kvm/mmu/mmu.c fast_page_fault / kvm_mmu_slot_apply_flags (a write-protection fault marks the page once until it is re-protected)',
    ],
    reason: 'kvm_pvm, the recording machine\'s vendor module, runs real-mode guests through KVM\'s instruction emulator, whose writes are marked one by one; VMX/SVM, which the model follows, execute them through the MMU.',
    facts: ['dirty-ring.guest-writes', 'dirty-ring.soft-full'],
    where: (m) => m.path.endsWith('.entries') || m.path.endsWith('.ret') || m.path.endsWith('.run.exit_reason'),
  },

  {
    id: 'tsc-offset-attr-pvm',
    class: 'emulator-vendor',
    summary:
      'KVM_GET_DEVICE_ATTR(KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET) after KVM_SET_DEVICE_ATTR of an offset: the recording machine leaves 0 at addr; on VMX/SVM, as in the model, it reads back the offset just set.',
    linux: [
      'arch/x86/kvm/x86.c kvm_arch_tsc_set_attr → __kvm_synchronize_tsc → kvm_vcpu_write_tsc_offset (l1_tsc_offset)',
      'arch/x86/kvm/x86.c kvm_arch_tsc_get_attr (put_user of vcpu->arch.l1_tsc_offset)',
    ],
    reason: 'kvm_pvm, the recording machine\'s vendor module, runs its guests in host user mode; as recorded, its SET answers 0 but the GET that follows leaves 0 at addr (no L1 TSC offset kept); VMX and SVM, which the model follows, offset the guest TSC.',
    facts: ['vcpu.attr.tsc-offset.set-get'],
    where: (m) => m.path.endsWith('.changes'),
  },

  // ---- emulator-vendor (RFLAGS) ------------------------------------------------------------------------
  {
    id: 'rflags-vm-bit',
    class: 'emulator-vendor',
    summary: 'KVM_SET_REGS with RFLAGS all ones: the recording machine returns RFLAGS.VM (bit 17) cleared; the model returns every bit as set.',
    linux: [
      'arch/x86/kvm/x86.c __set_regs → kvm_set_rflags, __get_regs → kvm_get_rflags',
      'arch/x86/kvm/vmx/vmx.c vmx_set_rflags / vmx_get_rflags (in real mode the saved RFLAGS come back whole)',
      'arch/x86/kvm/svm/svm.c svm_set_rflags / svm_get_rflags (the VMCB holds what was set)',
    ],
    reason: 'kvm_pvm, the recording machine\'s vendor module, filters RFLAGS.VM in its set_rflags; VMX and SVM, which the model follows, do not.',
    facts: ['vcpu.regs.rflags-all-ones'],
    where: (m) => m.step === 'KVM_GET_REGS',
  },

  // ---- emulator-vendor -----------------------------------------------------------------------------------
  {
    id: 'sregs-pae-paging',
    class: 'emulator-vendor',
    summary:
      'KVM_SET_SREGS into PAE paging (CR0.PG | PE, CR4.PAE, CR3 at a PDPT): the recording machine answers 0 but keeps CR0.PG clear, so KVM_GET_SREGS2 reports no PDPTRs; on VMX/SVM, as in the model, paging is on and the PDPTEs at CR3 are loaded — and kept as they were when a present one has a reserved bit (the load fails, KVM_SET_SREGS does not).',
    linux: ['arch/x86/kvm/x86.c __set_sregs_common (load_pdptrs, its result ignored), __get_sregs2, load_pdptrs, pdptr_rsvd_bits', 'arch/x86/kvm/vmx/vmx.c vmx_set_cr0, arch/x86/kvm/svm/svm.c svm_set_cr0 (CR0.PG kept)'],
    reason: 'kvm_pvm, the recording machine\'s vendor module, runs real-mode and non-paged guests through KVM\'s emulator and does not take CR0.PG from KVM_SET_SREGS; VMX and SVM, which the model follows, do.',
    facts: ['run.pdpte.set-sregs-reserved-bit'],
    where: (m) => m.step === 'KVM_GET_SREGS2' && (m.path.endsWith('.out.cr0') || m.path.endsWith('.out.flags') || /\.out\.pdptrs\.\d$/.test(m.path)),
  },
  {
    id: 'events-beside-exception',
    class: 'emulator-vendor',
    summary:
      'An exception injected with KVM_SET_VCPU_EVENTS together with another event, or an NMI and an interrupt both set as being injected: on the recording machine the exception handler runs up to its first exit before a pending NMI is injected, and an NMI or interrupt set as being injected beside the event that goes stays so after the run (the interrupt is delivered at the next KVM_RUN); on VMX/SVM, as in the model, the entry with the exception (or the re-injected NMI) is an immediate exit, so the pending NMI comes before the handler\'s first instruction, and the exit after it drops nmi.injected and interrupt.injected.',
    linux: [
      'arch/x86/kvm/x86.c kvm_check_and_inject_events (one re-injection: nmi_injected before interrupt.injected; can_inject = !kvm_event_needs_reinjection; -EBUSY → req_immediate_exit)',
      'arch/x86/kvm/vmx/vmx.c __vmx_complete_interrupts (nmi_injected = false, kvm_clear_interrupt_queue), vmx_vcpu_run (force_immediate_exit: preemption timer 0)',
      'arch/x86/kvm/svm/svm.c svm_complete_interrupts, svm_vcpu_run (force_immediate_exit: smp_send_reschedule)',
    ],
    reason: 'kvm_pvm, the recording machine\'s vendor module, injects real-mode events through KVM\'s emulator and neither stops the guest at once for req_immediate_exit nor clears the event queues at the exit as VMX/SVM do.',
    facts: ['run.events.exception-and-nmi-pending', 'run.events.exception-and-nmi-injected', 'run.events.exception-and-interrupt-injected', 'run.events.nmi-and-interrupt-injected'],
    where: (m) => (m.step === 'KVM_RUN' && m.path.endsWith('.run.io.port')) || (m.step === 'KVM_GET_VCPU_EVENTS' && (m.path.endsWith('.nmi.injected') || m.path.endsWith('.interrupt.injected'))),
  },
  {
    id: 'rip-after-out',
    class: 'emulator-vendor',
    summary: 'After an OUT exit, RIP is already past the OUT on the recording machine (KVM\'s emulator writes RIP back before exiting); on VMX/SVM, as in the model, it stays on the OUT until the next KVM_RUN completes it.',
    linux: ['arch/x86/kvm/x86.c kvm_fast_pio, kvm_fast_pio_out, complete_fast_pio_out (VMX/SVM)', 'arch/x86/kvm/x86.c x86_emulate_instruction (writeback before the PIO exit for an OUT)'],
    facts: ['guest.*', 'run.out-byte', 'run.out-dx-word', 'run.out-dword', 'run.ud2-through-ivt', 'run.msr-exit.rdmsr-error', 'irq.line.halted-guest', 'irq.line.held-while-if-clear', 'irq.pit.ticks', 'irq.init-sipi.ap-run', 'irq.tsc-deadline', 'run.sync-regs.valid-regs', 'run.sync-regs.valid-all', 'run.sync-regs.valid-cleared', 'run.sync-regs.dirty-regs', 'dirty-ring.soft-full', 'run.mmio-shadow.after-sti', 'run.pdpte.mov-cr0-reserved-bit', 'run.pdpte.mov-cr0-above-maxphyaddr'],
    where: (m) => {
      // KVM_GET_REGS, or the registers KVM_CAP_SYNC_REGS stored in kvm_run at the exit
      const rip = (m.step === 'KVM_GET_REGS' && m.path.endsWith('.out.rip')) || (m.step === 'sync-read' && m.path.endsWith('.regs.rip'));
      if (!rip) return false;
      const d = BigInt(m.expected) - BigInt(m.actual);
      return d >= 1n && d <= 4n; // the OUT's length: EE, E6 ib, 66 EF, 66 E7 ib; in the pm32 programs 66 67 E6 ib
    },
  },
  {
    id: 'singlestep-hlt',
    class: 'emulator-vendor',
    summary: 'A single-stepped HLT without an in-kernel irqchip: KVM_EXIT_DEBUG on the recording machine (its emulator reports the step after em_hlt set KVM_EXIT_HLT); on VMX/SVM, as in the model, kvm_emulate_halt reports the step first and __kvm_emulate_halt then overwrites exit_reason with KVM_EXIT_HLT.',
    linux: ['arch/x86/kvm/x86.c kvm_emulate_halt, kvm_skip_emulated_instruction, kvm_vcpu_do_singlestep, __kvm_emulate_halt', 'arch/x86/kvm/x86.c x86_emulate_instruction (kvm_vcpu_do_singlestep after writeback)'],
    facts: ['run.guest-debug.singlestep'],
    where: (m) => m.path.endsWith('.run.exit_reason') && m.expected === '4' && m.actual === '5',
  },
  {
    id: 'sw-bp-real-mode-emulator',
    class: 'emulator-vendor',
    summary: 'KVM_GUESTDBG_USE_SW_BP and an INT3 in real mode: an emulation failure on the recording machine (its vendor module emulates real mode and does not intercept #BP there); VMX and SVM intercept #BP (the exception bitmap, INTERCEPT_BP) and exit with KVM_EXIT_DEBUG, exception 3, at the INT3, as the model does.',
    linux: ['arch/x86/kvm/vmx/vmx.c handle_exception_nmi (BP_VECTOR), vmx_update_exception_bitmap', 'arch/x86/kvm/svm/svm.c bp_interception, svm_update_exception_bitmap'],
    facts: ['run.guest-debug.sw-bp'],
    where: (m) => m.path.endsWith('.run.exit_reason') && m.expected === '17' && m.actual === '4',
  },
  {
    id: 'cap-smaller-maxphyaddr',
    class: 'emulator-vendor',
    summary: 'KVM_CAP_SMALLER_MAXPHYADDR is 1 on the recording machine (shadow paging); VMX with EPT (unless kvm_intel.allow_smaller_maxphyaddr) and SVM with NPT, as the models, answer 0.',
    linux: ['arch/x86/kvm/vmx/vmx.c vmx_init (`if (!enable_ept) allow_smaller_maxphyaddr = true`)', 'arch/x86/kvm/svm/svm.c svm_hardware_setup (allow_smaller_maxphyaddr = !npt_enabled)'],
    facts: caps('SMALLER_MAXPHYADDR'),
  },
  {
    id: 'triple-fault-in-emulator',
    class: 'emulator-vendor',
    summary: 'INT3 with an IDT limit of 0 in real mode ends in an emulation failure on the recording machine; VMX/SVM hardware triple-faults (KVM_EXIT_SHUTDOWN), as the model does.',
    linux: ['arch/x86/kvm/emulate.c emulate_int_real (the emulator\'s real-mode interrupt delivery)', 'arch/x86/kvm/vmx/vmx.c handle_triple_fault, arch/x86/kvm/svm/svm.c shutdown_interception (KVM_EXIT_SHUTDOWN)'],
    facts: ['run.triple-fault'],
    where: (m) => m.path.endsWith('.run.exit_reason'),
  },
  {
    id: 'reset-vector-without-memory',
    class: 'emulator-vendor',
    summary: 'KVM_RUN of a vCPU at the reset vector in a VM without memory fails with ENOSPC on the recording machine (kvm_pvm); VMX/SVM report an emulation failure.',
    linux: ['arch/x86/kvm/x86.c handle_emulation_failure, prepare_emulation_failure_exit'],
    facts: ['run.reset-vector-no-memory'],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },

  {
    id: 'vendor-tsc-scaling',
    class: 'emulator-vendor',
    summary: 'The recording machine\'s vendor module has no TSC scaling (KVM_CAP_TSC_CONTROL 0, and a TSC rate below the host\'s is EINVAL); SVM with the TSC ratio MSR, as amd(), scales (1) and takes it.',
    linux: ['arch/x86/kvm/svm/svm.c svm_hardware_setup (kvm_caps.has_tsc_control = tsc_scaling)', 'arch/x86/kvm/x86.c kvm_set_tsc_khz / set_tsc_khz'],
    facts: [...caps('TSC_CONTROL', 'VM_TSC_CONTROL'), 'vcpu.tsc-khz.set-1ghz'],
    vendors: ['amd'],
  },
  {
    id: 'vendor-mce-cap',
    class: 'emulator-vendor',
    summary: 'VMX adds MCG_LMCE_P and MCG_CMCI_P to the supported MCG_CAP (vmx_setup_mce / kvm_caps.supported_mce_cap); the recording machine\'s vendor module, like SVM, does not.',
    linux: ['arch/x86/kvm/vmx/vmx.c vmx_hardware_setup (kvm_caps.supported_mce_cap |= MCG_LMCE_P | MCG_CMCI_P)'],
    facts: ['system.mce-cap-supported'],
    vendors: ['intel'],
  },
  {
    id: 'vendor-rdpid-emulated',
    class: 'emulator-vendor',
    summary: 'KVM_GET_EMULATED_CPUID offers RDPID (leaf 7 ECX bit 22) when KVM supports RDTSCP, as on VMX and SVM with the model\'s CPUs; the recording machine\'s vendor module does not expose RDTSCP, so it reports none.',
    linux: ['arch/x86/kvm/cpuid.c __do_cpuid_func_emulated (case 7: kvm_cpu_cap_has(X86_FEATURE_RDTSCP))'],
    facts: ['system.emulated-cpuid.content'],
  },
  {
    id: 'vendor-msr-quirks',
    class: 'emulator-vendor',
    summary: 'The recording machine\'s vendor module answers MISC_ENABLE 1 at reset and takes a PAT with reserved memory types; VMX and SVM (kvm_vcpu_reset: PEBS_UNAVAIL | BTS_UNAVAIL; kvm_pat_valid) give 0x1800 and refuse it.',
    linux: ['arch/x86/kvm/x86.c kvm_vcpu_reset (ia32_misc_enable_msr), kvm_set_msr_common (MSR_IA32_CR_PAT: kvm_pat_valid)', 'arch/x86/kvm/vmx/vmx.c vmx_set_msr (MSR_IA32_CR_PAT)'],
    facts: ['vcpu.reset.msr.misc-enable', 'vcpu.msrs.set-pat-reserved-type'],
  },
  {
    id: 'vendor-cpuid2-entries',
    class: 'emulator-vendor',
    summary: 'After KVM_SET_CPUID2 of two entries the recording kernel answers KVM_GET_CPUID2 with eight (leaf 1 filled from the host, leaf 0xD sub-leaves added); mainline KVM, as the model, gives back the entries set (with the run-time bits).',
    linux: ['arch/x86/kvm/cpuid.c kvm_vcpu_ioctl_get_cpuid2 (copies vcpu->arch.cpuid_entries)'],
    facts: ['vcpu.cpuid2.set-get'],
  },
  {
    id: 'vendor-exit-info',
    class: 'emulator-vendor',
    summary: 'An emulation failure carries the vendor\'s exit information after the flags word (get_exit_info: exit reason, qualification, …): the recording machine\'s vendor module reports its own (0x1000); the model\'s VMX/SVM exit information is not modelled (zeros).',
    linux: ['arch/x86/kvm/x86.c prepare_emulation_failure_exit', 'arch/x86/kvm/vmx/vmx.c vmx_get_exit_info', 'arch/x86/kvm/svm/svm.c svm_get_exit_info'],
    facts: ['run.fetch-outside-memory', 'run.unmapped-user-memory'],
    where: (m) => /\.run\.internal\.data\.[1-5]$/.test(m.path),
  },

  // ---- host-config ---------------------------------------------------------------------------------------
  {
    id: 'no-smm',
    class: 'host-config',
    summary:
      'The recording kernel has no SMM support (KVM_CAP_X86_SMM 0, KVM_SMI ENOTTY): memory address space 1 is EINVAL there. With CONFIG_KVM_SMM (the default), as in the model, KVM_CAP_X86_SMM is 1, KVM_SMI takes an SMI into SMM (the save state at SMBASE + 0xFE00, RSM) and address space 1 is SMM memory — facts that rest on the Linux sources, since this machine cannot show them (packages/kvm/test/module/smm.test.ts).',
    linux: [
      'arch/x86/include/asm/kvm_host.h KVM_ADDRESS_SPACE_NUM / kvm_arch_nr_memslot_as_ids',
      'virt/kvm/kvm_main.c kvm_set_memory_region (as_id check)',
      'arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl (KVM_SMI under CONFIG_KVM_SMM), kvm_vm_ioctl_check_extension (KVM_CAP_X86_SMM)',
      'arch/x86/kvm/smm.c enter_smm, emulator_leave_smm',
    ],
    facts: ['memslot.address-space-1', 'memslot.address-spaces-overlap', 'vcpu.smi', 'vcpu.vcpu-events.smm', ...caps('MULTI_ADDRESS_SPACE', 'X86_SMM'), 'vcpu.reset.msr.smbase'],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },
  {
    id: 'host-cpu-msrs-and-cpuid',
    class: 'host-config',
    summary: 'What KVM lists and supports follows the host CPU: the recording machine\'s (an AMD EPYC with XSAVE, XSAVES, SPEC_CTRL) and the model\'s intel()/amd() CPUs differ in CPUID leaves, MSRs (SPEC_CTRL, XSS, the PMU MSRs), microcode and ARCH_CAPABILITIES values.',
    linux: ['arch/x86/kvm/x86.c kvm_probe_msr_to_save, kvm_init_msr_lists, kvm_get_feature_msr', 'arch/x86/kvm/cpuid.c kvm_set_cpu_caps, __do_cpuid_func'],
    facts: ['system.msr-index-list.content', 'system.supported-cpuid.content', 'system.get-msrs.common-feature-values', 'vcpu.reset.msr.spec-ctrl', 'vcpu.reset.msr.xss'],
  },
  {
    id: 'no-nested-state-ops',
    class: 'emulator-vendor',
    summary: 'The recording machine\'s vendor module (kvm_pvm) has no nested_ops->get_state/set_state: KVM_CAP_NESTED_STATE is 0 and KVM_GET/SET_NESTED_STATE are EINVAL before the argument is read. VMX and SVM, as the model, have them whatever `nested` says: the cap is 8320 (VMX) or 4224 (SVM), GET answers the 128-byte header (E2BIG with the size for a smaller buffer, EFAULT for a bad pointer), SET takes the state of a vCPU outside VMX/SVM operation.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_NESTED_STATE), kvm_arch_vcpu_ioctl (KVM_GET/SET_NESTED_STATE)', 'arch/x86/kvm/vmx/nested.c vmx_get_nested_state, vmx_set_nested_state', 'arch/x86/kvm/svm/nested.c svm_get_nested_state, svm_set_nested_state'],
    facts: [...caps('NESTED_STATE'), ...ids('vcpu.nested-state', 'get', 'get-small', 'get-null', 'set-null')],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },
  {
    id: 'no-nested-state-ops-vmx-header',
    class: 'emulator-vendor',
    summary: 'A VMX header without VMXON (vmxon_pa = vmcs12_pa = -1) is taken by VMX (vmx_set_nested_state: nothing to enter); EINVAL on the recording machine, whose vendor module has no nested-state ops (no-nested-state-ops). SVM refuses the VMX format, as there.',
    linux: ['arch/x86/kvm/vmx/nested.c vmx_set_nested_state'],
    vendors: ['intel'],
    facts: ['vcpu.nested-state.set-vmx-no-vmxon'],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },
  {
    id: 'no-nested-state-ops-svm-header',
    class: 'emulator-vendor',
    summary: 'An SVM header with GIF set and no guest mode is taken by SVM (svm_set_nested_state: leave nested, set GIF); EINVAL on the recording machine, whose vendor module has no nested-state ops (no-nested-state-ops). VMX refuses the SVM format, as there.',
    linux: ['arch/x86/kvm/svm/nested.c svm_set_nested_state'],
    vendors: ['amd'],
    facts: ['vcpu.nested-state.set-svm-gif'],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },
  {
    id: 'svm-feature-msrs',
    class: 'emulator-vendor',
    summary: 'SVM adds MSR_AMD64_DE_CFG to the feature MSRs (svm_get_feature_msr); the recording machine\'s vendor module lists only the generic four, as VMX without nested VMX does.',
    linux: ['arch/x86/kvm/svm/svm.c svm_get_feature_msr', 'arch/x86/kvm/x86.c kvm_init_msr_lists (msr_based_features)'],
    facts: ['system.msr-feature-index-list.content'],
    vendors: ['amd'],
  },
  {
    id: 'host-xsave',
    class: 'host-config',
    summary: 'KVM_GET_XSAVE writes the host kernel\'s user XSAVE features (fpu_user_cfg.max_features) into the software-reserved bytes of the legacy area (u32 116 of the region): x87 | SSE | AVX | AVX-512 (0xe7) on the recording CPU, x87 | SSE | AVX (7) on the model\'s CPUs.',
    linux: ['arch/x86/kernel/fpu/xstate.c __copy_xstate_to_uabi_buf (xstate_fx_sw_bytes), update_regset_xstate_info'],
    facts: ['vcpu.reset.xsave', 'vcpu.round-trip.xsave', 'vcpu.get-xsave2', 'vcpu.xsave.x87-only', 'vcpu.xsave.avx-with-cpuid', 'xsave.x87.set-fpu', 'xsave.x87.set-xsave'],
    where: (m) => /\.region\.116$/.test(m.path),
  },
  {
    id: 'host-xcomp-features',
    class: 'host-config',
    summary: 'arch_prctl(ARCH_GET_XCOMP_SUPP) and ARCH_GET_XCOMP_GUEST_PERM answer the host kernel\'s user XSAVE features (fpu_user_cfg): x87 | SSE | AVX | AVX-512 (0xe7) on the recording CPU, x87 | SSE | AVX (7) on the model\'s CPUs. Neither has AMX, so the request for tile data is EOPNOTSUPP on both, and KVM_CAP_XSAVE2 stays 4096.',
    linux: ['arch/x86/kernel/fpu/xstate.c fpu_xstate_prctl, fpu__init_system_xstate'],
    facts: ['xsave.guest-perm'],
    where: (m) => /^steps\.[017]\.out$/.test(m.path) && m.expected === '0xe7' && m.actual === '0x7',
  },
  {
    id: 'host-mxcsr-mask',
    class: 'host-config',
    summary: 'MXCSR_MASK in the FXSAVE area is the CPU\'s: 0x2ffff on the recording AMD CPU (and amd()), 0xffff on Intel CPUs (intel()).',
    linux: ['arch/x86/kernel/fpu/init.c fpu__init_system_mxcsr', 'arch/x86/kernel/fpu/core.c fpstate_init_fx'],
    facts: ['vcpu.reset.xsave', 'vcpu.round-trip.xsave', 'vcpu.get-xsave2', 'vcpu.xsave.x87-only', 'xsave.x87.set-fpu', 'xsave.x87.set-xsave'],
    where: (m) => /\.region\.7$/.test(m.path),
    vendors: ['intel'],
  },
  {
    id: 'host-master-clock',
    class: 'host-config',
    summary: 'KVM_GET_CLOCK flags are 0 on the recording host (no KVM master clock: its clocksource is not a stable TSC); the model\'s hosts have a stable TSC, so the flags are TSC_STABLE | REALTIME | HOST_TSC.',
    linux: ['arch/x86/kvm/x86.c __get_kvmclock (ka->use_master_clock), pvclock_update_vm_gtod_copy'],
    facts: ['vm.get-clock'],
    where: (m) => m.path.endsWith('.out.flags'),
  },
  {
    id: 'no-sev',
    class: 'host-config',
    summary: 'The recording host has no SEV (KVM_MEMORY_ENCRYPT_OP is ENOTTY); the AMD model has SEV enabled and accepts KVM_SEV_INIT.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vm_ioctl (KVM_MEMORY_ENCRYPT_OP: -ENOTTY without mem_enc_ioctl)', 'arch/x86/kvm/svm/sev.c sev_mem_enc_ioctl'],
    facts: ['vm.memory-encrypt-op'],
    vendors: ['amd'],
  },

  // ---- linux-version -------------------------------------------------------------------------------------
  {
    id: 'quirks-6-18',
    class: 'linux-version',
    summary: 'KVM_CAP_DISABLE_QUIRKS2 is 0x5ff on 6.18 (IGNORE_GUEST_PAT, conditional, and VMCS12_ALLOW_FREEZE_IN_SMM came after 6.12); 6.12, as the model, answers 0x1ff (LINT0_REENABLED … STUFF_FEATURE_MSRS).',
    linux: ['arch/x86/include/asm/kvm_host.h KVM_X86_VALID_QUIRKS', 'arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_DISABLE_QUIRKS2)'],
    facts: caps('DISABLE_QUIRKS2'),
  },
  {
    id: 'disable-exits-after-vcpus',
    class: 'linux-version',
    summary: 'KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) once a vCPU exists is EINVAL from 6.14 (04cd8f8628d8); 6.12, as the model\'s baseline, takes it. The 6.14 and 6.18 builds refuse it (CHANGE_DISABLE_EXITS_AFTER_VCPUS, packages/kvm/test/builds/builds.test.ts).',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap (KVM_CAP_X86_DISABLE_EXITS: kvm->created_vcpus)'],
    facts: ['vm.enable-cap.disable-exits.after-vcpu'],
  },
  {
    id: 'cap-one-reg',
    class: 'linux-version',
    summary: 'KVM_CAP_ONE_REG is 1 on the recording 6.18 kernel (x86 gained KVM_GET/SET_ONE_REG for MSRs after 6.12); 6.12, as the model, answers 0.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_ONE_REG, 6.18)'],
    facts: caps('ONE_REG'),
  },
];
