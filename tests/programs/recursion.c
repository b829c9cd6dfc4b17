/* Ground truth: half the work runs 200 calls deep (rec), half one call deep (flat), in
   the same leaf. Built with frame pointers, its deep stacks are longer than the 127
   frames the kernel records in a call chain (the stack-cut tests). -DREC_DEPTH=N sets
   the depth. argv[1]: rounds (300: about 1 s on the reference VM). */
#include <stdio.h>
#include <stdlib.h>

#ifndef REC_DEPTH
#define REC_DEPTH 200
#endif

static volatile double sink;

__attribute__((noinline)) void leaf(long n) {
    for (long i = 0; i < n; i++) sink += 1.0;
}

__attribute__((noinline)) void rec(int depth, long n) {
    if (depth == 0) {
        leaf(n);
        return;
    }
    rec(depth - 1, n);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

__attribute__((noinline)) void flat(long n) { leaf(n); }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 300;
    for (int r = 0; r < rounds; r++) {
        rec(REC_DEPTH, 300000);
        flat(300000);
    }
    printf("%f\n", sink);
    return 0;
}
