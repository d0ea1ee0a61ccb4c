/* alloc_counter: an LD_PRELOAD library that counts heap allocations.
 *
 *   cc -O2 -shared -fPIC -o alloc_counter.so bench/alloc_counter.c -ldl -lpthread
 *   ALLOC_COUNTER_FILE=/tmp/counts LD_PRELOAD=./alloc_counter.so build/usernet ...
 *
 * Wraps malloc, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc and free (C++ operator new and delete go through
 * malloc and free in libstdc++, so they are counted too; glibc's own
 * internal allocations go through the same interposable symbols, since glibc
 * supports replacing malloc). Counters are relaxed atomics; the wrappers
 * allocate nothing of their own.
 *
 * A reporter thread, started by the constructor when ALLOC_COUNTER_FILE is
 * set, rewrites that file every ALLOC_COUNTER_INTERVAL_MS (default 100) ms
 * with one line, padded to a fixed width and written with pwrite() at
 * offset 0 so a reader never sees a torn or stale tail:
 *
 *   seq=N pid=P allocs=A frees=F malloc=.. calloc=.. realloc=.. memalign=.. bytes=B
 *
 * allocs is the sum of every allocating call (realloc included, except
 * realloc(p, 0) which frees); bytes is the sum of requested sizes. The
 * thread blocks every signal, so the program's signal handling (signalfd,
 * sigwait) is not disturbed. The library unsets LD_PRELOAD in its
 * constructor so that programs the target runs are not counted.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void *(*reallocarray_fn)(void *, size_t, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);
typedef void *(*valloc_fn)(size_t);
typedef void (*free_fn)(void *);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static reallocarray_fn real_reallocarray;
static posix_memalign_fn real_posix_memalign;
static aligned_alloc_fn real_aligned_alloc;
static memalign_fn real_memalign;
static valloc_fn real_valloc;
static valloc_fn real_pvalloc;
static free_fn real_free;

enum { C_MALLOC, C_CALLOC, C_REALLOC, C_MEMALIGN, C_FREE, C_BYTES, C_N };
static uint64_t counters[C_N];

static inline void count(int which, uint64_t bytes) {
    __atomic_fetch_add(&counters[which], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&counters[C_BYTES], bytes, __ATOMIC_RELAXED);
}

/* dlsym() may call calloc() (for its error buffer) before real_calloc is
 * known: such early requests come from this bump buffer and are never
 * freed back to glibc. */
static _Alignas(64) char bootstrap[8192];
static size_t bootstrap_used;
static int resolving;

static void *bootstrap_alloc(size_t n) {
    size_t off = __atomic_fetch_add(&bootstrap_used, (n + 15) & ~(size_t)15, __ATOMIC_RELAXED);
    if (off + n > sizeof bootstrap) return NULL;
    return bootstrap + off;
}

static int in_bootstrap(const void *p) {
    return (const char *)p >= bootstrap && (const char *)p < bootstrap + sizeof bootstrap;
}

