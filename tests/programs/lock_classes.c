/* lock_classes: one wait of each common class, with designed durations.
   - hold_the_lock takes the mutex and keeps it 400 ms, spinning (on CPU: no wait);
   - await_the_lock arrives 50 ms after the mutex was taken: waits 350 ms, class lock;
   - take_a_nap sleeps 300 ms: class sleep;
   - read_the_pipe reads a pipe that fill_the_pipe writes 250 ms after the read began:
     250 ms, class io (fill_the_pipe's own wait is a sleep).
   main leaves with pthread_exit, so it waits for nothing itself. Prints the mutex's
   address ("mutex 0x...") and the pipe's read end ("pipe fd N"), and each wait as the
   program itself measured it ("waited for the lock", "slept", "read waited": ms of
   wall time around the call, which on a starved machine includes waiting for a CPU
   after the wake-up, as off-CPU time does). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t the_mutex = PTHREAD_MUTEX_INITIALIZER;
static atomic_int locked;
static struct timespec locked_at; /* CLOCK_MONOTONIC, when hold_the_lock took it */
static int fds[2];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* A macro, not a function: each sleep stays in the function that sleeps. */
#define NAP_MS(ms)                                                   \
    do {                                                             \
        struct timespec t_ = {(ms) / 1000, ((ms) % 1000) * 1000000L}; \
        while (nanosleep(&t_, &t_) != 0) {                           \
        }                                                            \
    } while (0)

__attribute__((noinline)) static void hold_the_lock(void) {
    pthread_mutex_lock(&the_mutex);
    clock_gettime(CLOCK_MONOTONIC, &locked_at);
    atomic_store(&locked, 1);
    double end = locked_at.tv_sec + locked_at.tv_nsec * 1e-9 + 0.4;
    while (now() < end) {
    }
    pthread_mutex_unlock(&the_mutex);
}

__attribute__((noinline)) static void await_the_lock(void) {
    double t0 = now();
    pthread_mutex_lock(&the_mutex);
    printf("waited for the lock %.1f ms\n", (now() - t0) * 1e3);
    fflush(stdout);
    pthread_mutex_unlock(&the_mutex);
}

__attribute__((noinline)) static void take_a_nap(void) {
    double t0 = now();
    NAP_MS(300);
    printf("slept %.1f ms\n", (now() - t0) * 1e3);
    fflush(stdout);
}

static atomic_llong read_from; /* CLOCK_MONOTONIC ns when read_the_pipe began its read */

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

__attribute__((noinline)) static void read_the_pipe(void) {
    char c;
    atomic_store(&read_from, now_ns());
    if (read(fds[0], &c, 1) != 1) perror("read");
    printf("read waited %.1f ms\n", (now_ns() - atomic_load(&read_from)) * 1e-6);
    fflush(stdout);
}

/* Writes 250 ms after the reader began to read, however late either thread started. */
__attribute__((noinline)) static void fill_the_pipe(void) {
    while (atomic_load(&read_from) == 0) NAP_MS(1);
    long long at = atomic_load(&read_from) + 250000000LL;
    struct timespec t = {at / 1000000000LL, at % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) != 0) {
    }
    if (write(fds[1], "x", 1) != 1) perror("write");
}

static void *holder(void *a) {
    hold_the_lock();
    return a;
}

static void *waiter(void *a) {
    /* Arrive 50 ms after the mutex was taken, however late this thread started. */
    struct timespec at = locked_at;
    at.tv_nsec += 50000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0) {
    }
    await_the_lock();
    return a;
}

static void *sleeper(void *a) {
    take_a_nap();
    return a;
}

static void *reader(void *a) {
    read_the_pipe();
    return a;
}

static void *writer(void *a) {
    fill_the_pipe();
    return a;
}

int main(void) {
    if (pipe(fds) != 0) return 1;
    printf("mutex %p\npipe fd %d\n", (void *)&the_mutex, fds[0]);
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    /* The waiter's 50 ms count from the moment the mutex is held. */
    while (!atomic_load(&locked)) {
    }
    void *(*others[])(void *) = {waiter, sleeper, reader, writer};
    for (int i = 0; i < 4; i++) pthread_create(&t, NULL, others[i], NULL);
    pthread_exit(NULL);
}
