// What a perf sample and a SIGTRAP cost on this machine, apart from hwprof: a fixed
// arithmetic loop, (0) bare, (1) with a cpu-clock event at 999 Hz on itself (no ring),
// (2) the same with `sigtrap` and an empty handler. docs/performance.md quotes it.
//   gcc -O2 -o /tmp/sigtrap_cost benches/sigtrap_cost.c && for m in 0 1 2; do /tmp/sigtrap_cost $m; done
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
static volatile long hits;
static void h(int s, siginfo_t *i, void *c) { hits++; }
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc, char **argv) {
  int mode = atoi(argv[1]); // 0 none, 1 sample only, 2 sample+sigtrap
  if (mode) {
    struct sigaction sa = {0}; sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO | SA_RESTART; sigaction(SIGTRAP, &sa, 0);
    struct perf_event_attr a; memset(&a, 0, sizeof a); a.size = sizeof a;
    a.type = PERF_TYPE_SOFTWARE; a.config = PERF_COUNT_SW_CPU_CLOCK; a.freq = 1; a.sample_freq = 999;
    a.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME;
    a.exclude_kernel = 1; a.remove_on_exec = 1; a.sigtrap = (mode == 2); a.sig_data = 1;
    int fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    if (fd < 0) { perror("open"); return 1; }
  }
  double t = now(); volatile double x = 0; for (long i = 0; i < 1500000000L; i++) x += i * 0.5;
  struct rusage ru; getrusage(RUSAGE_SELF, &ru);
  printf("mode %d: %.3f s wall, user %.3f sys %.3f, %ld signals\n", mode, now() - t, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec*1e-6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec*1e-6, hits);
}
