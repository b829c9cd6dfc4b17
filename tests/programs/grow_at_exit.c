/* grow_at_exit: memory-mode ground truth for the timeline's reading at exit.
 *
 * Touches 8 MiB, sleeps argv[1] ms (default 300), then maps and touches 200 MiB
 * (THP off for the mapping: 51,200 faults of 4 KiB) as fast as it can and exits at
 * once: the RSS grows until the last millisecond, after the sampler's last tick. The
 * peak is 208 MiB + the program's own ~1 MiB; it prints its own `maxrss_kib K` and
 * `grow_ms T` (how long the 200 MiB took) before it returns.
 * Build: cc -O1 -g -o grow_at_exit grow_at_exit.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#define MIB (1024UL * 1024UL)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *map_and_touch(size_t bytes) {
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(3); }
    madvise(p, bytes, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 1;
    return p;
}

int main(int argc, char **argv) {
    long hold = argc > 1 ? atol(argv[1]) : 300;
    map_and_touch(8 * MIB);
    struct timespec ts = {hold / 1000, (hold % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
    double t0 = now_ms();
    map_and_touch(200 * MIB);
    double grow = now_ms() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("maxrss_kib %ld grow_ms %.1f\n", ru.ru_maxrss, grow);
    return 0;
}
