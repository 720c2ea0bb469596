#include "structs.h"

#include <string.h>

void j_opaque_u64(const char *key, uint64_t v) {
	j_obj(key);
	j_u64("$opaque", v);
	j_end_obj();
}

void j_opaque_int(const char *key, int64_t v) {
	j_obj(key);
	j_int("$opaque", v);
	j_end_obj();
}

void emit_regs(const char *key, const struct kvm_regs *r) {
	j_obj(key);
	j_u64("rax", r->rax); j_u64("rbx", r->rbx); j_u64("rcx", r->rcx); j_u64("rdx", r->rdx);
	j_u64("rsi", r->rsi); j_u64("rdi", r->rdi); j_u64("rsp", r->rsp); j_u64("rbp", r->rbp);
	j_u64("r8", r->r8); j_u64("r9", r->r9); j_u64("r10", r->r10); j_u64("r11", r->r11);
	j_u64("r12", r->r12); j_u64("r13", r->r13); j_u64("r14", r->r14); j_u64("r15", r->r15);
	j_u64("rip", r->rip); j_u64("rflags", r->rflags);
	j_end_obj();
}

void emit_segment(const char *key, const struct kvm_segment *s) {
	j_obj(key);
	j_u64("base", s->base);
	j_int("limit", s->limit);
	j_int("selector", s->selector);
	j_int("type", s->type);
	j_int("present", s->present);
	j_int("dpl", s->dpl);
	j_int("db", s->db);
	j_int("s", s->s);
	j_int("l", s->l);
	j_int("g", s->g);
	j_int("avl", s->avl);
	j_int("unusable", s->unusable);
	j_end_obj();
}

void emit_dtable(const char *key, const struct kvm_dtable *d) {
	j_obj(key);
	j_u64("base", d->base);
	j_int("limit", d->limit);
	j_end_obj();
}

#define SEGMENTS(s) \
	emit_segment("cs", &(s)->cs); emit_segment("ds", &(s)->ds); emit_segment("es", &(s)->es); \
	emit_segment("fs", &(s)->fs); emit_segment("gs", &(s)->gs); emit_segment("ss", &(s)->ss); \
	emit_segment("tr", &(s)->tr); emit_segment("ldt", &(s)->ldt); \
	emit_dtable("gdt", &(s)->gdt); emit_dtable("idt", &(s)->idt); \
	j_u64("cr0", (s)->cr0); j_u64("cr2", (s)->cr2); j_u64("cr3", (s)->cr3); j_u64("cr4", (s)->cr4); \
	j_u64("cr8", (s)->cr8); j_u64("efer", (s)->efer); j_u64("apic_base", (s)->apic_base)

void emit_sregs(const char *key, const struct kvm_sregs *s) {
	j_obj(key);
	SEGMENTS(s);
	j_arr("interrupt_bitmap");
	for (int i = 0; i < 4; i++) j_u64(NULL, s->interrupt_bitmap[i]);
	j_end_arr();
	j_end_obj();
}

void emit_sregs_ctl(const char *key, const struct kvm_sregs *s) {
	j_obj(key);
	j_u64("cr0", s->cr0);
	j_u64("cr2", s->cr2);
	j_u64("cr3", s->cr3);
	j_u64("cr4", s->cr4);
	j_u64("cr8", s->cr8);
	j_u64("efer", s->efer);
	j_u64("apic_base", s->apic_base);
	j_obj("cs");
	j_int("l", s->cs.l);
	j_end_obj();
	j_end_obj();
}

void emit_sregs2(const char *key, const struct kvm_sregs2 *s) {
	j_obj(key);
	SEGMENTS(s);
	j_u64("flags", s->flags);
	j_arr("pdptrs");
	for (int i = 0; i < 4; i++) j_u64(NULL, s->pdptrs[i]);
	j_end_arr();
	j_end_obj();
}

