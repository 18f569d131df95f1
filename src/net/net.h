/* net.h — the model (layer list plus one array of persistent state) and the
 * workspace a forward/backward pass runs in. A model is read-only while it is
 * used for prediction, so several threads may predict with their own workspaces. */
#ifndef FEWMUL_NET_H
#define FEWMUL_NET_H

#include "conv.h"
#include "fewmul.h"
#include "optim.h"

#include <stddef.h>
#include <stdint.h>

#define FM_MAX_HIDDEN 64

typedef enum fm_layer_kind {
    FM_LAYER_DENSE, FM_LAYER_BN, FM_LAYER_RELU, FM_LAYER_DROPOUT, FM_LAYER_SIGN, FM_LAYER_CONV,
    FM_LAYER_POOL, FM_LAYER_GAP
} fm_layer_kind;

typedef struct fm_layer {
    fm_layer_kind kind;
    int in, out;          /* values per example (a map is H x W x C, channel last) */
    size_t offset;        /* weighted: W (w_rows x w_cols); bn: gamma, beta, mean, var
                             (channels each) */
    int w_rows, w_cols;   /* weighted (dense, conv): fan-in x units */
    float w0;             /* weighted: Glorot W0 */
    float h;              /* weighted: binary/ternary value and clip bound H */
    int weight_index;     /* weighted: 0, 1, ... in network order */
    int channels;         /* bn: features normalised (a map's channels, or a dense
                             layer's outputs); out / channels rows per example;
                             gap: the map's channels (in / channels positions) */
    fm_conv_geom conv;    /* conv */
    fm_pool_geom pool;    /* pool */
} fm_layer;

/* Purposes of the counter-based random streams (rng.h), keyed with the seed. */
enum { FM_STREAM_WEIGHTS = 1, FM_STREAM_QB = 2, FM_STREAM_DROPOUT = 3, FM_STREAM_SHUFFLE = 4,
       FM_STREAM_LATENT = 5 };

/* Layers with a weight matrix: dense and conv. */
static inline int fmi_layer_weighted(const fm_layer *L)
{
    return L->kind == FM_LAYER_DENSE || L->kind == FM_LAYER_CONV;
}
static inline size_t fmi_layer_weight_count(const fm_layer *L)
{
    return (size_t)L->w_rows * (size_t)L->w_cols;
}

/* One item of an architecture string: a dense layer of `units` outputs, a
 * convolution of `units` filters k x k with `stride` ('same' or 'valid'
 * padding), a max-pool of k x k windows moved by `stride`, or the global
 * average pooling of a map. */
typedef enum fm_spec_kind { FM_SPEC_FC, FM_SPEC_CONV, FM_SPEC_POOL, FM_SPEC_GAP } fm_spec_kind;
typedef struct fm_layer_spec {
    fm_spec_kind kind;
    int units, k, stride, same;
} fm_layer_spec;

/* Parses an architecture (docs/cli.md, "Architectures") into items; returns
 * their count or a negative error with a message. */
int fmi_arch_parse(const char *arch, fm_layer_spec *specs, int max_specs);

/* The first field (by name: "epochs", "lr", ...) in which two configurations
 * of a run differ, threads and fuse aside (they change how it runs, not its
 * bits), or NULL when they describe the same run. */
const char *fmi_config_differs(const fm_config *a, const fm_config *b);
/* Bop's gamma in a 1-based epoch: bop_gamma, decayed toward bop_gamma_final. */
double fmi_bop_gamma_at(const fm_config *c, int epoch);

struct fm_model {
    fm_config config;     /* config.arch points at arch below */
    char arch[256];
    int input_dim, classes;
    int in_h, in_w, in_c; /* input image shape; in_h * in_w * in_c = input_dim */
    int n_layers;
    fm_layer *layers;
    size_t state_count;   /* floats in state */
    float *state;         /* every parameter and batch-norm statistic, one allocation */
    float *input_mean;    /* input_dim values: center/unit, the mean subtracted after
                             scaling by 1/255; gcn-zca, the ZCA mean */
    float *zca;           /* gcn-zca: the input_dim x input_dim whitening matrix, else NULL */
    int n_groups;
    fm_param_group *groups; /* trainable runs of state */
    char description[512];
};

/* Input rows preprocessed once for a whole run instead of at every batch
 * load (docs/data.md, "Preprocessing"): ranges [first, first + count) of
 * image sets, each row exactly what fmi_load_batch computes for it in a
 * batch of contiguous images. */
#define FM_INPUT_PARTS 3
typedef struct fm_input_part {
    const fm_images *images; /* the set, by identity */
    int first, count;
    float *rows;             /* count x input_dim */
} fm_input_part;
typedef struct fm_input_cache {
    fm_input_part part[FM_INPUT_PARTS];
    int n_parts;
} fm_input_cache;

