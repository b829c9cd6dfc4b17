/* What mapping a cached file costs, by how the page cache holds it (docs/performance.md,
 * "finalize, round 10"): maps FILE, touches one byte of every 8 KiB (about what
 * finalize's walker touches of a perf.data of DWARF samples), unmaps it, and prints the
 * time of each step. Run it on a file the page cache holds in 4 KiB folios and in 2 MiB
 * ones (`grep FileHugePages /proc/meminfo`; `benches/finalize_ab.py --cache` makes
 * either state) to see the kernel's per-page mapping work.
 *   mode 0: plain mmap and fault-around
 *   mode 1: MAP_POPULATE
 *   mode 2: MADV_SEQUENTIAL (as finalize did before round 10)
 * A first reader after an eviction leaves the cache in the state its reads make: run
 * mode 2 first, then mode 0, to see what the sequential hint left behind.
 * cc -O2 benches/page_cache_map.c -o page_cache_map
 * ./page_cache_map FILE MODE */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE MODE\n", argv[0]);
        return 2;
    }
    int mode = atoi(argv[2]);
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        perror(argv[1]);
        return 1;
    }
    size_t n = st.st_size;
    double t0 = now();
    unsigned char *p = mmap(0, n, PROT_READ, MAP_PRIVATE | (mode == 1 ? MAP_POPULATE : 0), fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    if (mode == 2)
        madvise(p, n, MADV_SEQUENTIAL);
    double t1 = now();
    unsigned long sum = 0;
    for (size_t o = 0; o < n; o += 8192)
        sum += p[o];
    double t2 = now();
    munmap(p, n);
    double t3 = now();
    printf("mode %d: map %.3f s, touch %.3f s, unmap %.3f s, total %.3f s (%zu bytes, sum %lu)\n",
           mode, t1 - t0, t2 - t1, t3 - t2, t3 - t0, n, sum);
    return 0;
}