void emit_fpu(const char *key, const struct kvm_fpu *f) {
	j_obj(key);
	j_arr("fpr");
	for (int i = 0; i < 8; i++) j_u8s(NULL, f->fpr[i], 16);
	j_end_arr();
	j_int("fcw", f->fcw);
	j_int("fsw", f->fsw);
	j_int("ftwx", f->ftwx);
	j_int("last_opcode", f->last_opcode);
	j_u64("last_ip", f->last_ip);
	j_u64("last_dp", f->last_dp);
	j_arr("xmm");
	for (int i = 0; i < 16; i++) j_u8s(NULL, f->xmm[i], 16);
	j_end_arr();
	j_int("mxcsr", f->mxcsr);
	j_end_obj();
}

void emit_xcrs(const char *key, const struct kvm_xcrs *x) {
	j_obj(key);
	j_int("nr_xcrs", x->nr_xcrs);
	j_int("flags", x->flags);
	j_arr("xcrs");
	for (unsigned i = 0; i < x->nr_xcrs && i < KVM_MAX_XCRS; i++) {
		j_obj(NULL);
		j_int("xcr", x->xcrs[i].xcr);
		j_u64("value", x->xcrs[i].value);
		j_end_obj();
	}
	j_end_arr();
	j_end_obj();
}

void emit_nested_state(const char *key, const struct kvm_nested_state *s) {
	j_obj(key);
	j_int("flags", s->flags);
	j_int("format", s->format);
	j_int("size", s->size);
	j_u8s("hdr", (const uint8_t *)&s->hdr, sizeof s->hdr);
	j_end_obj();
}

void emit_vcpu_events(const char *key, const struct kvm_vcpu_events *e) {
	j_obj(key);
	j_obj("exception");
	j_int("injected", e->exception.injected);
	j_int("nr", e->exception.nr);
	j_int("has_error_code", e->exception.has_error_code);
	j_int("pending", e->exception.pending);
	j_int("error_code", e->exception.error_code);
	j_end_obj();
	j_obj("interrupt");
	j_int("injected", e->interrupt.injected);
	j_int("nr", e->interrupt.nr);
	j_int("soft", e->interrupt.soft);
	j_int("shadow", e->interrupt.shadow);
	j_end_obj();
	j_obj("nmi");
	j_int("injected", e->nmi.injected);
	j_int("pending", e->nmi.pending);
	j_int("masked", e->nmi.masked);
	j_end_obj();
	j_int("sipi_vector", e->sipi_vector);
	j_int("flags", e->flags);
	j_obj("smi");
	j_int("smm", e->smi.smm);
	j_int("pending", e->smi.pending);
	j_int("smm_inside_nmi", e->smi.smm_inside_nmi);
	j_int("latched_init", e->smi.latched_init);
	j_end_obj();
	j_obj("triple_fault");
	j_int("pending", e->triple_fault.pending);
	j_end_obj();
	j_int("exception_has_payload", e->exception_has_payload);
	j_u64("exception_payload", e->exception_payload);
	j_end_obj();
}

void emit_mp_state(const char *key, const struct kvm_mp_state *m) {
	j_obj(key);
	j_int("mp_state", m->mp_state);
	j_end_obj();
}

void emit_debugregs(const char *key, const struct kvm_debugregs *d) {
	j_obj(key);
	j_arr("db");
	for (int i = 0; i < 4; i++) j_u64(NULL, d->db[i]);
	j_end_arr();
	j_u64("dr6", d->dr6);
	j_u64("dr7", d->dr7);
	j_u64("flags", d->flags);
	j_end_obj();
}

void emit_xsave(const char *key, const struct kvm_xsave *x) {
	j_obj(key);
	j_arr("region");
	for (int i = 0; i < 1024; i++) j_int(NULL, x->region[i]);
	j_end_arr();
	j_end_obj();
}

void emit_clock_data(const char *key, const struct kvm_clock_data *c) {
	/* The clock and the host's TSC and realtime are times: recorded, not compared. */
	j_obj(key);
	j_opaque_u64("clock", c->clock);
	j_int("flags", c->flags);
	j_opaque_u64("realtime", c->realtime);
	j_opaque_u64("host_tsc", c->host_tsc);
	j_end_obj();
}

