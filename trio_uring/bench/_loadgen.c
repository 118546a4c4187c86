/* trio_uring load generator: one process, one thread, epoll, non-blocking sockets.
 *
 *   loadgen echo --port P [--host 127.0.0.1] [--conns N] [--size M]
 *                [--warmup S] [--duration S] [--messages K] [--cpu C]
 *                [--stat-pid PID] [--ctl-fd FD --ack-fd FD]
 *   loadgen sink --port P [--size CHUNK] [--warmup S] [--duration S] ...
 *   loadgen conn --port P [--conns N] [--warmup S] [--duration S] [--messages K] ...
 *   loadgen req --port P [--conns N] --size REPLY [--warmup S] [--duration S] ...
 *
 * echo: N connections, each a closed loop: send M bytes, read M bytes back,
 *       record the round trip, send again.  Prints one JSON object on stdout:
 *       messages and msgs/s in the measured window, p50/p90/p99/max round trip.
 * sink: one connection that reads everything the server sends; reports bytes/s
 *       (and "messages" = bytes / CHUNK).
 * conn: N clients, each a closed loop of short connections: connect, send one
 *       small HTTP/1.0 request, read the response to EOF, close, connect again.
 *       "messages" = connections completed (msgs/s = connections/s); the round
 *       trip is connect to EOF; "bytes" = response bytes; "errors" counts
 *       connections that failed (refused, reset) and were retried.  --size is
 *       ignored.
 * req:  keep-alive requests: N connections, each a closed loop like echo, but
 *       what it sends is one small HTTP/1.1 request and what it waits for is a
 *       reply of exactly --size bytes (the server's whole response); then the
 *       next request on the same connection.  "messages" = requests answered;
 *       same JSON as echo.
 *
 * The measured window starts after --warmup seconds.  At its edges the
 * generator reads utime+stime of --stat-pid from /proc (so the server's CPU
 * time covers exactly the window) and, with --ctl-fd/--ack-fd, writes
 * "enable"/"disable" to a `perf stat --control` fifo (syscall counting over
 * exactly the window).  Its own CPU use is reported as client_cpu so a run
 * where the generator was the bottleneck can be spotted.
 *
 * It ships inside the package; trio_uring._bench compiles it on first use.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    size_t sent;     /* bytes of the current message written */
    size_t got;      /* bytes of the current echo read */
    uint64_t t0;     /* when the current message was first written */
    int want_out;    /* EPOLLOUT armed */
} conn_t;

