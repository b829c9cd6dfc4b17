/* Ground truth for memory mode without frame pointers (built -O1 -g, no
 * -fno-omit-frame-pointer): fill_buffers() faults in 320 MiB and touch_small() 16 MiB,
 * both through libc's memset (a leaf without a frame). Expected shares of the bytes
 * faulted in: fill_buffers ~95%, touch_small ~5%. The program grows until its end; it
 * prints its own page faults (minor + major) and peak RSS (ru_maxrss, KiB) from
 * getrusage, the kernel's figures the profile is checked against.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MIB (1024L * 1024L)
static char *keep[64];
static int nkeep;

void fill_buffers(void) {
    for (int i = 0; i < 20; i++) {
        char *p = malloc(16 * MIB);
        memset(p, i + 1, 16 * MIB);
        keep[nkeep++] = p;
    }
}

void touch_small(void) {
    for (int i = 0; i < 4; i++) {
        char *p = malloc(4 * MIB);
        memset(p, i + 1, 4 * MIB);
        keep[nkeep++] = p;
    }
}

int main(void) {
    fill_buffers();
    touch_small();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("faults %ld maxrss_kib %ld sum %d\n", ru.ru_minflt + ru.ru_majflt, ru.ru_maxrss,
           keep[3][5] + keep[nkeep - 1][7]);
    return 0;
}
