/* Locks-mode ground truth for the blocking calls and the objects of I/O waits
 * (tests/cli/locks_user.rs, `every_blocking_call_is_a_wait_with_its_object`).
 *
 * The main thread runs one step after another; in each it blocks in one call (in a
 * function named after the step) until a helper thread releases it after ~150 ms:
 *   fifo_read        read() on a FIFO at argv[1]/the.fifo   (io, fd N -> its path)
 *   pipe_read        read() on a pipe whose read end reuses the FIFO's fd number
 *                    (io, fd N -> pipe: a reused descriptor gets its new path)
 *   socket_recv      recv() on a socketpair                  (io, fd N -> socket)
 *   pipe_write       write() to a full pipe                  (io, fd N -> pipe)
 *   socket_send      send() to a full socketpair             (io, fd N -> socket)
 *   socket_accept    accept() until a client connects       (io, fd N -> socket)
 *   socket_connect   connect() to a listener whose backlog is full (io, fd -> socket)
 *   futex_wait       syscall(SYS_futex, FUTEX_WAIT_PRIVATE)  (lock, the futex word)
 *   mutex_timedlock  pthread_mutex_timedlock, mutex held    (lock, the mutex)
 *   rwlock_timedwr   pthread_rwlock_timedwrlock, read-held   (lock, the rwlock)
 *   cond_timedwait   pthread_cond_timedwait                  (condition, the condvar)
 *   cond_clockwait   pthread_cond_clockwait                  (condition, the condvar)
 * stderr, per step: `step NAME SECONDS OBJECT` (the call's duration by the program's
 * own clock; the object as hwprof should name it). Exit status 0 when every call did
 * what it should. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RELEASE_MS 150

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ms_sleep(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void fail(const char *what) {
    perror(what);
    exit(1);
}

/* A helper thread: waits `RELEASE_MS`, then runs `fn(arg)`. */
struct later {
    void (*fn)(void *);
    void *arg;
    atomic_int *ready; /* set (by fn) when a helper has taken what it holds */
};
static void *later_main(void *p) {
    struct later *l = p;
    l->fn(l->arg);
    return NULL;
}
static pthread_t after(void (*fn)(void *), void *arg) {
    static struct later slots[16];
    static int n;
    struct later *l = &slots[n++ % 16];
    l->fn = fn;
    l->arg = arg;
    pthread_t t;
    if (pthread_create(&t, NULL, later_main, l)) fail("pthread_create");
    return t;
}
static void until_set(atomic_int *flag) {
    while (!atomic_load(flag)) ms_sleep(1);
}

static void report(const char *name, double t0, const char *object) {
    fprintf(stderr, "step %s %.6f %s\n", name, now_s() - t0, object);
}

/* ---- I/O on descriptors ---- */
static void write_byte_later(void *p) {
    ms_sleep(RELEASE_MS);
    if (write(*(int *)p, "x", 1) != 1) fail("write");
}

__attribute__((noinline)) static void fifo_read(const char *dir, int *fd_out) {
    char path[PATH_MAX], real[PATH_MAX], object[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/the.fifo", dir);
    unlink(path);
    if (mkfifo(path, 0600)) fail("mkfifo");
    int fd = open(path, O_RDWR); /* O_RDWR: open does not wait for a writer */
    if (fd < 0) fail("open fifo");
    if (!realpath(path, real)) fail("realpath");
    pthread_t t = after(write_byte_later, &fd);
    char c;
    double t0 = now_s();
    if (read(fd, &c, 1) != 1) fail("read fifo");
    snprintf(object, sizeof object, "fd %d → %s", fd, real);
    report("fifo_read", t0, object);
    pthread_join(t, NULL);
    close(fd);
    unlink(path);
    *fd_out = fd;
}

__attribute__((noinline)) static void pipe_read(int reused) {
    int p[2];
    char object[64];
    if (pipe(p)) fail("pipe");
    if (p[0] != reused) {
        fprintf(stderr, "the pipe's read end is fd %d, not the FIFO's %d\n", p[0], reused);
        exit(1);
    }
    pthread_t t = after(write_byte_later, &p[1]);
    char c;
    double t0 = now_s();
    if (read(p[0], &c, 1) != 1) fail("read pipe");
    snprintf(object, sizeof object, "fd %d → pipe", p[0]);
    report("pipe_read", t0, object);
    pthread_join(t, NULL);
    close(p[0]);
    close(p[1]);
}

__attribute__((noinline)) static void socket_recv(void) {
    int s[2];
    char object[64];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, s)) fail("socketpair");
    pthread_t t = after(write_byte_later, &s[1]);
    char c;
    double t0 = now_s();
    if (recv(s[0], &c, 1, 0) != 1) fail("recv");
    snprintf(object, sizeof object, "fd %d → socket", s[0]);
    report("socket_recv", t0, object);
    pthread_join(t, NULL);
    close(s[0]);
    close(s[1]);
}