static const char *host = "127.0.0.1";
static int port = 0, nconns = 1, cpu = -1, stat_pid = 0, ctl_fd = -1, ack_fd = -1;
static size_t msize = 64;
static double warmup = 0.5, duration = 2.0;
static long long max_messages = 0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* utime+stime of a process (all its threads) in clock ticks, or -1; *stime gets stime. */
static long long proc_ticks(int pid, long long *stime) {
    char path[64], buf[4096];
    if (pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    *stime = (long long)st;
    return (long long)(ut + st);
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void perf_ctl(const char *cmd) {
    char ack[16];
    if (ctl_fd < 0) return;
    if (write(ctl_fd, cmd, strlen(cmd)) < 0) die("perf control write");
    if (ack_fd >= 0 && read(ack_fd, ack, sizeof ack) < 0) die("perf control ack");
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_one(void) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", host);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    for (int attempt = 0;; attempt++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) break;
        if (errno != ECONNREFUSED || attempt > 200) die("connect");
        usleep(10000); /* server not listening yet */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Window bookkeeping shared by both modes. */
typedef struct {
    uint64_t start, end;
    long long ticks0, ticks1, sys0, sys1;
    double cpu0, cpu1;
} window_t;

static void window_open(window_t *w) {
    perf_ctl("enable\n");
    w->ticks0 = proc_ticks(stat_pid, &w->sys0);
    w->cpu0 = self_cpu();
    w->start = now_ns();
}

static void window_close(window_t *w) {
    w->end = now_ns();
    w->ticks1 = proc_ticks(stat_pid, &w->sys1);
    w->cpu1 = self_cpu();
    perf_ctl("disable\n");
}

static void print_common(const window_t *w, long long messages, long long bytes) {
    double secs = (double)(w->end - w->start) / 1e9;
    long hz = sysconf(_SC_CLK_TCK);
    printf("\"elapsed\": %.6f, \"messages\": %lld, \"bytes\": %lld, \"msgs_per_s\": %.1f, "
           "\"bytes_per_s\": %.1f, \"client_cpu\": %.4f",
           secs, messages, bytes, messages / secs, bytes / secs, (w->cpu1 - w->cpu0) / secs);
    if (w->ticks0 >= 0 && w->ticks1 >= 0)
        printf(", \"server_cpu_s\": %.4f, \"server_sys_s\": %.4f",
               (double)(w->ticks1 - w->ticks0) / (double)hz, (double)(w->sys1 - w->sys0) / (double)hz);
}

/* echo and req: every connection sends `out` (outlen bytes) and waits for inlen bytes. */
static int run_echo(const char *mode, const char *payload, size_t outlen, size_t inlen) {
    conn_t *c = calloc((size_t)nconns, sizeof *c);
    char *out = malloc(outlen), *in = malloc(inlen);
    size_t cap = 1 << 20, nlat = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    if (!c || !out || !in || !lat) die("malloc");
    if (payload) memcpy(out, payload, outlen);
    else memset(out, 'x', outlen);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        c[i].fd = connect_one();
        fcntl(c[i].fd, F_SETFL, fcntl(c[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) < 0) die("epoll_ctl");
    }
    struct epoll_event *evs = calloc((size_t)nconns, sizeof *evs);
    uint64_t t_start = now_ns();
    uint64_t t_warm = t_start + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_warm + (uint64_t)(duration * 1e9);
    int measuring = 0;
    long long messages = 0;
    window_t w = {0};
    if (warmup <= 0) {
        window_open(&w);
        measuring = 1;
    }
    /* Start every connection's first message. */
    for (int i = 0; i < nconns; i++) {
        c[i].t0 = now_ns();
        ssize_t n = write(c[i].fd, out, outlen);
        if (n < 0 && errno != EAGAIN) die("write");
        c[i].sent = n > 0 ? (size_t)n : 0;
        if (c[i].sent < outlen) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_MOD, c[i].fd, &ev);
            c[i].want_out = 1;
        }
    }
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_warm) {
            window_open(&w);
            measuring = 1;
            messages = 0;
            nlat = 0;
        }
        if (measuring && (t >= t_end || (max_messages && messages >= max_messages))) break;
        uint64_t edge = measuring ? t_end : t_warm;
        int timeout_ms = (int)((edge - t) / 1000000ull) + 1;
        int n = epoll_wait(ep, evs, nconns, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            conn_t *cc = &c[evs[k].data.u32];
            if (evs[k].events & EPOLLOUT && cc->sent < outlen) {
                ssize_t m = write(cc->fd, out + cc->sent, outlen - cc->sent);
                if (m < 0 && errno != EAGAIN) die("write");
                if (m > 0) cc->sent += (size_t)m;
            }
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t m = read(cc->fd, in, inlen - cc->got);
                if (m == 0) {
                    fprintf(stderr, "loadgen: server closed a connection\n");
                    return 3;
                }
                if (m < 0 && errno != EAGAIN) die("read");
                if (m > 0) cc->got += (size_t)m;
                if (cc->got == inlen) {
                    uint64_t t1 = now_ns();
                    if (measuring) {
                        messages++;
                        if (nlat == cap) {
                            cap *= 2;
                            lat = realloc(lat, cap * sizeof *lat);
                            if (!lat) die("realloc");
                        }
                        lat[nlat++] = t1 - cc->t0;
                    }
                    cc->got = 0;
                    cc->t0 = t1;
                    ssize_t s = write(cc->fd, out, outlen);
                    if (s < 0 && errno != EAGAIN) die("write");
                    cc->sent = s > 0 ? (size_t)s : 0;
                }
            }
            int want = cc->sent < outlen;
            if (want != cc->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                                         .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, cc->fd, &ev);
                cc->want_out = want;
            }
        }
    }
    window_close(&w);
    qsort(lat, nlat, sizeof *lat, cmp_u64);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] / 1000.0 : 0.0)
    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %zu, ", mode, nconns, inlen);
    print_common(&w, messages, messages * (long long)inlen);
    printf(", \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}\n", PCT(0.50),
           PCT(0.90), PCT(0.99), nlat ? lat[nlat - 1] / 1000.0 : 0.0);
    fflush(stdout);
    for (int i = 0; i < nconns; i++) close(c[i].fd);
    return 0;
}

