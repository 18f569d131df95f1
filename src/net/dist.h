/* dist.h — data-parallel training over the ranks of an fm_comm (fewmul.h):
 * each rank's share of a global minibatch, the collectives of a step (batch
 * norm's partial sums, the gradient exchange, with or without compression),
 * the agreements that carry a failure or a stop to every rank, the checks
 * that the ranks run one configuration on one data set and keep one set of
 * weights, and the merge of the ranks' ledgers. Every byte a rank sends or
 * receives is recorded in the ledger's network level. docs/distributed.md. */
#ifndef FEWMUL_DIST_H
#define FEWMUL_DIST_H

#include "data_id.h"
#include "ledger.h"
#include "net.h"

/* Values an agreement sums over the ranks, besides its failure flag. */
enum { FM_DIST_VALUES = 7 };

typedef struct fm_dist {
    const fm_comm *comm;   /* size > 1 */
    int rank, size;
    fm_ledger *ledger;     /* where exchanges are recorded (NULL: nowhere) */
    int control_layer;     /* the ledger layer of agreements and step statistics: the loss */
    float *scratch;        /* batch norm's backward sums: 2 x the widest */
    void *gather;          /* room for one fixed-size block from every rank */
    float *residual;       /* error feedback of the compressed exchange (state_count) */
    uint8_t *payload;      /* compressed gradients: this rank's, then every rank's */
    size_t payload_bytes;  /* one rank's */
} fm_dist;

/* A communicator of one rank (or none) needs no fm_dist: *out is NULL. */
int fmi_dist_create(const fm_comm *comm, const fm_model *model, fm_ledger *ledger, fm_dist **out);
void fmi_dist_free(fm_dist *dist);

/* This rank's contiguous share [*first, *first + *count) of `total` items. */
void fmi_dist_share(const fm_dist *dist, int total, int *first, int *count);

/* Sums n floats over the ranks in place, recorded in the ledger as `name`
 * at `cost` (a ring allreduce: each rank sends and receives 2(N-1)/N of the
 * bytes). FM_EPEER when the communicator fails. */
int fmi_dist_allreduce(fm_dist *dist, const fm_cost *cost, const char *name, float *x, size_t n);

/* Every rank calls this at the same points of a run, with its own status
 * `rc` and values to sum (may be NULL). All ranks learn whether any failed:
 * the failed ones return their own code; the others return FM_EPEER with a
 * message naming the first failed rank and its message. */
int fmi_dist_agree(fm_dist *dist, int rc, double values[FM_DIST_VALUES]);

/* The gradient exchange of a step: ws->grad_state (and the step's loss and
 * error count, in the FM_GRAD_EXTRA floats after it) summed over the ranks,
 * by allreduce or, compressed, by allgather and a sum in rank order. */
int fmi_dist_exchange(fm_dist *dist, const fm_model *model, fm_workspace *ws, double *loss,
                     int *errors);

/* Once at the start: the ranks must run one configuration (threads aside) on
 * one data set from one initial state. FM_EMISMATCH naming the first rank
 * that differs and what differs; the same verdict on every rank. */
int fmi_dist_check_start(fm_dist *dist, const fm_model *model, const fm_data_id *data, int n_train);

/* The ranks' weights must be bit-identical; FM_EMISMATCH otherwise. */
int fmi_dist_check_weights(fm_dist *dist, const fm_model *model, uint64_t step);

/* The sum of every rank's ledger into `merged` (cleared first). */
int fmi_dist_merge_ledger(fm_dist *dist, const fm_ledger *own, fm_ledger *merged);

#endif
