/* A native function's first line is its declaration line (DW_AT_decl_line), also for
 * a clone gcc makes of it (tests/cli/decl_line.rs). `spin` is declared on line 11
 * (the line of its name) and its first statement is on line 18; every call passes
 * the same `scale`, so gcc -O2 emits it as the clone `spin.constprop.0`. */
#include <stdlib.h>

static volatile double sink;

__attribute__((noinline))
static double
spin(long n,
     double scale,
     int round)
{
    /* Nothing on these lines: the first statement is on line 18, seven lines after
     * the declaration. */

    double s = round;
    for (long i = 0; i < n; i++)
        s += (double)(i & 1023) * scale;
    return s;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000000;
    for (int r = 0; r < 3; r++)
        sink += spin(n / 3, 0.5, r);
    return 0;
}
