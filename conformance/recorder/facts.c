#define _GNU_SOURCE
#include "facts.h"
#include "structs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kvm.h>

const char *kvm_path = "/dev/kvm";
int last_errno;

#define MAX_FDS 1100
#define MAX_BUFS 16

static struct { char name[24]; int fd; } fds[MAX_FDS];
static int nfds;
static struct { char name[16]; uint8_t *addr; size_t size; int is_run; } bufs[MAX_BUFS];
static int nbufs;
static int step_no;

static void fail(const char *what) {
	fprintf(stderr, "recorder: %s\n", what);
	exit(2);
}

const char *errno_name(int e) {
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

void group_begin(const char *group) {
	j_obj(NULL);
	j_int("schema", 1);
	j_str("group", group);
	j_arr("facts");
}

void group_end(void) {
	j_end_arr();
	j_end_obj();
	fputc('\n', j_file());
}

static void bind_fd(const char *name, int fd) {
	if (nfds >= MAX_FDS) fail("too many fds in one fact");
	snprintf(fds[nfds].name, sizeof fds[nfds].name, "%s", name);
	fds[nfds++].fd = fd;
}

int fd_of(const char *name) {
	for (int i = nfds - 1; i >= 0; i--)
		if (strcmp(fds[i].name, name) == 0) return fds[i].fd;
	fprintf(stderr, "recorder: no fd named %s\n", name);
	exit(2);
}

int fact_begin(const char *id, const char *title) {
	int sys = open(kvm_path, O_RDWR | O_CLOEXEC);
	if (sys < 0) {
		perror(kvm_path);
		exit(2);
	}
	nfds = 0;
	nbufs = 0;
	step_no = 0;
	bind_fd("sys", sys);
	j_newline();
	j_obj(NULL);
	j_str("id", id);
	j_str("title", title);
	j_arr("steps");
	return 1;
}

int fact_end(void) {
	j_end_arr();
	j_end_obj();
	for (int i = 0; i < nbufs; i++) munmap(bufs[i].addr, bufs[i].size);
	for (int i = nfds - 1; i >= 0; i--)
		if (fds[i].fd >= 0) close(fds[i].fd);
	nfds = 0;
	nbufs = 0;
	return 0;
}

static void step_head(const char *op) {
	j_obj(NULL);
	j_str("op", op);
	step_no++;
}

static void result(long ret, const struct io *io) {
	if (ret >= 0 && io->bind) {
		j_str("ret", "fd");
		j_str("bind", io->bind);
		bind_fd(io->bind, (int)ret);
	} else if (ret >= 0 && io->opaque_ret) {
		j_obj("ret");
		j_int("$opaque", ret);
		j_end_obj();
	} else {
		j_int("ret", ret);
	}
	if (ret < 0) j_str("errno", errno_name(last_errno));
}

long step_io(const struct io *io) {
	int fd = fd_of(io->fd);
	step_head("ioctl");
	j_str("fd", io->fd);
	j_str("name", io->name);
	j_int("nr", (int64_t)io->nr);
	j_obj("arg");
	long ret;
	switch (io->kind) {
	case IO_ARG_INT:
		j_u64("int", io->value);
		j_end_obj();
		errno = 0;
		ret = ioctl(fd, io->nr, (unsigned long)io->value);
		break;
	case IO_ARG_NULL:
		j_str("struct", io->type);
		j_bool("null", 1);
		j_end_obj();
		errno = 0;
		ret = ioctl(fd, io->nr, NULL);
		break;
	default:
		j_str("struct", io->type);
		if (io->emit_in) io->emit_in("value", io->ptr);
		j_end_obj();
		errno = 0;
		ret = ioctl(fd, io->nr, io->ptr);
		break;
	}
	last_errno = ret < 0 ? errno : 0;
	result(ret, io);
	if (io->emit_out && (ret >= 0 || io->out_on_error)) io->emit_out(io->out_key ? io->out_key : "out", io->ptr);
	j_end_obj();
	errno = last_errno;
	return ret;
}

long step_int(const char *fd, const char *name, unsigned long nr, uint64_t value, const char *bind) {
	struct io io = { .fd = fd, .name = name, .nr = nr, .kind = IO_ARG_INT, .value = value, .bind = bind };
	return step_io(&io);
}

long step_int_opaque(const char *fd, const char *name, unsigned long nr, uint64_t value) {
	struct io io = { .fd = fd, .name = name, .nr = nr, .kind = IO_ARG_INT, .value = value, .opaque_ret = 1 };
	return step_io(&io);
}

long step_ptr(const char *fd, const char *name, unsigned long nr, const char *type, void *p, emit_fn in, emit_fn out) {
	struct io io = { .fd = fd, .name = name, .nr = nr, .kind = IO_ARG_PTR, .type = type, .ptr = p, .emit_in = in, .emit_out = out };
	return step_io(&io);
}

long step_ptr_always(const char *fd, const char *name, unsigned long nr, const char *type, void *p, emit_fn in, emit_fn out) {
	struct io io = { .fd = fd, .name = name, .nr = nr, .kind = IO_ARG_PTR, .type = type, .ptr = p, .emit_in = in, .emit_out = out, .out_on_error = 1 };
	return step_io(&io);
}

long step_null(const char *fd, const char *name, unsigned long nr, const char *type) {
	struct io io = { .fd = fd, .name = name, .nr = nr, .kind = IO_ARG_NULL, .type = type };
	return step_io(&io);
}

long quiet_ioctl(const char *fd, unsigned long nr, void *arg) {
	long r = ioctl(fd_of(fd), nr, arg);
	if (r < 0) {
		fprintf(stderr, "recorder: setup ioctl 0x%lx on %s failed: %s\n", nr, fd, strerror(errno));
		exit(2);
	}
	return r;
}

static void add_buf(const char *name, void *addr, size_t size, int is_run) {
	if (nbufs >= MAX_BUFS) fail("too many mappings in one fact");
	snprintf(bufs[nbufs].name, sizeof bufs[nbufs].name, "%s", name);
	bufs[nbufs].addr = addr;
	bufs[nbufs].size = size;
	bufs[nbufs++].is_run = is_run;
}

static int find_buf(const char *name) {
	for (int i = 0; i < nbufs; i++)
		if (strcmp(bufs[i].name, name) == 0) return i;
	fprintf(stderr, "recorder: no mapping named %s\n", name);
	exit(2);
}

uint8_t *buf_addr(const char *buf) { return bufs[find_buf(buf)].addr; }

void *step_mmap(const char *buf, size_t size) {
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) fail("mmap failed");
	add_buf(buf, p, size, 0);
	step_head("mmap");
	j_str("buf", buf);
	j_int("size", (int64_t)size);
	j_end_obj();
	return p;
}

