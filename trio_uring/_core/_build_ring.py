"""cffi (API mode) builder for the small C part that drives the ring.

The C part owns ring memory, memory barriers, filling SQEs and reaping CQEs in
batches.  Every policy decision (what to submit, whom to wake) stays in Python.
The kernel structures are declared here rather than taken from
``<linux/io_uring.h>``: the system header may be older than the running kernel,
and the project must build where no header (and no liburing) is installed.
"""

from __future__ import annotations

import os

from cffi import FFI

CDEF = r"""
typedef struct {
    int fd;
    unsigned features;
    unsigned setup_flags;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned long long sqes_prepared;
    unsigned long long enter_calls;
    unsigned long long cqes_reaped;
    ...;
} tu_ring;

int tu_setup(tu_ring *r, unsigned entries, unsigned cq_entries, unsigned flags);
void tu_teardown(tu_ring *r);
void tu_forget(tu_ring *r);
int tu_disconnect(int fd);
int tu_hung_up(int fd);
int tu_probe(tu_ring *r, unsigned char *supported, int n);
int tu_register(tu_ring *r, unsigned opcode, void *arg, unsigned nr_args);
long long tu_prep_u64(tu_ring *r, unsigned char opcode, unsigned char sqe_flags,
                      int fd, unsigned long long off, unsigned long long addr,
                      unsigned len, unsigned op_flags, unsigned long long user_data);
long long tu_prep_timeout(tu_ring *r, unsigned char opcode, unsigned char sqe_flags,
                          long long nanoseconds, unsigned count, unsigned timeout_flags,
                          unsigned long long user_data);
int tu_reserve(tu_ring *r, unsigned n);
unsigned tu_unsubmitted(tu_ring *r);
int tu_submit(tu_ring *r);
int tu_wait(tu_ring *r, int submit, unsigned min_complete, long long timeout_ns);
unsigned tu_reap(tu_ring *r, char *out, unsigned max);
unsigned tu_cq_ready(tu_ring *r);
unsigned tu_sq_flags(tu_ring *r);
"""

#: A provided-buffer ring's C-side state: the kernel reads entries [head, tail) of the
#: ring at ``ring``; buffer ``bid`` is ``size`` bytes at ``base + bid * size``.  One
#: definition, used by both the cdef and the C source.
PBUF_STRUCT = r"""
typedef struct {
    uintptr_t ring;
    unsigned long long base;
    unsigned mask;
    unsigned size;
    unsigned tail;
} tu_pbuf;
"""

#: The functions the ring extension calls too (``tu_prep``, ``tu_nop_if_unsubmitted``,
#: ``tu_pbuf_give``): declared once, in ``_ring_api.h``, which ``_ringext.c`` includes.
RING_API_H = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ring_api.h")
with open(RING_API_H, encoding="utf-8") as _f:
    RING_API = _f.read()

CDEF += PBUF_STRUCT + RING_API