static int run_sink(void) {
    size_t bufsize = 4 << 20;
    char *buf = malloc(bufsize);
    if (!buf) die("malloc");
    int fd = connect_one();
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000}; /* so a stalled server still ends */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint64_t t_warm = now_ns() + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_warm + (uint64_t)(duration * 1e9);
    int measuring = 0;
    long long bytes = 0;
    window_t w = {0};
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_warm) {
            window_open(&w);
            measuring = 1;
            bytes = 0;
        }
        if (measuring && t >= t_end) break;
        ssize_t n = read(fd, buf, bufsize);
        if (n == 0) {
            fprintf(stderr, "loadgen: server closed the connection\n");
            return 3;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            die("read");
        }
        bytes += n;
    }
    window_close(&w);
    printf("{\"mode\": \"sink\", \"conns\": 1, \"size\": %zu, ", msize);
    print_common(&w, bytes / (long long)msize, bytes);
    printf("}\n");
    fflush(stdout);
    close(fd);
    return 0;
}

/* ------------------------------------------------------------- conn mode */
static const char http_request[] = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
/* req mode: HTTP/1.1 keeps the connection open. */
static const char http_request_keepalive[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

enum { C_CONNECTING = 1, C_READING = 2 };

typedef struct {
    int fd;
    int state;
    uint64_t t0;
    size_t got;
} sconn_t;

static struct sockaddr_in conn_sa;
static long long conn_errors = 0;

/* Start client i's next connection; 0 on success, -1 (and errno) if the socket
 * could not even be started (counted as an error, retried on the next pass). */
static int sconn_start(int ep, sconn_t *c, uint32_t i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->got = 0;
    c->t0 = now_ns();
    struct epoll_event ev = {.data.u32 = i};
    if (connect(fd, (struct sockaddr *)&conn_sa, sizeof conn_sa) == 0) {
        if (write(fd, http_request, sizeof http_request - 1) != (ssize_t)(sizeof http_request - 1)) {
            close(fd);
            c->fd = -1;
            return -1;
        }
        c->state = C_READING;
        ev.events = EPOLLIN;
    } else if (errno == EINPROGRESS) {
        c->state = C_CONNECTING;
        ev.events = EPOLLOUT;
    } else {
        close(fd);
        c->fd = -1;
        return -1;
    }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return 0;
}

static int run_conn(void) {
    sconn_t *c = calloc((size_t)nconns, sizeof *c);
    size_t cap = 1 << 20, nlat = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    char in[65536];
    if (!c || !lat) die("malloc");
    memset(&conn_sa, 0, sizeof conn_sa);
    conn_sa.sin_family = AF_INET;
    conn_sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &conn_sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", host);
        exit(2);
    }
    /* Wait until the server listens (one blocking probe connection). */
    close(connect_one());
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event *evs = calloc((size_t)nconns, sizeof *evs);
    if (!evs) die("calloc");
    uint64_t t_warm = now_ns() + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_warm + (uint64_t)(duration * 1e9);
    int measuring = 0;
    long long done = 0, bytes = 0, errors_total = 0, ok_total = 0;
    window_t w = {0};
    if (warmup <= 0) {
        window_open(&w);
        measuring = 1;
    }
    for (int i = 0; i < nconns; i++) {
        c[i].fd = -1;
        if (sconn_start(ep, &c[i], (uint32_t)i) < 0) conn_errors++;
    }
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= t_warm) {
            window_open(&w);
            measuring = 1;
            done = 0;
            bytes = 0;
            nlat = 0;
            conn_errors = 0;
        }
        if (measuring && (t >= t_end || (max_messages && done >= max_messages))) break;
        if (errors_total > 1000 && ok_total == 0) {
            fprintf(stderr, "loadgen: no connection succeeded (%lld failed)\n", errors_total);
            return 3;
        }
        /* Clients whose socket could not start: try again now. */
        for (int i = 0; i < nconns; i++)
            if (c[i].fd < 0 && sconn_start(ep, &c[i], (uint32_t)i) < 0) {
                conn_errors++;
                errors_total++;
            }
        uint64_t edge = measuring ? t_end : t_warm;
        int timeout_ms = (int)((edge - t) / 1000000ull) + 1;
        int n = epoll_wait(ep, evs, nconns, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            uint32_t i = evs[k].data.u32;
            sconn_t *cc = &c[i];
            int failed = 0, finished = 0;
            if (cc->state == C_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(cc->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 ||
                    write(cc->fd, http_request, sizeof http_request - 1) !=
                        (ssize_t)(sizeof http_request - 1)) {
                    failed = 1;
                } else {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
                    epoll_ctl(ep, EPOLL_CTL_MOD, cc->fd, &ev);
                    cc->state = C_READING;
                }
            } else {
                for (;;) {
                    ssize_t m = read(cc->fd, in, sizeof in);
                    if (m > 0) {
                        cc->got += (size_t)m;
                        continue;
                    }
                    if (m == 0) finished = 1;
                    else if (errno != EAGAIN && errno != EINTR) failed = 1;
                    break;
                }
            }
            if (finished && cc->got == 0) failed = 1; /* closed without an answer */
            if (failed || finished) {
                close(cc->fd); /* also leaves the epoll set */
                cc->fd = -1;
                if (failed) {
                    conn_errors++;
                    errors_total++;
                } else {
                    ok_total++;
                    if (measuring) {
                        uint64_t t1 = now_ns();
                        done++;
                        bytes += (long long)cc->got;
                        if (nlat == cap) {
                            cap *= 2;
                            lat = realloc(lat, cap * sizeof *lat);
                            if (!lat) die("realloc");
                        }
                        lat[nlat++] = t1 - cc->t0;
                    }
                }
                if (sconn_start(ep, cc, i) < 0) {
                    conn_errors++;
                    errors_total++;
                }
            }
        }
    }
    window_close(&w);
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    printf("{\"mode\": \"conn\", \"conns\": %d, \"size\": %zu, ", nconns, sizeof http_request - 1);
    print_common(&w, done, bytes);
    printf(", \"errors\": %lld, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}\n",
           conn_errors, PCT(0.50), PCT(0.90), PCT(0.99), nlat ? lat[nlat - 1] / 1000.0 : 0.0);
    fflush(stdout);
    for (int i = 0; i < nconns; i++)
        if (c[i].fd >= 0) close(c[i].fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen echo|sink|conn|req --port P [options]\n");
        return 2;
    }
    const char *mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--conns")) nconns = atoi(v);
        else if (!strcmp(k, "--size")) msize = (size_t)atoll(v);
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--messages")) max_messages = atoll(v);
        else if (!strcmp(k, "--cpu")) cpu = atoi(v);
        else if (!strcmp(k, "--stat-pid")) stat_pid = atoi(v);
        else if (!strcmp(k, "--ctl-fd")) ctl_fd = atoi(v);
        else if (!strcmp(k, "--ack-fd")) ack_fd = atoi(v);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            return 2;
        }
    }
    if (port <= 0 || nconns <= 0 || msize == 0) {
        fprintf(stderr, "loadgen: need --port, --conns > 0, --size > 0\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set); /* best effort */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!strcmp(mode, "echo")) return run_echo("echo", NULL, msize, msize);
    if (!strcmp(mode, "req"))
        return run_echo("req", http_request_keepalive, sizeof http_request_keepalive - 1, msize);
    if (!strcmp(mode, "sink")) return run_sink();
    if (!strcmp(mode, "conn")) return run_conn();
    fprintf(stderr, "loadgen: unknown mode %s\n", mode);
    return 2;
}