void *step_map_run(const char *vcpu) {
	int size = ioctl(fd_of("sys"), KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size <= 0) fail("KVM_GET_VCPU_MMAP_SIZE failed");
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_of(vcpu), 0);
	if (p == MAP_FAILED) fail("mmap of kvm_run failed");
	char name[24];
	snprintf(name, sizeof name, "run:%s", vcpu);
	add_buf(name, p, (size_t)size, 1);
	step_head("map-run");
	j_str("vcpu", vcpu);
	j_end_obj();
	return p;
}

void *run_of(const char *vcpu) {
	char name[24];
	snprintf(name, sizeof name, "run:%s", vcpu);
	return buf_addr(name);
}

void step_run_set(const char *vcpu, const char *field, uint8_t value) {
	struct kvm_run *run = run_of(vcpu);
	if (strcmp(field, "immediate_exit") == 0) run->immediate_exit = value;
	else if (strcmp(field, "request_interrupt_window") == 0) run->request_interrupt_window = value;
	else fail("unknown kvm_run field");
	step_head("run-set");
	j_str("vcpu", vcpu);
	j_str("field", field);
	j_int("value", value);
	j_end_obj();
}

void step_sync_set(const char *vcpu, uint64_t valid, uint64_t dirty) {
	struct kvm_run *run = run_of(vcpu);
	run->kvm_valid_regs = valid;
	run->kvm_dirty_regs = dirty;
	step_head("sync-set");
	j_str("vcpu", vcpu);
	j_u64("valid", valid);
	j_u64("dirty", dirty);
	j_end_obj();
}