void emit_umr(const char *key, const struct kvm_userspace_memory_region *m) {
	j_obj(key);
	j_int("slot", m->slot);
	j_int("flags", m->flags);
	j_u64("guest_phys_addr", m->guest_phys_addr);
	j_u64("memory_size", m->memory_size);
	j_uaddr("userspace_addr", m->userspace_addr);
	j_end_obj();
}

void emit_umr2(const char *key, const struct kvm_userspace_memory_region2 *m) {
	j_obj(key);
	j_int("slot", m->slot);
	j_int("flags", m->flags);
	j_u64("guest_phys_addr", m->guest_phys_addr);
	j_u64("memory_size", m->memory_size);
	j_uaddr("userspace_addr", m->userspace_addr);
	j_u64("guest_memfd_offset", m->guest_memfd_offset);
	j_int("guest_memfd", m->guest_memfd);
	j_end_obj();
}

void emit_enable_cap(const char *key, const struct kvm_enable_cap *c) {
	j_obj(key);
	j_int("cap", c->cap);
	j_int("flags", c->flags);
	j_arr("args");
	for (int i = 0; i < 4; i++) j_u64(NULL, c->args[i]);
	j_end_arr();
	j_end_obj();
}

void emit_msrs(const char *key, const struct msrs_buf *m) {
	j_obj(key);
	j_int("nmsrs", m->h.nmsrs);
	j_arr("entries");
	for (unsigned i = 0; i < m->h.nmsrs && i < 256; i++) {
		j_obj(NULL);
		j_int("index", m->e[i].index);
		j_u64("data", m->e[i].data);
		j_end_obj();
	}
	j_end_arr();
	j_end_obj();
}

void emit_msr_list(const char *key, const struct msr_list_buf *l) {
	j_obj(key);
	j_int("nmsrs", l->h.nmsrs);
	j_arr("indices");
	for (unsigned i = 0; i < l->h.nmsrs && i < 1024; i++) j_int(NULL, l->i[i]);
	j_end_arr();
	j_end_obj();
}

void emit_msr_list_count(const char *key, const struct msr_list_buf *l) {
	j_obj(key);
	j_int("nmsrs", l->h.nmsrs);
	j_end_obj();
}

void emit_msr_list_count_opaque(const char *key, const struct msr_list_buf *l) {
	j_obj(key);
	j_opaque_int("nmsrs", l->h.nmsrs);
	j_end_obj();
}

void emit_cpuid2(const char *key, const struct cpuid_buf *c) {
	j_obj(key);
	j_int("nent", c->h.nent);
	j_arr("entries");
	for (unsigned i = 0; i < c->h.nent && i < 300; i++) {
		const struct kvm_cpuid_entry2 *e = &c->e[i];
		j_obj(NULL);
		j_int("function", e->function);
		j_int("index", e->index);
		j_int("flags", e->flags);
		j_int("eax", e->eax);
		j_int("ebx", e->ebx);
		j_int("ecx", e->ecx);
		j_int("edx", e->edx);
		j_end_obj();
	}
	j_end_arr();
	j_end_obj();
}

void emit_cpuid2_count(const char *key, const struct cpuid_buf *c) {
	j_obj(key);
	j_int("nent", c->h.nent);
	j_end_obj();
}

void emit_cpuid2_count_opaque(const char *key, const struct cpuid_buf *c) {
	j_obj(key);
	j_opaque_int("nent", c->h.nent);
	j_end_obj();
}

void emit_run_reason(const char *key, const struct kvm_run *run) {
	j_obj(key);
	j_int("exit_reason", run->exit_reason);
	j_end_obj();
}

