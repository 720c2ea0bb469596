/* The groups of facts; each writes one golden file (conformance/golden/<group>.json). */
#ifndef RECORDER_GROUPS_H
#define RECORDER_GROUPS_H

void record_machine(void);
void record_caps(void);
void record_system(void);
void record_vm(void);
/* The dirty-ring facts of group "vm" (dirty-ring.c). */
void record_vm_dirty_ring(void);
void record_memslots(void);
void record_vcpu(void);
/* The KVM_GET/SET_NESTED_STATE facts of group "vcpu" (nested.c). */
void record_vcpu_nested(void);
void record_run(void);
/* The KVM_CAP_SYNC_REGS facts of group "run" (run-sync.c). */
void record_run_sync(void);
/* The event-injection and MMIO interrupt-shadow facts of group "run" (run-events.c). */
void record_run_events(void);
/* The PAE PDPTE facts of group "run" (run-pdptes.c). */
void record_run_pdptes(void);
void record_irq(void);
/* The dirty ring as a real-mode guest writes (dirty-ring-guest.c). */
void record_dirty_ring(void);
/* The XSAVE permission and x87 facts, in a child process with no vCPU yet (xsave.c). */
void record_xsave(void);
/* Guest programs read from `programs` (the file conformance/programs/programs.txt). */
void record_guest(const char *programs);

#endif
