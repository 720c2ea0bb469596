/*
 * vac-preload.c — the LD_PRELOAD half of @vac/bridge.
 *
 * An unmodified VMM opens /dev/kvm*; this library answers those opens, and every call on the fds they hand
 * out, by asking the vac bridge (a Node process that hosts the simulated host) over a Unix socket. Everything
 * else is passed to libc untouched.
 *
 * What is intercepted: open/openat (and the 64 and _2 variants) of paths /dev/kvm*, and on the fds that come
 * back (and the fds KVM ioctls create): ioctl, mmap/mmap64, munmap, close, close_range, dup, dup2, dup3,
 * fcntl(F_DUPFD, F_DUPFD_CLOEXEC).
 *
 * Every KVM fd is a real fd in the VMM: a memfd ("placeholder") so that fd numbers, close-on-exec, poll and
 * fcntl behave as usual. A vCPU fd's memfd is sized like the vCPU mmap area (KVM_GET_VCPU_MMAP_SIZE), so the
 * VMM's own mmap of its kvm_run area is a plain shared mapping of that memfd; the library keeps a second view
 * of it and keeps it in sync with the model's kvm_run: before KVM_RUN the bytes the VMM changed since the last
 * sync go to the bridge (against a shadow of what the bridge knows), and the bytes the model changed come back
 * after every vCPU ioctl.
 *
 * Protocol (little-endian, one connection per VMM thread plus one "life" connection per process that the
 * bridge watches to learn that the process has gone): see packages/bridge/src/protocol.ts, which is the
 * reference; the constants below must match it.
 *
 * Failure: if the bridge cannot be reached, open(/dev/kvm*) fails with ENODEV and a message on stderr; if the
 * bridge goes away later, every call on a KVM fd fails with EIO (never hangs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- protocol (packages/bridge/src/protocol.ts) --------------------------------------------------------- */
#define VAC_MAGIC 0x31434156u /* "VAC1" */
#define OP_HELLO 1
#define OP_OPEN 2
#define OP_CLOSE 3
#define OP_IOCTL 4
#define OP_MMAP 5
#define OP_MUNMAP 6
#define OP_DUP 7
#define OP_EVENTFD 8
#define OP_SIGNAL 9
#define OP_EVENTFD_WRITE 10
#define OP_INTERRUPT 11
#define HELLO_LIFE 1u
#define HELLO_RELAY 2u
#define IOCTL_HAS_INPUT 1u
#define IOCTL_INPUT_UNREADABLE 2u
#define IOCTL_HAS_RUN 4u
#define IOCTL_RUN_PATCHES 8u
#define IOCTL_INPUT_ZEROED 16u
#define REQ_HEADER 48
#define FIFO_MAGIC 0x46434156u /* "VACF": the envelope of a request on the bridge's request FIFO (request-fifo.ts) */
#define FIFO_ENVELOPE 16
#define YIELD_MAGIC 0x59434156u /* "VACY": makes the bridge leave its blocking read of the FIFO (request-fifo.ts) */
#define FIFO_MAX 4096 /* PIPE_BUF: a write up to this size to a FIFO is atomic */
#define REP_HEADER 40
#define KIND_NONE 0
#define KIND_VCPU 3
#define MAX_REPLY (64u << 20)
#define MAX_ARG (64u << 20)

#define KVM_RUN_REQ 0xae80u
#define KVM_IRQFD_REQ 0x4020ae76u     /* _IOW(KVMIO, 0x76, struct kvm_irqfd) */
#define KVM_IOEVENTFD_REQ 0x4040ae79u /* _IOW(KVMIO, 0x79, struct kvm_ioeventfd) */
#define KVM_SET_SIGNAL_MASK_REQ 0x4004ae8bu
#define KVM_GET_XSAVE_REQ 0x9000aea4u  /* _IOR(KVMIO, 0xa4, struct kvm_xsave) */
#define KVM_GET_XSAVE2_REQ 0x9000aecfu /* _IOR(KVMIO, 0xcf, struct kvm_xsave) */
#define KVM_IRQFD_FLAG_DEASSIGN 1u
#define KVM_IRQFD_FLAG_RESAMPLE 2u
#define KIND_VM 2

#define VAC_MAX_FD 65536

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct run_area {
  unsigned char *view;   /* the library's own mapping of the vCPU memfd */
  unsigned char *shadow; /* what the bridge knows the VMM's copy holds (the same bytes as its shadow) */
  size_t size;
  int refs;
  pthread_mutex_t mu; /* view-to-shadow diffs and reply patches, one at a time */
};

struct fd_entry {
  int sim;   /* the fd in the simulated process, 0 = not a KVM fd */
  int kind;  /* KIND_* of the file */
  int stale; /* inherited across fork: calls fail with EIO */
  struct run_area *run;
  int has_mask;     /* KVM_SET_SIGNAL_MASK gave a mask for KVM_RUN */
  sigset_t runmask; /* the thread's signal mask while it waits in KVM_RUN */
};

struct map_entry {
  void *addr;
  size_t len;
  uint64_t sim_addr;
};

static struct fd_entry fds[VAC_MAX_FD];
#define MAX_MAPS 4096
static struct map_entry maps[MAX_MAPS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_close_range)(unsigned int, unsigned int, int);

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t conn_key;
static __thread int conn_fd = -1;
/* The thread connection's id and secret token on the bridge's request FIFO (from its HELLO reply; 0: none). */
static __thread uint32_t conn_id;
static __thread uint64_t conn_token;
/* The bridge's request FIFO (`<socket>.req`), opened for writing once per process; -1 until then. */
static int fifo_fd = -1;
static pthread_mutex_t fifo_lock = PTHREAD_MUTEX_INITIALIZER;
static int life_fd = -1;
static int forked_child;
/* This process's pid, for process_vm_readv/writev and kcmp on itself (no getpid() syscall per call); a fork
 * child sets its own. */
static pid_t self_pid;
static int trace_on;

static void resolve(void) {
  real_open = dlsym(RTLD_NEXT, "open");
  real_openat = dlsym(RTLD_NEXT, "openat");
  real_ioctl = dlsym(RTLD_NEXT, "ioctl");
  real_mmap = dlsym(RTLD_NEXT, "mmap");
  real_munmap = dlsym(RTLD_NEXT, "munmap");
  real_close = dlsym(RTLD_NEXT, "close");
  real_dup = dlsym(RTLD_NEXT, "dup");
  real_dup2 = dlsym(RTLD_NEXT, "dup2");
  real_dup3 = dlsym(RTLD_NEXT, "dup3");
  real_fcntl = dlsym(RTLD_NEXT, "fcntl");
  real_close_range = dlsym(RTLD_NEXT, "close_range");
}

/* The buffer a thread builds its KVM_RUN's kvm_run patches in (grown as needed, kept for the next call, freed
 * when the thread exits). */
static __thread unsigned char *patch_buf;
static __thread size_t patch_cap;

static void close_conn(void *p) {
  int fd = (int)(intptr_t)p - 1;
  if (fd >= 0 && real_close) real_close(fd);
  free(patch_buf);
  patch_buf = NULL;
  patch_cap = 0;
}

static void relay_reset_after_fork(void);

static void at_fork_child(void) {
  /* The child shares the parent's sockets: drop its copies without a word to the bridge. KVM fds it inherits
   * belong to the parent's simulated process; calls on them fail with EIO (as Linux's kvm->mm check does). */
  forked_child = 1;
  self_pid = getpid();
  if (conn_fd >= 0) real_close(conn_fd);
  conn_fd = -1;
  conn_token = 0;
  pthread_setspecific(conn_key, NULL);
  pthread_mutex_init(&fifo_lock, NULL);
  if (life_fd >= 0) real_close(life_fd);
  life_fd = -1;
  for (int i = 0; i < VAC_MAX_FD; i++)
    if (fds[i].sim) fds[i].stale = 1;
  pthread_mutex_init(&lock, NULL);
  relay_reset_after_fork();
}

/*
 * Spin, then block. A thread waiting for its reply first polls its socket without sleeping for up to spin_ns,
 * and only then sleeps (recv, or ppoll during a KVM_RUN). On an idle machine a sleeping thread's wake-up is the
 * wake-up of an idle CPU (in a VM: a vCPU that sleeps in the hypervisor), tens of µs on each side of a round trip;
 * a reply that comes within the budget finds this thread awake. Bounded: only a thread with a call in flight
 * spins, at most MAX_SPINNERS threads of a process at once (QEMU has a dozen threads; the others sleep at once),
 * at most spin_ns per call, and only while the machine has a CPU to spare — no more runnable threads (this one
 * included) than CPUs (/proc/loadavg, read at most every LOAD_CHECK_NS) — or spinning paid lately (spin_credit,
 * below). On a busy machine a
 * spinner takes the CPU the bridge needs to answer it (measured: each side's spin then runs to its end and a
 * KVM_GET_REGS takes 2 budgets longer), and a sleeping thread's wake-up does not wait for an idle CPU anyway.
 * VAC_NO_SPIN=1 turns the spin off, VAC_SPIN_US=<µs> sets the budget, VAC_SPIN_ALWAYS=1 spins whatever the load
 * (to measure the spin itself); the bridge reads the same variables for its own spin (request-fifo.ts).
 */
