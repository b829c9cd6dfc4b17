/* Samples inside a signal handler unwind through the signal frame to the code the
 * signal interrupted (tests/cli/hotspots.rs). SIGPROF every 3 ms of CPU time runs a
 * handler that spins in `in_handler` for about 1 ms (the handler's CPU time counts
 * toward the timer too): in_handler about 1/3 of the samples, compute 2/3, and every
 * sample under `main` through `compute`, which the signals interrupt. `compute` keeps
 * no frame pointer (-O2), so the unwinder must read the signal frame: guessing from
 * rbp ends the stack at the handler. Usage: signal_frames [SECONDS] (default 2). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile double sink;
/* Iterations of `spin` per millisecond, measured at start. */
static long per_ms = 1;

__attribute__((noinline)) static double spin(long n, double x) {
    for (long i = 0; i < n; i++) x = x * 1.0000001 + 1e-9;
    return x;
}

__attribute__((noinline)) static void in_handler(void) { sink = spin(per_ms, sink); }

__attribute__((noinline)) static void on_tick(int sig) {
    (void)sig;
    in_handler();
    sink += 1;
}

__attribute__((noinline)) static void compute(long ms) {
    double x = sink;
    for (long i = 0; i < ms; i++) x = spin(per_ms, x);
    sink = x;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    long n = 1 << 20;
    double t0 = now();
    sink = spin(n, sink);
    per_ms = (long)(n / ((now() - t0) * 1e3)) + 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = {{0, 3000}, {0, 3000}};
    setitimer(ITIMER_PROF, &it, NULL);
    /* 2/3 of the CPU time in compute. */
    compute((long)(seconds * 1e3 * 2 / 3));
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    printf("%f\n", sink);
    return 0;
}
