/* touch256: memory-mode ground truth.
 *
 * big_alloc() maps 256 MiB and touches every page (65536 minor faults of 4 KiB, THP
 * off for the mapping so each fault is one page), the program holds it 300 ms, unmaps
 * the second half (RSS drops to ~128 MiB) and holds 300 ms, then small_alloc() maps
 * and touches 16 MiB more (4096 faults) and holds 200 ms.
 * Arguments: "wait" = read one byte from stdin before starting (so a profiler can
 * attach first); "fork" = fork a child that holds 8 MiB for 600 ms (a descendant);
 * "nohold" = no holds (for overhead measurements: only the page touching remains).
 * Build: cc -O1 -g -fno-omit-frame-pointer -fno-inline -o touch256 touch256.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024UL * 1024UL)

static int no_hold;

static void hold_ms(long ms) {
    if (no_hold) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

static char *map_and_touch(size_t bytes) {
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(3); }
    madvise(p, bytes, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < bytes; i += 4096) p[i] = (char)i;
    return p;
}

__attribute__((noinline)) char *big_alloc(void) { return map_and_touch(256 * MIB); }
__attribute__((noinline)) char *small_alloc(void) { return map_and_touch(16 * MIB); }

int main(int argc, char **argv) {
    int do_fork = 0, do_wait = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "fork")) do_fork = 1;
        if (!strcmp(argv[i], "wait")) do_wait = 1;
        if (!strcmp(argv[i], "nohold")) no_hold = 1;
    }
    if (do_wait) { char c; if (read(0, &c, 1) < 0) return 4; }
    pid_t kid = -1;
    if (do_fork) {
        kid = fork();
        if (kid == 0) { map_and_touch(8 * MIB); hold_ms(600); _exit(0); }
    }
    char *big = big_alloc();
    hold_ms(300);
    munmap(big + 128 * MIB, 128 * MIB);
    hold_ms(300);
    char *small = small_alloc();
    hold_ms(200);
    if (kid > 0) waitpid(kid, NULL, 0);
    return big[0] + small[0] == 42 ? 1 : 0;
}
