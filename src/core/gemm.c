/* gemm.c — fmi_sgemm: OpenBLAS and/or oneDNN when the build has them and may
 * call them (the fast path: a fixed grid of single-threaded tiles, each to the
 * library the build and FEWMUL_GEMM pick), otherwise a straightforward
 * row-parallel loop that is correct for every transpose case. */
#define _POSIX_C_SOURCE 200809L /* dlopen */
#include "gemm.h"

#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef FM_HAVE_CBLAS
#include <cblas.h>
#endif
#ifdef FM_HAVE_DNNL
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#endif
#if defined(FM_HAVE_CBLAS) || defined(FM_HAVE_DNNL)
#define FM_HAVE_TILES 1
#endif

/* Row i of C = beta*C + alpha*op(A)*b, with b row-major K x n (row stride
 * ldb): each element starts at beta*C (0 when beta is 0) and adds
 * (alpha*a_ik)*b_kj for k = 0, 1, ... in that order. */
static void one_row(int ta, int i, int n, int K, float alpha, const float *A, int lda,
                    const float *b0, long ldb, float beta, float *c)
{
    for (int j = 0; j < n; j++)
        c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    for (int k = 0; k < K; k++) {
        const float a = alpha * (ta ? A[(long)k * lda + i] : A[(long)i * lda + k]);
        const float *b = b0 + (long)k * ldb;
        for (int j = 0; j < n; j++)
            c[j] += a * b[j];
    }
}

/* Rows i..i+3 at once, each element summed exactly as one_row sums it: one
 * load of b serves four rows (1.5x faster at 200x1024x784). */
static void four_rows(int ta, int i, int n, int K, float alpha, const float *A, int lda,
                      const float *b0, long ldb, float beta, float *C, int ldc)
{
    float *const c0 = C + (long)i * ldc, *const c1 = c0 + ldc, *const c2 = c1 + ldc,
                 *const c3 = c2 + ldc;
    for (int j = 0; j < n; j++) {
        c0[j] = beta == 0.0f ? 0.0f : beta * c0[j];
        c1[j] = beta == 0.0f ? 0.0f : beta * c1[j];
        c2[j] = beta == 0.0f ? 0.0f : beta * c2[j];
        c3[j] = beta == 0.0f ? 0.0f : beta * c3[j];
    }
    for (int k = 0; k < K; k++) {
        const long step = ta ? 1 : lda;
        const float *a = ta ? A + (long)k * lda + i : A + (long)i * lda + k;
        const float a0 = alpha * a[0], a1 = alpha * a[step], a2 = alpha * a[2 * step],
                    a3 = alpha * a[3 * step];
        const float *restrict b = b0 + (long)k * ldb;
        float *restrict d0 = c0, *restrict d1 = c1, *restrict d2 = c2, *restrict d3 = c3;
        for (int j = 0; j < n; j++) {
            const float v = b[j];
            d0[j] += a0 * v;
            d1[j] += a1 * v;
            d2[j] += a2 * v;
            d3[j] += a3 * v;
        }
    }
}

/* C[0..M, 0..n] = beta*C + alpha*op(A)*b. Rows of C are independent of each
 * other, so blocks of four split across threads, and each element sums over k
 * in the same order whatever the thread count. */
static void rows_times(int ta, int M, int n, int K, float alpha, const float *A, int lda,
                       const float *b0, long ldb, float beta, float *C, int ldc)
{
    const int blocks = (M + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks; blk++) {
        const int i = blk * 4;
        if (i + 4 <= M)
            four_rows(ta, i, n, K, alpha, A, lda, b0, ldb, beta, C, ldc);
        else
            for (int r = i; r < M; r++)
                one_row(ta, r, n, K, alpha, A, lda, b0, ldb, beta, C + (long)r * ldc);
    }
}

/* Floats of a transposed B per copy: a panel of columns on the stack (64 KiB),
 * so that a product never allocates (an allocation that could fail would
 * need an error this void function cannot return), and at most 256 columns. */
#define PANEL_FLOATS 16384
#define PANEL 256

