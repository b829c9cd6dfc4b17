/* Locks-mode overhead (docs/performance.md, "locks"): 4 threads hand one mutex around
 * N times in total (contended: most acquisitions block), then one thread takes and
 * releases an uncontended mutex M times (the interposed fast path). Prints the
 * wall time of each part in seconds, and the process CPU time (getrusage) of the
 * hand-off part, which holds under load (where the kernel charges switch records).
 * cc -O2 benches/mutex_handoff.c -o /tmp/mutex_handoff -lpthread
 * ./mutex_handoff [N=100000] [M=10000000] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/resource.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn = PTHREAD_COND_INITIALIZER;
static long next_turn, total;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Thread `me` of 4 takes the mutex when it is its turn: a strict hand-off. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void *worker(void *arg) {
    long me = (long)arg;
    for (;;) {
        pthread_mutex_lock(&m);
        while (next_turn < total && next_turn % 4 != me) pthread_cond_wait(&turn, &m);
        if (next_turn >= total) {
            pthread_mutex_unlock(&m);
            return NULL;
        }
        next_turn++;
        pthread_cond_broadcast(&turn);
        pthread_mutex_unlock(&m);
    }
}

int main(int argc, char **argv) {
    total = argc > 1 ? atol(argv[1]) : 100000;
    long uncontended = argc > 2 ? atol(argv[2]) : 10000000;
    double t0 = now();
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    double t1 = now(), handoff_cpu = cpu_s();
    pthread_mutex_t u = PTHREAD_MUTEX_INITIALIZER;
    for (long i = 0; i < uncontended; i++) {
        pthread_mutex_lock(&u);
        pthread_mutex_unlock(&u);
    }
    double t2 = now();
    printf("handoff %.4f s uncontended %.2f ns/pair cpu %.3f s\n", t1 - t0, (t2 - t1) / uncontended * 1e9,
           handoff_cpu);
    return 0;
}