#define SPIN_US_DEFAULT 50
#define MAX_SPINNERS 1
#define LOAD_CHECK_NS 10000000L
static long spin_ns;
static int spin_always;
static long ncpus;
static atomic_int spinners;
static _Atomic long load_checked_at;
static atomic_int cpu_spare;

static void spin_init(void) {
  const char *off = getenv("VAC_NO_SPIN"), *us = getenv("VAC_SPIN_US");
  char *end = NULL;
  long v = us != NULL && *us != '\0' ? strtol(us, &end, 10) : -1;
  if (off != NULL && *off != '\0') spin_ns = 0;
  else if (v >= 0 && end != NULL && *end == '\0') spin_ns = v * 1000;
  else spin_ns = SPIN_US_DEFAULT * 1000L;
  const char *always = getenv("VAC_SPIN_ALWAYS");
  spin_always = always != NULL && *always != '\0';
  ncpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpus < 1) ncpus = 1;
}

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Whether the machine has a CPU to spare (above), from /proc/loadavg ("0.52 0.58 0.59 2/389 12345": the load
 * averages, then runnable/all threads) read at most every LOAD_CHECK_NS by whichever thread finds it stale. The
 * load averages are not used: they lag by a minute, and a benchmark's own spinning threads raise them. */
static int machine_has_spare_cpu(void) {
  long now = now_ns(), at = atomic_load_explicit(&load_checked_at, memory_order_relaxed);
  if (at != 0 && now - at < LOAD_CHECK_NS) return atomic_load_explicit(&cpu_spare, memory_order_relaxed);
  if (!atomic_compare_exchange_strong(&load_checked_at, &at, now)) return atomic_load_explicit(&cpu_spare, memory_order_relaxed);
  int spare = 0, f = real_open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (f >= 0) {
    char text[128];
    ssize_t n = read(f, text, sizeof text - 1);
    real_close(f);
    long running;
    if (n > 0) {
      text[n] = '\0';
      if (sscanf(text, "%*f %*f %*f %ld/", &running) == 1) spare = running <= ncpus;
    }
  }
  atomic_store_explicit(&cpu_spare, spare, memory_order_relaxed);
  return spare;
}

/*
 * Spins that pay (spare-cpu.ts, SpinCredit): when the runnable count says no — as in a migration's downtime, where
 * the source QEMU, the bridge and the destination QEMU are busy at once on 2 CPUs — a thread spins for its reply
 * while recent spins caught theirs: a catch gives SPIN_CREDIT more spins, a spin that runs out halves what is left,
 * and with no credit one call in SPIN_PROBE_EVERY spins anyway to learn whether spinning pays again. KVM_RUN's
 * wait (spin_poll) spends credit but does not probe or earn: its reply may come much later by design.
 */
#define SPIN_CREDIT 8
#define SPIN_PROBE_EVERY 16
static atomic_int spin_credit;
static atomic_uint spin_calls;

/* Take a spinner's place: 0 when the budget is 0, the machine has no CPU to spare and spinning has not paid lately
 * (`probe`: a call that may try anyway now and then), or MAX_SPINNERS threads of this process spin already. *gated
 * says whether the runnable count said no (the spin's outcome then goes to spin_credit). */
static int spin_enter(int probe, int *gated) {
  *gated = 0;
  if (spin_ns == 0) return 0;
  if (!spin_always && !machine_has_spare_cpu()) {
    *gated = 1;
    if (atomic_load_explicit(&spin_credit, memory_order_relaxed) <= 0 &&
        !(probe && (atomic_fetch_add_explicit(&spin_calls, 1, memory_order_relaxed) & (SPIN_PROBE_EVERY - 1)) == SPIN_PROBE_EVERY - 1))
      return 0;
  }
  if (atomic_fetch_add_explicit(&spinners, 1, memory_order_acquire) < MAX_SPINNERS) return 1;
  atomic_fetch_sub_explicit(&spinners, 1, memory_order_release);
  return 0;
}

/* Leave the spinner's place; a gated spin's outcome (`caught`: its message came within the budget) sets the credit. */
static void spin_leave(int gated, int caught) {
  if (gated) atomic_store_explicit(&spin_credit, caught ? SPIN_CREDIT : atomic_load_explicit(&spin_credit, memory_order_relaxed) >> 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&spinners, 1, memory_order_release);
}

/* Poll `s` for a reply without sleeping, for up to the budget: the bytes received into buf (at most len), 0 when
 * none came (or this thread may not spin now), -1 on end of file or an error (the blocking read reports it). */
static ssize_t spin_recv(int s, void *buf, size_t len) {
  int gated;
  if (!spin_enter(1, &gated)) return 0;
  long end = now_ns() + spin_ns;
  ssize_t n;
  for (;;) {
    n = recv(s, buf, len, MSG_DONTWAIT);
    if (n > 0) break;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      n = 0;
      break;
    }
    if (now_ns() >= end) {
      n = 0;
      break;
    }
    __builtin_ia32_pause();
  }
  spin_leave(gated, n > 0);
  return n;
}

/* A signal is pending for this thread that `mask` does not block (it would be delivered by ppoll with `mask`). */
static int deliverable(const sigset_t *mask) {
  sigset_t pending;
  if (sigpending(&pending) < 0) return 1;
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember(&pending, sig) == 1 && sigismember(mask, sig) != 1) return 1;
  return 0;
}

/* With every signal blocked: poll `s` without sleeping for up to the budget. 1 when a reply is readable; 0 when the
 * budget ran out, this thread may not spin now, or a signal that `mask` lets through is pending (ppoll with `mask`
 * then delivers it: EINTR, as if it had come during the sleep). */
static int spin_poll(int s, const sigset_t *mask) {
  int gated;
  if (!spin_enter(0, &gated)) return 0;
  long end = now_ns() + spin_ns;
  int ready = 0;
  for (;;) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 0) > 0) {
      ready = 1;
      break;
    }
    if (deliverable(mask) || now_ns() >= end) break;
    __builtin_ia32_pause();
  }
  spin_leave(0, ready);
  return ready;
}

/*
 * Call times (VAC_PRELOAD_TIMES=<path prefix>, for bench/bridge.ts --migration --times): for each request a thread
 * sends to the bridge, CLOCK_MONOTONIC when it starts sending it and when the first bytes of its reply are seen, the
 * CPU at each (sched_getcpu, a vDSO call), and whether the reply was caught while spinning or after a sleep. Kept
 * in a ring of the last TIMES_MAX calls and written to <prefix>.<pid> when the process exits normally (QEMU's quit).
 * Off by default: one branch per call.
 */
#define TIMES_MAX 262144
struct call_time {
  long send_ns, seen_ns;
  uint32_t tid, op, request;
  int16_t cpu_send, cpu_seen;
  int32_t how; /* 0: the reply was caught by the spin; 1: after a sleep (recv, ppoll) */
};
static struct call_time *times_ring;
static atomic_ulong times_n;
static char times_path[256];

static void times_init(void) {
  const char *prefix = getenv("VAC_PRELOAD_TIMES");
  if (prefix == NULL || *prefix == '\0') return;
  snprintf(times_path, sizeof times_path, "%s.%d", prefix, (int)getpid());
  times_ring = calloc(TIMES_MAX, sizeof *times_ring);
}

static void times_add(const struct call_time *t) {
  unsigned long i = atomic_fetch_add_explicit(&times_n, 1, memory_order_relaxed);
  times_ring[i % TIMES_MAX] = *t;
}

__attribute__((destructor)) static void times_write(void) {
  if (times_ring == NULL || getpid() != self_pid) return;
  FILE *f = fopen(times_path, "w");
  if (f == NULL) return;
  unsigned long n = atomic_load(&times_n), from = n > TIMES_MAX ? n - TIMES_MAX : 0;
  fprintf(f, "tid op request send_ns seen_ns cpu_send cpu_seen how\n");
  for (unsigned long i = from; i < n; i++) {
    const struct call_time *t = &times_ring[i % TIMES_MAX];
    fprintf(f, "%u %u %u %ld %ld %d %d %d\n", t->tid, t->op, t->request, t->send_ns, t->seen_ns, t->cpu_send, t->cpu_seen, t->how);
  }
  fclose(f);
}

static void init(void) {
  resolve();
  pthread_key_create(&conn_key, close_conn);
  pthread_atfork(NULL, NULL, at_fork_child);
  self_pid = getpid();
  trace_on = getenv("VAC_PRELOAD_TRACE") != NULL;
  spin_init();
  times_init();
}

