/* Ground truth: mixed() is one function whose body is partly in another file, included
   into it (as Python 3.12's eval loop includes generated_cases.c.h; Cython's code does
   the same with #line): one fourth of its work on this file's lines, three fourths on
   included_body_part.h's. It must be one function with all its samples, its lines in
   both files. Calls of 50000..149999 units in a fixed pseudo-random order (as in hot.c):
   calls of one length alias with the sampling period. */
#include <stdio.h>
#include <stdlib.h>

static volatile double sink;

__attribute__((noinline)) void mixed(long n) {
    for (long i = 0; i < n; i++) sink += 1.0;
#include "included_body_part.h"
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1000;
    unsigned long long x = 1;
    for (long r = 0; r < rounds; r++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        mixed(50000 + (long)((x >> 33) % 100000));
    }
    printf("%f\n", sink);
    return 0;
}
