/* Ground truth: kern() is inlined into direct() and also called out of line, through a
   pointer; each caller gets half of the work. It must be one function (one row, its
   first line the line of its name below), with every sample, half under each caller.
   Rounds are of 500000..1499999 units in a fixed pseudo-random order, as in hot.c:
   rounds of one length alias with the sampling period (a fresh-clone run read 43:57). */
#include <stdio.h>
#include <stdlib.h>

static volatile double sink;

static inline __attribute__((always_inline)) double kern(long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += sink;
    return s;
}

__attribute__((noipa)) double direct(long n) { return kern(n); }

double (*volatile through_pointer)(long) = kern;

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1000;
    double t = 0;
    unsigned long long x = 1;
    for (long r = 0; r < rounds; r++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        long n = 500000 + (long)((x >> 33) % 1000000);
        t += direct(n);
        t += through_pointer(n);
    }
    printf("%f\n", t);
    return 0;
}
