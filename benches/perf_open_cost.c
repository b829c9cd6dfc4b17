// What the first perf_event_open costs after a quiet second: the kernel enables its
// scheduler hooks for task events (a static key and synchronize_rcu) when the first one
// appears and disables them a second after the last one closes. Every profiler that
// opens task events pays it once per run when nothing else holds one (perf record too).
// docs/performance.md quotes it.
//   gcc -O2 -o /tmp/perf_open_cost benches/perf_open_cost.c && /tmp/perf_open_cost; sleep 2; /tmp/perf_open_cost
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec*1e-6;}
int main(void) {
  for (int i = 0; i < 3; i++) {
    struct perf_event_attr a; memset(&a, 0, sizeof a); a.size = sizeof a;
    a.type = PERF_TYPE_SOFTWARE; a.config = PERF_COUNT_SW_DUMMY; a.disabled = 1;
    a.exclude_kernel = 1; a.exclude_hv = 1;
    double t = now(); int fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0); double t2 = now();
    if (fd < 0) { perror("perf_event_open"); return 1; }
    close(fd);
    printf("open %d: %.3f ms\n", i + 1, t2 - t);
  }
  return 0;
}