void step_sync_write(const char *vcpu, const char *set, const void *p) {
	struct kvm_run *run = run_of(vcpu);
	step_head("sync-write");
	j_str("vcpu", vcpu);
	j_str("set", set);
	if (strcmp(set, "regs") == 0) {
		memcpy(&run->s.regs.regs, p, sizeof run->s.regs.regs);
		emit_regs("value", p);
	} else if (strcmp(set, "sregs") == 0) {
		memcpy(&run->s.regs.sregs, p, sizeof run->s.regs.sregs);
		emit_sregs("value", p);
	} else if (strcmp(set, "events") == 0) {
		memcpy(&run->s.regs.events, p, sizeof run->s.regs.events);
		emit_vcpu_events("value", p);
	} else {
		fail("unknown sync register set");
	}
	j_end_obj();
}

void step_sync_read(const char *vcpu) {
	const struct kvm_run *run = run_of(vcpu);
	step_head("sync-read");
	j_str("vcpu", vcpu);
	j_u64("valid", run->kvm_valid_regs);
	j_u64("dirty", run->kvm_dirty_regs);
	emit_regs("regs", &run->s.regs.regs);
	emit_sregs("sregs", &run->s.regs.sregs);
	emit_vcpu_events("events", &run->s.regs.events);
	j_end_obj();
}

void step_poke(const char *buf, size_t offset, const void *bytes, size_t n) {
	memcpy(buf_addr(buf) + offset, bytes, n);
	step_head("poke");
	j_str("buf", buf);
	j_int("offset", (int64_t)offset);
	j_hex("hex", bytes, n);
	j_end_obj();
}

void step_pio_data(const char *vcpu, const void *bytes, size_t n) {
	struct kvm_run *run = run_of(vcpu);
	memcpy((uint8_t *)run + run->io.data_offset, bytes, n);
	step_head("pio-data");
	j_str("vcpu", vcpu);
	j_hex("hex", bytes, n);
	j_end_obj();
}

void step_mmio_data(const char *vcpu, const void *bytes, size_t n) {
	struct kvm_run *run = run_of(vcpu);
	memcpy(run->mmio.data, bytes, n);
	step_head("mmio-data");
	j_str("vcpu", vcpu);
	j_hex("hex", bytes, n);
	j_end_obj();
}

void step_msr_data(const char *vcpu, uint8_t error, uint64_t data) {
	struct kvm_run *run = run_of(vcpu);
	run->msr.error = error;
	run->msr.data = data;
	step_head("msr-data");
	j_str("vcpu", vcpu);
	j_int("error", error);
	j_u64("data", data);
	j_end_obj();
}

void step_mem(const char *buf, const uint8_t *before, size_t n) {
	const uint8_t *now = buf_addr(buf);
	step_head("mem");
	j_str("buf", buf);
	j_arr("changes");
	for (size_t i = 0; i < n;) {
		if (now[i] == before[i]) {
			i++;
			continue;
		}
		size_t start = i;
		while (i < n && now[i] != before[i]) i++;
		j_arr(NULL);
		j_int(NULL, (int64_t)start);
		j_hex(NULL, now + start, i - start);
		j_end_arr();
	}
	j_end_arr();
	j_end_obj();
}

