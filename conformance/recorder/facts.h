/*
 * Facts: one setup + one call sequence + the kernel's answers, written as one JSON object per fact.
 *
 * Every fact starts with /dev/kvm open as fd "sys" and ends with every fd it opened closed and every
 * mapping it made unmapped, so facts are independent. Each call is a step:
 *
 *   {"op":"ioctl","fd":"vm","name":"KVM_CREATE_VCPU","nr":44609,"arg":{"int":"0x0"},"ret":"fd","bind":"vcpu0"}
 *   {"op":"ioctl","fd":"vcpu0","name":"KVM_GET_REGS","nr":...,"arg":{"struct":"kvm_regs"},"ret":0,"out":{...}}
 *   {"op":"ioctl",...,"ret":-1,"errno":"EINVAL"}
 *
 * and the non-ioctl steps a VMM makes: "mmap" (anonymous memory, named "m0"…), "map-run" (the vCPU's
 * kvm_run area), "run-set" (a kvm_run field), "poke" (bytes into a mapping), "pio-data" (the data of an IN).
 */
#ifndef RECORDER_FACTS_H
#define RECORDER_FACTS_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* Writes the value of a struct argument (`key` is the JSON key, `p` the C struct). */
typedef void (*emit_fn)(const char *key, const void *p);

/* The path of /dev/kvm (default "/dev/kvm"). */
extern const char *kvm_path;

/* Start a group (one golden file): {"schema":1,"group":...,"facts":[ */
void group_begin(const char *group);
void group_end(void);

int fact_begin(const char *id, const char *title);
int fact_end(void);
/* `for` trick: the body runs once between fact_begin and fact_end. */
#define FACT(id, title) for (int fact_once_ = fact_begin(id, title); fact_once_; fact_once_ = fact_end())

/* A named fd of the current fact ("sys", "vm", "vcpu0", …); exits if missing. */
int fd_of(const char *name);

/* The last ioctl's errno (0 if it succeeded). */
extern int last_errno;

/* One ioctl step. */
struct io {
	const char *fd;      /* fd name */
	const char *name;    /* "KVM_CREATE_VCPU" */
	unsigned long nr;    /* ioctl number */
	int kind;            /* IO_ARG_INT, IO_ARG_PTR, IO_ARG_NULL */
	uint64_t value;      /* IO_ARG_INT */
	const char *type;    /* IO_ARG_PTR: the struct's name */
	void *ptr;           /* IO_ARG_PTR: the struct; also passed to `emit_out` */
	emit_fn emit_in;     /* the argument's value, before the call (NULL: an output-only buffer) */
	emit_fn emit_out;    /* what the call left in `ptr`, after it */
	const char *out_key; /* key of `emit_out`'s value (default "out") */
	const char *bind;    /* name the returned fd */
	int out_on_error;    /* also emit `emit_out` when the call fails */
	int opaque_ret;      /* a non-negative result is the host's (a TSC frequency): {"$opaque": ret} */
};
enum { IO_ARG_INT, IO_ARG_PTR, IO_ARG_NULL };

long step_io(const struct io *io);

/* ioctl(fd, NR, value) */
long step_int(const char *fd, const char *name, unsigned long nr, uint64_t value, const char *bind);
#define IO_INT(fd, NR, v) step_int(fd, #NR, NR, (uint64_t)(v), NULL)
#define IO_BIND(fd, NR, v, bind) step_int(fd, #NR, NR, (uint64_t)(v), bind)

/* ioctl(fd, NR, &struct): `in` writes the argument (NULL for an output buffer), `out` the result. */
long step_ptr(const char *fd, const char *name, unsigned long nr, const char *type, void *p, emit_fn in, emit_fn out);
#define IO_PTR(fd, NR, type, p, in, out) step_ptr(fd, #NR, NR, type, p, (emit_fn)(in), (emit_fn)(out))
/* The same, also writing `out` when the call fails (an E2BIG that writes back a count). */
long step_ptr_always(const char *fd, const char *name, unsigned long nr, const char *type, void *p, emit_fn in, emit_fn out);
#define IO_PTR_ALWAYS(fd, NR, type, p, in, out) step_ptr_always(fd, #NR, NR, type, p, (emit_fn)(in), (emit_fn)(out))