void fmi_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!tb) {
        rows_times(ta, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* op(B) = Bᵀ: its rows are B's columns, strided. Copied, a panel of
     * columns at a time, into rows, the inner loop runs along contiguous
     * memory (30x faster at 100x1024x1024, measured with 256-column panels
     * before they moved to the stack) and sums exactly as before. */
    int panel = K > 0 ? PANEL_FLOATS / K : 0;
    panel = panel < PANEL ? panel : PANEL;
    panel = N < panel ? N : panel;
    float bt[PANEL_FLOATS];
    if (panel > 0) {
        for (int j0 = 0; j0 < N; j0 += panel) {
            const int n = N - j0 < panel ? N - j0 : panel;
            for (int j = 0; j < n; j++) {
                const float *col = B + (long)(j0 + j) * ldb;
                for (int k = 0; k < K; k++)
                    bt[(long)k * n + j] = col[k];
            }
            rows_times(ta, M, n, K, alpha, A, lda, bt, n, beta, C + j0, ldc);
        }
        return;
    }
    /* K too long for a panel (over 16384): the same sums, along the strided rows */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *c = C + (long)i * ldc;
        for (int j = 0; j < N; j++)
            c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * (ta ? A[(long)k * lda + i] : A[(long)i * lda + k]);
            for (int j = 0; j < N; j++)
                c[j] += a * B[(long)j * ldb + k];
        }
    }
}

/* ---- which library ---------------------------------------------------------- */

const char *fm_gemm_libraries(void)
{
#if defined(FM_HAVE_CBLAS) && defined(FM_HAVE_DNNL)
    return "OpenBLAS and oneDNN";
#elif defined(FM_HAVE_CBLAS)
    return "OpenBLAS";
#elif defined(FM_HAVE_DNNL)
    return "oneDNN";
#else
    return "portable loop";
#endif
}

/* FEWMUL_GEMM's value as FMI_GEMM_*, -1 for one that is not a name or names
 * a library this build lacks. */
static int parse_choice(const char *value)
{
    if (!value || !*value || strcmp(value, "auto") == 0)
        return FMI_GEMM_AUTO;
    if (strcmp(value, "openblas") == 0) {
#ifdef FM_HAVE_CBLAS
        return FMI_GEMM_OPENBLAS;
#else
        return -1;
#endif
    }
    if (strcmp(value, "dnnl") == 0) {
#ifdef FM_HAVE_DNNL
        return FMI_GEMM_DNNL;
#else
        return -1;
#endif
    }
    return -1;
}

int fm_gemm_check(void)
{
    const char *value = getenv("FEWMUL_GEMM");
    if (parse_choice(value) >= 0)
        return FM_OK;
    if (strcmp(value, "openblas") == 0 || strcmp(value, "dnnl") == 0)
        return fmi_error(FM_EUNSUPPORTED, "FEWMUL_GEMM=%s: this build's float products have %s",
                         value, fm_gemm_libraries());
    return fmi_error(FM_EINVAL, "FEWMUL_GEMM=%s: expected openblas, dnnl or auto", value);
}

int fmi_gemm_choice(void)
{
    /* read once, so that one run does not change arithmetic half-way; a value
     * fm_gemm_check rejects counts as auto here (the command stops first) */
    static atomic_int choice = -1;
    int c = atomic_load(&choice);
    if (c < 0) {
        c = parse_choice(getenv("FEWMUL_GEMM"));
        if (c < 0)
            c = FMI_GEMM_AUTO;
        atomic_store(&choice, c);
    }
    return c;
}

/* OpenBLAS maps a buffer (128 MiB in Debian's 0.3.21) for each thread that
 * runs a product and, when the system refuses it, retries forever
 * (blas_memory_alloc loops; a thread of its own stuck there also keeps the
 * process from exiting). Under a finite address-space or data limit that can
 * happen at any product, however much room there was at the start, so such a
 * process calls no OpenBLAS routine at all: products take the portable loop,
 * whose results are the BLAS-free build's (docs/cli.md, "Memory and thread
 * limits"). oneDNN is held to the same: one rule for both fast libraries. */
int fmi_blas_enabled(void)
{
#ifdef FM_HAVE_CBLAS
    return !fmi_memory_limited();
#else
    return 0;
#endif
}