long step_arch_prctl(const char *name, int option, uint64_t arg, int get) {
	uint64_t value = 0;
	errno = 0;
	long ret = syscall(SYS_arch_prctl, option, get ? (unsigned long)&value : (unsigned long)arg);
	last_errno = ret < 0 ? errno : 0;
	step_head("arch-prctl");
	j_str("name", name);
	j_int("option", option);
	if (!get) j_u64("arg", arg);
	j_int("ret", ret);
	if (ret < 0) j_str("errno", errno_name(last_errno));
	else if (get) j_u64("out", value);
	j_end_obj();
	errno = last_errno;
	return ret;
}

void step_close(const char *fd) {
	for (int i = nfds - 1; i >= 0; i--) {
		if (strcmp(fds[i].name, fd) == 0 && fds[i].fd >= 0) {
			close(fds[i].fd);
			fds[i].fd = -1;
			break;
		}
	}
	step_head("close");
	j_str("fd", fd);
	j_end_obj();
}

void j_uaddr(const char *key, uint64_t addr) {
	for (int i = 0; i < nbufs; i++) {
		uint64_t base = (uint64_t)(uintptr_t)bufs[i].addr;
		if (!bufs[i].is_run && addr >= base && addr < base + bufs[i].size) {
			j_obj(key);
			j_str("$buf", bufs[i].name);
			j_int("offset", (int64_t)(addr - base));
			j_end_obj();
			return;
		}
	}
	j_u64(key, addr);
}

void step_create_vcpus(const char *vm, unsigned first, unsigned count) {
	int fd = fd_of(vm);
	unsigned created = 0;
	int err = 0;
	for (unsigned id = first; id < first + count; id++) {
		int v = ioctl(fd, KVM_CREATE_VCPU, (unsigned long)id);
		if (v < 0) {
			err = errno;
			break;
		}
		close(v);
		created++;
	}
	step_head("create-vcpus");
	j_str("fd", vm);
	j_int("first", first);
	j_int("count", count);
	j_int("created", created);
	if (err) j_str("errno", errno_name(err));
	j_end_obj();
}

/* The dirty ring of each vCPU, mapped by step_map_ring (one vCPU per fact is enough). */
static struct kvm_dirty_gfn *ring_of_vcpu;
static uint32_t ring_entries;

#ifndef KVM_DIRTY_LOG_PAGE_OFFSET_X86
#define KVM_DIRTY_LOG_PAGE_OFFSET_X86 64
#endif

void step_map_ring(const char *vcpu, size_t bytes) {
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_of(vcpu), KVM_DIRTY_LOG_PAGE_OFFSET_X86 * 4096L);
	if (p == MAP_FAILED) fail("mmap of the dirty ring failed");
	ring_of_vcpu = p;
	ring_entries = (uint32_t)(bytes / sizeof(struct kvm_dirty_gfn));
	step_head("map-ring");
	j_str("vcpu", vcpu);
	j_u64("size", bytes);
	j_end_obj();
}

uint32_t step_ring_read(const char *vcpu, uint32_t from) {
	uint32_t n = 0;
	while (n < ring_entries && (__atomic_load_n(&ring_of_vcpu[(from + n) % ring_entries].flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY)) n++;
	step_head("ring");
	j_str("vcpu", vcpu);
	j_int("from", from);
	j_arr("entries");
	for (uint32_t i = 0; i < n; i++) {
		const struct kvm_dirty_gfn *e = &ring_of_vcpu[(from + i) % ring_entries];
		char s[64];
		snprintf(s, sizeof s, "%u %u 0x%llx", e->flags, e->slot, (unsigned long long)e->offset);
		j_str(NULL, s);
	}
	j_end_arr();
	j_end_obj();
	return n;
}

void step_ring_harvest(const char *vcpu, uint32_t from, uint32_t count) {
	for (uint32_t i = 0; i < count; i++) __atomic_store_n(&ring_of_vcpu[(from + i) % ring_entries].flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	step_head("ring-harvest");
	j_str("vcpu", vcpu);
	j_int("from", from);
	j_int("count", count);
	j_end_obj();
}
