/* Locks-mode cost per marked wait (docs/performance.md, "locks, 17d"): N waits of ~150 us
 * (nanosleep) in a thread; prints the process CPU time (getrusage) per wait, which
 * holds under load (it is the target's own CPU time, where the breakpoint sample and
 * its stack copy are charged). cc -O2 benches/wait_cost.c -o wait_cost -lpthread */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/resource.h>
static long n;
static void *run(void *a) { struct timespec ts = {0, 150000}; for (long i = 0; i < n; i++) nanosleep(&ts, 0); return a; }
int main(int argc, char **argv) {
  n = argc > 1 ? atol(argv[1]) : 20000;
  pthread_t t; pthread_create(&t, 0, run, 0); pthread_join(t, 0);
  struct rusage ru; getrusage(RUSAGE_SELF, &ru);
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  printf("cpu %.3f s = %.2f us/wait\n", cpu, cpu / n * 1e6);
  return 0;
}
