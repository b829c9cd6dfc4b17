/* Time spent in the vdso (tests/cli/hotspots.rs): `timed` reads CLOCK_MONOTONIC N
 * times (default 60 million), which the kernel's vdso answers in user space without a
 * system call; most samples are in the vdso's `__vdso_clock_gettime`, under libc's
 * `clock_gettime`, under `timed`, under `main`. No file on disk holds the vdso: its
 * functions are named, and unwound through, from the copy collect keeps.
 * Usage: vdso_clock [N] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) static double timed(long n) {
    struct timespec t;
    double s = 0;
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        s += t.tv_nsec;
    }
    return s;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 60000000;
    printf("%f\n", timed(n));
    return 0;
}
