/* cli_mpi.c — the ranks of `mpirun -np N fewmul train ...`: MPI started only
 * when the process was launched by an MPI launcher, the two collectives of
 * fm_comm on MPI_COMM_WORLD (with errors returned, not fatal), the agreement
 * after each rank's set-up so that a rank that cannot start stops every rank
 * with its message, and the end. Built with MPI when CMake finds it
 * (FEWMUL_WITH_MPI); without it, a launch of several ranks is refused, since
 * N independent runs would all write the same files. docs/distributed.md. */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef FEWMUL_WITH_MPI
#include <mpi.h>
#endif

/* The launcher's rank and size, from the environment it sets (Open MPI,
 * then the PMI of MPICH's and Slurm's launchers); size 0 when none. */
static void launched_as(int *rank, int *size)
{
    static const char *const names[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                           {"PMI_RANK", "PMI_SIZE"},
                                           {"PMIX_RANK", "PMIX_SIZE"}};
    *rank = 0;
    *size = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *r = getenv(names[i][0]), *s = getenv(names[i][1]);
        if (r && s) {
            *rank = atoi(r);
            *size = atoi(s);
            return;
        }
    }
}

#ifdef FEWMUL_WITH_MPI

static char mpi_failure[MPI_MAX_ERROR_STRING + 64];

/* Keeps MPI's description of a failed call for the message of the run. */
static int mpi_status(int rc, const char *call)
{
    if (rc == MPI_SUCCESS)
        return 0;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "error %d", rc);
    snprintf(mpi_failure, sizeof mpi_failure, "%s: %s", call, text);
    return -1;
}

static int mpi_allgather(const void *send, void *recv, size_t bytes, void *user)
{
    (void)user;
    if (bytes > INT_MAX)
        return -1;
    return mpi_status(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE,
                                    MPI_COMM_WORLD),
                      "MPI_Allgather");
}

/* The sum over the ranks. Open MPI's allreduce algorithms (recursive
 * doubling, ring, reduce-scatter then allgather) give every rank the same
 * bits: each partial sum is either formed by one rank and copied to the
 * others, or formed by two ranks from the same two operands, and float
 * addition commutes. fewmul checks it: the ranks compare their weights at
 * every checkpoint and at the end of the run. (A reduce-scatter and
 * allgather of our own, which would guarantee it by construction, measured
 * 4 times slower here than MPI_Allreduce.) */
static int mpi_allreduce(float *data, size_t count, void *user)
{
    (void)user;
    if (count > INT_MAX)
        return -1;
    return mpi_status(MPI_Allreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM,
                                    MPI_COMM_WORLD),
                      "MPI_Allreduce");
}

int ranks_start(cli_ranks *r)
{
    memset(r, 0, sizeof *r);
    r->size = 1;
    int rank, size;
    launched_as(&rank, &size);
    if (size <= 1)
        return CLI_OK;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return failure("MPI_Init failed: this process was launched as rank %d of %d", rank, size);
    r->mpi = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &r->size);
    MPI_Comm local;
    r->local_size = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_size(local, &r->local_size);
        MPI_Comm_free(&local);
    }
    r->comm = (fm_comm){.rank = r->rank, .size = r->size, .allreduce_sum = mpi_allreduce,
                        .allgather = mpi_allgather, .user = r};
    set_error_prefix(r->rank, r->size);
    return CLI_OK;
}

/* A rank's status and message as the others learn them. */
typedef struct rank_status {
    int status;
    char message[256];
} rank_status;

int ranks_agree(cli_ranks *r, int status)
{
    if (!r->mpi)
        return status;
    /* the worst status, and whether a rank lacks room for the messages (then
     * none are gathered, by every rank alike) */
    rank_status mine = {status, ""}, *all = calloc((size_t)r->size, sizeof *all);
    int flags[2] = {status, all == NULL}, worst[2] = {0, 0};
    if (mpi_status(MPI_Allreduce(flags, worst, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
                   "MPI_Allreduce")) {
        free(all);
        return failure_as(FM_EPEER, "the ranks could not agree that they have started: %s",
                          mpi_failure);
    }
    if (worst[0] == 0) {
        free(all);
        return CLI_OK;
    }
    if (status)
        fm_fit_text(mine.message, sizeof mine.message, last_error_message()); /* its reason kept */
    int rc = worst[1] == 0 ? mpi_status(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all,
                                                      sizeof mine, MPI_BYTE, MPI_COMM_WORLD),
                                        "MPI_Allgather")
                           : -1;
    int first = 0;
    while (rc == 0 && first < r->size && all[first].status == 0)
        first++;
    if (status == 0)
        status = rc == 0 && first < r->size
                     ? failure_as(FM_EPEER, "rank %d of %d failed: %s", first, r->size,
                                  all[first].message)
                     : failure_as(FM_EPEER, "another rank failed");
    free(all);
    return status;
}

int ranks_max(cli_ranks *r, int value)
{
    int all = value;
    if (r->mpi && mpi_status(MPI_Allreduce(&value, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
                             "MPI_Allreduce"))
        return value;
    return all;
}

const char *ranks_failure(void) { return mpi_failure[0] ? mpi_failure : NULL; }

void ranks_finish(cli_ranks *r)
{
    /* after a failed collective MPI's state is unknown: leave it to the launcher */
    if (r->mpi && !mpi_failure[0])
        MPI_Finalize();
    r->mpi = 0;
}

#else /* no MPI in this build */

int ranks_start(cli_ranks *r)
{
    memset(r, 0, sizeof *r);
    r->size = 1;
    int rank, size;
    launched_as(&rank, &size);
    if (size > 1)
        return failure_as(FM_EUNSUPPORTED,
                          "launched as rank %d of %d, but this fewmul was built without MPI; "
                          "rebuild with Open MPI (Debian: libopenmpi-dev) to train on %d ranks",
                          rank, size, size);
    return CLI_OK;
}

int ranks_agree(cli_ranks *r, int status)
{
    (void)r;
    return status;
}

int ranks_max(cli_ranks *r, int value)
{
    (void)r;
    return value;
}

const char *ranks_failure(void) { return NULL; }

void ranks_finish(cli_ranks *r) { (void)r; }

#endif