__attribute__((constructor)) static void vac_preload_ctor(void) {
  pthread_once(&init_once, init);
  /* /proc/PID/mem of this process must be open to the bridge even under Yama ptrace_scope=1. */
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
}

static inline void ensure_init(void) {
  if (!real_ioctl) pthread_once(&init_once, init);
}

static int is_kvm_path(const char *path) {
  if (path == NULL || strncmp(path, "/dev/kvm", 8) != 0) return 0;
  return strchr(path + 8, '/') == NULL;
}

static inline struct fd_entry *entry(int fd) {
  if (fd < 0 || fd >= VAC_MAX_FD || fds[fd].sim == 0) return NULL;
  return &fds[fd];
}

static const char *socket_path(void) {
  const char *p = getenv("VAC_SOCKET");
  return p && *p ? p : "/run/vac/bridge.sock";
}

/* ---- socket I/O ---------------------------------------------------------------------------------------- */

static int read_all(int fd, void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = recv(fd, p, len, 0);
    if (n == 0) return -1; /* the bridge went away */
    if (n < 0) {
      if (errno == EINTR) continue; /* phase 1: a signal does not interrupt a call in the bridge */
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int connect_bridge(int *err_out) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *err_out = errno;
    return -1;
  }
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, socket_path(), sizeof a.sun_path - 1);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    *err_out = errno;
    real_close(s);
    return -1;
  }
  /* Keep the bridge's sockets out of the VMM's way: the VMM's own fds get the numbers they get on Linux. */
  int high = real_fcntl(s, F_DUPFD_CLOEXEC, 800);
  if (high >= 0) {
    real_close(s);
    s = high;
  }
  return s;
}

struct reply {
  int err;
  int64_t result;
  uint32_t out_len, fd_kind, mmap_size, msg_len;
  unsigned char *body; /* out bytes, then message, then run patches */
  uint32_t body_len;
};

/*
 * Set around a KVM_RUN: its reply may take long (a halted vCPU sleeps in the bridge), and a signal must end the
 * wait as it ends Linux's KVM_RUN. The thread waits in poll() (with the KVM_SET_SIGNAL_MASK mask, if one was
 * given, as the kernel applies it during KVM_RUN); a signal handler interrupts it (EINTR, whatever SA_RESTART
 * says), and the library tells the bridge (OP_INTERRUPT), which makes the KVM_RUN return EINTR (KVM_EXIT_INTR).
 */
static __thread const sigset_t *run_wait_mask;
static __thread int run_waiting;

static void fifo_nudge(int s);

