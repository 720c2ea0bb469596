/* The VMM side of bench/bridge-replay.ts: replays the KVM calls of a QEMU live migration's downtime — the stopped
 * source's and the destination's, in the order and number QEMU 7.2 made them through the bridge with `-M
 * pc,smm=off` (bench/results/bridge-downtime-smm-off-trace.json) — and reports, for every call, the CPU time the
 * bridge's main thread (the one that holds the model) spent on it, read from /proc/BRIDGE/task/BRIDGE/schedstat
 * before the request and after the reply once that thread sleeps again (so its work after the reply counts too).
 *
 * Usage: bridge-replay BRIDGE_PID REPS. First "the boot": a VM on /dev/kvm0 like the source QEMU's (in-kernel
 * irqchip and PIT, six memslots logging dirty pages with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, one vCPU running a
 * real-mode guest that writes 37 pages per KVM_RUN, as the counter guest's last pass did) and one on /dev/kvm1 like
 * the destination's, two pre-copy passes (a KVM_RUN, every slot's KVM_GET_DIRTY_LOG and the KVM_CLEAR_DIRTY_LOG
 * chunks); then REPS times the downtime's sequence, the first of which is the first time the bridge serves most of
 * these requests. Prints `call REP INDEX NAME CPU_NS WALL_NS ERRNO` per call, and `phase` lines naming where each
 * phase of the sequence starts. */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int stat_fd = -1, sched_fd = -1;
static int rep, idx;

static long long now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The bridge's main thread's time on a CPU so far (ns): the first field of its schedstat. */
static long long bridge_cpu(void) {
  char buf[128];
  ssize_t n = pread(sched_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) err(1, "schedstat");
  buf[n] = 0;
  return strtoll(buf, NULL, 10);
}

/* Wait until the bridge's main thread sleeps (its state in /proc/PID/task/PID/stat is S): its call is done. */
static void bridge_idle(void) {
  for (int i = 0; i < 100000; i++) {
    char buf[512];
    ssize_t n = pread(stat_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) err(1, "stat");
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    if (p != NULL && p[1] == ' ' && p[2] == 'S') return;
    sched_yield();
  }
}

static int call(const char *name, int fd, unsigned long req, void *arg) {
  bridge_idle();
  long long c0 = bridge_cpu(), t0 = now();
  int r = ioctl(fd, req, arg);
  int e = r < 0 ? errno : 0;
  long long t1 = now();
  bridge_idle();
  printf("call %d %d %s %lld %lld %d\n", rep, idx++, name, bridge_cpu() - c0, t1 - t0, e);
  return r;
}

#define CALL(fd, req, arg) call(#req, fd, req, arg)

/* QEMU's kvm_get_msrs list, as far as the host's KVM_GET_MSR_INDEX_LIST has each. */
static const uint32_t QEMU_MSRS[] = {
    0x174, 0x175, 0x176, 0x277, 0x10, 0x3b, 0x1a0, 0xc0000081, 0xc0000102, 0xc0000082, 0xc0000083, 0xc0000084,
    0xc0000103, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05, 0x2ff, 0x250, 0x258,
    0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, 0x200, 0x201, 0x202, 0x203, 0x204, 0x205,
    0x206, 0x207, 0x48, 0x10a, 0x122, 0x6e0, 0xc0010015};

struct msrs {
  struct kvm_msrs h;
  struct kvm_msr_entry e[64];
};

/* One VM like a QEMU's on `dev`: irqchip, PIT, the slots over `ram` and `vram`, one vCPU at the guest's code. */
struct vm {
  int sys, vm, vcpu;
  struct kvm_run *run;
};

struct slot {
  uint32_t id;
  uint64_t gpa, size, off; /* off: into ram (or, with vram set, into vram) */
  int vram;
};

static const struct slot SLOTS[] = {
    {0, 0x0, 0xa0000, 0x0, 0},         /* RAM below the VGA window */
    {1, 0xc0000, 0x20000, 0xc0000, 0}, /* pc.rom's RAM */
    {2, 0xe0000, 0x20000, 0xe0000, 0}, /* the BIOS's low alias */
    {3, 0x100000, 0xf00000, 0x100000, 0},
    {4, 0xfd000000, 0x1000000, 0, 1},  /* the VGA's VRAM */
    {5, 0xfebc0000, 0x10000, 0xfff0000, 0},
};
#define NSLOTS (sizeof SLOTS / sizeof SLOTS[0])

