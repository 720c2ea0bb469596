/*
 * A real-mode guest for the run and guest groups: 64 KiB of memory "m0" as slot 0 at guest-physical 0,
 * vCPU 0 with CS = DS = ES = SS = 0 and IP at `entry`, its kvm_run mapped.
 */
#ifndef RECORDER_GUESTVM_H
#define RECORDER_GUESTVM_H

#include <stddef.h>
#include <stdint.h>

#include "structs.h"

#define GUEST_MEM 0x10000

/* Initial registers of the guest (real mode: 16-bit values). */
struct guest_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, rflags, rip;
	uint16_t ds, es, ss;
};

/* Called (when set) after the memory slot and before KVM_CREATE_VCPU: the in-kernel irqchip of the irq group. */
extern void (*guest_before_vcpu)(void);
/* The steps that set the guest up (recorded). `image` (GUEST_MEM bytes) is the memory's first content. */
void guest_setup(const uint8_t *image, uint32_t slot_flags, const struct guest_regs *r);
/* KVM_RUN of vcpu0 (recorded, with the exit's kvm_run fields). */
long guest_run(void);
/* KVM_GET_REGS of vcpu0 (recorded). */
void guest_get_regs(void);
/* The segment registers of vcpu0 (recorded). */
void guest_get_segments(void);
/* The kvm_run of vcpu0. */
struct kvm_run *guest_kvm_run(void);

#endif
