/* internal.h — helpers shared by the library's sources and its tests:
 * error reporting, the allocation hook, the clock and thread control.
 * Nothing here is part of the public API. */
#ifndef FEWMUL_INTERNAL_H
#define FEWMUL_INTERNAL_H

#include "fewmul.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define FM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FM_PRINTF(a, b)
#endif

/* Records a one-line message for fm_last_error() and returns err, so a failure
 * reads `return fmi_error(FM_EINVAL, "bad batch %d", b);`. A message longer
 * than FMI_MESSAGE_CAP - 1 bytes is fitted (fm_fit_text): the middle of a long
 * path or architecture in it is elided, its reason kept. */
int fmi_error(int err, const char *fmt, ...) FM_PRINTF(2, 3);
/* The size of fm_last_error()'s buffer: room for a copy of a message. */
#define FMI_MESSAGE_CAP 512

/* The allocation hook (fm_set_allocator). fmi_alloc zero-fills; both set an
 * FM_ENOMEM message on failure and return NULL. Sizes are checked for overflow. */
void *fmi_alloc(size_t count, size_t size);
void *fmi_alloc_raw(size_t bytes);
void *fmi_realloc(void *ptr, size_t bytes);
void fmi_free(void *ptr);
char *fmi_strdup(const char *text);

/* Monotonic seconds. */
double fmi_now(void);

/* Sets the OpenMP and BLAS thread counts (<= 0: all cores, and never more
 * than fmi_threads_usable allows); returns the count. */
int fmi_threads_set(int threads);
/* All cores, or fewer when no more threads can be started. */
int fmi_threads_available(void);
/* At most want threads (<= 0: all cores), the calling one included, that this
 * process can run at once: probed by starting them (threads.c), so that no
 * count the library gives OpenMP or OpenBLAS makes a runtime fail. */
int fmi_threads_usable(int want);
/* Makes OpenBLAS run on the calling thread (fewmul splits work itself). */
void fmi_blas_single_thread(void);
/* 1 when the process has a finite address-space or data-segment limit
 * (RLIMIT_AS, RLIMIT_DATA), in which case no OpenBLAS routine is called
 * (gemm.c says why); decided at the first call. */
int fmi_memory_limited(void);

#define FM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FM_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