C_SOURCE = r"""
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

/* ---- kernel ABI (include/uapi/linux/io_uring.h), declared here on purpose ---- */
struct tu_sqe {
    uint8_t opcode; uint8_t flags; uint16_t ioprio; int32_t fd;
    uint64_t off; uint64_t addr; uint32_t len; uint32_t op_flags;
    uint64_t user_data; uint16_t buf_index; uint16_t personality;
    uint32_t file_index; uint64_t addr3; uint64_t pad2;
};
struct tu_cqe { uint64_t user_data; int32_t res; uint32_t flags; };
struct tu_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};
struct tu_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};
struct tu_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd;
    uint32_t resv[3];
    struct tu_sqring_offsets sq_off;
    struct tu_cqring_offsets cq_off;
};
struct tu_kts { int64_t tv_sec; int64_t tv_nsec; };
struct tu_getevents_arg { uint64_t sigmask; uint32_t sigmask_sz; uint32_t min_wait_usec; uint64_t ts; };
struct tu_probe_op { uint8_t op; uint8_t resv; uint16_t flags; uint32_t resv2; };
struct tu_probe { uint8_t last_op; uint8_t ops_len; uint16_t resv; uint32_t resv2[3]; struct tu_probe_op ops[256]; };

_Static_assert(sizeof(struct tu_sqe) == 64, "sqe");
_Static_assert(sizeof(struct tu_cqe) == 16, "cqe");
_Static_assert(sizeof(struct tu_params) == 120, "params");

#define TU_OFF_SQ_RING 0ULL
#define TU_OFF_CQ_RING 0x8000000ULL
#define TU_OFF_SQES 0x10000000ULL
#define TU_FEAT_SINGLE_MMAP (1U << 0)
#define TU_ENTER_GETEVENTS (1U << 0)
#define TU_ENTER_EXT_ARG (1U << 3)
#define TU_OP_NOP 0
#define TU_REGISTER_PROBE 8

typedef struct {
    int fd;
    unsigned features;
    unsigned setup_flags;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned long long sqes_prepared;
    unsigned long long enter_calls;
    unsigned long long cqes_reaped;
    /* private */
    void *sq_map; size_t sq_map_len;
    void *cq_map; size_t cq_map_len;
    struct tu_sqe *sqes; size_t sqes_len;
    unsigned *sq_khead, *sq_ktail, *sq_kflags, *sq_array, sq_mask;
    unsigned *cq_khead, *cq_ktail, cq_mask;
    struct tu_cqe *cqes;
    unsigned sq_tail;              /* local tail: SQEs written, maybe not yet published */
    struct tu_kts *timespecs;      /* one per SQ slot; the kernel reads it at submission */
} tu_ring;

static long sys_setup(unsigned entries, struct tu_params *p) {
    return syscall(__NR_io_uring_setup, entries, p);
}
static long sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                      void *arg, size_t argsz) {
    return syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
}

void tu_teardown(tu_ring *r) {
    if (r->sqes) munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map) munmap(r->sq_map, r->sq_map_len);
    if (r->fd >= 0) close(r->fd);
    free(r->timespecs);
    r->sqes = NULL; r->cq_map = NULL; r->sq_map = NULL; r->timespecs = NULL;
    r->fd = -1;
    r->sq_khead = NULL;
}

int tu_setup(tu_ring *r, unsigned entries, unsigned cq_entries, unsigned flags) {
    struct tu_params p;
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    memset(&p, 0, sizeof(p));
    p.flags = flags;
    p.cq_entries = cq_entries;
    long fd = sys_setup(entries, &p);
    if (fd < 0) return -errno;
    r->fd = (int)fd;
    r->features = p.features;
    r->setup_flags = flags;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct tu_cqe);
    if (p.features & TU_FEAT_SINGLE_MMAP) {
        if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     r->fd, TU_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) { int e = errno; r->sq_map = NULL; tu_teardown(r); return -e; }
    if (p.features & TU_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         r->fd, TU_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) { int e = errno; r->cq_map = NULL; tu_teardown(r); return -e; }
    }
    r->sqes_len = p.sq_entries * sizeof(struct tu_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->fd, TU_OFF_SQES);
    if (r->sqes == MAP_FAILED) { int e = errno; r->sqes = NULL; tu_teardown(r); return -e; }
    /* A forked child must not share (and corrupt) the parent's ring. */
    madvise(r->sq_map, r->sq_map_len, MADV_DONTFORK);
    if (r->cq_map != r->sq_map) madvise(r->cq_map, r->cq_map_len, MADV_DONTFORK);
    madvise(r->sqes, r->sqes_len, MADV_DONTFORK);

    char *sq = (char *)r->sq_map, *cq = (char *)r->cq_map;
    r->sq_khead = (unsigned *)(sq + p.sq_off.head);
    r->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_kflags = (unsigned *)(sq + p.sq_off.flags);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    r->cq_khead = (unsigned *)(cq + p.cq_off.head);
    r->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct tu_cqe *)(cq + p.cq_off.cqes);
    r->sq_tail = *r->sq_ktail;
    r->timespecs = calloc(p.sq_entries, sizeof(struct tu_kts));
    if (!r->timespecs) { tu_teardown(r); return -ENOMEM; }
    return 0;
}

int tu_probe(tu_ring *r, unsigned char *supported, int n) {
    struct tu_probe *p = calloc(1, sizeof(struct tu_probe));
    if (!p) return -ENOMEM;
    long ret = syscall(__NR_io_uring_register, r->fd, TU_REGISTER_PROBE, p, 256);
    if (ret < 0) { int e = errno; free(p); return -e; }
    int last = p->last_op;
    for (int i = 0; i < n; i++) supported[i] = 0;
    for (int i = 0; i < p->ops_len && i < 256; i++) {
        if (p->ops[i].op < n && (p->ops[i].flags & 1)) supported[p->ops[i].op] = 1;
    }
    free(p);
    return last;
}

int tu_register(tu_ring *r, unsigned opcode, void *arg, unsigned nr_args) {
    long ret = syscall(__NR_io_uring_register, r->fd, opcode, arg, nr_args);
    return ret < 0 ? -errno : (int)ret;
}

/* After fork() the child has none of the ring's mappings (MADV_DONTFORK): close its
   copy of the fd and make every call below fail instead of touching unmapped memory.
   Never munmap here: those addresses may belong to something else in the child. */
void tu_forget(tu_ring *r) {
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->sq_khead = NULL;
}

/* connect(fd, AF_UNSPEC): a TCP socket drops its send queue and resets the
   connection (tcp_disconnect), so the kernel lets go of zero-copy pages at once. */
int tu_disconnect(int fd) {
    struct sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNSPEC;
    return connect(fd, &sa, sizeof(sa)) < 0 ? -errno : 0;
}

/* Whether fd's socket has an error pending or is closed for good (POLLERR or
   POLLHUP right now, without waiting): a multishot receive that drained a
   backlog may not be woken again for a reset that came in behind it. */
int tu_hung_up(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) < 0) return 0;
    return (p.revents & (POLLERR | POLLHUP)) != 0;
}

unsigned tu_unsubmitted(tu_ring *r) {
    if (!r->sq_khead) return 0;
    return r->sq_tail - __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
}

unsigned tu_sq_flags(tu_ring *r) {
    if (!r->sq_khead) return 0;
    return __atomic_load_n(r->sq_kflags, __ATOMIC_RELAXED);
}

int tu_submit(tu_ring *r) {
    unsigned n = tu_unsubmitted(r);
    if (n == 0) return 0;
    r->enter_calls++;
    long ret = sys_enter(r->fd, n, 0, 0, NULL, 0);
    return ret < 0 ? -errno : (int)ret;
}

/* Get a free SQE slot, submitting what is queued if the SQ is full. */
static struct tu_sqe *get_sqe(tu_ring *r, unsigned *pos, int *err) {
    if (!r->sq_khead) { *err = -EBADF; return NULL; }
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    if (r->sq_tail - head >= r->sq_entries) {
        int ret = tu_submit(r);
        if (ret < 0) { *err = ret; return NULL; }
        head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
        if (r->sq_tail - head >= r->sq_entries) { *err = -EBUSY; return NULL; }
    }
    *pos = r->sq_tail;
    return &r->sqes[r->sq_tail & r->sq_mask];
}

/* Make sure n SQEs fit without a submission in between (for linked pairs). */
int tu_reserve(tu_ring *r, unsigned n) {
    if (!r->sq_khead) return -EBADF;
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    if (r->sq_entries - (r->sq_tail - head) >= n) return 0;
    int ret = tu_submit(r);
    if (ret < 0) return ret;
    head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    return (r->sq_entries - (r->sq_tail - head) >= n) ? 0 : -EBUSY;
}

static long long publish(tu_ring *r, unsigned pos) {
    r->sq_array[pos & r->sq_mask] = pos & r->sq_mask;
    r->sq_tail = pos + 1;
    r->sqes_prepared++;
    __atomic_store_n(r->sq_ktail, r->sq_tail, __ATOMIC_RELEASE);
    return (long long)pos;
}

long long tu_prep(tu_ring *r, unsigned char opcode, unsigned char sqe_flags,
                  int fd, unsigned long long off, const void *addr,
                  unsigned len, unsigned op_flags, unsigned long long user_data,
                  unsigned short buf_index, unsigned file_index, unsigned short ioprio) {
    unsigned pos; int err = 0;
    struct tu_sqe *s = get_sqe(r, &pos, &err);
    if (!s) return err;
    memset(s, 0, sizeof(*s));
    s->opcode = opcode; s->flags = sqe_flags; s->ioprio = ioprio; s->fd = fd;
    s->off = off; s->addr = (uint64_t)(uintptr_t)addr; s->len = len; s->op_flags = op_flags;
    s->user_data = user_data; s->buf_index = buf_index; s->file_index = file_index;
    return publish(r, pos);
}

long long tu_prep_u64(tu_ring *r, unsigned char opcode, unsigned char sqe_flags,
                      int fd, unsigned long long off, unsigned long long addr,
                      unsigned len, unsigned op_flags, unsigned long long user_data) {
    unsigned pos; int err = 0;
    struct tu_sqe *s = get_sqe(r, &pos, &err);
    if (!s) return err;
    memset(s, 0, sizeof(*s));
    s->opcode = opcode; s->flags = sqe_flags; s->fd = fd;
    s->off = off; s->addr = addr; s->len = len; s->op_flags = op_flags;
    s->user_data = user_data;
    return publish(r, pos);
}

/* TIMEOUT / LINK_TIMEOUT: the timespec lives in a per-slot array, valid until the
   SQE is consumed (the kernel copies it while preparing the request). */
long long tu_prep_timeout(tu_ring *r, unsigned char opcode, unsigned char sqe_flags,
                          long long nanoseconds, unsigned count, unsigned timeout_flags,
                          unsigned long long user_data) {
    unsigned pos; int err = 0;
    struct tu_sqe *s = get_sqe(r, &pos, &err);
    if (!s) return err;
    struct tu_kts *ts = &r->timespecs[pos & r->sq_mask];
    if (nanoseconds < 0) nanoseconds = 0;
    ts->tv_sec = nanoseconds / 1000000000LL;
    ts->tv_nsec = nanoseconds % 1000000000LL;
    memset(s, 0, sizeof(*s));
    s->opcode = opcode; s->flags = sqe_flags; s->fd = -1;
    s->off = count; s->addr = (uint64_t)(uintptr_t)ts; s->len = 1; s->op_flags = timeout_flags;
    s->user_data = user_data;
    return publish(r, pos);
}

/* Turn a queued SQE into a NOP if the kernel has not consumed it yet and it is
   still the request `user_data` names.  The SQ positions are 32-bit counters: once
   they wrap, an old operation's position can name another operation's queued SQE,
   so the slot's user_data (unique until the request's final CQE) must match too.
   Only called from the thread that also submits, so nothing races with it. */
int tu_nop_if_unsubmitted(tu_ring *r, long long position, unsigned long long user_data) {
    if (!r->sq_khead) return 0;
    unsigned pos = (unsigned)position;
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    if ((int)(pos - head) < 0 || (int)(r->sq_tail - pos) <= 0) return 0;
    struct tu_sqe *s = &r->sqes[pos & r->sq_mask];
    if (s->user_data != user_data) return 0;
    memset(s, 0, sizeof(*s));
    s->opcode = TU_OP_NOP;
    s->fd = -1;
    s->user_data = 0;
    return 1;
}

/* Submit what is queued (if submit) and wait for min_complete CQEs or the timeout.
   The GIL is released by cffi around this call. */
int tu_wait(tu_ring *r, int submit, unsigned min_complete, long long timeout_ns) {
    struct tu_kts ts;
    struct tu_getevents_arg arg;
    unsigned to_submit = submit ? tu_unsubmitted(r) : 0;
    if (timeout_ns < 0) timeout_ns = 0;
    ts.tv_sec = timeout_ns / 1000000000LL;
    ts.tv_nsec = timeout_ns % 1000000000LL;
    memset(&arg, 0, sizeof(arg));
    arg.sigmask = 0;
    arg.sigmask_sz = _NSIG / 8;
    arg.ts = (uint64_t)(uintptr_t)&ts;
    r->enter_calls++;
    long ret = sys_enter(r->fd, to_submit, min_complete, TU_ENTER_GETEVENTS | TU_ENTER_EXT_ARG,
                         &arg, sizeof(arg));
    return ret < 0 ? -errno : (int)ret;
}

/* Give buffer `bid` (back) to the kernel: write entry (tail & mask) = {addr, len, bid},
 * then publish tail + 1 with a release store (the kernel reads the tail with an
 * acquire load).  struct io_uring_buf is {u64 addr; u32 len; u16 bid; u16 resv}; the
 * ring's u16 tail aliases bufs[0].resv (offset 14), which this never writes otherwise. */
void tu_pbuf_give(tu_pbuf *pb, unsigned short bid) {
    unsigned long long addr = pb->base + (unsigned long long)bid * pb->size;
    unsigned len = pb->size;
    char *e = (char *)pb->ring + (size_t)(pb->tail & pb->mask) * 16;
    memcpy(e, &addr, 8);
    memcpy(e + 8, &len, 4);
    memcpy(e + 12, &bid, 2);
    pb->tail++;
    __atomic_store_n((unsigned short *)((char *)pb->ring + 14), (unsigned short)pb->tail,
                     __ATOMIC_RELEASE);
}

unsigned tu_cq_ready(tu_ring *r) {
    if (!r->sq_khead) return 0;
    return __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE) - *r->cq_khead;
}

/* Copy up to max CQEs (16 bytes each: u64 user_data, s32 res, u32 flags) into out. */
unsigned tu_reap(tu_ring *r, char *out, unsigned max) {
    if (!r->sq_khead) return 0;
    unsigned head = *r->cq_khead;
    unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
    unsigned n = tail - head;
    if (n > max) n = max;
    for (unsigned i = 0; i < n; i++) {
        memcpy(out + (size_t)i * 16, &r->cqes[(head + i) & r->cq_mask], 16);
    }
    __atomic_store_n(r->cq_khead, head + n, __ATOMIC_RELEASE);
    r->cqes_reaped += n;
    return n;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "trio_uring._core._ring_cffi",
    "#include <stdint.h>\n" + PBUF_STRUCT + C_SOURCE,
    extra_compile_args=["-O2", "-std=gnu11"],
)

if __name__ == "__main__":  # pragma: no cover
    ffibuilder.compile(verbose=True)
