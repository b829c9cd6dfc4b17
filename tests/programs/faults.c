/* Ground truth for counter groups read per sample.
 *
 * toucher() maps PAGES (2000) fresh anonymous pages (THP off: one minor fault per
 * page) and touches them one by one, spinning SPIN_PER_PAGE iterations after each
 * touch; spinner() then only spins, three times as many iterations in all. Self time:
 * toucher 25%, spinner 75% (the faults themselves add ~2% of kernel time under
 * toucher). Page faults: PAGES, all in toucher (plus the ~50 of program start-up,
 * before either runs). Each phase is one long stretch, so the counts read by the last
 * sample of a phase spill at most one sampling interval into the next.
 * Argument: a scale for the spinning (default 1 = ~1.1 s here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define PAGES 2000L
#define SPIN_PER_PAGE 40000L

static volatile double sink;

#define SPIN(n)                                                   \
    do {                                                          \
        for (long i = 0; i < (n); i++) sink += 1.0;               \
    } while (0)

__attribute__((noinline)) void toucher(long pages, long spin) {
    char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(3); }
    madvise(p, pages * 4096, MADV_NOHUGEPAGE);
    for (long i = 0; i < pages; i++) {
        p[i * 4096] = (char)i;
        SPIN(spin);
    }
}

__attribute__((noinline)) void spinner(long n) { SPIN(n); }

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    toucher(PAGES, SPIN_PER_PAGE * scale);
    spinner(3 * PAGES * SPIN_PER_PAGE * scale);
    printf("done %f\n", sink);
    return 0;
}
