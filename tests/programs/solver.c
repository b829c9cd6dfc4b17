/* Ground truth for launch coverage: SOLVER_FN (named with -DSOLVER_FN=...) burns argv[1]
   seconds of the process's CPU time (default 0.5), measured with CLOCK_PROCESS_CPUTIME_ID,
   so its share of cpu-clock samples is known whatever the load. Built -static and not. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static volatile double sink;
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
__attribute__((noinline)) void SOLVER_FN(double secs) {
    double end = cpu_now() + secs;
    while (cpu_now() < end)
        for (int i = 0; i < 200000; i++) sink += 1.0;
}
int main(int argc, char **argv) {
    SOLVER_FN(argc > 1 ? atof(argv[1]) : 0.5);
    printf("%s done\n", argv[0]);
    return 0;
}
