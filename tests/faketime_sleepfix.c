/* Preloaded before libfaketime by tests/faketime.py. libfaketime 0.9.10 with
 * FAKETIME_DONT_FAKE_MONOTONIC=1 turns clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...),
 * which Python >= 3.11's time.sleep() uses, into a sleep until a negative time: EINVAL
 * (wolfcw/libfaketime#426). The monotonic clock is not faked, so its sleeps go to the kernel
 * untouched; every other clock's go on to libfaketime. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem) {
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (clock_id == CLOCK_MONOTONIC || clock_id == CLOCK_BOOTTIME) {
        return syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == 0 ? 0 : errno;
    }
    if (next == NULL) {
        next = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock_id, flags, req, rem);
}
