/*
 * A wall clock the test controls, for redis-server (LD_PRELOAD): only
 * CLOCK_REALTIME (clock_gettime, gettimeofday, time) is faked; the monotonic
 * clock stays real. libfaketime hangs Debian's jemalloc-linked redis-server at
 * start (its dlsym allocates), so this shim allocates nothing: clocks are read
 * with the raw system call, and the control file is mapped, not read.
 *
 * The control file (FAKE_CLOCK_FILE) holds three little-endian int64s:
 * offset_ns, rate_ppm (1000000: real speed), anchor_ns (the real time from
 * which the rate applies). fake = real + offset + (real - anchor) * (rate - 1e6) / 1e6.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct control {
    volatile int64_t offset_ns;
    volatile int64_t rate_ppm;
    volatile int64_t anchor_ns;
};

static struct control *mapped;
static int tried;

static struct control *control(void) {
    struct control *c = __atomic_load_n(&mapped, __ATOMIC_ACQUIRE);
    if (c || __atomic_load_n(&tried, __ATOMIC_ACQUIRE)) return c;
    const char *path = getenv("FAKE_CLOCK_FILE");
    if (path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            void *m = mmap(NULL, sizeof(struct control), PROT_READ, MAP_SHARED, fd, 0);
            close(fd);
            if (m != MAP_FAILED) __atomic_store_n(&mapped, (struct control *)m, __ATOMIC_RELEASE);
        }
    }
    __atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
    return __atomic_load_n(&mapped, __ATOMIC_ACQUIRE);
}

static int real_clock(clockid_t id, struct timespec *ts) {
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static void fake(struct timespec *ts) {
    struct control *c = control();
    if (!c) return;
    int64_t real = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
    int64_t t = real + c->offset_ns;
    int64_t rate = c->rate_ppm, anchor = c->anchor_ns;
    if (rate > 0 && rate != 1000000 && real > anchor) {
        int64_t since = real - anchor, extra = rate - 1000000;
        t += since / 1000000 * extra + since % 1000000 * extra / 1000000;
    }
    ts->tv_sec = t / 1000000000LL;
    ts->tv_nsec = t % 1000000000LL;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int r = real_clock(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) fake(ts);
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec ts;
    if (real_clock(CLOCK_REALTIME, &ts) != 0) return -1;
    fake(&ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (real_clock(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    fake(&ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
