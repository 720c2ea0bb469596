/* The VMM side of bench/bridge.ts: times KVM ioctls made by a real C program (through the preload library
 * and the bridge when run that way). Prints `name=median_ns` lines. Usage: bridge-roundtrip N RAM_BYTES [touch]
 * (`touch`: the VMM writes every page of guest RAM first, so none is skipped as never populated); then, with the
 * slot logging dirty pages (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG after each run.
 * `bridge-roundtrip echo SOCKET N`: the transport's floor instead — N round trips of a KVM_GET_REGS-sized request
 * (192 bytes, sent with sendmsg as the preload library sends it) and reply (184 bytes, one recv) on a Unix socket
 * whose server answers each request and does nothing else; prints `echo_ns=median`. */
#include <err.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <time.h>

static long long now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

static long long median(long long *v, int n) {
  qsort(v, n, sizeof *v, cmp);
  return v[n / 2];
}

static int echo(const char *path, int n) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) err(1, "%s", path);
  long long *t = calloc(n, sizeof *t);
  unsigned char head[48] = {0}, body[144] = {0}, reply[4096];
  for (int i = 0; i < n; i++) {
    long long t0 = now();
    struct iovec iov[2] = {{head, sizeof head}, {body, sizeof body}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(s, &m, MSG_NOSIGNAL) != (ssize_t)(sizeof head + sizeof body)) err(1, "sendmsg");
    for (size_t got = 0; got < 184;) {
      ssize_t k = recv(s, reply + got, sizeof reply - got, 0);
      if (k <= 0) errx(1, "the echo server went away");
      got += (size_t)k;
    }
    t[i] = now() - t0;
  }
  printf("echo_ns=%lld\n", median(t, n));
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 3 && strcmp(argv[1], "echo") == 0) return echo(argv[2], atoi(argv[3]));
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  size_t ram = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x1000;
  long long *t = calloc(n, sizeof *t);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) err(1, "/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) err(1, "KVM_CREATE_VM");
  uint8_t *mem = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  /* out dx, al; touch one byte of RAM; jmp back: one KVM_EXIT_IO per KVM_RUN */
  const uint8_t code[] = {0xba, 0xf8, 0x03, 0xee, 0xfe, 0x06, 0x00, 0x18, 0xeb, 0xf9};
  if (argc > 3) memset(mem, 1, ram);
  memcpy(mem, code, sizeof code);
  mem[0x800] = 0;
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0x1000, .memory_size = ram, .userspace_addr = (uint64_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) err(1, "KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) err(1, "KVM_CREATE_VCPU");
  struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct kvm_sregs s;
  ioctl(vcpu, KVM_GET_SREGS, &s);
  s.cs.base = 0;
  s.cs.selector = 0;
  s.ds.base = 0;
  s.ds.selector = 0;
  ioctl(vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  ioctl(vcpu, KVM_SET_REGS, &regs);
  for (int i = 0; i < n; i++) {
    long long t0 = now();
    if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) err(1, "KVM_GET_REGS");
    t[i] = now() - t0;
  }
  printf("get_regs_ns=%lld\n", median(t, n));
  for (int i = 0; i < n; i++) {
    long long t0 = now();
    if (ioctl(vcpu, KVM_RUN, 0) < 0) err(1, "KVM_RUN");
    t[i] = now() - t0;
    if (run->exit_reason != KVM_EXIT_IO) errx(1, "exit %u", run->exit_reason);
  }
  printf("run_ns=%lld\n", median(t, n));
  printf("guest_counter=%u\n", mem[0x800]);
  /* The calls a migration's stopped source makes most (QEMU with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): the slot's
   * dirty bitmap, then a clear of its pages (the guest writes its page again between the two). */
  struct kvm_enable_cap manual = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
  if (ioctl(vm, KVM_ENABLE_CAP, &manual) < 0) err(1, "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
  r.flags = KVM_MEM_LOG_DIRTY_PAGES;
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) err(1, "KVM_SET_USER_MEMORY_REGION(KVM_MEM_LOG_DIRTY_PAGES)");
  size_t pages = ram / 4096, bitmap_bytes = (pages + 63) / 64 * 8;
  uint64_t *bitmap = calloc(1, bitmap_bytes);
  long long *t2 = calloc(n, sizeof *t2);
  for (int i = 0; i < n; i++) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) err(1, "KVM_RUN");
    struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = bitmap};
    long long t0 = now();
    if (ioctl(vm, KVM_GET_DIRTY_LOG, &log) < 0) err(1, "KVM_GET_DIRTY_LOG");
    t[i] = now() - t0;
    struct kvm_clear_dirty_log clear = {.slot = 0, .num_pages = pages, .first_page = 0, .dirty_bitmap = bitmap};
    t0 = now();
    if (ioctl(vm, KVM_CLEAR_DIRTY_LOG, &clear) < 0) err(1, "KVM_CLEAR_DIRTY_LOG");
    t2[i] = now() - t0;
  }
  printf("get_dirty_log_ns=%lld\n", median(t, n));
  printf("clear_dirty_log_ns=%lld\n", median(t2, n));
  return 0;
}
