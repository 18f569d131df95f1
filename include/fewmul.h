/* fewmul.h — the one public header of fewmul, a C11 library that trains and runs
 * neural networks with few multiplications (Lin, Courbariaux, Memisevic, Bengio,
 * "Neural Networks with Few Multiplications", ICLR 2016).
 *
 * Conventions: every function that can fail returns an int status, 0 on success
 * and a negative FM_E* code otherwise; fm_last_error() then holds a one-line
 * message naming the problem. The library never prints, never exits and never
 * aborts. Handles are opaque; small value structs are public. */
#ifndef FEWMUL_H
#define FEWMUL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FM_VERSION_STRING "0.1.0"

/* ---- errors ------------------------------------------------------------ */

/* X(name, value, generic text): the single list every error code comes from. */
#define FM_ERROR_LIST(X)                                           \
    X(FM_OK, 0, "success")                                         \
    X(FM_ENOMEM, -1, "out of memory")                              \
    X(FM_EINVAL, -2, "invalid argument")                           \
    X(FM_ENOENT, -3, "file not found")                             \
    X(FM_EIO, -4, "input/output error")                            \
    X(FM_EFORMAT, -5, "malformed file")                            \
    X(FM_ETRUNC, -6, "truncated file")                             \
    X(FM_EMISMATCH, -7, "inconsistent data")                       \
    X(FM_EUNSUPPORTED, -8, "unsupported")                          \
    X(FM_ECANCELED, -9, "canceled")

enum fm_error {
#define FM_ENUM_ITEM(name, value, text) name = value,
    FM_ERROR_LIST(FM_ENUM_ITEM)
#undef FM_ENUM_ITEM
};

/* Generic text for a code ("invalid argument"); never NULL. */
const char *fm_strerror(int err);
/* The detailed one-line message of the last failure on the calling thread,
 * e.g. "train-images-idx3-ubyte.gz: bad magic 0x00000000 (expected 0x00000803)". */
const char *fm_last_error(void);

/* Every allocation of the library goes through these; NULL restores the C
 * library's. Set before any other call; not thread-safe against running calls. */
typedef struct fm_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} fm_allocator;
void fm_set_allocator(const fm_allocator *allocator);

/* ---- data -------------------------------------------------------------- */

/* Images as stored on disk: count x height x width x channels bytes, row-major,
 * channel last, with one label (0..classes-1) per image. */
typedef struct fm_images {
    int32_t count, height, width, channels;
    uint8_t *pixels;
    uint8_t *labels;
} fm_images;

/* Reads one IDX image file (magic 0x00000803) and its IDX label file (0x00000801),
 * raw or gzip-compressed (detected by content, not name). Checks every declared
 * size against the bytes present before allocating. */
int fm_idx_read(const char *images_path, const char *labels_path, fm_images *out);

/* Loads the train and test sets named by spec:
 *   "fashion"   Fashion-MNIST at FM_FASHION_DIR (Debian's dataset-fashion-mnist)
 *   "mnist:DIR" "idx:DIR"  a folder holding train-images-idx3-ubyte[.gz],
 *               train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz],
 *               t10k-labels-idx1-ubyte[.gz] (a '.' may stand for the first '-'
 *               before "idx", as in some MNIST copies).
 * Either output may be NULL to skip that set. */
int fm_data_load(const char *spec, fm_images *train, fm_images *test);
void fm_images_free(fm_images *images);
#define FM_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- configuration ----------------------------------------------------- */

typedef enum fm_weight_mode {
    FM_WEIGHTS_FP32 = 0, /* full precision: the gradient of W itself, no clip */
    FM_WEIGHTS_BC,       /* binary, stochastic: +-H with p = clip((W/H+1)/2,0,1) */
    FM_WEIGHTS_BC_DET,   /* binary, deterministic: H*sign(W), sign(0) = +1 */
    FM_WEIGHTS_TC,       /* ternary, stochastic: H*sign(W)*Bernoulli(clip(|W/H|,0,1)) */
    FM_WEIGHTS_TC_DET,   /* ternary, deterministic: H*sign(W)*[|W| > H/2] */
    FM_WEIGHTS_SYNAPSE   /* N log-spaced magnitudes with sign, stochastic rounding */
} fm_weight_mode;

