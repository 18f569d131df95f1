/* checkpoint.h — the state of a training run as fm_train keeps it and as a
 * checkpoint file holds it (docs/checkpoint-format.md): the position in the
 * epoch and its data order, the learning rate, the optimizer's arrays, the best
 * epoch so far with its weights, and what identifies the data. */
#ifndef FEWMUL_CHECKPOINT_H
#define FEWMUL_CHECKPOINT_H

#include "data_id.h"
#include "fewmul.h"

#include <stdint.h>

typedef struct fm_run {
    /* where the run is */
    int epoch;                 /* in progress, or next when next == 0 (1-based) */
    int next;                  /* position in order[] of the next batch; 0: the epoch has
                                  not started (its shuffle is still to come) */
    uint64_t step;             /* training steps done */
    double lr;                 /* the rate of this epoch */
    uint64_t shuffle;          /* the shuffling stream's fm_rng state */
    /* this epoch so far */
    double loss_sum;
    int64_t errors, batches;
    double epoch_train_seconds;
    /* the best validation epoch so far */
    double best_valid, best_test; /* best_valid +inf and best_test -1 before any */
    int best_epoch, have_best, evaluated;
    /* the whole run so far (its finished epochs: epoch - 1) */
    double train_seconds, elapsed_seconds, final_train_loss;
    uint64_t mulfree_fallbacks;
    /* arrays aligned with the model's state (state_count floats): the
     * optimizer's (s1: SGD velocity or Adam's first moment, s2: Adam's second;
     * NULL where unused) and the best epoch's weights (used when have_best) */
    float *s1, *s2, *best;
    int *order;                /* n_train indices: the data order of this epoch */
    int n_train;
} fm_run;


struct fm_checkpoint {
    fm_model *model;
    fm_config config; /* config.arch points into model */
    char *data_spec;  /* never NULL */
    fm_data_id data;
    fm_run run;       /* its arrays belong to the checkpoint */
    fm_ledger *ledger; /* NULL when the run kept none */
};

/* The optimizer arrays a configuration uses (0, 1 or 2): what fm_train
 * allocates and a checkpoint stores. */
int fmi_run_optimizer_arrays(const fm_config *config);
/* Writes the run atomically to path (fmi_file_write_atomic). */
int fmi_checkpoint_write(const char *path, const fm_model *model, const char *data_spec,
                        const fm_data_id *data, const fm_run *run, const fm_ledger *ledger);
/* The run's position as the public struct reports it. */
void fmi_run_position(const fm_run *run, const fm_config *config, int has_ledger,
                     fm_checkpoint_info *info);

#endif