void emit_run_exit(const char *key, const struct kvm_run *run) {
	j_obj(key);
	j_int("exit_reason", run->exit_reason);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		j_obj("io");
		j_int("direction", run->io.direction);
		j_int("size", run->io.size);
		j_int("port", run->io.port);
		j_int("count", run->io.count);
		j_u64("data_offset", run->io.data_offset);
		j_end_obj();
		if (run->io.direction == KVM_EXIT_IO_OUT)
			j_hex("pio_data", (const uint8_t *)run + run->io.data_offset, (size_t)run->io.size * run->io.count);
		break;
	case KVM_EXIT_MMIO:
		j_obj("mmio");
		j_u64("phys_addr", run->mmio.phys_addr);
		j_u8s("data", run->mmio.data, run->mmio.is_write ? run->mmio.len : 0);
		j_int("len", run->mmio.len);
		j_int("is_write", run->mmio.is_write);
		j_end_obj();
		break;
	case KVM_EXIT_INTERNAL_ERROR: {
		j_obj("internal");
		j_int("suberror", run->internal.suberror);
		j_int("ndata", run->internal.ndata);
		j_arr("data");
		for (unsigned i = 0; i < run->internal.ndata && i < 16; i++) j_u64(NULL, run->internal.data[i]);
		j_end_arr();
		j_end_obj();
		break;
	}
	case KVM_EXIT_FAIL_ENTRY:
		j_obj("fail_entry");
		j_u64("hardware_entry_failure_reason", run->fail_entry.hardware_entry_failure_reason);
		j_end_obj();
		break;
	case KVM_EXIT_DEBUG:
		j_obj("debug");
		j_int("exception", run->debug.arch.exception);
		j_u64("pc", run->debug.arch.pc);
		j_u64("dr6", run->debug.arch.dr6);
		/* dr7 is not recorded: the emulator path of a real-mode guest (kvm_vcpu_do_singlestep,
		 * kvm_vcpu_check_code_breakpoint) leaves it unwritten, where VMX and SVM write the effective DR7 —
		 * one vendor difference that would end the comparison of every debug fact at its first exit. */
		j_end_obj();
		break;
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
		j_obj("msr");
		j_int("error", run->msr.error);
		j_int("reason", run->msr.reason);
		j_int("index", run->msr.index);
		j_u64("data", run->msr.data);
		j_end_obj();
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		j_obj("system_event");
		j_int("type", run->system_event.type);
		j_end_obj();
		break;
	default:
		break;
	}
	j_end_obj();
}

const char *count_ref;
int count_add;

void j_ref(const char *key, const char *path, int add, int64_t value) {
	j_obj(key);
	j_str("$ref", path);
	if (add) j_int("add", add);
	j_int("$value", value);
	j_end_obj();
}

void emit_msr_list_in_ref(const char *key, const struct msr_list_buf *l) {
	j_obj(key);
	j_ref("nmsrs", count_ref, count_add, l->h.nmsrs);
	j_end_obj();
}

void emit_cpuid2_in_ref(const char *key, const struct cpuid_buf *c) {
	j_obj(key);
	j_ref("nent", count_ref, count_add, c->h.nent);
	j_end_obj();
}

void emit_msr_list_in(const char *key, const struct msr_list_buf *l) {
	j_obj(key);
	j_int("nmsrs", l->h.nmsrs);
	j_end_obj();
}

void emit_cpuid2_in(const char *key, const struct cpuid_buf *c) {
	j_obj(key);
	j_int("nent", c->h.nent);
	j_end_obj();
}

void emit_msrs_opaque(const char *key, const struct msrs_buf *m) {
	j_obj(key);
	j_int("nmsrs", m->h.nmsrs);
	j_arr("entries");
	for (unsigned i = 0; i < m->h.nmsrs && i < 256; i++) {
		j_obj(NULL);
		j_int("index", m->e[i].index);
		j_opaque_u64("data", m->e[i].data);
		j_end_obj();
	}
	j_end_arr();
	j_end_obj();
}

void emit_u64p(const char *key, const uint64_t *p) {
	j_arr(key);
	j_u64(NULL, *p);
	j_end_arr();
}

void emit_sregs_apic_base(const char *key, const struct kvm_sregs *s) {
	j_obj(key);
	j_u64("apic_base", s->apic_base);
	j_end_obj();
}

void emit_sregs_segments(const char *key, const struct kvm_sregs *s) {
	const struct kvm_segment *segs[] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss };
	const char *names[] = { "cs", "ds", "es", "fs", "gs", "ss" };
	j_obj(key);
	for (int i = 0; i < 6; i++) {
		j_obj(names[i]);
		j_u64("base", segs[i]->base);
		j_int("selector", segs[i]->selector);
		j_end_obj();
	}
	j_end_obj();
}

