/* Interposition must change nothing: each blocking call the agent interposes (locks
 * mode, agent/src/waits.rs), made to fail or to succeed after errno was set, prints its
 * return value and errno. tests/cli/locks_user.rs compares the output with and without
 * hwprof. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHOW(name, expr)                                                       \
    do {                                                                       \
        errno = 4321;                                                          \
        long r_ = (long)(expr);                                                \
        int e_ = errno;                                                        \
        printf("%-28s ret %ld errno %d\n", name, r_, e_);                      \
    } while (0)

static sem_t sem;
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void on_alarm(int sig) { (void)sig; }

static void *post_later(void *arg) {
    (void)arg;
    usleep(20000);
    sem_post(&sem);
    return NULL;
}

static void *hold_mutex(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mtx);
    usleep(30000);
    pthread_mutex_unlock(&mtx);
    return NULL;
}

static struct timespec in_ms(int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

int main(void) {
    char buf[8];
    SHOW("read bad fd", read(-1, buf, sizeof buf));
    SHOW("recv not a socket", recv(0 + 1000, buf, sizeof buf, 0));
    SHOW("accept bad fd", accept(-1, NULL, NULL));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, "/nonexistent/hwprof-test.sock");
    SHOW("connect no such path", connect(s, (struct sockaddr *)&sa, sizeof sa));
    close(s);
    SHOW("poll bad fd (POLLNVAL)", poll(&(struct pollfd){.fd = -5, .events = POLLIN}, 1, 10));
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(900, &rs);
    SHOW("select bad fd", select(901, &rs, NULL, NULL, &(struct timeval){0, 1000}));
    struct epoll_event ev;
    SHOW("epoll_wait bad fd", epoll_wait(-1, &ev, 1, 10));
    SHOW("waitpid no child", waitpid(-1, NULL, 0));
    SHOW("pthread_join self", pthread_join(pthread_self(), NULL));

    sem_init(&sem, 0, 0);
    struct timespec deadline = in_ms(20);
    SHOW("sem_timedwait times out", sem_timedwait(&sem, &deadline));
    pthread_t t;
    pthread_create(&t, NULL, post_later, NULL);
    SHOW("sem_wait blocks then ok", sem_wait(&sem));
    pthread_join(t, NULL);

    SHOW("mutex lock uncontended", pthread_mutex_lock(&mtx));
    struct timespec ts = in_ms(20);
    SHOW("cond_timedwait times out", pthread_cond_timedwait(&cond, &mtx, &ts));
    pthread_mutex_unlock(&mtx);
    pthread_create(&t, NULL, hold_mutex, NULL);
    usleep(5000);
    SHOW("mutex lock contended", pthread_mutex_lock(&mtx));
    pthread_mutex_unlock(&mtx);
    pthread_join(t, NULL);

    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_t em;
    pthread_mutex_init(&em, &ma);
    pthread_mutex_lock(&em);
    SHOW("errorcheck relock", pthread_mutex_lock(&em));
    pthread_mutex_unlock(&em);

    pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
    pthread_rwlock_wrlock(&rw);
    SHOW("rwlock wrlock twice", pthread_rwlock_wrlock(&rw));
    SHOW("rwlock rdlock under wr", pthread_rwlock_rdlock(&rw));
    pthread_rwlock_unlock(&rw);

    struct sigaction act = {0};
    act.sa_handler = on_alarm;
    sigaction(SIGALRM, &act, NULL);
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec rem = {0, 0};
    SHOW("nanosleep interrupted", nanosleep(&(struct timespec){2, 0}, &rem));
    printf("%-28s %s\n", "  remaining > 1.5 s", rem.tv_sec >= 1 && rem.tv_nsec + rem.tv_sec * 1000000000L > 1500000000L ? "yes" : "no");
    SHOW("nanosleep bad value", nanosleep(&(struct timespec){0, 2000000000L}, NULL));
    SHOW("clock_nanosleep bad clock", clock_nanosleep(12345, 0, &(struct timespec){0, 1000}, NULL));
    SHOW("usleep ok", usleep(1000));
    SHOW("sleep 0", sleep(0));
    int p[2];
    if (pipe(p) == 0) {
        if (write(p[1], "x", 1) != 1) return 3;
        SHOW("read pipe ok", read(p[0], buf, sizeof buf));
    }
    return 7;
}
