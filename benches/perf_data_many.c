/* Reading many small perf.data files (one per rank), mapped or read, on one or two
 * threads (docs/performance.md, "finalize, round 8" and "round 12"): each file is
 * opened, fstat'ed, then either mapped (fault-around) and unmapped, or read whole into
 * a buffer the thread keeps; its records are walked touching what finalize's reader
 * touches (the first 1,536 bytes of each, one load per cache line, and its last byte).
 * Prints wall, user and system time and minor faults of the process.
 *   mode 0: mmap + MADV_SEQUENTIAL + munmap per file (finalize before round 10)
 *   mode 1: read() into a reused buffer
 *   mode 2: mmap + munmap per file, no advice (finalize since round 10)
 *   mode 3: mapped into a per-thread reserved region (MAP_FIXED), the region replaced
 *           once full: one unmap per ARENA_MIB (default 64) instead of one per file
 * Thread i takes files i, i + THREADS, ...
 * cc -O2 benches/perf_data_many.c -o perf_data_many -lpthread
 * ./perf_data_many MODE THREADS FILE...   (e.g. D/raw/(every rank)/perf.data) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int mode, nthreads, nfiles;
static char **files;
static volatile uint64_t sink;
static size_t ARENA = 64 << 20;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t u64_at(const uint8_t *b, size_t off) {
  uint64_t v;
  memcpy(&v, b + off, 8);
  return v;
}

static void walk(const uint8_t *b, size_t len) {
  if (len < 104) return;
  uint64_t off = u64_at(b, 40), end = off + u64_at(b, 48), s = 0;
  if (end > len) end = len;
  while (off + 8 <= end) {
    uint16_t size;
    memcpy(&size, b + off + 6, 2);
    if (size < 8 || off + size > end) break;
    for (size_t k = 0; k < size && k < 1536; k += 64) s += b[off + k];
    s += b[off + size - 1];
    off += size;
  }
  sink += s;
}

static void *work(void *arg) {
  long id = (long)arg;
  size_t cap = 0;
  uint8_t *buf = 0, *arena = 0;
  size_t used = 0;
  for (int i = id; i < nfiles; i += nthreads) {
    int fd = open(files[i], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) continue;
    size_t len = st.st_size;
    if (mode == 3) {
      if (len > ARENA) { close(fd); continue; }
      if (!arena) arena = mmap(0, ARENA, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (used + len > ARENA) {
        mmap(arena, used, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        used = 0;
      }
      uint8_t *m = mmap(arena + used, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
      if (m != MAP_FAILED) walk(m, len);
      used += (len + 4095) & ~(size_t)4095;
    } else if (mode == 0 || mode == 2) {
      uint8_t *m = mmap(0, len, PROT_READ, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) {
        if (mode == 0) madvise(m, len, MADV_SEQUENTIAL);
        walk(m, len);
        munmap(m, len);
      }
    } else {
      if (cap < len) {
        free(buf);
        cap = len;
        buf = malloc(cap);
      }
      size_t got = 0;
      while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0) break;
        got += r;
      }
      walk(buf, got);
    }
    close(fd);
  }
  free(buf);
  if (arena) munmap(arena, ARENA);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODE THREADS FILE...\n", argv[0]);
    return 2;
  }
  mode = atoi(argv[1]);
  nthreads = atoi(argv[2]);
  if (nthreads < 1 || nthreads > 8) nthreads = 1;
  if (getenv("ARENA_MIB")) ARENA = (size_t)atoi(getenv("ARENA_MIB")) << 20;
  files = argv + 3;
  nfiles = argc - 3;
  double t = now();
  pthread_t th[8];
  for (long i = 0; i < nthreads; i++) pthread_create(&th[i], 0, work, (void *)i);
  for (int i = 0; i < nthreads; i++) pthread_join(th[i], 0);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("mode %d threads %d: wall %.3f s user %.3f sys %.3f minflt %ld\n", mode, nthreads,
         now() - t, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
         ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6, ru.ru_minflt);
  return 0;
}
