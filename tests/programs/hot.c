/* Ground truth: under work(), hot_a does 3/4 of the work and hot_b 1/4.
   Run time scales with argv[1], the rounds (default 1000: ~1.2 s on an idle core
   of the reference VM, where 3000 took 3.7 s).
   -DHOT_B_FACTOR=2 makes hot_b do twice its work (the diff tests' second build).
   -DHOT_A_FRAME=N gives hot_a a stack frame of N doubles (the stack-copy tests): its
   callers' frames lie that far above the stack pointer of its samples. It writes the
   first HOT_A_TOUCHED of them (default: all); the stack pages above those are never
   touched when it is fewer. */
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

#ifdef HOT_A_FRAME
#ifndef HOT_A_TOUCHED
#define HOT_A_TOUCHED HOT_A_FRAME
#endif
__attribute__((noinline)) void hot_a(long n) {
    volatile double frame[HOT_A_FRAME];
    for (int i = 0; i < HOT_A_TOUCHED; i++) frame[i] = 1.0;
    tick();
    SPIN(3 * n);
    sink += frame[0];
}
#else
__attribute__((noinline)) void hot_a(long n) { tick(); SPIN(3 * n); }
#endif
#ifndef HOT_B_FACTOR
#define HOT_B_FACTOR 1
#endif
__attribute__((noinline)) void hot_b(long n) { tick(); SPIN(HOT_B_FACTOR * n); }

/* Rounds of 50000..149999 units (mean 100000) in a fixed pseudo-random order: rounds of
   one length alias with the sampling period when a round lasts about a whole number of
   periods (2 ms at 999 Hz: the -DHOT_B_FACTOR=2 build on the reference VM), and the
   shares then depend on the phase samples fall at. */
__attribute__((noinline)) void work(long rounds) {
    unsigned long long x = 1;
    for (long r = 0; r < rounds; r++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        long n = 50000 + (long)((x >> 33) % 100000);
        hot_a(n);
        hot_b(n);
    }
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1000;
    work(rounds);
    printf("done %f\n", sink);
    return argc > 2 ? atoi(argv[2]) : 0;
}