static void set_slots(int vm, uint8_t *ram, uint8_t *vram, uint32_t flags) {
  for (size_t i = 0; i < NSLOTS; i++) {
    const struct slot *s = &SLOTS[i];
    struct kvm_userspace_memory_region r = {.slot = s->id, .flags = flags, .guest_phys_addr = s->gpa, .memory_size = s->size, .userspace_addr = (uint64_t)(s->vram ? vram : ram) + s->off};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) err(1, "KVM_SET_USER_MEMORY_REGION slot %u", s->id);
  }
}

static void make_vm(struct vm *v, const char *dev, uint8_t *ram, uint8_t *vram) {
  v->sys = open(dev, O_RDWR | O_CLOEXEC);
  if (v->sys < 0) err(1, "%s", dev);
  v->vm = ioctl(v->sys, KVM_CREATE_VM, 0);
  if (v->vm < 0) err(1, "KVM_CREATE_VM");
  if (ioctl(v->vm, KVM_CREATE_IRQCHIP, 0) < 0) err(1, "KVM_CREATE_IRQCHIP");
  struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
  if (ioctl(v->vm, KVM_CREATE_PIT2, &pit) < 0) err(1, "KVM_CREATE_PIT2");
  struct kvm_enable_cap manual = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
  if (ioctl(v->vm, KVM_ENABLE_CAP, &manual) < 0) err(1, "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
  set_slots(v->vm, ram, vram, 0);
  v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
  if (v->vcpu < 0) err(1, "KVM_CREATE_VCPU");
  v->run = mmap(NULL, ioctl(v->sys, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
  if (v->run == MAP_FAILED) err(1, "mmap vcpu");
  struct kvm_sregs s;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0) err(1, "KVM_GET_SREGS");
  s.cs.base = 0;
  s.cs.selector = 0;
  if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0) err(1, "KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  if (ioctl(v->vcpu, KVM_SET_REGS, &regs) < 0) err(1, "KVM_SET_REGS");
}

/* One run of the guest: it writes 37 pages (0x10000, 0x11000, …) and exits on an OUT. */
static void run_guest(struct vm *v) {
  if (ioctl(v->vcpu, KVM_RUN, 0) < 0) err(1, "KVM_RUN");
  if (v->run->exit_reason != KVM_EXIT_IO) errx(1, "exit %u", v->run->exit_reason);
}

static uint64_t bitmaps[NSLOTS][0x1000000 / 4096 / 64];

/* A dirty-bitmap sync as QEMU's: every slot's KVM_GET_DIRTY_LOG, then the clears in 64-page chunks (64 of them). */
static void sync_dirty(struct vm *v, int timed) {
  for (size_t i = 0; i < NSLOTS; i++) {
    struct kvm_dirty_log log = {.slot = SLOTS[i].id, .dirty_bitmap = bitmaps[i]};
    if (timed) CALL(v->vm, KVM_GET_DIRTY_LOG, &log);
    else if (ioctl(v->vm, KVM_GET_DIRTY_LOG, &log) < 0) err(1, "KVM_GET_DIRTY_LOG");
  }
  /* slot 0: 160 pages in 3 chunks, slot 3: 60 chunks of 64, slot 1: one chunk of 32 */
  static const struct { int s; uint32_t first, n; } chunks[] = {{0, 0, 64}, {0, 64, 64}, {0, 128, 32}, {1, 0, 32}};
  for (int c = 0; c < 64; c++) {
    int s = c < 3 ? chunks[c].s : c == 3 ? 1 : 3;
    uint32_t first = c < 4 ? chunks[c].first : (uint32_t)(c - 4) * 64, n = c < 4 ? chunks[c].n : 64;
    uint64_t *bmap = malloc(8); /* QEMU's kvm_log_clear_one_slot: a bitmap of the chunk's own */
    *bmap = bitmaps[s][first / 64];
    struct kvm_clear_dirty_log clear = {.slot = SLOTS[s].id, .num_pages = n, .first_page = first, .dirty_bitmap = bmap};
    if (timed) CALL(v->vm, KVM_CLEAR_DIRTY_LOG, &clear);
    else if (ioctl(v->vm, KVM_CLEAR_DIRTY_LOG, &clear) < 0) err(1, "KVM_CLEAR_DIRTY_LOG");
    free(bmap);
  }
}

static int check(int fd, const char *name, int cap) {
  char what[96];
  snprintf(what, sizeof what, "KVM_CHECK_EXTENSION(%s)", name);
  return call(what, fd, KVM_CHECK_EXTENSION, (void *)(long)cap);
}

int main(int argc, char **argv) {
  if (argc < 3) errx(2, "usage: bridge-replay BRIDGE_PID REPS");
  char path[96];
  snprintf(path, sizeof path, "/proc/%s/task/%s/schedstat", argv[1], argv[1]);
  sched_fd = open(path, O_RDONLY | O_CLOEXEC);
  snprintf(path, sizeof path, "/proc/%s/task/%s/stat", argv[1], argv[1]);
  stat_fd = open(path, O_RDONLY | O_CLOEXEC);
  if (sched_fd < 0 || stat_fd < 0) err(1, "%s", path);
  int reps = atoi(argv[2]);
  setvbuf(stdout, NULL, _IOFBF, 1 << 20);

  size_t ram_size = 0x1000000;
  uint8_t *ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *vram = mmap(NULL, 0x1000000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const uint8_t code[] = {0xbb, 0x00, 0x10, 0x8e, 0xc3, 0x26, 0xfe, 0x06, 0x00, 0x00, 0x81, 0xc3, 0x00, 0x01,
                          0x81, 0xfb, 0x00, 0x35, 0x75, 0xef, 0xba, 0xf8, 0x03, 0xee, 0xeb, 0xe6};
  memcpy(ram + 0x1000, code, sizeof code);
  struct vm src, dst;
  make_vm(&src, "/dev/kvm0", ram, vram);
  make_vm(&dst, "/dev/kvm1", ram, vram);

  /* The MSRs QEMU saves, those the host has. */
  struct {
    struct kvm_msr_list h;
    uint32_t idx[512];
  } list = {.h.nmsrs = 512};
  if (ioctl(src.sys, KVM_GET_MSR_INDEX_LIST, &list) < 0) err(1, "KVM_GET_MSR_INDEX_LIST");
  static struct msrs all, tsc, tsc_set;
  for (size_t i = 0; i < sizeof QEMU_MSRS / sizeof QEMU_MSRS[0]; i++)
    for (uint32_t j = 0; j < list.h.nmsrs; j++)
      if (list.idx[j] == QEMU_MSRS[i]) all.e[all.h.nmsrs++].index = QEMU_MSRS[i];
  tsc.h.nmsrs = 1;
  tsc.e[0].index = 0x10;

  /* The boot and two pre-copy passes (untimed): the source runs, logs dirty pages, syncs. */
  run_guest(&src);
  set_slots(src.vm, ram, vram, KVM_MEM_LOG_DIRTY_PAGES);
  for (int pass = 0; pass < 2; pass++) {
    run_guest(&src);
    sync_dirty(&src, 0);
  }

  static struct kvm_pit_state2 pit;
  static struct kvm_clock_data clock;
  static struct kvm_vcpu_events events;
  static struct kvm_mp_state mp;
  static struct kvm_regs regs;
  static struct kvm_xsave xsave;
  static struct kvm_xcrs xcrs;
  static struct kvm_sregs2 sregs2;
  static struct kvm_lapic_state lapic;
  static struct kvm_debugregs dbg;
  static struct kvm_irqchip chips[3];
  for (rep = 0; rep < reps; rep++) {
    idx = 0;
    run_guest(&src);
    /* The stop: the vCPU out of KVM_RUN (not replayed), the stop's notifiers. */
    printf("phase %d %d stop\n", rep, idx);
    CALL(src.vm, KVM_GET_PIT2, &pit);
    check(src.vm, "KVM_CAP_KVMCLOCK_CTRL", KVM_CAP_KVMCLOCK_CTRL);
    CALL(src.vcpu, KVM_GET_MSRS, &tsc);
    CALL(src.vm, KVM_GET_CLOCK, &clock);
    check(src.vm, "KVM_CAP_ADJUST_CLOCK", KVM_CAP_ADJUST_CLOCK);
    /* The vCPU's state (kvm_arch_get_registers). */
    printf("phase %d %d vcpu-state\n", rep, idx);
    CALL(src.vcpu, KVM_GET_VCPU_EVENTS, &events);
    CALL(src.vcpu, KVM_GET_MP_STATE, &mp);
    CALL(src.vcpu, KVM_GET_REGS, &regs);
    CALL(src.vcpu, KVM_GET_XSAVE2, &xsave);
    CALL(src.vcpu, KVM_GET_XCRS, &xcrs);
    CALL(src.vcpu, KVM_GET_SREGS2, &sregs2);
    CALL(src.vcpu, KVM_GET_MSRS, &all);
    CALL(src.vcpu, KVM_GET_LAPIC, &lapic);
    CALL(src.vcpu, KVM_GET_DEBUGREGS, &dbg);
    /* The last dirty-bitmap sync and the clears after it. */
    printf("phase %d %d dirty-sync\n", rep, idx);
    sync_dirty(&src, 1);
    /* The devices' state: kvmclock, the PICs and the IOAPIC. */
    printf("phase %d %d devices\n", rep, idx);
    CALL(src.vm, KVM_GET_CLOCK, &clock);
    check(src.vm, "KVM_CAP_ADJUST_CLOCK", KVM_CAP_ADJUST_CLOCK);
    for (int c = 0; c < 3; c++) {
      chips[c].chip_id = c;
      CALL(src.vm, KVM_GET_IRQCHIP, &chips[c]);
    }
    /* The destination's loads while it drains the stream, then its vCPU state and the run state change. */
    printf("phase %d %d destination\n", rep, idx);
    CALL(dst.vcpu, KVM_SET_MSRS, &tsc);
    CALL(dst.vcpu, KVM_SET_LAPIC, &lapic);
    for (int c = 0; c < 3; c++) CALL(dst.vm, KVM_SET_IRQCHIP, &chips[c]);
    CALL(dst.vcpu, KVM_SET_SREGS2, &sregs2);
    check(dst.sys, "KVM_CAP_GET_TSC_KHZ", KVM_CAP_GET_TSC_KHZ);
    int khz = CALL(dst.vcpu, KVM_GET_TSC_KHZ, NULL);
    check(dst.sys, "KVM_CAP_TSC_CONTROL", KVM_CAP_TSC_CONTROL);
    call("KVM_SET_TSC_KHZ", dst.vcpu, KVM_SET_TSC_KHZ, (void *)(long)(khz > 0 ? khz : 2000000));
    CALL(dst.vcpu, KVM_SET_REGS, &regs);
    CALL(dst.vcpu, KVM_SET_XSAVE, &xsave);
    CALL(dst.vcpu, KVM_SET_XCRS, &xcrs);
    CALL(dst.vcpu, KVM_SET_MSRS, &all);
    CALL(dst.vcpu, KVM_SET_VCPU_EVENTS, &events);
    CALL(dst.vcpu, KVM_SET_MP_STATE, &mp);
    tsc_set = tsc;
    CALL(dst.vcpu, KVM_SET_MSRS, &tsc_set);
    CALL(dst.vcpu, KVM_SET_DEBUGREGS, &dbg);
    check(dst.sys, "KVM_CAP_KVMCLOCK_CTRL", KVM_CAP_KVMCLOCK_CTRL);
    clock.flags = 0;
    CALL(dst.vm, KVM_SET_CLOCK, &clock);
    CALL(dst.vcpu, KVM_KVMCLOCK_CTRL, NULL);
    CALL(dst.vm, KVM_SET_PIT2, &pit);
    printf("phase %d %d end\n", rep, idx);
  }
  return 0;
}
