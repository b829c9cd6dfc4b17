/* exits <code>: exit with that status; exits signal <N>: die by signal N;
   exits sleep <s>: sleep (in small steps) for s seconds; stderr: "slept S", the
   seconds it took by CLOCK_MONOTONIC (the truth on a loaded machine, where each
   wake-up may wait for a CPU). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "signal") == 0) {
        signal(atoi(argv[2]), SIG_DFL);
        raise(atoi(argv[2]));
        return 99;
    }
    if (argc > 2 && strcmp(argv[1], "sleep") == 0) {
        double t0 = now();
        for (int i = 0; i < atoi(argv[2]) * 10; i++) usleep(100000);
        fprintf(stderr, "slept %.6f\n", now() - t0);
        return 0;
    }
    return argc > 1 ? atoi(argv[1]) : 0;
}
