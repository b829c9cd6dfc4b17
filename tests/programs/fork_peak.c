/* Ground truth for a descendant's peak RSS: the launched process forks a child that
 * maps and touches 96 MiB in one short burst, unmaps 64 MiB of it at once (the burst
 * lasts a few tens of ms, so a 50 ms RSS timeline can miss its top), then keeps
 * 32 MiB for 300 ms and prints its own peak (getrusage ru_maxrss, KiB) before exiting:
 * `child_pid P maxrss_kib K`. The profiler's peak for the child must be that figure.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024L)

static void child(void) {
    char *p = mmap(NULL, 96 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(2);
    memset(p, 1, 96 * MIB);
    munmap(p + 32 * MIB, 64 * MIB);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("child_pid %d maxrss_kib %ld sum %d\n", (int)getpid(), ru.ru_maxrss, p[5]);
    fflush(stdout);
    _exit(0);
}

int main(void) {
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0)
        child();
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