typedef enum fm_optimizer { FM_OPT_SGD = 0, FM_OPT_ADAM } fm_optimizer;
typedef enum fm_loss { FM_LOSS_HINGE = 0, FM_LOSS_XENT } fm_loss;
/* center: x/255 minus the per-pixel mean of the training images (the paper);
 * unit: x/255 in [0,1]. */
typedef enum fm_preproc { FM_PRE_CENTER = 0, FM_PRE_UNIT } fm_preproc;
/* paper: after each epoch, inference statistics are recomputed as the average of
 * per-batch means and variances over the training and validation images with the
 * evaluation weights (the authors' code); running: exponential moving average
 * of the training batches' statistics. */
typedef enum fm_bn_stats { FM_BN_PAPER = 0, FM_BN_RUNNING } fm_bn_stats;
/* Weight scale H of binary/ternary values and of the clip box:
 * glorot: H = W0 = sqrt(6/(fan_in+fan_out))/2 (the authors' code); one: H = 1. */
typedef enum fm_scale { FM_SCALE_GLOROT = 0, FM_SCALE_ONE } fm_scale;

/* Exponent range meaning "no clip" for quantized back-prop. */
#define FM_QB_UNBOUNDED (-1000)

typedef struct fm_config {
    const char *arch;            /* "paper-mlp" or "mlp:H1,H2,..." (default paper-mlp) */
    fm_weight_mode weights;      /* default FM_WEIGHTS_FP32 */
    int synapse_levels;          /* N magnitudes for FM_WEIGHTS_SYNAPSE (default 26) */
    double synapse_range;        /* largest/smallest magnitude (default 60) */
    fm_scale scale;              /* default FM_SCALE_GLOROT */
    int qb;                      /* quantized back-prop on/off (default 0) */
    int qb_emin, qb_emax;        /* exponent clip of Q(x); FM_QB_UNBOUNDED for none */
    int qb_bn_jacobian;          /* 0 (default): with qb, a dense layer's weight gradient
                                    uses the error at its batch norm's output, as the
                                    authors' code; 1: the exact pre-BN error */
    int test_quantized;          /* 1: evaluate stochastic modes with deterministic
                                    quantized weights instead of the real W (paper: 0) */
    int epochs;                  /* default 20 */
    int batch;                   /* default 200 */
    fm_optimizer opt;            /* default SGD */
    double lr;                   /* initial rate; <= 0 means the optimizer's default
                                    (SGD 0.3, Adam 0.003) */
    double lr_final;             /* rate after the last epoch, decayed exponentially
                                    per epoch; <= 0 means default (SGD 0.01, Adam 2e-6) */
    double momentum;             /* SGD momentum (default 0, the paper) */
    fm_loss loss;                /* default FM_LOSS_HINGE (squared, summed over classes) */
    fm_preproc preproc;          /* default FM_PRE_CENTER */
    int valid;                   /* validation images taken from the end of train (10000) */
    int train_limit;             /* use only the first N remaining training images (0: all) */
    double dropout;              /* drop probability on hidden activations (default 0) */
    fm_bn_stats bn_stats;        /* default FM_BN_PAPER */
    double bn_momentum;          /* EMA weight of a new batch for FM_BN_RUNNING (0.1) */
    double bn_eps;               /* default 1e-4 */
    int eval_every;              /* evaluate every N epochs and at the last (default 1) */
    int no_eval;                 /* 1: skip validation/test evaluation (benchmarks) */
    uint64_t seed;               /* default 1234 */
    int threads;                 /* <= 0: all cores */
} fm_config;

/* Fills every field with its default. */
void fm_config_default(fm_config *config);
/* Parses "fp32|bc|bc-det|tc|tc-det|synapse[:N]" into config->weights (and levels). */
int fm_parse_weights(const char *text, fm_config *config);
/* The canonical name of a mode ("bc-det"). */
const char *fm_weights_name(fm_weight_mode mode);
/* The learning rates a run uses: config->lr and lr_final, or the optimizer's
 * defaults where they are <= 0. */
