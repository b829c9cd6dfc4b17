/* The kernel's share of reading a perf.data (docs/performance.md, "finalize, round 7"):
 * walks the records of the data section the ways finalize could, touching what the
 * reader touches of each record (its first K bytes, one load per cache line, and its
 * last 8: a sample's dyn_size), without parsing or unwinding anything. Prints wall and
 * CPU time (user, sys) and minor faults of the walking thread alone.
 *   mode 0: mmap, MADV_SEQUENTIAL, fault-around, MADV_DONTNEED every 64 MiB behind
 *           (finalize without its pager thread)
 *   mode 1: the same with MADV_RANDOM (does it turn fault-around off? no)
 *   mode 2: one pread per record of its first K bytes (and the 8 before it)
 *   mode 3: pread of the whole data section into a reused 1 MiB buffer
 * SPIN=1 runs a busy thread beside the walk (finalize has two threads: each release
 * of mapped pages then interrupts the other core to flush its TLB).
 * cc -O2 benches/perf_data_walk.c -o perf_data_walk -lpthread
 * ./perf_data_walk D/raw/HOST.-.PID/perf.data MODE [K=1536] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static double secs(struct timeval t) { return t.tv_sec + t.tv_usec * 1e-6; }
static void *spin(void *a) { volatile unsigned long x = 0; for (;;) if (++x % 100000 == 0) sched_yield(); return a; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s PERF_DATA MODE [K]\n", argv[0]); return 2; }
  if (getenv("SPIN")) { pthread_t t; pthread_create(&t, 0, spin, 0); }
  int fd = open(argv[1], O_RDONLY);
  int mode = atoi(argv[2]);
  size_t k = argc > 3 ? (size_t)atoi(argv[3]) : 1536;
  struct stat st;
  uint64_t hdr[13];
  if (fd < 0 || fstat(fd, &st) || pread(fd, hdr, 104, 0) != 104 || memcmp(hdr, "PERFILE2", 8)) { perror(argv[1]); return 1; }
  size_t len = st.st_size, start = hdr[5], end = hdr[5] + hdr[6];
  if (end > len) end = len;
  uint64_t sum = 0, n = 0;
  struct rusage r0, r1;
  getrusage(RUSAGE_THREAD, &r0);
  double t0 = now();
  if (mode <= 1) {
    unsigned char *m = mmap(0, len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(m, len, mode == 1 ? MADV_RANDOM : MADV_SEQUENTIAL);
    size_t off = start, released = start / 4096 * 4096;
    while (off + 8 <= end) {
      uint16_t size; memcpy(&size, m + off + 6, 2);
      if (size < 8 || off + size > end) break;
      for (size_t i = 0; i < k && i < size; i += 64) sum += m[off + i];
      sum += m[off + size - 8];
      n++; off += size;
      if (off / 4096 * 4096 >= released + (64 << 20)) {
        madvise(m + released, off / 4096 * 4096 - released, MADV_DONTNEED);
        released = off / 4096 * 4096;
      }
    }
  } else if (mode == 2) {
    unsigned char *buf = malloc(k + 16);
    size_t off = start;
    while (off + 8 <= end) {
      if (pread(fd, buf, k + 8, off - 8) < 16) break;
      uint16_t size; memcpy(&size, buf + 8 + 6, 2);
      if (size < 8) break;
      for (size_t i = 0; i < k && i < size; i += 64) sum += buf[8 + i];
      n++; off += size;
    }
  } else {
    size_t chunk = 1 << 20;
    unsigned char *buf = aligned_alloc(4096, chunk);
    for (size_t off = start; off < end; n++) {
      ssize_t got = pread(fd, buf, chunk, off);
      if (got <= 0) break;
      for (ssize_t i = 0; i < got; i += 4096) sum += buf[i];
      off += got;
    }
  }
  double wall = now() - t0;
  getrusage(RUSAGE_THREAD, &r1);
  double user = secs(r1.ru_utime) - secs(r0.ru_utime), sys = secs(r1.ru_stime) - secs(r0.ru_stime);
  printf("mode %d K %zu: %lu %s, wall %.3f s, cpu %.3f s (user %.3f, sys %.3f), minor faults %ld (sum %lu)\n",
         mode, k, (unsigned long)n, mode == 3 ? "chunks" : "records", wall, user + sys, user, sys,
         r1.ru_minflt - r0.ru_minflt, (unsigned long)sum);
  return 0;
}
