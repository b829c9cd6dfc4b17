/* Locks-mode ground truth (tests/cli/locks_user.rs): four threads with designed waits.
 * holder: takes the mutex, keeps it 400 ms (busy, on CPU).
 * await_the_lock: arrives 50 ms after the holder took it: waits ~350 ms (class lock).
 * take_a_nap: sleeps 300 ms (class sleep).
 * read_the_pipe: blocks reading an empty pipe; main writes to it after 250 ms (class io).
 * stdout: what each call returned (the same with and without hwprof); stderr: the
 * mutex's address (the wait's object) and each wait as the program itself timed it
 * (the ground truth on a loaded machine, where a 50 ms sleep can take 65). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t the_lock = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fds[2];
static volatile unsigned long sink;
static double waited_lock, waited_nap, waited_read;
static volatile int held;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void spin(double secs) {
    double end = now_s() + secs;
    while (now_s() < end)
        for (int i = 0; i < 1000; i++) sink += i;
}

static void ms_sleep(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

__attribute__((noinline)) static void *hold_the_lock(void *arg) {
    (void)arg;
    pthread_mutex_lock(&the_lock);
    held = 1;
    spin(0.4);
    pthread_mutex_unlock(&the_lock);
    return NULL;
}

__attribute__((noinline)) static void *await_the_lock(void *arg) {
    (void)arg;
    ms_sleep(50);
    double t0 = now_s();
    int r = pthread_mutex_lock(&the_lock);
    waited_lock = now_s() - t0;
    pthread_mutex_unlock(&the_lock);
    return (void *)(long)r;
}

__attribute__((noinline)) static void *take_a_nap(void *arg) {
    (void)arg;
    struct timespec ts = {0, 300000000L};
    double t0 = now_s();
    int r = nanosleep(&ts, NULL);
    waited_nap = now_s() - t0;
    return (void *)(long)r;
}

__attribute__((noinline)) static void *read_the_pipe(void *arg) {
    (void)arg;
    char buf[16];
    double t0 = now_s();
    long n = read(pipe_fds[0], buf, sizeof buf);
    waited_read = now_s() - t0;
    return (void *)n;
}

int main(void) {
    if (pipe(pipe_fds) != 0) return 3;
    fprintf(stderr, "mutex %p\n", (void *)&the_lock);
    pthread_t h, w, s, r;
    pthread_create(&h, NULL, hold_the_lock, NULL);
    while (!held) ms_sleep(1); /* the holder takes it first, however loaded the machine */
    pthread_create(&w, NULL, await_the_lock, NULL);
    pthread_create(&s, NULL, take_a_nap, NULL);
    pthread_create(&r, NULL, read_the_pipe, NULL);
    ms_sleep(250);
    if (write(pipe_fds[1], "go", 2) != 2) return 4;
    void *rw, *rs, *rr;
    pthread_join(h, NULL);
    pthread_join(w, &rw);
    pthread_join(s, &rs);
    pthread_join(r, &rr);
    printf("lock %ld sleep %ld read %ld\n", (long)rw, (long)rs, (long)rr);
    fprintf(stderr, "waited lock %.6f nap %.6f read %.6f\n", waited_lock, waited_nap,
            waited_read);
    return 0;
}
