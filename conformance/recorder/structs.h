/*
 * JSON writers for the KVM structs, with the C field names of <linux/kvm.h> and <asm/kvm.h> (padding and
 * reserved members left out). Each has the `emit_fn` shape: (key, pointer to the struct).
 */
#ifndef RECORDER_STRUCTS_H
#define RECORDER_STRUCTS_H

#include "compat.h"
#include "facts.h"

void emit_regs(const char *key, const struct kvm_regs *r);
void emit_segment(const char *key, const struct kvm_segment *s);
void emit_dtable(const char *key, const struct kvm_dtable *d);
void emit_sregs(const char *key, const struct kvm_sregs *s);
/* Only CR0, CR2, CR3, CR4, CR8, EFER, APIC base, CS.L: what KVM_SET_SREGS validation is about. */
void emit_sregs_ctl(const char *key, const struct kvm_sregs *s);
void emit_sregs2(const char *key, const struct kvm_sregs2 *s);
void emit_fpu(const char *key, const struct kvm_fpu *f);
void emit_xcrs(const char *key, const struct kvm_xcrs *x);
void emit_vcpu_events(const char *key, const struct kvm_vcpu_events *e);
/* The 128-byte header of struct kvm_nested_state (the hdr union as its 120 bytes). */
void emit_nested_state(const char *key, const struct kvm_nested_state *s);
void emit_mp_state(const char *key, const struct kvm_mp_state *m);
void emit_debugregs(const char *key, const struct kvm_debugregs *d);
void emit_xsave(const char *key, const struct kvm_xsave *x);
void emit_clock_data(const char *key, const struct kvm_clock_data *c);
void emit_umr(const char *key, const struct kvm_userspace_memory_region *m);
void emit_umr2(const char *key, const struct kvm_userspace_memory_region2 *m);
void emit_enable_cap(const char *key, const struct kvm_enable_cap *c);

/* struct kvm_msrs with its entries (nmsrs of them). */
struct msrs_buf { struct kvm_msrs h; struct kvm_msr_entry e[256]; };
void emit_msrs(const char *key, const struct msrs_buf *m);
/* struct kvm_msr_list: nmsrs and the indices. */
struct msr_list_buf { struct kvm_msr_list h; __u32 i[1024]; };
void emit_msr_list(const char *key, const struct msr_list_buf *l);
/* Only nmsrs, recorded but not compared (it depends on the host CPU and vendor). */
void emit_msr_list_count_opaque(const char *key, const struct msr_list_buf *l);
void emit_msr_list_count(const char *key, const struct msr_list_buf *l);
/* struct kvm_cpuid2: nent and the entries. */
struct cpuid_buf { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 e[300]; };
void emit_cpuid2(const char *key, const struct cpuid_buf *c);
void emit_cpuid2_count(const char *key, const struct cpuid_buf *c);
void emit_cpuid2_count_opaque(const char *key, const struct cpuid_buf *c);

/* The kvm_run fields of the exit in `run` (exit_reason and that exit's union member). */
void emit_run_exit(const char *key, const struct kvm_run *run);
/* Only exit_reason. */
void emit_run_reason(const char *key, const struct kvm_run *run);

/* {"$opaque": value}: recorded, not compared (it is the host's, not KVM's). */
void j_opaque_u64(const char *key, uint64_t v);
void j_opaque_int(const char *key, int64_t v);

#endif

/*
 * A count that refers to an earlier answer of the model under test: {"$ref": path, "add": add, "$value": v}.
 * The emitters below use `count_ref` (e.g. "steps.0.out.nmsrs") and `count_add` for their count field.
 */
extern const char *count_ref;
extern int count_add;
void j_ref(const char *key, const char *path, int add, int64_t value);
/* kvm_msr_list / kvm_cpuid2 whose count is `count_ref` + `count_add` (entries not written: not read). */
void emit_msr_list_in_ref(const char *key, const struct msr_list_buf *l);
void emit_cpuid2_in_ref(const char *key, const struct cpuid_buf *c);
/* kvm_msr_list / kvm_cpuid2 as an input buffer: only the count (the kernel does not read the entries). */
void emit_msr_list_in(const char *key, const struct msr_list_buf *l);
void emit_cpuid2_in(const char *key, const struct cpuid_buf *c);
/* kvm_msrs whose entries' data are the host's (recorded, not compared). */
void emit_msrs_opaque(const char *key, const struct msrs_buf *m);
/* A pointer to one __u64: [value]. */
void emit_u64p(const char *key, const uint64_t *p);
/* Only apic_base of a kvm_sregs. */
void emit_sregs_apic_base(const char *key, const struct kvm_sregs *s);
/* Only the segment registers' selector and base, and interrupt_bitmap, of a kvm_sregs. */
void emit_sregs_segments(const char *key, const struct kvm_sregs *s);
void emit_lapic(const char *key, const struct kvm_lapic_state *l);
void emit_translation(const char *key, const struct kvm_translation *t);
void emit_device_attr(const char *key, const struct kvm_device_attr *a);
/* A struct kvm_pmu_event_filter with room for PMU_FILTER_BUF_EVENTS events (only those are emitted). */
#define PMU_FILTER_BUF_EVENTS 4
struct pmu_filter_buf {
	struct kvm_pmu_event_filter h;
	__u64 events[PMU_FILTER_BUF_EVENTS];
};
void emit_pmu_event_filter(const char *key, const struct pmu_filter_buf *f);
void emit_guest_debug(const char *key, const struct kvm_guest_debug *g);
void emit_interrupt(const char *key, const struct kvm_interrupt *i);
void emit_irq_level(const char *key, const struct kvm_irq_level *l);
void emit_ioeventfd(const char *key, const struct kvm_ioeventfd *e);
void emit_coalesced_zone(const char *key, const struct kvm_coalesced_mmio_zone *z);
void emit_pit_config(const char *key, const struct kvm_pit_config *p);
void emit_msr_filter(const char *key, const struct kvm_msr_filter *f);
void emit_dirty_log(const char *key, const struct kvm_dirty_log *d);
void emit_clear_dirty_log(const char *key, const struct kvm_clear_dirty_log *c);
void emit_sev_cmd(const char *key, const uint64_t *cmd);