#ifdef FM_HAVE_TILES
/* Threads: OpenBLAS runs single-threaded (fmi_threads_set) and this function
 * shares the product among the OpenMP threads itself. One thread pool instead
 * of two: OpenMP threads spinning between our loops would otherwise steal the
 * cores OpenBLAS's own threads need (measured: 2.5x slower training).
 *
 * OpenBLAS rounds a value differently depending on where it falls in its
 * kernel blocks, so how C is cut shows in the results. C is therefore cut
 * into a grid of tiles that depends on M, N and K only, never on the thread
 * count, and each tile is one single-threaded library call, whichever
 * thread runs it: the same bits on any number of threads (docs/method.md,
 * "Reproducibility"). Products under TILE_WORK multiply-adds stay whole;
 * larger ones halve their longer side (in multiples of 16, to keep kernel
 * tails rare, and not under TILE_MIN) until there are GEMM_TILES tiles and
 * none over TILE_MAX_WORK. Measured on paper-mlp's products (batch 200, one
 * thread, CPU time): 4 tiles cost 2% more than one call, 8 tiles 3.5%, 16
 * tiles 6%; so 4 for the 2-core target (two per thread, as fast as one block
 * per thread), and up to 8 on the 1024-wide layers, so that more cores still
 * find work. */
#define GEMM_TILES 4
#define TILE_MIN 64
#define TILE_WORK 1e6
#define TILE_MAX_WORK 32e6

static int round16(int n) { return (n + 15) / 16 * 16; }

/* Whether a tile goes to oneDNN: a function of the build and FEWMUL_GEMM
 * alone (a rule of the tile's shape would do too; the measurements asked for
 * none), so the same tile always gets the same library and the same bits, on
 * any thread count.
 *
 * The rule of FEWMUL_GEMM=auto, from measurements on the 2-core AVX-512
 * machine (docs/method.md, "Reproducibility"; docs/bench.md): each tile shape
 * that paper-cnn (batch 100) and paper-mlp (batch 200) train with, timed on
 * one thread, 7 interleaved calls each, gave oneDNN's sgemm 1.3-2.9x the speed
 * of OpenBLAS's with OPENBLAS_CORETYPE=Haswell (2.1-2.3x over a paper-cnn
 * step's mix) and 0.9-1.6x (1.1-1.2x over the mix) with it unset (OpenBLAS's
 * AVX-512 kernels). The few it lost were small (products 10 wide, under 1%
 * of a step's work), and they win with the Haswell kernels; a tile 128 wide
 * of A·Bᵀ over K = 1024 ran at 0.3-0.5x in that loop but not inside a
 * training run, where every tile to oneDNN took paper-mlp's epoch in 0.71x
 * the CPU time of OpenBLAS (Haswell) and 0.92x (unset), and sending those
 * tiles to OpenBLAS made it slower. So every tile goes to oneDNN when the
 * build has it: a rule that reads neither OPENBLAS_CORETYPE nor the CPU. */
static int tile_to_dnnl(int choice)
{
#if defined(FM_HAVE_DNNL) && defined(FM_HAVE_CBLAS)
    return choice != FMI_GEMM_OPENBLAS;
#elif defined(FM_HAVE_DNNL)
    (void)choice;
    return 1;
#else
    (void)choice;
    return 0;
#endif
}

#ifdef FM_HAVE_DNNL
typedef dnnl_status_t (*sgemm_fn)(char, char, dnnl_dim_t, dnnl_dim_t, dnnl_dim_t, float,
                                  const float *, dnnl_dim_t, const float *, dnnl_dim_t, float,
                                  float *, dnnl_dim_t);

/* oneDNN's dnnl_sgemm, opened at the first product that may call it (NULL
 * when the library cannot be opened). Not linked: the library (40 MB in
 * Debian's 2.6) and what it loads (libstdc++, libOpenCL) took so much address
 * space from every process that a light command no longer fitted under a
 * 100 MB limit (tests/cli_limits.sh); under a memory limit no product calls
 * it, so such a process never maps it. Where it cannot be opened (removed
 * since the build), its tiles run in OpenBLAS, or the portable loop: right
 * sums with that library's last bits. */
