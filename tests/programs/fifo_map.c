// A file mapped executable (so the kernel reports its path in an mmap record), then
// replaced by a FIFO at the same path: hwprof must not block opening that path
// (a plain open of a FIFO waits for a writer forever). Runs ~0.3 s on the CPU.
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    const char *path = argv[1];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 2;
    char buf[4096];
    memset(buf, 0xc3, sizeof buf);
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) return 3;
    void *p = mmap(NULL, sizeof buf, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return 4;
    close(fd);
    unlink(path);
    if (mkfifo(path, 0644) != 0) return 5;
    volatile unsigned long x = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        for (int i = 0; i < 100000; i++) x += i;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1e9 + (t.tv_nsec - t0.tv_nsec) < 3e8);
    return 0;
}
