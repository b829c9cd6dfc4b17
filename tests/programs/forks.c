/* The parent forks a child that runs child_work; the parent runs parent_work
   and waits for it. Exit status of the child is checked. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile double sink;
__attribute__((noinline)) void child_work(long n) { for (long i = 0; i < n; i++) sink += 1.0; }
__attribute__((noinline)) void parent_work(long n) { for (long i = 0; i < n; i++) sink += 1.0; }

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 300;
    pid_t pid = fork();
    if (pid == 0) {
        for (long r = 0; r < rounds; r++) child_work(100000);
        _exit(0);
    }
    for (long r = 0; r < rounds; r++) parent_work(100000);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
