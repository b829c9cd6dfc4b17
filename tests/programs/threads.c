/* Two threads with known, different work: "worker_a" runs only func_a,
   "worker_b" runs only func_b (twice as long). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>

static volatile double sink_a, sink_b;
static long rounds = 400;

__attribute__((noinline)) void func_a(long n) { for (long i = 0; i < n; i++) sink_a += 1.0; }
__attribute__((noinline)) void func_b(long n) { for (long i = 0; i < n; i++) sink_b += 1.0; }

static void *run_a(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_a");
    for (long r = 0; r < rounds; r++) func_a(100000);
    return NULL;
}
static void *run_b(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_b");
    for (long r = 0; r < 2 * rounds; r++) func_b(100000);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atol(argv[1]);
    pthread_t a, b;
    pthread_create(&a, NULL, run_a, NULL);
    pthread_create(&b, NULL, run_b, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return 0;
}