static int send_interrupt(int s) {
  unsigned char h[REQ_HEADER];
  memset(h, 0, sizeof h);
  put32(h, VAC_MAGIC);
  put32(h + 4, REQ_HEADER);
  put32(h + 8, OP_INTERRUPT);
  size_t sent = 0;
  while (sent < sizeof h) {
    ssize_t k = send(s, h + sent, sizeof h - sent, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    sent += (size_t)k;
  }
  fifo_nudge(s);
  return 0;
}

/* Wait for a KVM_RUN's reply: spin first (every signal blocked meanwhile, so none can come unnoticed between the
 * spin and the sleep), then sleep in ppoll with the wait mask, which a signal interrupts. */
static int wait_reply(int s) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  const sigset_t *mask = run_wait_mask != NULL ? run_wait_mask : &old;
  int rc = 0;
  for (;;) {
    /* Also after an interrupt: the reply (KVM_EXIT_INTR) then follows within the bridge's next turn. */
    if (spin_poll(s, mask)) break;
    struct pollfd p = {.fd = s, .events = POLLIN};
    int n = ppoll(&p, 1, NULL, mask);
    if (n > 0) break;
    if (n < 0 && errno == EINTR) {
      if (send_interrupt(s) < 0) {
        rc = -1;
        break;
      }
      continue;
    }
    if (n < 0) {
      rc = -1;
      break;
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/*
 * The request FIFO: a thread's requests of up to PIPE_BUF bytes (with the envelope) go there instead of its socket,
 * which the bridge's main thread reads with a blocking read while calls keep coming (request-fifo.ts); the reply
 * comes back on the socket as always. One atomic writev: envelope (magic, connection id, token), header, payload.
 * SIGPIPE (the bridge gone, no reader) is blocked around it and a pending one taken back, so the VMM sees EIO
 * as with the socket, not a signal.
 */
static int fifo_writev(const struct iovec *iov, int n, size_t total) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  /* With SIGPIPE already blocked (by the VMM, or by wait_reply around a KVM_RUN, which nudges the FIFO after an
   * INTERRUPT), a pending one may be someone else's: take back only the one our write raised. */
  int had_pipe = 0;
  if (sigismember(&old, SIGPIPE)) {
    sigset_t pending;
    had_pipe = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  }
  ssize_t k;
  do k = writev(fifo_fd, iov, n);
  while (k < 0 && errno == EINTR);
  if (k < 0 && errno == EPIPE && !had_pipe) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return k == (ssize_t)total ? 0 : -1;
}

static int fifo_send(const unsigned char *h, const void *p1, uint32_t n1, const void *p2, uint32_t n2) {
  unsigned char env[FIFO_ENVELOPE];
  put32(env, FIFO_MAGIC);
  put32(env + 4, conn_id);
  put64(env + 8, conn_token);
  struct iovec iov[4] = {{env, FIFO_ENVELOPE}, {(void *)h, REQ_HEADER}, {(void *)p1, n1}, {(void *)p2, n2}};
  return fifo_writev(iov, 4, FIFO_ENVELOPE + REQ_HEADER + (size_t)n1 + n2);
}

/*
 * After a message on this thread's socket (a request too large for the FIFO, an INTERRUPT): a YIELD marker on the
 * FIFO, so that a bridge serving the FIFO from its blocking read gives its event loop — which reads the sockets —
 * a turn now instead of at its watchdog's next YIELD, up to 1 ms later (measured: a KVM_GET_XSAVE2 on the socket
 * waited 1.2 ms in a migration's downtime). A bridge not in its blocking read ignores the marker.
 */
static void fifo_nudge(int s) {
  if (s != conn_fd || conn_token == 0 || fifo_fd < 0) return;
  unsigned char marker[FIFO_ENVELOPE];
  memset(marker, 0, sizeof marker);
  put32(marker, YIELD_MAGIC);
  struct iovec iov[1] = {{marker, FIFO_ENVELOPE}};
  fifo_writev(iov, 1, FIFO_ENVELOPE);
}

/* Open the bridge's request FIFO for this process (once; again if the bridge made a new one since: another inode
 * at the path), at fd 800 and up like the sockets. Without one, requests go on the socket. */
static void fifo_open(void) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
  snprintf(path, sizeof path, "%s.req", socket_path());
  struct stat at, have;
  if (stat(path, &at) < 0 || !S_ISFIFO(at.st_mode)) return;
  pthread_mutex_lock(&fifo_lock);
  if (fifo_fd < 0 || fstat(fifo_fd, &have) < 0 || have.st_ino != at.st_ino || have.st_dev != at.st_dev) {
    /* O_NONBLOCK: ENXIO rather than waiting when no bridge has it open for reading. */
    int f = real_open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (f >= 0 && real_fcntl(f, F_SETFL, 0) == 0) {
      int high = real_fcntl(f, F_DUPFD_CLOEXEC, 800);
      if (high >= 0) {
        real_close(f);
        f = high;
      }
      if (fifo_fd < 0) fifo_fd = f;
      else {
        real_dup3(f, fifo_fd, O_CLOEXEC); /* atomically, under any thread's feet: the old FIFO has no reader now */
        real_close(f);
      }
    } else if (f >= 0)
      real_close(f);
  }
  pthread_mutex_unlock(&fifo_lock);
}

/* How many bytes of a reply one recv() takes at once: the header and a body of up to this much arrive in one
 * system call (KVM_GET_REGS's reply is 184 bytes; a KVM_RUN's, with its kvm_run patches, a few hundred). */
#define REPLY_FIRST_READ 4096

/* Send one request on `s` and read its reply. Returns -1 (errno set to EIO) when the bridge is gone. With
 * `exact`, the reply is read with two exact reads (header, then body) so that nothing after it is consumed: on
 * the relay's connection the bridge may send EVENTFD_WRITE right after the HELLO reply. Elsewhere a reply is
 * the only thing the bridge sends on the connection, and one recv() usually takes all of it. */
static int call_on(int s, uint32_t op, int sim, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, const void *p1,
                   uint32_t n1, const void *p2, uint32_t n2, struct reply *r, int exact) {
  unsigned char h[REQ_HEADER];
  uint32_t len = REQ_HEADER + n1 + n2;
  memset(h, 0, sizeof h);
  put32(h, VAC_MAGIC);
  put32(h + 4, len);
  put32(h + 8, op);
  put32(h + 12, (uint32_t)sim);
  put32(h + 16, flags);
  put64(h + 24, a);
  put64(h + 32, b);
  put64(h + 40, c);
  struct call_time ct;
  if (times_ring != NULL) {
    ct.send_ns = now_ns();
    ct.cpu_send = (int16_t)sched_getcpu();
    ct.op = op;
    ct.request = (uint32_t)a;
    ct.how = 1;
  }
  if (s == conn_fd && conn_token != 0 && fifo_fd >= 0 && FIFO_ENVELOPE + (size_t)len <= FIFO_MAX) {
    if (fifo_send(h, p1, n1, p2, n2) < 0) {
      errno = EIO;
      return -1;
    }
    goto sent;
  }
  struct iovec iov[3] = {{h, REQ_HEADER}, {(void *)p1, n1}, {(void *)p2, n2}};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = iov;
  m.msg_iovlen = 3;
  size_t total = len, sent = 0;
  while (sent < total) {
    ssize_t k = sendmsg(s, &m, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      errno = EIO;
      return -1;
    }
    sent += (size_t)k;
    /* advance the iovecs */
    size_t adv = (size_t)k;
    while (adv > 0 && m.msg_iovlen > 0) {
      if (adv >= m.msg_iov[0].iov_len) {
        adv -= m.msg_iov[0].iov_len;
        m.msg_iov++;
        m.msg_iovlen--;
      } else {
        m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + adv;
        m.msg_iov[0].iov_len -= adv;
        adv = 0;
      }
    }
  }
  fifo_nudge(s);
sent:;
  unsigned char first[REP_HEADER + REPLY_FIRST_READ];
  unsigned char *rh = first;
  if (run_waiting && wait_reply(s) < 0) {
    errno = EIO;
    return -1;
  }
  size_t got = 0;
  int spun = 0;
  if (exact) {
    if (read_all(s, rh, REP_HEADER) < 0) {
      errno = EIO;
      return -1;
    }
    got = REP_HEADER;
  } else {
    if (!run_waiting) {
      ssize_t n = spin_recv(s, first, sizeof first);
      if (n > 0) {
        got = (size_t)n;
        spun = 1;
      }
    }
    while (got < REP_HEADER) {
      ssize_t n = recv(s, first + got, sizeof first - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        errno = EIO;
        return -1;
      }
      got += (size_t)n;
    }
  }
  if (times_ring != NULL) {
    ct.seen_ns = now_ns();
    ct.cpu_seen = (int16_t)sched_getcpu();
    ct.tid = (uint32_t)syscall(SYS_gettid);
    ct.how = spun ? 0 : 1;
    times_add(&ct);
  }
  if (get32(rh) != VAC_MAGIC) {
    errno = EIO;
    return -1;
  }
  uint32_t rlen = get32(rh + 4);
  if (rlen < REP_HEADER || rlen > MAX_REPLY || got > rlen) {
    errno = EIO;
    return -1;
  }
  r->err = (int)get32(rh + 8);
  r->result = (int64_t)get64(rh + 16);
  r->out_len = get32(rh + 24);
  r->fd_kind = get32(rh + 28);
  r->mmap_size = get32(rh + 32);
  r->msg_len = get32(rh + 36);
  r->body_len = rlen - REP_HEADER;
  r->body = NULL;
  if (r->body_len > 0) {
    r->body = malloc(r->body_len);
    size_t have = got - REP_HEADER;
    if (r->body != NULL) memcpy(r->body, first + REP_HEADER, have);
    if (r->body == NULL || read_all(s, r->body + have, r->body_len - have) < 0) {
      free(r->body);
      r->body = NULL;
      errno = EIO;
      return -1;
    }
  }
  if ((uint64_t)r->out_len + r->msg_len > r->body_len) {
    free(r->body);
    r->body = NULL;
    errno = EIO;
    return -1;
  }
  return 0;
}

static void report_unreachable(int e) {
  fprintf(stderr,
          "vac-preload: cannot open /dev/kvm*: the vac bridge is not running (socket %s: %s); start it with "
          "`vac start`, or run the VMM with `vac run`\n",
          socket_path(), strerror(e));
}

/* The liveness connection: the bridge kills the simulated process when it closes (exit, exec, SIGKILL). */
static int ensure_life(void) {
  if (life_fd >= 0) return 0;
  int e = 0;
  int s = connect_bridge(&e);
  if (s < 0) {
    report_unreachable(e);
    errno = ENODEV;
    return -1;
  }
  struct reply r;
  if (call_on(s, OP_HELLO, 0, HELLO_LIFE, (uint64_t)getpid(), (uint64_t)syscall(SYS_gettid), 0, NULL, 0, NULL, 0, &r, 0) < 0) {
    real_close(s);
    errno = ENODEV;
    return -1;
  }
  free(r.body);
  if (r.err) {
    real_close(s);
    errno = r.err;
    return -1;
  }
  life_fd = s;
  return 0;
}

static int thread_conn(void) {
  if (conn_fd >= 0) return conn_fd;
  int e = 0;
  int s = connect_bridge(&e);
  if (s < 0) {
    errno = EIO;
    return -1;
  }
  struct reply r;
  if (call_on(s, OP_HELLO, 0, 0, (uint64_t)getpid(), (uint64_t)syscall(SYS_gettid), 0, NULL, 0, NULL, 0, &r, 0) < 0) {
    real_close(s);
    errno = EIO;
    return -1;
  }
  if (r.err) {
    free(r.body);
    real_close(s);
    errno = r.err;
    return -1;
  }
  conn_token = 0;
  if (r.out_len >= 16 && getenv("VAC_NO_FIFO") == NULL) {
    fifo_open();
    conn_id = get32(r.body);
    conn_token = get64(r.body + 8);
  }
  free(r.body);
  conn_fd = s;
  pthread_setspecific(conn_key, (void *)(intptr_t)(s + 1));
  return s;
}

/* The bridge is gone: every KVM fd is dead (EIO from now on, even if a new bridge starts: it would not know
 * them), and the next open starts over (ENODEV with a message while no bridge answers). */
static void bridge_lost(void) {
  pthread_mutex_lock(&lock);
  for (int i = 0; i < VAC_MAX_FD; i++)
    if (fds[i].sim) fds[i].stale = 1;
  if (life_fd >= 0) real_close(life_fd);
  life_fd = -1;
  pthread_mutex_unlock(&lock);
}

static int call(uint32_t op, int sim, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, const void *p1, uint32_t n1,
                const void *p2, uint32_t n2, struct reply *r) {
  int s = thread_conn();
  if (s < 0) {
    bridge_lost();
    errno = EIO;
    return -1;
  }
  if (call_on(s, op, sim, flags, a, b, c, p1, n1, p2, n2, r, 0) < 0) {
    real_close(s);
    conn_fd = -1;
    conn_token = 0;
    pthread_setspecific(conn_key, NULL);
    bridge_lost();
    errno = EIO;
    return -1;
  }
  if (trace_on && r->err && r->msg_len)
    fprintf(stderr, "vac-preload: %.*s\n", (int)r->msg_len, (const char *)r->body + r->out_len);
  return 0;
}

/* ---- the fd table ---------------------------------------------------------------------------------------- */

static struct run_area *run_new(int memfd, size_t size) {
  struct run_area *ra = calloc(1, sizeof *ra);
  if (!ra) return NULL;
  ra->view = real_mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  ra->shadow = calloc(1, size); /* the memfd starts zeroed, and so does the bridge's shadow */
  if (ra->view == MAP_FAILED || ra->shadow == NULL) {
    if (ra->view != MAP_FAILED) real_munmap(ra->view, size);
    free(ra->shadow);
    free(ra);
    return NULL;
  }
  pthread_mutex_init(&ra->mu, NULL);
  ra->size = size;
  ra->refs = 1;
  return ra;
}

static void run_put(struct run_area *ra) {
  if (ra && --ra->refs == 0) {
    real_munmap(ra->view, ra->size);
    free(ra->shadow);
    free(ra);
  }
}

/* Install a real placeholder fd for simulated fd `sim`. Returns the real fd or -1. */
static int install(int sim, int kind, uint32_t mmap_size, int cloexec) {
  int fd = (int)syscall(SYS_memfd_create, "vac-kvm", cloexec ? MFD_CLOEXEC : 0);
  if (fd < 0) return -1;
  struct run_area *ra = NULL;
  if (kind == KIND_VCPU && mmap_size > 0) {
    if (ftruncate(fd, mmap_size) < 0 || (ra = run_new(fd, mmap_size)) == NULL) {
      int e = errno;
      real_close(fd);
      errno = e;
      return -1;
    }
  }
  if (fd >= VAC_MAX_FD) {
    run_put(ra);
    real_close(fd);
    errno = EMFILE;
    return -1;
  }
  pthread_mutex_lock(&lock);
  fds[fd].kind = kind;
  fds[fd].run = ra;
  fds[fd].stale = 0;
  fds[fd].has_mask = 0;
  __atomic_store_n(&fds[fd].sim, sim, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&lock);
  return fd;
}

static void forget(int fd) {
  pthread_mutex_lock(&lock);
  struct run_area *ra = fds[fd].run;
  fds[fd].sim = 0;
  fds[fd].run = NULL;
  fds[fd].kind = 0;
  fds[fd].stale = 0;
  pthread_mutex_unlock(&lock);
  run_put(ra);
}

/* Tell the bridge that simulated fd `sim` was closed (errors ignored: close always succeeds on Linux). */
static void sim_close(int sim) {
  struct reply r;
  if (call(OP_CLOSE, sim, 0, 0, 0, 0, NULL, 0, NULL, 0, &r) == 0) free(r.body);
}

/* Record real fd `newfd` as a copy of `old` (dup), asking the bridge for a simulated copy. */
static int adopt_dup(struct fd_entry *old, int newfd) {
  if (old->stale) {
    pthread_mutex_lock(&lock);
    fds[newfd] = *old;
    if (fds[newfd].run) fds[newfd].run->refs++;
    pthread_mutex_unlock(&lock);
    return newfd;
  }
  struct reply r;
  if (call(OP_DUP, old->sim, 0, 0, 0, 0, NULL, 0, NULL, 0, &r) < 0) {
    real_close(newfd);
    errno = EIO;
    return -1;
  }
  free(r.body);
  if (r.err) {
    real_close(newfd);
    errno = r.err;
    return -1;
  }
  pthread_mutex_lock(&lock);
  fds[newfd].kind = old->kind;
  fds[newfd].run = old->run;
  if (old->run) old->run->refs++;
  fds[newfd].stale = 0;
  fds[newfd].has_mask = old->has_mask;
  fds[newfd].runmask = old->runmask;
  fds[newfd].sim = (int)r.result;
  pthread_mutex_unlock(&lock);
  return newfd;
}

/* ---- open ---------------------------------------------------------------------------------------------- */

static int vac_open(const char *path, int flags) {
  /* `vac run --dev /dev/kvm1`: this VMM's /dev/kvm is another device, whatever /dev/kvm links to. */
  const char *dev = getenv("VAC_DEV_KVM");
  if (dev && *dev && strcmp(path, "/dev/kvm") == 0) path = dev;
  if (forked_child && life_fd < 0) forked_child = 0;
  pthread_mutex_lock(&lock);
  int rc = ensure_life();
  pthread_mutex_unlock(&lock);
  if (rc < 0) return -1;
  struct reply r;
  if (call(OP_OPEN, 0, 0, (uint64_t)(uint32_t)flags, 0, 0, path, (uint32_t)strlen(path), NULL, 0, &r) < 0) {
    report_unreachable(ECONNRESET);
    errno = ENODEV;
    return -1;
  }
  free(r.body);
  if (r.err) {
    errno = r.err;
    return -1;
  }
  int fd = install((int)r.result, (int)r.fd_kind, r.mmap_size, (flags & O_CLOEXEC) != 0);
  if (fd < 0) {
    int e = errno;
    sim_close((int)r.result);
    errno = e;
  }
  return fd;
}

#define OPEN_MODE(flags)                                                                                       \
  mode_t mode = 0;                                                                                             \
  if ((flags) & (O_CREAT | __O_TMPFILE)) {                                                                     \
    va_list ap;                                                                                                \
    va_start(ap, flags);                                                                                       \
    mode = va_arg(ap, mode_t);                                                                                 \
    va_end(ap);                                                                                                \
  }

int open(const char *path, int flags, ...) {
  ensure_init();
  OPEN_MODE(flags)
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
  ensure_init();
  OPEN_MODE(flags)
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_open(path, flags | O_LARGEFILE, mode);
}

int __open_2(const char *path, int flags) {
  ensure_init();
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_open(path, flags);
}

int __open64_2(const char *path, int flags) {
  ensure_init();
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_open(path, flags | O_LARGEFILE);
}

int openat(int dirfd, const char *path, int flags, ...) {
  ensure_init();
  OPEN_MODE(flags)
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  ensure_init();
  OPEN_MODE(flags)
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

int __openat_2(int dirfd, const char *path, int flags) {
  ensure_init();
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_openat(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags) {
  ensure_init();
  if (is_kvm_path(path)) return vac_open(path, flags);
  return real_openat(dirfd, path, flags | O_LARGEFILE);
}

/* ---- eventfd relay --------------------------------------------------------------------------------------- */

/*
 * KVM_IRQFD and KVM_IOEVENTFD name eventfds of the VMM. The model's VM can only hold eventfds of the simulated
 * process, so each real eventfd passed to them gets a relay: a simulated eventfd the bridge creates (OP_EVENTFD)
 * and a duplicate of the real one the library keeps (the reference the kernel would hold), and the fd fields
 * of the argument are rewritten to the simulated fd. Then a helper thread ("vac-relay", on its own connection):
 * - watches the real eventfds bound to an irqfd: when the VMM writes one, it takes the count (as the kernel's
 *   irqfd_wakeup does) and sends it (OP_SIGNAL) to the bridge, which writes it into the simulated eventfd, and
 *   the model injects the interrupt;
 * - writes a real eventfd when the bridge says the model signalled its simulated twin (OP_EVENTFD_WRITE): an
 *   ioeventfd whose guest write matched, a resamplefd whose level interrupt the guest acknowledged.
 * The same real file passed again (under any fd number) is the same relay: kcmp(KCMP_FILE) compares files.
 */
#define MAX_RELAYS 1024
#define RELAY_FD_BASE 900
#ifndef KCMP_FILE
#define KCMP_FILE 0
#endif

struct relay {
  int held;  /* the library's duplicate of the real eventfd, -1 = free slot */
  int sim;   /* the simulated eventfd */
  int watch; /* irqfds bound to it: its count goes to the bridge */
};

static struct relay relays[MAX_RELAYS];
static int nrelays;
/* VMM fd numbers that named a relay's file (1 + the relay's index; 0: none): closing one may release the file. */
static int relay_named[VAC_MAX_FD];
static pthread_mutex_t relay_lock = PTHREAD_MUTEX_INITIALIZER;
static int relay_sock = -1;
static int relay_wake = -1;

static void relay_reset_after_fork(void) {
  /* The helper thread does not exist in the child; the relays belong to the parent's simulated process. */
  if (relay_sock >= 0) real_close(relay_sock);
  if (relay_wake >= 0) real_close(relay_wake);
  relay_sock = relay_wake = -1;
  for (int i = 0; i < nrelays; i++)
    if (relays[i].held >= 0) real_close(relays[i].held);
  nrelays = 0;
  memset(relay_named, 0, sizeof relay_named);
  pthread_mutex_init(&relay_lock, NULL);
}

static void *relay_main(void *arg) {
  (void)arg;
  struct pollfd pf[MAX_RELAYS + 2];
  int ids[MAX_RELAYS + 2];
  for (;;) {
    int n = 0;
    pf[n].fd = relay_sock, pf[n].events = POLLIN, ids[n++] = -1;
    pf[n].fd = relay_wake, pf[n].events = POLLIN, ids[n++] = -1;
    pthread_mutex_lock(&relay_lock);
    for (int i = 0; i < nrelays; i++)
      if (relays[i].held >= 0 && relays[i].watch > 0) pf[n].fd = relays[i].held, pf[n].events = POLLIN, ids[n++] = i;
    pthread_mutex_unlock(&relay_lock);
    for (int i = 0; i < n; i++) pf[i].revents = 0;
    if (poll(pf, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      unsigned char h[REQ_HEADER];
      if (read_all(relay_sock, h, REQ_HEADER) < 0 || get32(h) != VAC_MAGIC) return NULL; /* the bridge is gone */
      uint32_t len = get32(h + 4);
      for (uint32_t left = len > REQ_HEADER ? len - REQ_HEADER : 0; left > 0;) { /* no payload is expected: skip it */
        unsigned char junk[256];
        uint32_t k = left < sizeof junk ? left : (uint32_t)sizeof junk;
        if (read_all(relay_sock, junk, k) < 0) return NULL;
        left -= k;
      }
      uint64_t id = get64(h + 24), value = get64(h + 32);
      if (get32(h + 8) == OP_EVENTFD_WRITE && id >= 1 && id <= (uint64_t)nrelays) {
        int held = relays[id - 1].held;
        if (held >= 0 && value > 0) (void)!write(held, &value, sizeof value);
      }
    }
    if (pf[1].revents & POLLIN) {
      uint64_t v;
      (void)!read(relay_wake, &v, sizeof v);
    }
    for (int i = 2; i < n; i++) {
      if (!(pf[i].revents & POLLIN)) continue;
      uint64_t v = 0;
      if (read(pf[i].fd, &v, sizeof v) != (ssize_t)sizeof v || v == 0) continue;
      unsigned char h[REQ_HEADER];
      memset(h, 0, sizeof h);
      put32(h, VAC_MAGIC);
      put32(h + 4, REQ_HEADER);
      put32(h + 8, OP_SIGNAL);
      put64(h + 24, (uint64_t)ids[i] + 1);
      put64(h + 32, v);
      size_t sent = 0;
      while (sent < sizeof h) {
        ssize_t k = send(relay_sock, h + sent, sizeof h - sent, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return NULL;
        sent += (size_t)k;
      }
    }
  }
}

/* The helper thread and its connection, started with the first relay. Called with relay_lock held. */
static int relay_start(void) {
  if (relay_sock >= 0) return 0;
  int e = 0;
  int s = connect_bridge(&e);
  if (s < 0) return -1;
  struct reply r;
  if (call_on(s, OP_HELLO, 0, HELLO_RELAY, (uint64_t)getpid(), (uint64_t)syscall(SYS_gettid), 0, NULL, 0, NULL, 0, &r, 1) < 0) {
    real_close(s);
    return -1;
  }
  free(r.body);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r.err || wake < 0) {
    real_close(s);
    if (wake >= 0) real_close(wake);
    return -1;
  }
  int high = real_fcntl(wake, F_DUPFD_CLOEXEC, RELAY_FD_BASE);
  if (high >= 0) {
    real_close(wake);
    wake = high;
  }
  relay_sock = s;
  relay_wake = wake;
  /* The helper thread takes no signal of the VMM's: they are meant for the VMM's own threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  int rc = pthread_create(&t, NULL, relay_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return -1;
  pthread_detach(t);
#ifdef __GLIBC__
  pthread_setname_np(t, "vac-relay");
#endif
  return 0;
}

static void relay_poke(void) {
  uint64_t one = 1;
  if (relay_wake >= 0) (void)!write(relay_wake, &one, sizeof one);
}

static int same_file(int a, int b) {
  return syscall(SYS_kcmp, (long)self_pid, (long)self_pid, KCMP_FILE, a, b) == 0;
}

/* Is real fd `fd` an eventfd? (its /proc/self/fd link names the anon inode) */
static int is_eventfd(int fd) {
  char path[64], link[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n < 0) return 0;
  link[n] = 0;
  return strcmp(link, "anon_inode:[eventfd]") == 0;
}

/*
 * The simulated fd to put in place of real fd `fd` in an argument: the relay's simulated eventfd (made on first
 * use); the simulated fd of a KVM fd; -1 (no such fd: the model's EBADF) for a closed fd; for another kind of
 * file, `other` (a simulated file that is no eventfd: the model's EINVAL, as eventfd_ctx_fdget answers).
 * Returns 0 and the relay index in *rid (-1 if none), or -1 with errno set when the bridge cannot be reached.
 */
static int relay_translate(int fd, int other, int *sim_out, int *rid) {
  *rid = -1;
  struct fd_entry *ke = entry(fd);
  if (ke != NULL) {
    *sim_out = ke->sim;
    return 0;
  }
  if (fd < 0 || real_fcntl(fd, F_GETFD) < 0) {
    *sim_out = -1;
    return 0;
  }
  if (!is_eventfd(fd)) {
    *sim_out = other;
    return 0;
  }
  pthread_mutex_lock(&relay_lock);
  for (int i = 0; i < nrelays; i++) {
    if (relays[i].held >= 0 && same_file(fd, relays[i].held)) {
      *sim_out = relays[i].sim;
      *rid = i;
      if (fd < VAC_MAX_FD) relay_named[fd] = i + 1;
      pthread_mutex_unlock(&relay_lock);
      return 0;
    }
  }
  if (nrelays >= MAX_RELAYS || relay_start() < 0) {
    pthread_mutex_unlock(&relay_lock);
    errno = nrelays >= MAX_RELAYS ? ENOSPC : EIO;
    return -1;
  }
  int held = real_fcntl(fd, F_DUPFD_CLOEXEC, RELAY_FD_BASE);
  if (held < 0) {
    pthread_mutex_unlock(&relay_lock);
    return -1;
  }
  struct reply r;
  if (call(OP_EVENTFD, 0, 0, (uint64_t)nrelays + 1, 0, 0, NULL, 0, NULL, 0, &r) < 0) {
    real_close(held);
    pthread_mutex_unlock(&relay_lock);
    return -1;
  }
  free(r.body);
  if (r.err) {
    real_close(held);
    pthread_mutex_unlock(&relay_lock);
    errno = r.err;
    return -1;
  }
  relays[nrelays].held = held;
  relays[nrelays].sim = (int)r.result;
  relays[nrelays].watch = 0;
  if (fd < VAC_MAX_FD) relay_named[fd] = nrelays + 1;
  *rid = nrelays++;
  *sim_out = (int)r.result;
  pthread_mutex_unlock(&relay_lock);
  return 0;
}

/*
 * Rewrite the eventfd fields of a KVM_IRQFD / KVM_IOEVENTFD argument (`in`, `len` bytes) from real to simulated
 * fds. *irqfd_relay is the relay of an irqfd's eventfd (-1 if none). Returns -1 with errno on failure.
 */
static int relay_rewrite(uint32_t req, unsigned char *in, uint32_t len, int vm_sim, int *irqfd_relay) {
  *irqfd_relay = -1;
  int sim, rid;
  if (req == KVM_IRQFD_REQ && len >= 16) {
    if (relay_translate((int)get32(in), vm_sim, &sim, &rid) < 0) return -1;
    put32(in, (uint32_t)sim);
    *irqfd_relay = rid;
    if (get32(in + 8) & KVM_IRQFD_FLAG_RESAMPLE) {
      if (relay_translate((int)get32(in + 12), vm_sim, &sim, &rid) < 0) return -1;
      put32(in + 12, (uint32_t)sim);
    }
  } else if (req == KVM_IOEVENTFD_REQ && len >= 24) {
    if (relay_translate((int)get32(in + 20), vm_sim, &sim, &rid) < 0) return -1;
    put32(in + 20, (uint32_t)sim);
  }
  return 0;
}

/* After a successful KVM_IRQFD: an assigned irqfd's eventfd is watched, a deassigned one no longer. */
static void relay_irqfd_done(const unsigned char *in, int rid) {
  if (rid < 0) return;
  pthread_mutex_lock(&relay_lock);
  if (get32(in + 8) & KVM_IRQFD_FLAG_DEASSIGN) {
    if (relays[rid].watch > 0) relays[rid].watch--;
  } else {
    relays[rid].watch++;
  }
  pthread_mutex_unlock(&relay_lock);
  relay_poke();
}

/*
 * VMM fd `fd`, which named relay `rid`'s file, was closed (or replaced by dup2/dup3): if no other fd of the process
 * refers to that file now, the VMM released it. Linux's eventfd_release then wakes the eventfd's waiters with
 * EPOLLHUP, and an irqfd on it shuts down (virt/kvm/eventfd.c, irqfd_wakeup); an ioeventfd keeps its reference
 * to the eventfd context and stays. The library's duplicate would keep the file alive, so it is closed, and the
 * simulated twin is closed in the bridge: its release does the same to the model's irqfd. Another fd of the same
 * file (a dup the VMM made) is remembered instead, so its close is checked in turn. A fork child's or another
 * process's reference to the file is not seen: the relay is released when this process lets go of it.
 */
static void relay_check_release(int rid) {
  pthread_mutex_lock(&relay_lock);
  struct relay *r = &relays[rid];
  if (r->held < 0) {
    pthread_mutex_unlock(&relay_lock);
    return;
  }
  DIR *d = opendir("/proc/self/fd");
  int other = -1, dfd = d ? dirfd(d) : -1;
  for (struct dirent *de; d && other < 0 && (de = readdir(d)) != NULL;) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    int n = atoi(de->d_name);
    if (n == dfd || n == relay_wake || n == relay_sock) continue;
    int ours = 0;
    for (int i = 0; i < nrelays && !ours; i++) ours = relays[i].held == n;
    if (!ours && same_file(n, r->held)) other = n;
  }
  if (d) closedir(d);
  if (other >= 0 || d == NULL) {
    if (other >= 0 && other < VAC_MAX_FD) relay_named[other] = rid + 1;
    pthread_mutex_unlock(&relay_lock);
    return;
  }
  real_close(r->held);
  r->held = -1;
  r->watch = 0;
  int sim = r->sim;
  pthread_mutex_unlock(&relay_lock);
  relay_poke();
  sim_close(sim);
}

/* Before closing VMM fd `fd`: the relay whose file it named (-1 if none), forgotten for that number. */
static int relay_unname(int fd) {
  if (fd < 0 || fd >= VAC_MAX_FD || relay_named[fd] == 0) return -1;
  int rid = relay_named[fd] - 1;
  relay_named[fd] = 0;
  return rid;
}

/* ---- ioctl --------------------------------------------------------------------------------------------- */

/* Arguments whose length is not the request's _IOC_SIZE. Variable length: the header is `hdr` bytes (the
 * request's _IOC_SIZE) and `count` (a u32 at count_off) elements of `elem` bytes follow. A true size
 * (elem = 0): the kernel copies `hdr` bytes whatever the request encodes. packages/bridge/test/codec.test.ts
 * checks every row against the request numbers. */
struct varlen {
  uint32_t req, hdr, count_off, elem;
};
static const struct varlen varlens[] = {
    {0xc004ae02u, 4, 0, 4},   /* KVM_GET_MSR_INDEX_LIST      struct kvm_msr_list */
    {0xc004ae0au, 4, 0, 4},   /* KVM_GET_MSR_FEATURE_INDEX_LIST */
    {0xc008ae88u, 8, 0, 16},  /* KVM_GET_MSRS                struct kvm_msrs */
    {0x4008ae89u, 8, 0, 16},  /* KVM_SET_MSRS */
    {0xc008ae05u, 8, 0, 40},  /* KVM_GET_SUPPORTED_CPUID     struct kvm_cpuid2 */
    {0xc008ae09u, 8, 0, 40},  /* KVM_GET_EMULATED_CPUID */
    {0x4008ae90u, 8, 0, 40},  /* KVM_SET_CPUID2 */
    {0xc008ae91u, 8, 0, 40},  /* KVM_GET_CPUID2 */
    {0x4008ae8au, 8, 0, 24},  /* KVM_SET_CPUID               struct kvm_cpuid */
    {0x4008ae6au, 8, 0, 48},  /* KVM_SET_GSI_ROUTING         struct kvm_irq_routing */
    {0x4004ae8bu, 4, 0, 1},   /* KVM_SET_SIGNAL_MASK         struct kvm_signal_mask */
    {0x4020aeb2u, 32, 4, 8},  /* KVM_SET_PMU_EVENT_FILTER    struct kvm_pmu_event_filter */
    {0xc008aebau, 24, 0, 0},  /* KVM_MEMORY_ENCRYPT_OP       _IOWR(..., unsigned long) but struct kvm_sev_cmd */
};

static int read_self(void *dst, const void *src, size_t n) {
  if (n == 0) return 0;
  struct iovec l = {dst, n}, r = {(void *)src, n};
  ssize_t k = syscall(SYS_process_vm_readv, self_pid, &l, 1, &r, 1, 0);
  return k == (ssize_t)n ? 0 : -1;
}

static int write_self(void *dst, const void *src, size_t n) {
  if (n == 0) return 0;
  struct iovec l = {(void *)src, n}, r = {dst, n};
  ssize_t k = syscall(SYS_process_vm_writev, self_pid, &l, 1, &r, 1, 0);
  return k == (ssize_t)n ? 0 : -1;
}

/* Runs of changed bytes fewer than this many equal bytes apart go as one patch (as the bridge joins its own). */
#define PATCH_JOIN 16
/* Bytes compared with memcmp at a time before a chunk that differs is walked byte by byte. */
#define PATCH_CHUNK 64

static void put_patch(unsigned char *out, uint32_t *len, struct run_area *ra, size_t start, size_t end) {
  put32(out + *len, (uint32_t)start);
  put32(out + *len + 4, (uint32_t)(end - start));
  memcpy(out + *len + 8, ra->view + start, end - start);
  memcpy(ra->shadow + start, ra->view + start, end - start);
  *len += 8 + (uint32_t)(end - start);
}

/*
 * What the VMM changed in its kvm_run since the bridge last synced it: {u32 offset, u32 length, bytes}… (the same
 * form as the bridge's reply patches), the shadow updated to match. Sent with KVM_RUN instead of the whole area,
 * which is 12 KiB of which a VMM changes a few bytes between runs (immediate_exit, an IN exit's data). Returns
 * the patches' length, or -1 (ENOMEM).
 */
static int run_patches(struct run_area *ra, unsigned char **out) {
  size_t need = ra->size + 8 * (ra->size / (PATCH_JOIN + 1) + 2);
  if (patch_cap < need) {
    unsigned char *b = realloc(patch_buf, need);
    if (b == NULL) return -1;
    patch_buf = b;
    patch_cap = need;
  }
  uint32_t len = 0;
  size_t start = 0, last = 0;
  int open_run = 0;
  for (size_t c = 0; c < ra->size; c += PATCH_CHUNK) {
    size_t ce = c + PATCH_CHUNK < ra->size ? c + PATCH_CHUNK : ra->size;
    if (memcmp(ra->view + c, ra->shadow + c, ce - c) == 0) continue;
    for (size_t i = c; i < ce; i++) {
      if (ra->view[i] == ra->shadow[i]) continue;
      if (open_run && i - last - 1 >= PATCH_JOIN) {
        put_patch(patch_buf, &len, ra, start, last + 1);
        open_run = 0;
      }
      if (!open_run) start = i, open_run = 1;
      last = i;
    }
  }
  if (open_run) put_patch(patch_buf, &len, ra, start, last + 1);
  *out = patch_buf;
  return (int)len;
}

static int vac_ioctl(struct fd_entry *e, uint32_t req, unsigned long arg) {
  if (e->stale) {
    errno = EIO;
    return -1;
  }
  uint32_t dir = req >> 30, size = (req >> 16) & 0x3fff;
  uint32_t flags = 0, cap = 0;
  unsigned char *in = NULL;
  if (dir != 0) {
    cap = size;
    for (size_t i = 0; i < sizeof varlens / sizeof varlens[0]; i++) {
      if (varlens[i].req != req) continue;
      unsigned char hdr[64];
      if (read_self(hdr, (void *)arg, varlens[i].hdr) == 0) {
        uint64_t total = varlens[i].hdr + (uint64_t)get32(hdr + varlens[i].count_off) * varlens[i].elem;
        cap = total > MAX_ARG ? MAX_ARG : (uint32_t)total;
      }
      break;
    }
    in = malloc(cap ? cap : 1);
    if (!in) {
      errno = ENOMEM;
      return -1;
    }
    if (read_self(in, (void *)arg, cap) == 0) flags |= IOCTL_HAS_INPUT;
    else flags |= IOCTL_INPUT_UNREADABLE;
    /* The kernel builds these in a zeroed buffer of its own and copies it out whole (kzalloc, copy_to_user): the
     * VMM's bytes make no difference, so they are not sent, and the request fits the request FIFO (4 KiB of them
     * would not). The read above still tells a bad pointer (EFAULT) from a good one. */
    if ((flags & IOCTL_HAS_INPUT) && (req == KVM_GET_XSAVE2_REQ || req == KVM_GET_XSAVE_REQ)) flags = (flags & ~IOCTL_HAS_INPUT) | IOCTL_INPUT_ZEROED;
  }
  int irqfd_relay = -1;
  if ((flags & IOCTL_HAS_INPUT) && e->kind == KIND_VM && (req == KVM_IRQFD_REQ || req == KVM_IOEVENTFD_REQ)) {
    if (relay_rewrite(req, in, cap, e->sim, &irqfd_relay) < 0) {
      int e2 = errno;
      free(in);
      errno = e2;
      return -1;
    }
  }
  unsigned char *runp = NULL;
  uint32_t runn = 0;
  if (req == KVM_RUN_REQ && e->run) {
    pthread_mutex_lock(&e->run->mu);
    int n = run_patches(e->run, &runp);
    pthread_mutex_unlock(&e->run->mu);
    if (n < 0) {
      free(in);
      errno = ENOMEM;
      return -1;
    }
    runn = (uint32_t)n;
    flags |= IOCTL_RUN_PATCHES;
  }
  struct reply r;
  sigset_t mask;
  if (req == KVM_RUN_REQ) {
    run_waiting = 1;
    if (e->has_mask) {
      mask = e->runmask;
      run_wait_mask = &mask;
    }
  }
  int rc = call(OP_IOCTL, e->sim, flags, req, (uint64_t)arg, (flags & (IOCTL_HAS_INPUT | IOCTL_INPUT_ZEROED)) ? cap : 0,
                (flags & IOCTL_HAS_INPUT) ? in : NULL, (flags & IOCTL_HAS_INPUT) ? cap : 0, runp, runn, &r);
  run_waiting = 0;
  run_wait_mask = NULL;
  if (rc == 0 && r.err == 0 && req == KVM_SET_SIGNAL_MASK_REQ && (flags & IOCTL_HAS_INPUT) && cap >= 4) {
    /* kvm_vcpu_ioctl_set_sigmask: len 0 (or a NULL argument) removes the mask; else the sigset (8 bytes) */
    uint32_t n = get32(in);
    pthread_mutex_lock(&lock);
    e->has_mask = n != 0 && cap >= 4 + 8;
    sigemptyset(&e->runmask);
    if (e->has_mask) memcpy(&e->runmask, in + 4, 8);
    pthread_mutex_unlock(&lock);
  } else if (rc == 0 && r.err == 0 && req == KVM_SET_SIGNAL_MASK_REQ && arg == 0) {
    e->has_mask = 0;
  }
  if (rc == 0 && r.err == 0 && req == KVM_IRQFD_REQ) relay_irqfd_done(in, irqfd_relay);
  free(in);
  if (rc < 0) return -1;
  int err = r.err;
  int64_t result = r.result;
  if (r.out_len > 0) {
    if (r.out_len > cap) err = EIO;
    else if (write_self((void *)arg, r.body, r.out_len) < 0 && err == 0) err = EFAULT;
  }
  /* kvm_run patches: {u32 offset, u32 length, bytes}… after the out bytes and the message */
  if (e->run) {
    uint32_t p = r.out_len + r.msg_len;
    pthread_mutex_lock(&e->run->mu);
    while (p + 8 <= r.body_len) {
      uint32_t off = get32(r.body + p), n = get32(r.body + p + 4);
      p += 8;
      if (p + n > r.body_len || (uint64_t)off + n > e->run->size) break;
      memcpy(e->run->view + off, r.body + p, n);
      memcpy(e->run->shadow + off, r.body + p, n);
      p += n;
    }
    pthread_mutex_unlock(&e->run->mu);
  }
  uint32_t kind = r.fd_kind, msize = r.mmap_size;
  free(r.body);
  if (err) {
    errno = err;
    return -1;
  }
  if (kind != KIND_NONE) {
    /* A new KVM fd (KVM_CREATE_VM, KVM_CREATE_VCPU, …): anon_inode_getfd(…, O_RDWR | O_CLOEXEC). */
    int fd = install((int)result, (int)kind, msize, 1);
    if (fd < 0) {
      int e2 = errno;
      sim_close((int)result);
      errno = e2;
      return -1;
    }
    return fd;
  }
  return (int)result;
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  ensure_init();
  struct fd_entry *e = entry(fd);
  if (e == NULL) return real_ioctl(fd, request, arg);
  /* The kernel's ioctl takes an unsigned int: QEMU passes requests sign-extended to 64 bits. */
  return vac_ioctl(e, (uint32_t)request, arg);
}

/* ---- mmap ---------------------------------------------------------------------------------------------- */

static void *vac_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, struct fd_entry *e) {
  if (e->stale) {
    errno = EIO;
    return MAP_FAILED;
  }
  struct reply r;
  if (call(OP_MMAP, e->sim, 0, (uint64_t)len, (uint64_t)off, (uint64_t)(uint32_t)prot, NULL, 0, NULL, 0, &r) < 0)
    return MAP_FAILED;
  free(r.body);
  if (r.err) {
    errno = r.err;
    return MAP_FAILED;
  }
  uint64_t sim_addr = (uint64_t)r.result;
  void *p = real_mmap(addr, len, prot, flags, fd, off);
  if (p == MAP_FAILED) {
    int e2 = errno;
    if (call(OP_MUNMAP, 0, 0, sim_addr, (uint64_t)len, 0, NULL, 0, NULL, 0, &r) == 0) free(r.body);
    errno = e2;
    return MAP_FAILED;
  }
  pthread_mutex_lock(&lock);
  for (int i = 0; i < MAX_MAPS; i++) {
    if (maps[i].addr == NULL) {
      maps[i].addr = p;
      maps[i].len = len;
      maps[i].sim_addr = sim_addr;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return p;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  ensure_init();
  struct fd_entry *e = (flags & MAP_ANONYMOUS) ? NULL : entry(fd);
  if (e == NULL) return real_mmap(addr, len, prot, flags, fd, off);
  return vac_mmap(addr, len, prot, flags, fd, off, e);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) { return mmap(addr, len, prot, flags, fd, off); }

int munmap(void *addr, size_t len) {
  ensure_init();
  uint64_t sim_addr = 0;
  size_t sim_len = 0;
  int found = 0;
  if (addr != NULL) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_MAPS; i++) {
      if (maps[i].addr == addr && maps[i].len == len) {
        sim_addr = maps[i].sim_addr;
        sim_len = maps[i].len;
        maps[i].addr = NULL;
        found = 1;
        break;
      }
    }
    pthread_mutex_unlock(&lock);
  }
  int rc = real_munmap(addr, len);
  if (found && !forked_child) {
    struct reply r;
    if (call(OP_MUNMAP, 0, 0, sim_addr, (uint64_t)sim_len, 0, NULL, 0, NULL, 0, &r) == 0) free(r.body);
  }
  return rc;
}

/* ---- close and dup --------------------------------------------------------------------------------------- */

int close(int fd) {
  ensure_init();
  struct fd_entry *e = entry(fd);
  if (e == NULL) {
    int rid = relay_unname(fd);
    int rc = real_close(fd);
    if (rid >= 0) relay_check_release(rid);
    return rc;
  }
  int sim = e->sim, stale = e->stale;
  forget(fd);
  int rc = real_close(fd);
  if (!stale) sim_close(sim);
  return rc;
}

int close_range(unsigned int first, unsigned int last, int flags) {
  ensure_init();
  int unnamed[64], nun = 0;
  if (!(flags & CLOSE_RANGE_CLOEXEC)) {
    for (unsigned int fd = first; fd <= last && fd < VAC_MAX_FD; fd++) {
      int rid = relay_unname((int)fd);
      if (rid >= 0 && nun < 64) unnamed[nun++] = rid;
    }
    for (unsigned int fd = first; fd <= last && fd < VAC_MAX_FD; fd++) {
      struct fd_entry *e = entry((int)fd);
      if (e == NULL) continue;
      int sim = e->sim, stale = e->stale;
      forget((int)fd);
      if (!stale) sim_close(sim);
    }
  }
  int rc = real_close_range ? real_close_range(first, last, flags) : (int)syscall(SYS_close_range, first, last, flags);
  for (int i = 0; i < nun; i++) relay_check_release(unnamed[i]);
  return rc;
}

int dup(int fd) {
  ensure_init();
  struct fd_entry *e = entry(fd);
  int n = real_dup(fd);
  if (e == NULL || n < 0) return n;
  if (n >= VAC_MAX_FD) {
    real_close(n);
    errno = EMFILE;
    return -1;
  }
  struct fd_entry copy = *e;
  return adopt_dup(&copy, n);
}

static int vac_dup_to(int oldfd, int newfd, int flags, int three) {
  struct fd_entry *e = entry(oldfd);
  struct fd_entry *target = entry(newfd);
  /* newfd may have named a relay's eventfd: dup2 closes it */
  int rid = oldfd == newfd ? -1 : relay_unname(newfd);
  if (oldfd == newfd || (e == NULL && target == NULL)) {
    int n = three ? real_dup3(oldfd, newfd, flags) : real_dup2(oldfd, newfd);
    if (rid >= 0) relay_check_release(rid);
    return n;
  }
  struct fd_entry copy;
  if (e) copy = *e;
  int tsim = target ? target->sim : 0, tstale = target ? target->stale : 0;
  int n = three ? real_dup3(oldfd, newfd, flags) : real_dup2(oldfd, newfd);
  if (rid >= 0) relay_check_release(rid);
  if (n < 0) return n;
  if (target) {
    /* dup2 closed the KVM fd that was at newfd */
    forget(newfd);
    if (!tstale) sim_close(tsim);
  }
  if (e == NULL) return n;
  return adopt_dup(&copy, n);
}

int dup2(int oldfd, int newfd) {
  ensure_init();
  return vac_dup_to(oldfd, newfd, 0, 0);
}

int dup3(int oldfd, int newfd, int flags) {
  ensure_init();
  return vac_dup_to(oldfd, newfd, flags, 1);
}

static int vac_fcntl(int fd, int cmd, unsigned long arg) {
  struct fd_entry *e = entry(fd);
  if (e == NULL || (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC)) return real_fcntl(fd, cmd, arg);
  struct fd_entry copy = *e;
  int n = real_fcntl(fd, cmd, arg);
  if (n < 0) return n;
  if (n >= VAC_MAX_FD) {
    real_close(n);
    errno = EMFILE;
    return -1;
  }
  return adopt_dup(&copy, n);
}

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  ensure_init();
  return vac_fcntl(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  ensure_init();
  return vac_fcntl(fd, cmd, arg);
}