static sgemm_fn dnnl_sgemm_opened(void)
{
    static _Atomic(sgemm_fn) fn = NULL;
    static atomic_int tried = 0;
    if (!atomic_load(&tried)) {
        /* two threads may both open it: dlopen counts, and both store the same */
        void *lib = dlopen(FM_DNNL_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (lib)
            atomic_store(&fn, (sgemm_fn)dlsym(lib, "dnnl_sgemm"));
        atomic_store(&tried, 1);
    }
    return atomic_load(&fn);
}

/* Debian's oneDNN (2.6) points the stack pointer into the heap inside its
 * AVX-512 and AVX2 sgemm kernels, so a signal handled on a thread that is in
 * one of them writes its frame over the heap: an empty SIGALRM handler and a
 * loop of dnnl_sgemm calls abort with "corrupted size vs. prev_size" within
 * seconds on the 2-core AVX-512 machine, and `fewmul train` stopped by
 * SIGTERM aborted so in 2 to 14% of tries (oneDNN issue #4845, fixed
 * upstream in 2026 by pull request #4855). So the asynchronous signals are
 * blocked on the thread for each call: one that arrives meanwhile goes to
 * another thread, or waits until the call returns. Signals that a fault
 * raises on the thread itself stay unblocked (blocking them is undefined). */
static void block_async_signals(sigset_t *old)
{
    sigset_t async;
    sigfillset(&async);
    const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        sigdelset(&async, faults[i]);
    pthread_sigmask(SIG_BLOCK, &async, old);
}
#endif

/* One tile, on the calling thread. */
static void tile(int to_dnnl, int ta, int tb, int m, int n, int K, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    (void)to_dnnl;
#ifdef FM_HAVE_DNNL
    const sgemm_fn dnnl_sgemm = to_dnnl ? dnnl_sgemm_opened() : NULL;
    if (dnnl_sgemm) {
        /* oneDNN (Debian's build runs on libgomp, the runtime this library
         * uses) takes omp_get_max_threads() threads for a call made outside
         * any parallel region (measured: it started a second thread), and
         * may split a product among them however it likes. Every call here
         * is inside a region, a product of one tile too (the if clause), and
         * measured there it starts none; the count is also set to 1 for
         * this region's task (the caller's returns when it ends), so that
         * nothing rests on how oneDNN reads the runtime. */
        omp_set_num_threads(1);
        sigset_t signals;
        block_async_signals(&signals);
        const dnnl_status_t done = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, K, alpha, a,
                                              lda, b, ldb, beta, c, ldc);
        pthread_sigmask(SIG_SETMASK, &signals, NULL);
        if (done != dnnl_success)
            /* oneDNN could not allocate its packing buffers: the portable
             * sums for this tile (correct, though rounded differently),
             * since a product cannot fail */
            fmi_sgemm_portable(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#endif
#ifdef FM_HAVE_CBLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, K, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    fmi_sgemm_portable(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

static void sgemm_tiled(int choice, int ta, int tb, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    const double work = (double)M * N * K;
    const double want = work > TILE_WORK ? FM_MAX(GEMM_TILES, work / TILE_MAX_WORK) : 1.0;
    int tm = M, tn = N;
    while ((double)((M + tm - 1) / tm) * ((N + tn - 1) / tn) < want) {
        if (tm >= tn && tm >= 2 * TILE_MIN)
            tm = round16((tm + 1) / 2);
        else if (tn >= 2 * TILE_MIN)
            tn = round16((tn + 1) / 2);
        else
            break;
    }
    const int gn = (N + tn - 1) / tn;
    const long tiles = (long)((M + tm - 1) / tm) * gn;
    /* a region even for one tile (the if clause runs it on this thread): the
     * thread count a oneDNN tile sets is then the region's, not the caller's */
#pragma omp parallel for schedule(dynamic) if (tiles > 1)
    for (long t = 0; t < tiles; t++) {
        const int i0 = (int)(t / gn) * tm, j0 = (int)(t % gn) * tn;
        const int m = FM_MIN(tm, M - i0), n = FM_MIN(tn, N - j0);
        const float *a = ta ? A + i0 : A + (long)i0 * lda;
        const float *b = tb ? B + (long)j0 * ldb : B + j0;
        tile(tile_to_dnnl(choice), ta, tb, m, n, K, alpha, a, lda, b, ldb, beta,
             C + (long)i0 * ldc + j0, ldc);
    }
}
#endif

int fmi_gemm_dnnl_opened(void)
{
#ifdef FM_HAVE_DNNL
    return dnnl_sgemm_opened() != NULL;
#else
    return 0;
#endif
}

#ifdef FM_HAVE_TILES
/* Whether the fast libraries may be called: the process has no finite memory
 * limit (fmi_blas_enabled says why). */
static int tiles_enabled(void) { return !fmi_memory_limited(); }
#endif

void fmi_sgemm_with(int choice, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
#ifdef FM_HAVE_TILES
    if (tiles_enabled()) {
        sgemm_tiled(choice, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    (void)choice;
    fmi_sgemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void fmi_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    fmi_sgemm_with(fmi_gemm_choice(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