/* Buffers for passes over batches of up to max_batch examples. */
typedef struct fm_workspace {
    int max_batch;
    float **act;          /* n_layers+1 activations, act[0] the input batch */
    float **grad;         /* gradients of the same shapes (training only) */
    float **wq;           /* per weighted layer: the weights used in the pass */
    float *qx;            /* Q(x) scratch: max_batch x widest weighted layer's input */
    float *conv_scratch;  /* im2col columns of the conv layers (conv.h) */
    int32_t **argmax;     /* pool layers (training): the chosen input of each output */
    float *pre_scratch;   /* input preprocessing (gcn-zca, gcn-lcn) */
    fm_input_cache input; /* rows fmi_load_batch copies instead of computing */
    float **bn_mean, **bn_invstd; /* per layer: batch statistics of the last pass */
    uint8_t **mask;       /* dropout masks */
    float *grad_state;    /* gradient, aligned with model->state (training only) */
    int training;
    fm_ledger *ledger;    /* NULL, or where passes record their work */
    int reference;        /* 1: products by the reference kernels (kernels.h) */
    /* per layer: how a weighted layer's products run in training and in
     * evaluation passes (product.h), chosen by fmi_workspace_choose_products */
    const struct fm_product_ops **train_product, **eval_product;
    /* --exec mulfree (mulfree.h): the kernel variant (NULL: the default path),
     * per dense layer the pass's weights in the forward layout (in -> out) and
     * the transposed one (out -> in; layers after the first, training only),
     * per conv layer likewise its layout and the one of its input gradient
     * (fmi_mulfree_conv_transpose), table scratch for mf_threads threads of
     * mf_slice floats each, the scratch of conv weight gradients formed from
     * the maps (mf_grad_floats, fmi_mulfree_conv_grad_floats; NULL where no
     * layer's can be), the count of weight gradients that fell back to
     * ldexpf, and the first error of a pass (passes return no code; fm_train
     * reads it after each step). */
    const struct fm_kernels *kernels;
    struct fm_kernel_weights **mf_forward, **mf_backward;
    struct fm_conv_weights **mf_conv_forward, **mf_conv_backward;
    float *mf_scratch;
    size_t mf_slice;
    float *mf_grad;
    size_t mf_grad_floats;
    int mf_threads;
    uint64_t mf_fallbacks;
    int status;
    /* A data-parallel run (dist.h): the collectives, and this rank's rows of
     * the global minibatch: the first one's index in it and the whole
     * minibatch's size (0: the pass's own batch, one process). */
    struct fm_dist *dist;
    int row0, rows_total;
    /* The update folded into the backward pass (fmi_update_fuse: bop, or
     * fm_config.fuse; one process): the optimizer's state s1 and s2 (bop's
     * momenta; SGD's velocity; Adam's moments), aligned with model->state,
     * and a tile of weight-gradient rows for each of fused_threads threads,
     * fused_tile_floats apart (or one larger block for a BLAS); NULL
     * fused_s1: the optimizer step updates every weight from grad_state.
     * wq_drawn[l]: 1 + the step whose weights ws->wq[l] holds, drawn by the
     * update of the step before (0: none; evaluation overwrites them). */
    float *fused_s1, *fused_s2, *fused_tile;
    size_t fused_tile_floats;
    int fused_threads;
    uint64_t *wq_drawn;
    double bop_gamma; /* the step's gamma (fmi_bop_gamma_at), set by the trainer */
    double step_lr;   /* the step's learning rate, set by the trainer */
} fm_workspace;

/* Floats after grad_state's state_count: the step's loss and error count
 * travel with the gradient between ranks. */
#define FM_GRAD_EXTRA 4

int fmi_workspace_create(const fm_model *model, int max_batch, int training, fm_workspace **out);
void fmi_workspace_free(const fm_model *model, fm_workspace *ws);
/* Chooses every weighted layer's products from the workspace's reference
 * flag and mulfree kernels; fmi_workspace_create does, and a caller that
 * changes ws->reference (tests of the reference kernels) does again. */
void fmi_workspace_choose_products(const fm_model *model, fm_workspace *ws);

/* Input rows of ws->act[0] from `count` images (index[first..], or first..
 * when index is NULL), preprocessed as the model says: pixels/255 minus the
 * input mean, or GCN then ZCA or LCN (preprocess.h). Copied from ws->input
 * when one of its parts holds every one of the images. */
void fmi_load_batch(const fm_model *model, fm_workspace *ws, const fm_images *images,
                   const int *index, int first, int count);
/* 1 when the model's preprocessing is worth computing once (gcn-zca,
 * gcn-lcn: center and unit are one multiply-add per value, cheaper than a
 * copy of floats) and `rows` rows of it take at most `bytes`. */
