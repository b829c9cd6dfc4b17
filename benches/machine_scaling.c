/* What a second core buys on this machine, for the kinds of work finalize does
 * (docs/performance.md, "finalize, round 12"): the same work per thread on 1..N
 * threads, each pinned by the caller's affinity mask, printing throughput relative to
 * one thread. A ratio below N is the machine's ceiling for that kind of work, not the
 * program's: no thread shares anything with another.
 *   compute: xorshift arithmetic in registers
 *   stream:  one load per cache line through a private 256 MiB buffer (memory bandwidth)
 *   map:     mmap, touch one byte per page, munmap a private 1 MiB file, 2,048 times
 *            (the kernel's page-table work, as finalize does per small perf.data)
 * cc -O2 benches/machine_scaling.c -o machine_scaling -lpthread
 * ./machine_scaling KIND MAX_THREADS [DIR for map's files, default /tmp] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define STREAM_BYTES (256UL << 20)
#define MAP_BYTES (1UL << 20)
#define MAP_ROUNDS 2048

static const char *kind, *dir = "/tmp";
static volatile uint64_t sink;
static uint64_t *buffers[64];
static int files[64];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *work(void *arg) {
  long id = (long)arg;
  uint64_t s = 0;
  if (!strcmp(kind, "compute")) {
    uint64_t x = id + 1;
    for (long i = 0; i < 200000000; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      s += x;
    }
  } else if (!strcmp(kind, "stream")) {
    const uint64_t *b = buffers[id];
    for (int r = 0; r < 8; r++)
      for (size_t i = 0; i < STREAM_BYTES / 8; i += 8) s += b[i];
  } else {
    for (int r = 0; r < MAP_ROUNDS; r++) {
      const uint8_t *m = mmap(0, MAP_BYTES, PROT_READ, MAP_SHARED, files[id], 0);
      if (m == MAP_FAILED) break;
      for (size_t k = 0; k < MAP_BYTES; k += 4096) s += m[k];
      munmap((void *)m, MAP_BYTES);
    }
  }
  sink += s;
  return 0;
}

static double run(int threads) {
  pthread_t th[64];
  double t = now();
  for (long i = 0; i < threads; i++) pthread_create(&th[i], 0, work, (void *)i);
  for (int i = 0; i < threads; i++) pthread_join(th[i], 0);
  return now() - t;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s compute|stream|map MAX_THREADS [DIR]\n", argv[0]);
    return 2;
  }
  kind = argv[1];
  int max = atoi(argv[2]);
  if (max < 1 || max > 64) max = 1;
  if (argc > 3) dir = argv[3];
  for (int i = 0; i < max; i++) {
    if (!strcmp(kind, "stream")) {
      buffers[i] = malloc(STREAM_BYTES);
      if (!buffers[i]) return 1;
      memset(buffers[i], 1, STREAM_BYTES);
    } else if (!strcmp(kind, "map")) {
      char path[4096];
      snprintf(path, sizeof path, "%s/machine_scaling.XXXXXX", dir);
      files[i] = mkstemp(path);
      if (files[i] < 0) return 1;
      unlink(path);
      char *page = calloc(1, MAP_BYTES);
      if (!page || write(files[i], page, MAP_BYTES) != (ssize_t)MAP_BYTES) return 1;
      free(page);
    }
  }
  double one = run(1);
  printf("%s: 1 thread %.3f s\n", kind, one);
  for (int t = 2; t <= max; t++) {
    double e = run(t);
    printf("%s: %d threads %.3f s, throughput %.2fx one thread's\n", kind, t, e, t * one / e);
  }
  return 0;
}
