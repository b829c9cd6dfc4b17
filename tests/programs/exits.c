/* exits <code>: exit with that status; exits signal <N>: die by signal N;
   exits sleep <s>: sleep (in small steps) for s seconds. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "signal") == 0) {
        signal(atoi(argv[2]), SIG_DFL);
        raise(atoi(argv[2]));
        return 99;
    }
    if (argc > 2 && strcmp(argv[1], "sleep") == 0) {
        for (int i = 0; i < atoi(argv[2]) * 10; i++) usleep(100000);
        return 0;
    }
    return argc > 1 ? atoi(argv[1]) : 0;
}