void fm_config_learning_rates(const fm_config *config, double *lr, double *lr_final);
/* Checks every field and the architecture string; FM_EINVAL with a message. */
int fm_config_check(const fm_config *config);

/* ---- models and training ----------------------------------------------- */

typedef struct fm_model fm_model;

/* A fresh model for inputs of input_dim values and `classes` outputs,
 * initialized from config->seed. */
int fm_model_create(const fm_config *config, int input_dim, int classes, fm_model **out);
void fm_model_free(fm_model *model);
/* Number of trainable scalars, and a one-line description ("784-1024-...-10, bc"). */
size_t fm_model_param_count(const fm_model *model);
const char *fm_model_describe(const fm_model *model);
int fm_model_input_dim(const fm_model *model);
int fm_model_classes(const fm_model *model);
/* Copies of the latent weights of dense layer `index` (in x out, row-major);
 * returns the element count, or a negative error. dst may be NULL to query. */
long fm_model_weights(const fm_model *model, int index, float *dst, size_t capacity);

/* Full-state model file (fewmul's training format, docs/model-format.md): written
 * to PATH.tmp, flushed and renamed, so an existing file is never damaged. */
int fm_model_save(const fm_model *model, const char *path);
int fm_model_load(const char *path, fm_model **out);

typedef struct fm_progress {
    int epoch, epochs;           /* 1-based */
    long images_done, images_total; /* within this epoch */
    double loss;                 /* running mean training loss of this epoch */
    double images_per_s;         /* this epoch so far */
    double elapsed_s;            /* whole run so far */
} fm_progress;

typedef struct fm_epoch_report {
    int epoch, epochs;
    double lr;                   /* rate used during this epoch */
    double train_loss;           /* mean over the epoch's batches */
    double train_error_pct;      /* on the training batches, with the sampled weights */
    double valid_error_pct;      /* -1 when not evaluated this epoch */
    double test_error_pct;       /* -1 when not evaluated this epoch */
    int best_epoch;              /* epoch of best validation error so far (0: none) */
    double best_test_error_pct;  /* test error at best_epoch */
    double train_seconds;        /* time spent in training steps this epoch */
    double epoch_seconds;        /* including evaluation */
    double images_per_s;         /* training images / train_seconds */
} fm_epoch_report;

typedef struct fm_callbacks {
    void (*on_progress)(const fm_progress *progress, void *user); /* every batch */
    void (*on_epoch)(const fm_epoch_report *report, void *user);
    int (*should_stop)(void *user); /* polled each batch; nonzero ends with FM_ECANCELED */
    void *user;
} fm_callbacks;

typedef struct fm_result {
    double test_error_pct;       /* at the epoch of best validation error (ties: later) */
    double valid_error_pct;      /* best validation error */
    int best_epoch;
    int epochs;                  /* epochs run */
    double train_seconds;        /* training steps only, all epochs */
    double total_seconds;        /* including evaluation */
    double train_images_per_s;
    double final_train_loss;
} fm_result;

/* Trains `model` on `train` (less its last config->valid images, kept for
 * validation) and reports test error on `test` (may be NULL). Afterwards the
 * model holds the weights of the best validation epoch (the last epoch when no
 * validation set). callbacks may be NULL. */
int fm_train(fm_model *model, const fm_images *train, const fm_images *test,
             const fm_config *config, const fm_callbacks *callbacks, fm_result *result);

/* Classification error in percent of `model` on `images`, with the
 * preprocessing stored in the model. threads <= 0: all cores. */
int fm_model_evaluate(const fm_model *model, const fm_images *images, int threads,
                      double *error_pct);
/* Predicted classes of `count` images of `images` starting at `first`. */
int fm_model_predict(const fm_model *model, const fm_images *images, int first, int count,
                     int threads, uint8_t *classes);

#ifdef __cplusplus
}
#endif
#endif /* FEWMUL_H */
