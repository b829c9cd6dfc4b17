/* Ground truth: under work(), hot_a does 3/4 of the work and hot_b 1/4.
   Run time scales with argv[1], the rounds (default 1000: ~1.2 s on an idle core
   of the reference VM, where 3000 took 3.7 s).
   -DHOT_B_FACTOR=2 makes hot_b do twice its work (the diff tests' second build). */
#include <stdlib.h>
#include <stdio.h>

static volatile double sink;

/* A macro, not a function: the loop's samples belong to hot_a/hot_b themselves. */
#define SPIN(n)                                                   \
    do {                                                          \
        for (long i = 0; i < (n); i++) sink += 1.0;               \
    } while (0)

/* Called once per hot_a/hot_b call so they are not leaf functions: compilers omit
   the frame pointer of leaves even with -fno-omit-frame-pointer. */
__attribute__((noinline)) void tick(void) { __asm__ volatile("" ::: "memory"); }

__attribute__((noinline)) void hot_a(long n) { tick(); SPIN(3 * n); }
#ifndef HOT_B_FACTOR
#define HOT_B_FACTOR 1
#endif
__attribute__((noinline)) void hot_b(long n) { tick(); SPIN(HOT_B_FACTOR * n); }

__attribute__((noinline)) void work(long rounds) {
    for (long r = 0; r < rounds; r++) {
        hot_a(100000);
        hot_b(100000);
    }
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1000;
    work(rounds);
    printf("done %f\n", sink);
    return argc > 2 ? atoi(argv[2]) : 0;
}