/* ioctl(fd, NR, NULL) with a pointer argument: a bad pointer. */
long step_null(const char *fd, const char *name, unsigned long nr, const char *type);
#define IO_NULL(fd, NR, type) step_null(fd, #NR, NR, type)

/* ioctl(fd, NR, value) whose non-negative result is the host's (recorded, not compared). */
long step_int_opaque(const char *fd, const char *name, unsigned long nr, uint64_t value);
#define IO_INT_OPAQUE(fd, NR, v) step_int_opaque(fd, #NR, NR, (uint64_t)(v))

/* Call an ioctl without recording it (setup the fact does not need to show). */
long quiet_ioctl(const char *fd, unsigned long nr, void *arg);

/* Anonymous shared memory named `buf` ("m0"), recorded as a step; returns its address. */
void *step_mmap(const char *buf, size_t size);
/* mmap the vCPU's kvm_run area (recorded). */
void *step_map_run(const char *vcpu);
/* The kvm_run of a vCPU mapped by step_map_run. */
void *run_of(const char *vcpu);
/* Set a kvm_run field (recorded): only "immediate_exit" and "request_interrupt_window" are used. */
void step_run_set(const char *vcpu, const char *field, uint8_t value);
/* Copy bytes into a mapping (recorded). */
void step_poke(const char *buf, size_t offset, const void *bytes, size_t n);
/* kvm_valid_regs and kvm_dirty_regs of the vCPU's kvm_run (KVM_CAP_SYNC_REGS; recorded). */
void step_sync_set(const char *vcpu, uint64_t valid, uint64_t dirty);
/* Write one register set into the kvm_run's s.regs ("regs", "sregs" or "events"; `p` its struct; recorded). */
void step_sync_write(const char *vcpu, const char *set, const void *p);
/* What the kvm_run's synchronized-register area holds: both words and the three sets (recorded). */
void step_sync_read(const char *vcpu);
/* The data of an IN exit, written at io.data_offset of the vCPU's kvm_run (recorded). */
void step_pio_data(const char *vcpu, const void *bytes, size_t n);
/* The data of an MMIO read exit, written to mmio.data of the vCPU's kvm_run (recorded). */
void step_mmio_data(const char *vcpu, const void *bytes, size_t n);
/* User space's answer to an MSR exit: msr.error and msr.data of the vCPU's kvm_run. */
void step_msr_data(const char *vcpu, uint8_t error, uint64_t data);
/* The bytes of mapping `buf` that differ from `before` (its first `n` bytes), as [offset, hex] runs (recorded). */
void step_mem(const char *buf, const uint8_t *before, size_t n);
/* Close a named fd (recorded). */
void step_close(const char *fd);
/* mmap the dirty ring of `vcpu` (`bytes`, at page KVM_DIRTY_LOG_PAGE_OFFSET of its fd). */
void step_map_ring(const char *vcpu, size_t bytes);
/* The entries published (flags DIRTY) from index `from` on, recorded as "flags slot offset"; returns how many. */
uint32_t step_ring_read(const char *vcpu, uint32_t from);
/* Harvest `count` entries from `from`: their flags set to RESET, as user space does after collecting them. */
void step_ring_harvest(const char *vcpu, uint32_t from, uint32_t count);
/*
 * arch_prctl(option, arg) of the recorder process (recorded): for a GET option (`get` set) the kernel writes a u64,
 * recorded as "out"; for a REQ option `arg` is the feature number.
 */
long step_arch_prctl(const char *name, int option, uint64_t arg, int get);

/* A user address as the model can replay it: {"$buf":"m0","offset":N} inside a mapping, else "0x...". */
void j_uaddr(const char *key, uint64_t addr);
/* An address of a mapping of this fact. */
uint8_t *buf_addr(const char *buf);

/* errno's name ("EINVAL"). */
const char *errno_name(int e);

#endif

/*
 * KVM_CREATE_VCPU with ids first … first+count-1, closing each new fd at once (the vCPU stays in the VM):
 * {"op":"create-vcpus","fd":"vm","first":0,"count":1024,"created":1024} (+ "errno" of the call that failed).
 */
void step_create_vcpus(const char *vm, unsigned first, unsigned count);