/* Reads everything there is on fd (after the release time): room for the writer. */
static void drain_later(void *p) {
    int fd = *(int *)p;
    static char buf[1 << 16];
    ms_sleep(RELEASE_MS);
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

/* Fills fd until a write would block, then leaves it blocking. */
static void fill(int fd) {
    static char buf[4096];
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (write(fd, buf, sizeof buf) > 0) {
    }
    if (errno != EAGAIN) fail("fill");
    fcntl(fd, F_SETFL, flags);
}

__attribute__((noinline)) static void pipe_write(void) {
    int p[2];
    char object[64], buf[4096] = {0};
    if (pipe(p)) fail("pipe");
    fill(p[1]);
    pthread_t t = after(drain_later, &p[0]);
    double t0 = now_s();
    if (write(p[1], buf, sizeof buf) != sizeof buf) fail("write pipe");
    snprintf(object, sizeof object, "fd %d → pipe", p[1]);
    report("pipe_write", t0, object);
    pthread_join(t, NULL);
    close(p[0]);
    close(p[1]);
}

__attribute__((noinline)) static void socket_send(void) {
    int s[2];
    char object[64], buf[4096] = {0};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, s)) fail("socketpair");
    fill(s[0]);
    pthread_t t = after(drain_later, &s[1]);
    double t0 = now_s();
    if (send(s[0], buf, sizeof buf, 0) != sizeof buf) fail("send");
    snprintf(object, sizeof object, "fd %d → socket", s[0]);
    report("socket_send", t0, object);
    pthread_join(t, NULL);
    close(s[0]);
    close(s[1]);
}

static struct sockaddr_un listen_addr;

static int listener(const char *dir, const char *name, int backlog) {
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0) fail("socket");
    memset(&listen_addr, 0, sizeof listen_addr);
    listen_addr.sun_family = AF_UNIX;
    snprintf(listen_addr.sun_path, sizeof listen_addr.sun_path, "%s/%s", dir, name);
    unlink(listen_addr.sun_path);
    if (bind(l, (struct sockaddr *)&listen_addr, sizeof listen_addr)) fail("bind");
    if (listen(l, backlog)) fail("listen");
    return l;
}

static int client(void) {
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c < 0) fail("socket");
    if (connect(c, (struct sockaddr *)&listen_addr, sizeof listen_addr)) fail("connect");
    return c;
}

static int connected_later_fd = -1;
static void connect_later(void *p) {
    (void)p;
    ms_sleep(RELEASE_MS);
    connected_later_fd = client();
}

__attribute__((noinline)) static void socket_accept(const char *dir) {
    char object[64];
    int l = listener(dir, "accept.sock", 4);
    pthread_t t = after(connect_later, NULL);
    double t0 = now_s();
    int a = accept(l, NULL, NULL);
    if (a < 0) fail("accept");
    snprintf(object, sizeof object, "fd %d → socket", l);
    report("socket_accept", t0, object);
    pthread_join(t, NULL);
    close(a);
    close(connected_later_fd);
    close(l);
    unlink(listen_addr.sun_path);
}

static int accepted_later_fd = -1;
static void accept_later(void *p) {
    ms_sleep(RELEASE_MS);
    accepted_later_fd = accept(*(int *)p, NULL, NULL);
}

__attribute__((noinline)) static void socket_connect(const char *dir) {
    char object[64];
    int l = listener(dir, "connect.sock", 0);
    int first = client(); /* fills the backlog of 0: the next connect waits */
    pthread_t t = after(accept_later, &l);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c < 0) fail("socket");
    double t0 = now_s();
    if (connect(c, (struct sockaddr *)&listen_addr, sizeof listen_addr)) fail("connect");
    snprintf(object, sizeof object, "fd %d → socket", c);
    report("socket_connect", t0, object);
    pthread_join(t, NULL);
    close(c);
    close(first);
    close(accepted_later_fd);
    close(l);
    unlink(listen_addr.sun_path);
}