static void resolve(void) {
    if (real_malloc || resolving) return;
    resolving = 1;
    real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
    real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    real_reallocarray = (reallocarray_fn)dlsym(RTLD_NEXT, "reallocarray");
    real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (aligned_alloc_fn)dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (memalign_fn)dlsym(RTLD_NEXT, "memalign");
    real_valloc = (valloc_fn)dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (valloc_fn)dlsym(RTLD_NEXT, "pvalloc");
    real_free = (free_fn)dlsym(RTLD_NEXT, "free");
    real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

void *malloc(size_t n) {
    if (!real_malloc) {
        resolve();
        if (!real_malloc) return bootstrap_alloc(n);
    }
    count(C_MALLOC, n);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b) {
    if (!real_calloc) {
        resolve();
        if (!real_calloc) {
            size_t n;
            if (__builtin_mul_overflow(a, b, &n)) return NULL;
            return bootstrap_alloc(n); /* static storage: already zero */
        }
    }
    count(C_CALLOC, (uint64_t)a * b);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    if (!real_realloc) resolve();
    if (in_bootstrap(p)) { /* move out of the bump buffer; never shrink it */
        size_t have = (size_t)(bootstrap + sizeof bootstrap - (char *)p);
        void *q = malloc(n);
        if (q) memcpy(q, p, n < have ? n : have);
        return q;
    }
    if (!real_realloc) return NULL;
    if (p && n == 0) count(C_FREE, 0);
    else count(C_REALLOC, n);
    return real_realloc(p, n);
}

void *reallocarray(void *p, size_t a, size_t b) {
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (!real_posix_memalign) resolve();
    if (!real_posix_memalign) return ENOMEM;
    count(C_MEMALIGN, n);
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    if (!real_aligned_alloc) resolve();
    if (!real_aligned_alloc) return NULL;
    count(C_MEMALIGN, n);
    return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n) {
    if (!real_memalign) resolve();
    if (!real_memalign) return NULL;
    count(C_MEMALIGN, n);
    return real_memalign(align, n);
}

void *valloc(size_t n) {
    if (!real_valloc) resolve();
    if (!real_valloc) return NULL;
    count(C_MEMALIGN, n);
    return real_valloc(n);
}

void *pvalloc(size_t n) {
    if (!real_pvalloc) resolve();
    if (!real_pvalloc) return NULL;
    count(C_MEMALIGN, n);
    return real_pvalloc(n);
}

void free(void *p) {
    if (!p || in_bootstrap(p)) return;
    if (!real_free) resolve();
    if (!real_free) return;
    count(C_FREE, 0);
    real_free(p);
}

/* ---- reporter ---------------------------------------------------------- */

static int out_fd = -1;
static long interval_ms = 100;

static char *put_u64(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s) {
    while (*s) *p++ = *s++;
    return p;
}

static void report(uint64_t seq) {
    uint64_t c[C_N];
    for (int i = 0; i < C_N; i++) c[i] = __atomic_load_n(&counters[i], __ATOMIC_RELAXED);
    char line[256];
    char *p = line;
    p = put_str(p, "seq=");
    p = put_u64(p, seq);
    p = put_str(p, " pid=");
    p = put_u64(p, (uint64_t)getpid());
    p = put_str(p, " allocs=");
    p = put_u64(p, c[C_MALLOC] + c[C_CALLOC] + c[C_REALLOC] + c[C_MEMALIGN]);
    p = put_str(p, " frees=");
    p = put_u64(p, c[C_FREE]);
    p = put_str(p, " malloc=");
    p = put_u64(p, c[C_MALLOC]);
    p = put_str(p, " calloc=");
    p = put_u64(p, c[C_CALLOC]);
    p = put_str(p, " realloc=");
    p = put_u64(p, c[C_REALLOC]);
    p = put_str(p, " memalign=");
    p = put_u64(p, c[C_MEMALIGN]);
    p = put_str(p, " bytes=");
    p = put_u64(p, c[C_BYTES]);
    while (p < line + sizeof line - 1) *p++ = ' '; /* fixed width: no stale tail */
    *p++ = '\n';
    (void)!pwrite(out_fd, line, (size_t)(p - line), 0);
}

static void *reporter(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    for (uint64_t seq = 0;; seq++) {
        report(seq);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

__attribute__((destructor)) static void alloc_counter_fini(void) {
    if (out_fd >= 0) report(UINT64_MAX);
}

__attribute__((constructor)) static void alloc_counter_init(void) {
    resolve();
    const char *path = getenv("ALLOC_COUNTER_FILE");
    const char *iv = getenv("ALLOC_COUNTER_INTERVAL_MS");
    if (iv && atol(iv) > 0) interval_ms = atol(iv);
    /* children (if any) of the measured program run uncounted */
    unsetenv("LD_PRELOAD");
    if (!path || !*path) return;
    out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) return;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    pthread_create(&t, &attr, reporter, NULL);
    pthread_attr_destroy(&attr);
}