int fmi_input_cache_wanted(const fm_model *model, size_t rows, size_t bytes);
/* Adds images [first, first + count) of a set to ws->input, preprocessed in
 * batches of ws->max_batch contiguous images (the fitted statistics must be
 * in place); nothing is declared to a ledger. FM_ENOMEM, or FM_EINVAL when
 * ws->input is full or the range is outside the set. */
int fmi_input_cache_add(const fm_model *model, fm_workspace *ws, const fm_images *images,
                        int first, int count);
/* Fits the model's input preprocessing on images [0, count): the per-pixel
 * mean (center), or the ZCA of the GCN-normalised images (gcn-zca). */
int fmi_preprocess_fit(fm_model *model, const fm_images *images, int count);
/* Declares a batch load of `count` examples from a set of `set_count` to
 * ws->ledger in `phase` (the "input" layer). */
void fmi_load_batch_cost(const fm_model *model, fm_workspace *ws, fm_phase phase, int count,
                        int set_count);
/* Declares the model's layers to ws->ledger: index 0 "input", layer l at
 * l + 1, then "loss". */
void fmi_ledger_declare_layers(const fm_model *model, fm_ledger *ledger);
/* Ledger index of the loss. */
static inline int fmi_ledger_loss_index(const fm_model *model) { return model->n_layers + 1; }
/* Declares an argmax error count of `batch` rows (eval phase, loss layer). */
void fmi_eval_errors_cost(const fm_model *model, fm_workspace *ws, int batch);

/* One optimizer step (update.c) at rate ws->step_lr over every parameter
 * group the backward pass did not update (fmi_update_fused), declared to
 * ws->ledger (update phase; the caller counts the pass). s1, s2: optimizer
 * state aligned with model->state (s2 for Adam and bop only); t is the
 * 1-based step number. */
void fmi_optimizer_step(fm_model *model, const fm_workspace *ws, float *s1, float *s2, long t);
/* Group G's values [at, at + count) (offsets into the group) updated from
 * their gradient g (count values), as fmi_optimizer_step updates the whole
 * group: the same arithmetic and the same draws of the bf16 rounding. */
void fmi_update_range(const fm_model *model, const fm_workspace *ws, const fm_param_group *G,
                      size_t at, size_t count, const float *g, float *s1, float *s2, long t);
/* Declares n values of group G's update (of layer name `layer`): its
 * operations and the bytes of its parameters and optimizer state, and with
 * whole_gradient those of the whole gradient it reads (a fused update's
 * caller declares its tiles instead). */
void fmi_update_cost(const fm_cost *cost, const fm_model *model, const fm_param_group *G,
                     uint64_t n, const char *layer, int whole_gradient);
/* The parameter group of weighted layer l's weights (NULL for another layer). */
const fm_param_group *fmi_weight_group(const fm_model *model, int l);
/* The stream of layer l's bf16 roundings at a step, fused or not. */
uint64_t fmi_latent_key(const fm_model *model, int l, uint64_t step);

/* Training pass: samples the weights with stream keys derived from (seed,
 * step), runs forward, loss and backward, leaving gradients in grad_state.
 * Returns the mean loss; *errors counts misclassified examples. */
double fmi_train_step(fm_model *model, fm_workspace *ws, const uint8_t *labels, int batch,
                     uint64_t step, int *errors);

/* Evaluation pass over ws->act[0]: fills the evaluation weights first when
 * refresh is set. Returns the output rows (batch x classes). */
const float *fmi_forward_eval(const fm_model *model, fm_workspace *ws, int batch, int refresh);
/* The evaluation weights of every weighted layer into ws->wq. */
void fmi_eval_weights(const fm_model *model, fm_workspace *ws);

/* Recomputes batch-norm inference statistics the authors' way: running averages
 * of per-batch means and variances over the given sets, with the evaluation
 * weights, each batch normalised with the statistics accumulated so far. */
int fmi_bn_recompute(fm_model *model, fm_workspace *ws, const fm_images *sets[], const int *firsts,
                    const int *counts, int n_sets, int batch);

/* Sets up layers, state and parameter groups for config and an input of
 * in_h x in_w x in_c values (no initialization). A reader passes the values
 * its file can still hold as max_state (SIZE_MAX: no bound), so that a hostile
 * architecture fails with FM_ETRUNC before its state is allocated. */
int fmi_model_build(const fm_config *config, int in_h, int in_w, int in_c, int classes,
                   size_t max_state, fm_model **out);
/* The state count fmi_model_build gives, with its checks and errors, without
 * allocating the state: what a reader checks a file's size against first. */
int fmi_model_state_count(const fm_config *config, int in_h, int in_w, int in_c, int classes,
                          size_t max_state, size_t *count);
/* Initializes weights (U(-2H, 2H)), gamma = 1, beta = 0, statistics (0, 1). */
void fmi_model_init(fm_model *model, uint64_t seed);

#endif