void emit_lapic(const char *key, const struct kvm_lapic_state *l) {
	j_obj(key);
	j_u8s("regs", (const uint8_t *)l->regs, sizeof l->regs);
	j_end_obj();
}

void emit_translation(const char *key, const struct kvm_translation *t) {
	j_obj(key);
	j_u64("linear_address", t->linear_address);
	j_u64("physical_address", t->physical_address);
	j_int("valid", t->valid);
	j_int("writeable", t->writeable);
	j_int("usermode", t->usermode);
	j_end_obj();
}

void emit_pmu_event_filter(const char *key, const struct pmu_filter_buf *f) {
	j_obj(key);
	j_int("action", f->h.action);
	j_int("nevents", f->h.nevents);
	j_int("fixed_counter_bitmap", f->h.fixed_counter_bitmap);
	j_int("flags", f->h.flags);
	j_arr("events");
	for (uint32_t i = 0; i < f->h.nevents && i < PMU_FILTER_BUF_EVENTS; i++) j_u64(NULL, f->events[i]);
	j_end_arr();
	j_end_obj();
}

void emit_device_attr(const char *key, const struct kvm_device_attr *a) {
	j_obj(key);
	j_int("flags", a->flags);
	j_int("group", a->group);
	j_u64("attr", a->attr);
	j_uaddr("addr", a->addr);
	j_end_obj();
}

void emit_guest_debug(const char *key, const struct kvm_guest_debug *g) {
	j_obj(key);
	j_int("control", g->control);
	j_obj("arch");
	j_arr("debugreg");
	for (int i = 0; i < 8; i++) j_u64(NULL, g->arch.debugreg[i]);
	j_end_arr();
	j_end_obj();
	j_end_obj();
}

void emit_interrupt(const char *key, const struct kvm_interrupt *i) {
	j_obj(key);
	j_int("irq", i->irq);
	j_end_obj();
}

void emit_irq_level(const char *key, const struct kvm_irq_level *l) {
	j_obj(key);
	j_int("irq", l->irq);
	j_int("level", l->level);
	j_end_obj();
}

void emit_ioeventfd(const char *key, const struct kvm_ioeventfd *e) {
	j_obj(key);
	j_u64("datamatch", e->datamatch);
	j_u64("addr", e->addr);
	j_int("len", e->len);
	j_int("fd", e->fd);
	j_int("flags", e->flags);
	j_end_obj();
}

void emit_coalesced_zone(const char *key, const struct kvm_coalesced_mmio_zone *z) {
	j_obj(key);
	j_u64("addr", z->addr);
	j_int("size", z->size);
	j_end_obj();
}

void emit_pit_config(const char *key, const struct kvm_pit_config *p) {
	j_obj(key);
	j_int("flags", p->flags);
	j_end_obj();
}

void emit_msr_filter(const char *key, const struct kvm_msr_filter *f) {
	j_obj(key);
	j_int("flags", f->flags);
	j_arr("ranges");
	j_end_arr();
	j_end_obj();
}

void emit_dirty_log(const char *key, const struct kvm_dirty_log *d) {
	j_obj(key);
	j_int("slot", d->slot);
	j_uaddr("dirty_bitmap", (uint64_t)(uintptr_t)d->dirty_bitmap);
	j_end_obj();
}

void emit_sev_cmd(const char *key, const uint64_t *cmd) {
	const uint32_t *w = (const uint32_t *)cmd;
	j_obj(key);
	j_int("id", w[0]);
	j_u64("data", cmd[1]);
	j_int("error", w[4]);
	j_int("sev_fd", w[5]);
	j_end_obj();
}

void emit_clear_dirty_log(const char *key, const struct kvm_clear_dirty_log *c) {
	j_obj(key);
	j_int("slot", c->slot);
	j_int("num_pages", c->num_pages);
	j_u64("first_page", c->first_page);
	j_uaddr("dirty_bitmap", (uint64_t)(uintptr_t)c->dirty_bitmap);
	j_end_obj();
}