/* ---- locks and conditions ---- */
static atomic_int futex_word;
static void wake_later(void *p) {
    (void)p;
    ms_sleep(RELEASE_MS);
    atomic_store(&futex_word, 1);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

__attribute__((noinline)) static void futex_wait(void) {
    char object[64];
    pthread_t t = after(wake_later, NULL);
    double t0 = now_s();
    while (!atomic_load(&futex_word))
        syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    snprintf(object, sizeof object, "%p", (void *)&futex_word);
    report("futex_wait", t0, object);
    pthread_join(t, NULL);
}

static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t held_rwlock = PTHREAD_RWLOCK_INITIALIZER;
static atomic_int mutex_held, rwlock_held;
static void hold_mutex(void *p) {
    (void)p;
    pthread_mutex_lock(&held_mutex);
    atomic_store(&mutex_held, 1);
    ms_sleep(RELEASE_MS);
    pthread_mutex_unlock(&held_mutex);
}
static void hold_rwlock(void *p) {
    (void)p;
    pthread_rwlock_rdlock(&held_rwlock);
    atomic_store(&rwlock_held, 1);
    ms_sleep(RELEASE_MS);
    pthread_rwlock_unlock(&held_rwlock);
}

static struct timespec in_5s(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    ts.tv_sec += 5;
    return ts;
}

__attribute__((noinline)) static void mutex_timedlock(void) {
    char object[64];
    pthread_t t = after(hold_mutex, NULL);
    until_set(&mutex_held);
    struct timespec ts = in_5s(CLOCK_REALTIME);
    double t0 = now_s();
    if (pthread_mutex_timedlock(&held_mutex, &ts)) fail("pthread_mutex_timedlock");
    snprintf(object, sizeof object, "%p", (void *)&held_mutex);
    report("mutex_timedlock", t0, object);
    pthread_mutex_unlock(&held_mutex);
    pthread_join(t, NULL);
}

__attribute__((noinline)) static void rwlock_timedwr(void) {
    char object[64];
    pthread_t t = after(hold_rwlock, NULL);
    until_set(&rwlock_held);
    struct timespec ts = in_5s(CLOCK_REALTIME);
    double t0 = now_s();
    if (pthread_rwlock_timedwrlock(&held_rwlock, &ts)) fail("pthread_rwlock_timedwrlock");
    snprintf(object, sizeof object, "%p", (void *)&held_rwlock);
    report("rwlock_timedwr", t0, object);
    pthread_rwlock_unlock(&held_rwlock);
    pthread_join(t, NULL);
}

static pthread_mutex_t cond_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond_a = PTHREAD_COND_INITIALIZER, cond_b = PTHREAD_COND_INITIALIZER;
static int signalled_a, signalled_b;
static void signal_later(void *p) {
    ms_sleep(RELEASE_MS);
    pthread_mutex_lock(&cond_mutex);
    if (p == &cond_a) signalled_a = 1;
    else signalled_b = 1;
    pthread_cond_signal(p);
    pthread_mutex_unlock(&cond_mutex);
}

__attribute__((noinline)) static void cond_timedwait(void) {
    char object[64];
    pthread_mutex_lock(&cond_mutex);
    pthread_t t = after(signal_later, &cond_a);
    struct timespec ts = in_5s(CLOCK_REALTIME);
    double t0 = now_s();
    while (!signalled_a)
        if (pthread_cond_timedwait(&cond_a, &cond_mutex, &ts)) fail("pthread_cond_timedwait");
    snprintf(object, sizeof object, "%p", (void *)&cond_a);
    report("cond_timedwait", t0, object);
    pthread_mutex_unlock(&cond_mutex);
    pthread_join(t, NULL);
}

__attribute__((noinline)) static void cond_clockwait(void) {
    char object[64];
    pthread_mutex_lock(&cond_mutex);
    pthread_t t = after(signal_later, &cond_b);
    struct timespec ts = in_5s(CLOCK_MONOTONIC);
    double t0 = now_s();
    while (!signalled_b)
        if (pthread_cond_clockwait(&cond_b, &cond_mutex, CLOCK_MONOTONIC, &ts))
            fail("pthread_cond_clockwait");
    snprintf(object, sizeof object, "%p", (void *)&cond_b);
    report("cond_clockwait", t0, object);
    pthread_mutex_unlock(&cond_mutex);
    pthread_join(t, NULL);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: wait_calls DIR\n");
        return 2;
    }
    int fifo_fd;
    fifo_read(argv[1], &fifo_fd);
    pipe_read(fifo_fd);
    socket_recv();
    pipe_write();
    socket_send();
    socket_accept(argv[1]);
    socket_connect(argv[1]);
    futex_wait();
    mutex_timedlock();
    rwlock_timedwr();
    cond_timedwait();
    cond_clockwait();
    return 0;
}
