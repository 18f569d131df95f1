/* threads.c — the clock; the one place that sets thread counts for both
 * OpenMP (our loops) and OpenBLAS (float GEMM); the probe that keeps those
 * counts within what the system lets this process start; and the memory
 * limits that decide whether OpenBLAS may be called at all (gemm.c). */
#define _GNU_SOURCE /* pthread_getattr_default_np */
#include "internal.h"

#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#include <pthread.h>
#endif
#ifdef FM_HAVE_CBLAS
#include <cblas.h>
#endif

double fmi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cores(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

/* ---- how many threads can run ---------------------------------------------
 *
 * libgomp ends the process (exit 1, "libgomp: Thread creation failed") when a
 * parallel region cannot start its threads, and OpenBLAS raises SIGINT when
 * it cannot start its own: a process limit (RLIMIT_NPROC, a cgroup's
 * pids.max) or an address-space limit too small for their stacks. So before
 * the library asks either runtime for threads it starts as many plain threads
 * itself, all alive at once as a team's are, and keeps every later count
 * within what that proved. After a probe an empty region of that many
 * threads makes libgomp start its pool at once, while the room just proved is
 * still there; libgomp keeps the pool for the next regions. The count is
 * probed once for each larger request; should other processes of the same
 * user take the remaining room later, a runtime can still fail. */

#ifdef _OPENMP
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t opened;
    int open;
} gate;

static void *wait_at_gate(void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->opened, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

/* How many of n more threads (default attributes, as libgomp's and OpenBLAS's)
 * the system lets this process have at the same time. */
static int probe_threads(int n)
{
    if (n <= 0)
        return 0;
    pthread_t *ids = fmi_alloc_raw(sizeof *ids * (size_t)n);
    if (!ids)
        return 0;
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int made = 0;
    while (made < n && pthread_create(&ids[made], NULL, wait_at_gate, &g) == 0)
        made++;
    pthread_mutex_lock(&g.lock);
    g.open = 1;
    pthread_cond_broadcast(&g.opened);
    pthread_mutex_unlock(&g.lock);
    for (int i = 0; i < made; i++)
        pthread_join(ids[i], NULL);
    fmi_free(ids);
    return made;
}

/* Under an address-space or data limit (both count thread stacks) the
 * threads' stacks may take a quarter of it, so that the work keeps the rest:
 * else on a machine of many cores the stacks alone could fill the limit. */
static int stacks_fit(void)
{
    struct rlimit as, data;
    rlim_t limit = RLIM_INFINITY;
    if (getrlimit(RLIMIT_AS, &as) == 0)
        limit = as.rlim_cur;
    if (getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur < limit)
        limit = data.rlim_cur;
    if (limit == RLIM_INFINITY)
        return 0;
    size_t stack = 0;
#ifdef __GLIBC__
    pthread_attr_t attr;
    if (pthread_getattr_default_np(&attr) == 0) {
        pthread_attr_getstacksize(&attr, &stack);
        pthread_attr_destroy(&attr);
    }
#endif
    if (stack == 0)
        stack = (size_t)8 << 20;
    const double fit = (double)limit / 4.0 / (double)stack;
    return fit < 1.0 ? 1 : fit > 1e6 ? 1000000 : (int)fit;
}

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
/* threads known to run at once, the caller included: read without the lock
 * by the calls that ask for no more (every prediction asks) */
static atomic_int proven = 1;
static int ceiling;        /* > 0 once known (stacks_fit, a probe fell short): the most there will be */
static int ceiling_looked; /* stacks_fit asked */
#endif

int fmi_threads_usable(int want)
{
    if (want <= 0)
        want = cores();
#ifdef _OPENMP
    /* OMP_THREAD_LIMIT caps every count, the probe's included: the threads it
     * starts count against what the user allowed (and under an emulator that
     * cannot start a thread, OMP_THREAD_LIMIT=1 keeps it from trying) */
    if (want > omp_get_thread_limit())
        want = omp_get_thread_limit();
    if (want <= atomic_load_explicit(&proven, memory_order_acquire))
        return want;
    pthread_mutex_lock(&probe_lock);
    if (!ceiling_looked) {
        ceiling_looked = 1;
        ceiling = stacks_fit();
    }
    if (ceiling > 0 && want > ceiling)
        want = ceiling;
    int known = atomic_load_explicit(&proven, memory_order_relaxed);
    /* a region inside a region gets no threads of its own (nesting is off) */
    if (want > known && !omp_in_parallel()) {
        const int extra = want - known, made = probe_threads(extra);
        if (made < extra)
            ceiling = known + made;
        known += made;
#pragma omp parallel num_threads(known) if (known > 1)
        {
            (void)0;
        }
        atomic_store_explicit(&proven, known, memory_order_release);
        if (ceiling > 0 && omp_get_max_threads() > ceiling)
            omp_set_num_threads(ceiling); /* for regions that give no count */
    }
    if (want > known)
        want = known;
    pthread_mutex_unlock(&probe_lock);
#endif
    return want;
}

int fm_threads_usable(int threads, int *wanted)
{
    if (wanted)
        *wanted = threads > 0 ? threads : cores();
    return fmi_threads_usable(threads);
}

int fmi_threads_available(void)
{
    return fmi_threads_usable(0);
}

void fmi_blas_single_thread(void)
{
#ifdef FM_HAVE_CBLAS
    openblas_set_num_threads(1);
#endif
}

int fmi_threads_set(int threads)
{
    threads = fmi_threads_usable(threads);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
#ifdef FM_HAVE_CBLAS
    /* fmi_sgemm splits GEMMs across OpenMP threads itself (see gemm.c) */
    openblas_set_num_threads(1);
#endif
    return threads;
}

/* ---- memory limits ---------------------------------------------------------- */

int fmi_memory_limited(void)
{
    /* -1 unknown, else the answer: decided once, so that one run does not
     * change arithmetic half-way (gemm.c) */
    static atomic_int limited = -1;
    int v = atomic_load_explicit(&limited, memory_order_relaxed);
    if (v < 0) {
        struct rlimit as, data;
        v = (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) ||
            (getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur != RLIM_INFINITY);
        atomic_store_explicit(&limited, v, memory_order_relaxed);
    }
    return v;
}
