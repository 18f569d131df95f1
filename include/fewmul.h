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
#include <stdio.h>

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
    X(FM_ECANCELED, -9, "canceled")                                \
    X(FM_EPEER, -10, "another rank failed")

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
/* The code that message came with (FM_OK before any failure): what a program
 * that reports fm_last_error() can map to its own statuses. */
int fm_last_error_code(void);
/* Copies text into buf (cap bytes, cap > 0) and returns the length written:
 * the whole text when it fits; else the text with the middle of each word (a
 * run without spaces) longer than 123 bytes elided, its first and last 60
 * kept with "..." between, or, if that is still too long, the beginning and
 * the end of the whole text. An echoed path or architecture thus loses its
 * middle and a message keeps its reason, at the end. fm_last_error()'s
 * messages are fitted so (into 512 bytes). Never splits a UTF-8 character. */
size_t fm_fit_text(char *buf, size_t cap, const char *text);

/* Every allocation of the library goes through these (zlib's buffers
 * included); NULL restores the C library's. Set before any other call; not
 * thread-safe against running calls. OpenBLAS, oneDNN and the OpenMP runtime
 * keep buffers of their own, outside the hook. Each request is a buffer's
 * size plus FM_ALLOC_ALIGN bytes: the library starts every buffer on an
 * FM_ALLOC_ALIGN-byte boundary (a cache line) inside the block, so a hook
 * need only align as malloc does. The C library's allocator (no hook) on
 * Linux advises the kernel to back blocks of 2 MiB and more with transparent
 * huge pages (madvise MADV_HUGEPAGE); a hook's blocks are left as they come. */
#define FM_ALLOC_ALIGN 64
typedef struct fm_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} fm_allocator;
void fm_set_allocator(const fm_allocator *allocator);

/* How many threads the library runs when asked for `threads` (<= 0: all
 * cores): that many, or fewer when the system lets this process start no
 * more (a process limit such as RLIMIT_NPROC or a cgroup's pids.max, or an
 * address-space limit too small for their stacks) or OMP_THREAD_LIMIT allows
 * fewer; at least 1. *wanted, when
 * not NULL, receives the count asked for (all cores for <= 0), so a caller
 * sees that it got fewer. The first call for a count starts the threads to
 * find out, and from then on every thread count the library gives OpenMP or
 * OpenBLAS stays within the answer, so that a runtime never ends the process
 * for want of a thread. */
int fm_threads_usable(int threads, int *wanted);

/* The libraries this build's float matrix products may call: "OpenBLAS and
 * oneDNN", "OpenBLAS", "oneDNN" or "portable loop". */
const char *fm_gemm_libraries(void);
/* Checks FEWMUL_GEMM (openblas, dnnl or auto; unset means auto: oneDNN when
 * the build has it, else OpenBLAS), the library of every tile of a float
 * product (docs/method.md, "Reproducibility"): FM_OK, FM_EINVAL for another value,
 * FM_EUNSUPPORTED for a library this build lacks (the library itself takes
 * such a value as auto, so a program should check first). */
int fm_gemm_check(void);

/* ---- files ------------------------------------------------------------- */

/* The step of fm_write_file_atomic that failed, for a caller that words its
 * own message (a command naming "the report" or "the log file"). */
typedef enum fm_write_step {
    FM_WRITE_STEP_NONE = 0, /* no system call failed (success, or FM_ENOMEM) */
    FM_WRITE_STEP_CREATE,   /* the temporary file could not be created */
    FM_WRITE_STEP_WRITE,    /* fill failed, or writing, flushing, syncing or closing it */
    FM_WRITE_STEP_RENAME,   /* it could not be renamed over PATH */
    FM_WRITE_STEP_TARGET    /* PATH is not a regular file (fm_check_output): nothing
                               was written; sys_errno is 0 */
} fm_write_step;

typedef struct fm_write_failure {
    fm_write_step step;
    int sys_errno; /* the system's reason (an errno value), 0 with FM_WRITE_STEP_NONE */
} fm_write_failure;

/* Writes a file whole or not at all, as every file of fewmul is written,
 * safely in a folder that others may write to (docs/errors.md, "Security"):
 * fill(f, user) writes the content to a new temporary file PATH.tmp.XXXXXXXXXX
 * (ten random letters and digits) created with O_CREAT|O_EXCL|O_NOFOLLOW and
 * mode 0666 less the umask, so that nothing planted beside path (a symbolic
 * or a hard link) is ever opened; it is then flushed, fsynced (a file system
 * that cannot sync is not a failure), closed and renamed over path; last
 * path's folder is synced, so that the rename itself survives a power loss
 * (best effort: not every file system can). A symbolic link at path is
 * replaced, never followed. fill returns 0, or a positive errno value for a
 * failure of its own (errors of the stream are found afterwards, fill need
 * not check them). On any failure the temporary file is removed and a file
 * already at path is left as it was; the return is FM_EIO with
 * fm_last_error() "PATH: cannot create a temporary file beside it: REASON",
 * "PATH: write failed: REASON", "PATH: cannot rename into place: REASON" or
 * fm_check_output's refusal, or FM_ENOMEM. failure (may be NULL) receives the
 * failed step and the system's reason. */
int fm_write_file_atomic(const char *path, int (*fill)(FILE *f, void *user), void *user,
                         fm_write_failure *failure);
/* fm_write_file_atomic, leaving the new file open at its end in *f once it is
 * in place, for a file that grows afterwards (train's --log): the caller
 * appends and fcloses it. What it writes goes to the file it created, never
 * to anything put at path since. *f is NULL on failure. */
int fm_write_file_atomic_open(const char *path, int (*fill)(FILE *f, void *user), void *user,
                              fm_write_failure *failure, FILE **f);
/* FM_OK when fm_write_file_atomic may replace what is at path: nothing, a
 * regular file, or a symbolic link to one or to nothing (the link is
 * replaced). Anything else is refused with FM_EIO "'PATH' is a character
 * device, not a regular file; fewmul replaces only regular files" (a
 * directory, a block device, a FIFO, a socket; "is a symbolic link to ..."
 * for a link to one), so that an output named /dev/null is never replaced. */
int fm_check_output(const char *path);

/* Opens a file to read as every reader of fewmul does: without waiting in
 * open() (a FIFO without a writer, a terminal or a device named as an input
 * never hangs the caller), and only when it is a regular file or, with
 * streams not 0, a pipe or FIFO (read as its data arrive; one without a
 * writer reads as empty). Returns the descriptor (blocking again, close-on-exec),
 * or a negative code with fm_last_error() "PATH: REASON": FM_ENOENT when it or
 * a folder on its path is missing; FM_EIO when it cannot be opened (permission,
 * a loop of symbolic links), is a folder ("Is a directory") or another kind
 * of file ("not a regular file (a FIFO)", "(a character device)", ...). */
int fm_open_input(const char *path, int streams);

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

/* One file of the CIFAR-10 binary version (data_batch_N.bin, test_batch.bin):
 * any whole number of 3073-byte records, each a label 0..9 and a 32x32x3
 * image stored plane by plane (1024 red, 1024 green, 1024 blue bytes), read
 * into the channel-last layout of fm_images. */
int fm_cifar10_read(const char *path, fm_images *out);
/* One SVHN cropped-digits file (train_32x32.mat, test_32x32.mat,
 * extra_32x32.mat): MATLAB level-5 MAT, variables X (32x32x3xN uint8) and y
 * (N labels 1..10, 10 meaning digit 0, stored as any numeric class), each
 * element plain or zlib-compressed, either byte order. Labels become 0..9. */
int fm_svhn_read(const char *path, fm_images *out);
/* The data sets of spec, as fm_data_load reads them:
 *   "cifar10:DIR" train = DIR/data_batch_1.bin .. data_batch_5.bin in order,
 *                 test = DIR/test_batch.bin;
 *   "svhn:DIR"    train = DIR/train_32x32.mat followed by DIR/extra_32x32.mat
 *                 when present, test = DIR/test_32x32.mat; *train_part (may be
 *                 NULL) receives the number of images from train_32x32.mat. */
int fm_data_load_parts(const char *spec, fm_images *train, fm_images *test, int32_t *train_part);
/* The files fm_data_load may read for spec that exist now: every name its
 * loader looks for (the IDX files raw or .gz and with '.' for the '-' before
 * "idx"; CIFAR-10's batches in DIR and in DIR/cifar-10-batches-bin; SVHN's
 * three), each passed to each(path, user), whose first nonzero return stops
 * the walk and is returned. FM_EINVAL for a spec fm_data_load would not
 * accept. For a program that must not write over its own input. */
int fm_data_files(const char *spec, int (*each)(const char *path, void *user), void *user);
/* The kinds of data set a spec can name; each has its own defaults
 * (fm_data_defaults) and validation split (fm_data_split_validation). */
typedef enum fm_data_kind {
    FM_DATA_FASHION = 0, /* "fashion" */
    FM_DATA_IDX,         /* "mnist:DIR", "idx:DIR" */
    FM_DATA_CIFAR10,     /* "cifar10:DIR" */
    FM_DATA_SVHN         /* "svhn:DIR" */
} fm_data_kind;
/* The kind of data set spec names (kind may be NULL: a check of the spec);
 * FM_EINVAL with a message for a spec fm_data_load would not accept. Looks
 * at no file. */
int fm_data_kind_of(const char *spec, fm_data_kind *kind);
/* The paper's validation size for a data spec: fm_data_kind_of, then
 * fm_data_defaults' valid (MNIST and Fashion-MNIST 10000, CIFAR-10 5000,
 * SVHN 6000); a negative FM_E* code for a spec fm_data_load would not accept. */
int fm_data_default_valid(const char *spec);
/* Moves a class-balanced validation set to the end of `set`: per class,
 * per_class_head images chosen from [0, boundary) and per_class_tail from
 * [boundary, count), picked by a shuffle seeded with `seed`; the other images
 * keep their order ahead of them. fm_data_split_validation makes SVHN's split
 * with it. FM_EINVAL with a message when a class has too few images. */
int fm_images_split_balanced(fm_images *set, int32_t boundary, int per_class_head,
                             int per_class_tail, int classes, uint64_t seed);

/* ---- configuration ----------------------------------------------------- */

typedef enum fm_weight_mode {
    FM_WEIGHTS_FP32 = 0, /* full precision: the gradient of W itself, no clip */
    FM_WEIGHTS_BC,       /* binary, stochastic: +-H with p = clip((W/H+1)/2,0,1) */
    FM_WEIGHTS_BC_DET,   /* binary, deterministic: H*sign(W), sign(0) = +1 */
    FM_WEIGHTS_TC,       /* ternary, stochastic: H*sign(W)*Bernoulli(clip(|W/H|,0,1)) */
    FM_WEIGHTS_TC_DET,   /* ternary, deterministic: H*sign(W)*[|W| > H/2] */
    FM_WEIGHTS_SYNAPSE   /* N log-spaced magnitudes with sign, stochastic rounding */
} fm_weight_mode;

/* bop: Helwegen et al.'s binary optimizer ("Latent Weights Do Not Exist",
 * NeurIPS 2019) for --weights bc-det: the weights are the binary values
 * themselves (no latent fp32 weights), each with one momentum m that follows
 * m = (1-gamma)*m + gamma*g, and a weight flips (w = -w) when |m| > threshold
 * and m has w's sign. The real parameters (batch norm) take Adam. */
typedef enum fm_optimizer { FM_OPT_SGD = 0, FM_OPT_ADAM, FM_OPT_BOP } fm_optimizer;
typedef enum fm_loss { FM_LOSS_HINGE = 0, FM_LOSS_XENT } fm_loss;
/* center: x/255 minus the per-pixel mean of the training images (the paper);
 * unit: x/255 in [0,1]. */
/* gcn-zca: global contrast normalization of each image, then ZCA whitening
 * fitted on the training split (the paper's CIFAR-10); gcn-lcn: global then
 * LeCun's local contrast normalization, both per image (the paper's SVHN).
 * docs/data.md gives the constants and their sources. */
typedef enum fm_preproc { FM_PRE_CENTER = 0, FM_PRE_UNIT, FM_PRE_GCN_ZCA, FM_PRE_GCN_LCN } fm_preproc;
/* paper: after each epoch, inference statistics are recomputed as the average of
 * per-batch means and variances over the training and validation images with the
 * evaluation weights (the authors' code); running: exponential moving average
 * of the training batches' statistics. */
typedef enum fm_bn_stats { FM_BN_PAPER = 0, FM_BN_RUNNING } fm_bn_stats;
/* Weight scale H of binary/ternary values and of the clip box:
 * glorot: H = W0 = sqrt(6/(fan_in+fan_out))/2 (the authors' code); one: H = 1. */
typedef enum fm_scale { FM_SCALE_GLOROT = 0, FM_SCALE_ONE } fm_scale;
/* Hidden activations: relu (the paper), or binary: sign(x) in {-1, +1} with
 * sign(0) = +1, trained with the straight-through estimator (the gradient
 * passes where |x| <= 1, as BinaryNet's hard tanh), so that a deployed network
 * with binary weights runs on xnor and popcount. */
typedef enum fm_acts { FM_ACTS_RELU = 0, FM_ACTS_BINARY } fm_acts;

/* How a training pass executes the products of the dense and convolution
 * layers (docs/mulfree.md).
 * FM_EXEC_DEFAULT: float GEMMs (OpenBLAS) of the quantized weights, as the
 * authors' code emulates the method; the fastest path. FM_EXEC_MULFREE: the
 * method's arithmetic executed: Wb·x and Wbᵀ·delta by table lookups and adds
 * from packed sign (and zero) masks, Q(x)ᵀ·delta by exponent adds; needs a
 * quantized weight mode (synapse: at most 32 levels) and quantized back-prop.
 * The kernel variant comes from FEWMUL_KERNELS (ref, avx2, avx512, neon), else the
 * best the CPU supports. */
typedef enum fm_exec { FM_EXEC_DEFAULT = 0, FM_EXEC_MULFREE } fm_exec;

/* The precision of the learning state kept per weight between steps (the
 * latent weights of sgd and adam with a quantized weight mode, bop's
 * momentum). FM_LATENT_FP32: float (the method). FM_LATENT_BF16: bfloat16
 * values (8 bits of mantissa), each rounded stochastically after every
 * update from a counter-based draw, so that a step smaller than a unit in
 * the last place still moves the value by the right amount on average; the
 * ledger counts 2 bytes per value (docs/method.md, "Smaller learning state"). */
typedef enum fm_latent { FM_LATENT_FP32 = 0, FM_LATENT_BF16 } fm_latent;

/* Exponent range meaning "no clip" for quantized back-prop. */
#define FM_QB_UNBOUNDED (-1000)

typedef struct fm_config {
    const char *arch;            /* "paper-mlp", "mlp:H1,H2,...", "paper-cnn", "bc-cnn" or
                                    "conv:ITEM,..." (docs/cli.md; default paper-mlp) */
    fm_weight_mode weights;      /* default FM_WEIGHTS_FP32 */
    int synapse_levels;          /* N magnitudes for FM_WEIGHTS_SYNAPSE (default 26) */
    double synapse_range;        /* largest/smallest magnitude (default 60) */
    fm_scale scale;              /* default FM_SCALE_GLOROT */
    int qb;                      /* quantized back-prop on/off (default 0) */
    int qb_emin, qb_emax;        /* exponent clip of Q(x) in dense layers;
                                    FM_QB_UNBOUNDED for none (default, the authors' code) */
    int qb_conv_emin, qb_conv_emax; /* the same in convolutions (default -4, 3, the
                                    authors' conv code); FM_QB_UNBOUNDED for none */
    int qb_bn_jacobian;          /* 1 (default): with qb, a dense layer's weight gradient
                                    uses the exact pre-batch-norm error; 0: the error at
                                    its batch norm's output, the authors' shortcut
                                    (unstable with Adam: docs/method.md) */
    int test_quantized;          /* 1: evaluate stochastic modes with deterministic
                                    quantized weights instead of the real W (paper: 0) */
    int epochs;                  /* default 20 */
    int batch;                   /* default 200 */
    fm_optimizer opt;            /* default SGD */
    double lr;                   /* initial rate; <= 0 means the optimizer's default
                                    (SGD 0.3, Adam 0.003; bop: Adam's, for the real
                                    parameters) */
    double lr_final;             /* rate after the last epoch, decayed exponentially
                                    per epoch; <= 0 means default (SGD 0.01, Adam 2e-6) */
    double momentum;             /* SGD momentum (default 0, the paper) */
    fm_loss loss;                /* default FM_LOSS_HINGE (squared, summed over classes) */
    fm_preproc preproc;          /* default FM_PRE_CENTER (each data set's: fm_data_defaults) */
    int valid;                   /* validation images taken from the end of train (10000;
                                    each data set's: fm_data_defaults) */
    int train_limit;             /* use only the first N remaining training images (0: all) */
    double dropout;              /* drop probability on hidden activations (default 0) */
    fm_acts acts;                /* hidden activations (default FM_ACTS_RELU) */
    fm_bn_stats bn_stats;        /* default FM_BN_PAPER */
    double bn_momentum;          /* EMA weight of a new batch for FM_BN_RUNNING (0.1) */
    double bn_eps;               /* default 1e-4 */
    int eval_every;              /* evaluate every N epochs and at the last (default 1) */
    int no_eval;                 /* 1: skip validation/test evaluation (benchmarks) */
    uint64_t seed;               /* default 1234 */
    int threads;                 /* <= 0: all cores */
    fm_exec exec;                /* default FM_EXEC_DEFAULT; not stored in model files */
    double bop_gamma;            /* FM_OPT_BOP: the momentum's adaptivity rate, 0 < gamma < 1
                                    (default 1e-3) */
    double bop_threshold;        /* FM_OPT_BOP: the flip threshold tau >= 0 (default 1e-6) */
    double bop_gamma_final;      /* FM_OPT_BOP: gamma after the last epoch, reached by an
                                    exponential decay per epoch as the learning rate's;
                                    <= 0: no decay (the default) */
    fm_latent latent;            /* default FM_LATENT_FP32; bf16 needs bop or a quantized
                                    weight mode */
    int fuse;                    /* 1: each dense layer's update folded into the backward
                                    pass and the next step's weights drawn there (the same
                                    bits, less data movement: docs/method.md); bop always
                                    fuses. Not stored in checkpoints or model files: a
                                    resumed run takes it as it takes threads (default 0) */
} fm_config;

/* Fills every field with its default. */
void fm_config_default(fm_config *config);
/* 1 when an architecture string has convolutions, else 0 (also for one that
 * does not parse; fm_config_check says why). */
int fm_arch_is_conv(const char *arch);
/* Parses "fp32|bc|bc-det|tc|tc-det|synapse[:N]" into config->weights (and levels). */
int fm_parse_weights(const char *text, fm_config *config);
/* The canonical name of a mode ("bc-det"). */
const char *fm_weights_name(fm_weight_mode mode);
/* The learning rates a run uses: config->lr and lr_final, or the optimizer's
 * defaults where they are <= 0. */
void fm_config_learning_rates(const fm_config *config, double *lr, double *lr_final);
/* Checks every field and the architecture string; FM_EINVAL with a message.
 * The fields training computes with as 32-bit floats (the rates, momentum,
 * dropout, batch-norm momentum and epsilon, the synapse range) are checked as
 * such too: finite there, a nonzero value not below the smallest normal
 * float (1e-50 would be 0), and in range once rounded (a momentum of
 * 0.99999999999 is 1). The synapse range must leave the smallest level H/R
 * at or above 2^-63 with H = 1 (R <= 2^63; model creation checks each
 * layer's own H) and, with synapse weights, neighbouring levels a relative
 * step of at least 2^-20. */
int fm_config_check(const fm_config *config);

/* ---- each data set's setup (docs/data.md, "Validation splits") --------- */

/* The paper's setup for a kind of data set, what a program should use unless
 * told otherwise: *preproc the input preprocessing (center for MNIST and
 * Fashion-MNIST, gcn-zca for CIFAR-10, gcn-lcn for SVHN) and *valid the number
 * of training images held out for validation (10000, 5000, 6000). Either
 * pointer may be NULL. FM_EINVAL for a kind outside fm_data_kind. */
int fm_data_defaults(fm_data_kind kind, fm_preproc *preproc, int *valid);
/* Arranges a training set loaded by fm_data_load_parts (train_part: the count
 * it gave) so that its last `valid` images are the validation set of its kind,
 * where fm_train (config->valid = valid) takes them. SVHN with `valid` equal to
 * its default 6000: pylearn2's "splitted_train", per class 400 images from
 * train_32x32.mat ([0, train_part)) and 200 from extra_32x32.mat ([train_part,
 * count)), or 600 from train_32x32.mat when there is no extra part (train_part
 * == count), picked with `seed` and moved to the end by
 * fm_images_split_balanced over `classes` classes (every label below it; 10
 * for SVHN). Any other kind or size: nothing moves, the last `valid` images as
 * loaded are the validation set. FM_EINVAL with a message for bad arguments or
 * a class with too few images, or FM_ENOMEM; then nothing moves. */
int fm_data_split_validation(fm_data_kind kind, fm_images *train, int32_t train_part, int valid,
                             int classes, uint64_t seed);

/* ---- models and training ----------------------------------------------- */

typedef struct fm_model fm_model;

/* A fresh model for inputs of input_dim values and `classes` outputs,
 * initialized from config->seed. The input counts as an input_dim x 1 x 1
 * image, so convolutional architectures need fm_model_create_image. */
int fm_model_create(const fm_config *config, int input_dim, int classes, fm_model **out);
/* The same for height x width x channels images (what fm_images holds): the
 * model then takes images of that shape only (FM_EMISMATCH for another shape
 * of as many values), where a model of fm_model_create takes any shape. */
int fm_model_create_image(const fm_config *config, int height, int width, int channels,
                          int classes, fm_model **out);
/* The input image shape (any pointer may be NULL); returns input_dim. */
int fm_model_input_shape(const fm_model *model, int *height, int *width, int *channels);
void fm_model_free(fm_model *model);
/* Number of trainable scalars, and a one-line description ("784-1024-...-10, bc"). */
size_t fm_model_param_count(const fm_model *model);
const char *fm_model_describe(const fm_model *model);
int fm_model_input_dim(const fm_model *model);
int fm_model_classes(const fm_model *model);
/* Copies of the latent weights of weighted layer `index` (dense or conv, in
 * network order; fan-in x units, row-major, a convolution's rows ordered
 * kernel row, kernel column, input channel); returns the element count, or a
 * negative error. dst may be NULL to query. */
long fm_model_weights(const fm_model *model, int index, float *dst, size_t capacity);
/* FM_OK when every value of the model (weights, batch-norm parameters and
 * statistics, input mean) is finite; else FM_EINVAL naming the first that is
 * not, as after a training run that diverged. fm_deploy_from_model refuses
 * such a model the same way. */
int fm_model_check_finite(const fm_model *model);

/* Full-state model file (fewmul's training format, docs/model-format.md): written
 * through fm_write_file_atomic, so an existing file is never damaged. */
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

/* A training run paused in a checkpoint file (docs/checkpoint-format.md): the
 * model, the optimizer's state, the data order and position, the learning
 * rate, the best epoch so far and its weights, and the ledger if the run kept
 * one; resuming it ends with the same bits as a run never interrupted. */
typedef struct fm_checkpoint fm_checkpoint;

typedef struct fm_checkpoint_info {
    int epoch, epochs;           /* the epoch to run next or in progress (1-based; epochs + 1
                                    when the run has finished), of the run's epochs */
    long images_done, images_total; /* of that epoch's training images */
    uint64_t step;               /* training steps done */
    double lr;                   /* the rate of that epoch */
    int best_epoch;              /* 0: no evaluation yet */
    double best_valid_error_pct, best_test_error_pct; /* -1 when not measured */
    int has_ledger;              /* the run records an energy ledger */
} fm_checkpoint_info;

/* ---- data-parallel training (docs/distributed.md) ----------------------
 *
 * With a communicator, fm_train runs as one of `size` ranks of a data-parallel
 * run: every rank holds the whole model and data, trains on its share of each
 * global minibatch (config->batch images, split into contiguous shares), and
 * the gradients are summed over the ranks every step, so that every rank
 * applies the same update and keeps the same weights. Batch normalization
 * takes its statistics over the whole global minibatch (the partial sums
 * travel too), and every random draw is keyed by the example's place in the
 * global minibatch, so a run on N ranks computes what one process computes
 * with the same configuration, up to the order of float additions.
 *
 * The library stays free of any communication engine: the caller supplies
 * the two collectives (the fewmul command supplies MPI's). Both must be
 * called by every rank in the same order, which fm_train guarantees, and
 * return FM_OK or a negative code; a failing collective ends the run on that
 * rank with FM_EPEER. A rank whose own step fails announces it at the next
 * collective, and every other rank then ends with FM_EPEER and a message
 * naming the failed rank and its error, so no rank waits forever. Only rank
 * 0 writes checkpoints (every rank must give the same checkpoint settings);
 * every rank computes the same result and, at the end, the same ledger: the
 * work of all ranks, plus the bytes they sent each other (the ledger's
 * network level). */
typedef enum fm_compress {
    FM_COMPRESS_NONE = 0, /* fp32 gradients, summed by allreduce */
    FM_COMPRESS_POW2,     /* each value rounded to a signed power of two (1 byte) */
    FM_COMPRESS_INT8      /* each value scaled by its group's max |value| to -127..127 */
} fm_compress;

typedef struct fm_comm {
    int rank, size;                 /* 0 <= rank < size */
    /* Sums `count` floats elementwise over the ranks, in place, with the same
     * bits on every rank. */
    int (*allreduce_sum)(float *data, size_t count, void *user);
    /* Every rank's `bytes` bytes of `send`, in rank order, into `recv`
     * (size * bytes). */
    int (*allgather)(const void *send, void *recv, size_t bytes, void *user);
    void *user;
    /* Gradient compression before the exchange, with error feedback: what
     * rounding drops is kept per rank and added to the next step's gradient.
     * Compressed gradients travel by allgather and are summed in rank order
     * on every rank. The feedback is not saved in checkpoints: a resumed run
     * starts it at zero. */
    fm_compress compress;
} fm_comm;

/* "none", "pow2", "int8"; fm_parse_compress is its inverse (FM_EINVAL). */
const char *fm_compress_name(fm_compress compress);
int fm_parse_compress(const char *text, fm_compress *out);

typedef struct fm_callbacks {
    void (*on_progress)(const fm_progress *progress, void *user); /* every batch */
    void (*on_epoch)(const fm_epoch_report *report, void *user);
    int (*should_stop)(void *user); /* polled after each batch; nonzero ends the run with
                                       FM_ECANCELED, after writing a checkpoint if one is set */
    void *user;
    struct fm_ledger *ledger;       /* optional: records the run's work (steps, updates,
                                       evaluation passes); see the energy ledger below */
    /* Checkpoints. With a path, fm_train writes the run's whole state there
     * (through fm_write_file_atomic, so the previous checkpoint survives any
     * crash) at the end of every epoch, every checkpoint_every
     * steps and every checkpoint_seconds (0: neither), and when should_stop
     * ends the run. A checkpoint that cannot be written ends the run with its
     * error (FM_EIO, FM_ENOMEM); the one before stays as it was. */
    const char *checkpoint;
    long checkpoint_every;
    double checkpoint_seconds;
    const char *data_spec;          /* recorded in checkpoints, e.g. "mnist:DIR" (may be NULL) */
    void (*on_checkpoint)(const char *path, const fm_checkpoint_info *where, void *user);
    /* Continue a paused run: fm_train takes the checkpoint's weights, input
     * statistics, optimizer state and position into `model` (which must have
     * the same architecture and shapes), and checks that `train` and `test`
     * are the run's data and that the configuration is the run's
     * (fm_checkpoint_config; only threads may differ, and a different thread
     * count changes no bit of the result) and that a ledger is given exactly when
     * the run kept one; else FM_EMISMATCH naming the difference. */
    const fm_checkpoint *resume;
    /* Data-parallel training over ranks (above); NULL or size 1: one process. */
    const fm_comm *comm;
    /* gcn-zca and gcn-lcn inputs are preprocessed once per run and kept as
     * floats when they take at most this many MiB (0: the default,
     * FM_PREPROC_CACHE_DEFAULT_MIB; negative: never), else at each batch
     * load; docs/data.md, "Once per run". The same results either way,
     * except in the last bits of gcn-zca with OpenBLAS's Haswell kernels. */
    long preproc_cache_mib;
} fm_callbacks;

#define FM_PREPROC_CACHE_DEFAULT_MIB 1024

typedef struct fm_result {
    double test_error_pct;       /* at the epoch of best validation error (ties: later) */
    double valid_error_pct;      /* best validation error */
    int best_epoch;
    int epochs;                  /* epochs run */
    double train_seconds;        /* training steps only, all epochs */
    double total_seconds;        /* including evaluation */
    double train_images_per_s;
    double final_train_loss;
    const char *kernels;         /* --exec mulfree: the kernel variant that ran ("ref",
                                    "avx2", "avx512", "neon"); NULL on the default path */
    long ldexp_fallbacks;        /* --exec mulfree: weight gradients formed with ldexpf
                                    because an exponent add would have left the normal
                                    float range (docs/mulfree.md); 0 on the default path */
} fm_result;

/* Trains `model` on `train` (less its last config->valid images, kept for
 * validation) and reports test error on `test` (may be NULL). Afterwards the
 * model holds the weights of the best validation epoch (the last epoch when no
 * validation set). callbacks may be NULL. */
int fm_train(fm_model *model, const fm_images *train, const fm_images *test,
             const fm_config *config, const fm_callbacks *callbacks, fm_result *result);

/* Reads a checkpoint written by fm_train. Every count is checked against the
 * file's size before anything is allocated; FM_EFORMAT, FM_ETRUNC or
 * FM_EUNSUPPORTED name the fault. */
int fm_checkpoint_load(const char *path, fm_checkpoint **out);
void fm_checkpoint_free(fm_checkpoint *checkpoint);
/* The paused run's configuration (its arch string belongs to the checkpoint). */
const fm_config *fm_checkpoint_config(const fm_checkpoint *checkpoint);
/* The data spec the run recorded ("" when none). */
const char *fm_checkpoint_data(const fm_checkpoint *checkpoint);
int fm_checkpoint_position(const fm_checkpoint *checkpoint, fm_checkpoint_info *info);
/* A new model with the checkpoint's architecture and current weights, to
 * resume with (or to evaluate the paused weights). */
int fm_checkpoint_model(const fm_checkpoint *checkpoint, fm_model **out);

/* Classification error in percent of `model` on `images`, with the
 * preprocessing stored in the model. threads <= 0: all cores. */
int fm_model_evaluate(const fm_model *model, const fm_images *images, int threads,
                      double *error_pct);
/* Predicted classes of `count` images of `images` starting at `first`. */
int fm_model_predict(const fm_model *model, const fm_images *images, int first, int count,
                     int threads, uint8_t *classes);

/* ---- energy ledger (docs/ledger.md; table format: docs/energy-tables.md) -- */

/* Kinds of arithmetic the ledger counts. One count is one scalar operation on
 * one element, whatever the SIMD width; FM_OP_XNOR_POPCOUNT counts bit pairs. */
typedef enum fm_op {
    FM_OP_FMUL,          /* fp32 multiply */
    FM_OP_FADD,          /* fp32 add or subtract */
    FM_OP_FMA,           /* fp32 multiply-add, a*b+c */
    FM_OP_FSPECIAL,      /* fp32 divide, square root, exp or log */
    FM_OP_IADD,          /* 32-bit integer add or subtract */
    FM_OP_SHIFT,         /* shift, or an add to a float's exponent (x * 2^k) */
    FM_OP_SIGN,          /* sign flip, absolute value or select (mux) */
    FM_OP_XNOR_POPCOUNT, /* xnor and popcount of one bit pair */
    FM_OP_CMP,           /* compare */
    FM_OP_RAND,          /* one 32-bit random draw */
    FM_OP_KINDS
} fm_op;

/* Where work happens: a training step's forward, backward and update, and the
 * evaluation passes (inference, batch-norm statistics) of a run. */
typedef enum fm_phase {
    FM_PHASE_FORWARD, FM_PHASE_BACKWARD, FM_PHASE_UPDATE, FM_PHASE_EVAL, FM_PHASES
} fm_phase;

/* "fmul", "fadd", ... (the keys of energy tables) and "forward", "backward", ... */
const char *fm_op_name(fm_op op);
const char *fm_phase_name(fm_phase phase);

/* A ledger: integer counts of operations and of bytes read and written, per
 * layer and phase, and the tensors those bytes belong to. Counts describe the
 * arithmetic of the method (binary weights: sign flips and adds; quantized
 * back-prop: shifts), recorded by each layer as it runs; they are identical
 * whatever the thread count or kernel variant. */
typedef struct fm_ledger fm_ledger;
int fm_ledger_create(fm_ledger **out);
void fm_ledger_free(fm_ledger *ledger);
void fm_ledger_clear(fm_ledger *ledger);

/* Layers recorded, in network order (the loss is a layer of its own). */
int fm_ledger_layers(const fm_ledger *ledger);
const char *fm_ledger_layer_name(const fm_ledger *ledger, int layer); /* "dense1" */
const char *fm_ledger_layer_shape(const fm_ledger *ledger, int layer); /* "784x1024" */
/* Count of `op` in one layer and phase; layer < 0 sums layers, phase < 0 phases. */
uint64_t fm_ledger_ops(const fm_ledger *ledger, int layer, int phase, fm_op op);
/* Tensors touched; each has a footprint (bytes, the largest recorded). */
int fm_ledger_tensors(const fm_ledger *ledger);
const char *fm_ledger_tensor_name(const fm_ledger *ledger, int tensor); /* "dense1.W" */
uint64_t fm_ledger_tensor_bytes(const fm_ledger *ledger, int tensor);
/* Bytes read (written = 0) or written (written = 1); negative layer, phase or
 * tensor sums over all of them. */
uint64_t fm_ledger_bytes(const fm_ledger *ledger, int layer, int phase, int tensor, int written);
/* Passes recorded in a phase (training steps, evaluation batches) and the
 * examples they covered. */
uint64_t fm_ledger_passes(const fm_ledger *ledger, int phase, uint64_t *examples);

/* Energy tables: a cost per operation and per access at each memory level,
 * read from a small text format (docs/ledger.md) or built in. */
typedef struct fm_energy_table fm_energy_table;
#define FM_ENERGY_MAX_LEVELS 8
#define FM_ENERGY_UNBOUNDED UINT64_MAX /* capacity of the last level (DRAM) */
/* The built-in tables by index (0: "horowitz45", the default); NULL past the end. */
const char *fm_energy_table_builtin(int index);
/* The text of built-in table `index`, in the file format (a starting point for
 * a user's own table); NULL past the end. */
const char *fm_energy_table_builtin_text(int index);
/* A built-in table by name, or else the file at that path. */
int fm_energy_table_open(const char *name_or_path, fm_energy_table **out);
/* Parses table text; `origin` names it in error messages ("my.table"). */
int fm_energy_table_parse(const char *text, size_t length, const char *origin,
                          fm_energy_table **out);
void fm_energy_table_free(fm_energy_table *table);
const char *fm_energy_table_name(const fm_energy_table *table);
const char *fm_energy_table_source(const fm_energy_table *table);
const char *fm_energy_table_unit(const fm_energy_table *table);       /* "pJ" */
double fm_energy_table_joules_per_unit(const fm_energy_table *table); /* 0: not physical */
double fm_energy_table_op_cost(const fm_energy_table *table, fm_op op); /* units per op */
int fm_energy_table_levels(const fm_energy_table *table);
const char *fm_energy_table_level_name(const fm_energy_table *table, int level);
uint64_t fm_energy_table_level_capacity(const fm_energy_table *table, int level); /* bytes */
/* Cost in table units of reading (write = 0) or writing (write = 1) one byte. */
double fm_energy_table_level_cost(const fm_energy_table *table, int level, int write);

/* The link between the ranks of a data-parallel run (the table's optional
 * network line): whether the table prices it, and the cost in table units of
 * sending (receive = 0) or receiving (receive = 1) one byte. */
int fm_energy_table_has_network(const fm_energy_table *table);
double fm_energy_table_network_cost(const fm_energy_table *table, int receive);

/* A priced part of a ledger (one layer and phase, or sums as in fm_ledger_ops). */
typedef struct fm_energy {
    double op_cost[FM_OP_KINDS];   /* table units, per kind */
    double compute;                /* table units: all operations */
    double communication;          /* table units: all bytes at their levels */
    uint64_t read_bytes[FM_ENERGY_MAX_LEVELS], written_bytes[FM_ENERGY_MAX_LEVELS];
    double level_cost[FM_ENERGY_MAX_LEVELS]; /* table units per level */
    uint64_t network_sent, network_received; /* bytes between ranks (fm_comm) */
    double network_cost;           /* their cost (0 when the table has no network line);
                                      part of communication */
    double landauer_bits;          /* result bits of every operation plus bits written */
} fm_energy;
/* The level that holds a tensor: the smallest whose capacity is at least its
 * footprint; FM_LEDGER_NETWORK for the bytes sent between ranks (tensors
 * named "net:..."), which travel over the table's network line. */
#define FM_LEDGER_NETWORK (-2)
int fm_ledger_tensor_level(const fm_ledger *ledger, const fm_energy_table *table, int tensor);
int fm_ledger_price(const fm_ledger *ledger, const fm_energy_table *table, int layer, int phase,
                    fm_energy *out);
/* kT ln 2 at 300 K, joules per bit (Landauer's limit). */
#define FM_LANDAUER_J_PER_BIT (1.380649e-23 * 300.0 * 0.69314718055994531)

/* Runs one real training step (forward, backward, update) of `model` on
 * `batch` synthetic examples into `train_step`, and one inference pass of the
 * same batch into `inference` (either may be NULL). Inference is counted as
 * deployed: with the deterministic quantized weights of the mode, prepared
 * beforehand (fp32: the real weights). The model's weights change. */
int fm_model_measure(fm_model *model, int batch, fm_ledger *train_step, fm_ledger *inference);
/* Multiplications per minibatch counted as the paper's table does, over the
 * dense layers of N inputs and M outputs: standard back-prop B*(3*sum MN + 3*sum M);
 * the model's method drops the MN terms its weights (binary, ternary) and
 * quantized back-prop remove (BC+QB: B*3*sum M). A convolution counts as a
 * dense layer of N = fan-in and M = filters at each output position. */
int fm_model_paper_mults(const fm_model *model, int batch, uint64_t *standard, uint64_t *method);

/* ---- deployment (file format: docs/format.md) ---------------------------- */

/* A deployed network: inference only, weights packed 1 bit (binary), 2 bits
 * (ternary) or 1 + ceil(log2 N) bits (synapse: 5 bits for N <= 16, 6 for the
 * default 26), batch norm folded into a scale and offset per output, run by
 * kernels that add, subtract and look up instead of multiplying. Loading,
 * querying and freeing are the whole life cycle; once loaded, any number of
 * threads may predict with one handle concurrently. */
typedef struct fm_deploy fm_deploy;

/* Which weights a stochastic mode (bc, tc, synapse) deploys.
 * det:  the deterministic quantization (bc: H*sign(W), tc: H*sign(W)*[|W| > H/2],
 *       synapse: the level nearest in log), packed; the default.
 * mean: the real-valued weights W the paper evaluates with (for bc and tc, the
 *       expected value of the stochastic weight), stored as fp32.
 * Deterministic modes always deploy det; fp32 models deploy fp32 weights. */
typedef enum fm_export_weights { FM_EXPORT_DET = 0, FM_EXPORT_MEAN = 1 } fm_export_weights;

/* The deployed form of a trained model, dense or convolutional (docs/deploy.md).
 * height x width x channels must equal its input size (all 0: the model's input
 * shape); a network with convolutions takes its own input shape only. */
int fm_deploy_from_model(const fm_model *model, fm_export_weights how, int height, int width,
                         int channels, fm_deploy **out);
/* Writes the packed file through fm_write_file_atomic (synced and renamed
 * over PATH). */
int fm_deploy_save(const fm_deploy *deploy, const char *path);
/* Reads a packed file, or the same bytes from memory (copied; the buffer may be
 * freed afterwards). Every count and offset is checked against the size before
 * anything is allocated; FM_EFORMAT, FM_ETRUNC or FM_EUNSUPPORTED name the fault. */
int fm_deploy_load(const char *path, fm_deploy **out);
int fm_deploy_load_memory(const void *data, size_t size, fm_deploy **out);
void fm_deploy_free(fm_deploy *deploy);

/* Input values per example (and the image shape, any pointer may be NULL). */
int fm_deploy_input_shape(const fm_deploy *deploy, int *height, int *width, int *channels);
int fm_deploy_classes(const fm_deploy *deploy);
/* "784-1024-1024-1024-10, binary weights, relu" */
const char *fm_deploy_describe(const fm_deploy *deploy);
/* Bytes of the packed file of this network. */
uint64_t fm_deploy_file_bytes(const fm_deploy *deploy);

/* One record of a deployed network: a dense layer, a convolution, a max-pool
 * (of the sums of the convolution before it, before that convolution's batch
 * norm and activation) or a global average pooling. */
typedef struct fm_deploy_layer_info {
    int in, out;            /* values per example in and out (a convolution's
                               out: before its max-pool) */
    const char *weights;    /* "fp32", "binary", "ternary", "synapse"; "none" for pools */
    int bits;               /* per weight (0 for pools) */
    int levels;             /* synapse magnitudes, else 0 */
    const char *input;      /* "real" or "binary" */
    const char *activation; /* "relu", "sign" or "none" (class scores, pools) */
    uint64_t weight_bytes;  /* packed weight bytes in the file */
    const char *type;       /* "dense", "conv", "maxpool" or "gap" */
    uint64_t weight_count;  /* weights: in x out (dense), fan-in x filters (conv), 0 */
    /* conv, maxpool, gap: the input and output maps (height x width x
     * channels), the kernel or pool window, stride and the padding before the
     * first row and column (the rest follows from the output size); dense: 0 */
    int in_h, in_w, in_c, out_h, out_w, out_c;
    int kernel_h, kernel_w, stride, pad_top, pad_left;
} fm_deploy_layer_info;
int fm_deploy_layers(const fm_deploy *deploy);
int fm_deploy_describe_layer(const fm_deploy *deploy, int layer, fm_deploy_layer_info *info);

/* Kernel variants: "ref" (scalar), "avx2", "avx512" (x86), "neon" (aarch64),
 * and "fp32", the yardstick that multiplies the unpacked float weights through
 * BLAS. At load the variant is FEWMUL_KERNELS if set, else the best this CPU
 * supports. Changing it is not safe while predictions run on the handle. */
int fm_deploy_set_kernels(fm_deploy *deploy, const char *name);
const char *fm_deploy_kernels(const fm_deploy *deploy);
/* Names of the variants usable here, the best packed one last before "fp32";
 * NULL past the end. */
const char *fm_kernels_name(int index);

/* Classes (and, when scores is not NULL, count x classes scores) of `count`
 * examples of input_dim pixels each (what the IDX reader gives). threads <= 0:
 * all cores; 1 runs on the calling thread only. */
int fm_deploy_predict(const fm_deploy *deploy, const uint8_t *pixels, int count, int threads,
                      uint8_t *classes, float *scores);
/* The same from float pixel values (the unit of the pixels above, 0..255). */
int fm_deploy_predict_f32(const fm_deploy *deploy, const float *pixels, int count, int threads,
                          uint8_t *classes, float *scores);

/* What fm_deploy_export_c wrote. */
typedef struct fm_export_c_info {
    uint64_t scratch_bytes; /* NAME_SCRATCH_BYTES: the caller's buffer per prediction */
    uint64_t const_bytes;   /* the const tables: weights, scales, offsets, ranges, mean */
    uint64_t weight_bytes;  /* of which packed weights (as in the packed file) */
    uint64_t source_bytes;  /* the size of NAME.c */
    int exact;              /* 1: the same classes and scores as fm_deploy_predict, bit
                               for bit; 0: the network has fp32 weights, which fewmul
                               multiplies through BLAS in another order of additions */
} fm_export_c_info;

/* Writes the network as a self-contained C source pair, DIR/NAME.h and
 * DIR/NAME.c (docs/deploy.md, "C for microcontrollers"): const weight tables
 * in the packed bit layout and NAME_predict(pixels, scores, scratch), which
 * needs no allocation, no library and nothing a freestanding C99 compiler
 * lacks, with a scratch buffer of NAME_SCRATCH_BYTES. NAME is a C identifier
 * (a letter, then letters, digits, underscores; at most 64). DIR is created
 * when missing (its parent must exist: FM_ENOENT otherwise); each file is
 * written through fm_write_file_atomic, so a failure leaves what was there
 * as it was (FM_EIO). info may be NULL. */
int fm_deploy_export_c(const fm_deploy *deploy, const char *dir, const char *name,
                       fm_export_c_info *info);

/* ONNX (docs/deploy.md, "ONNX"): the graph's operators. */
typedef enum fm_onnx_dialect {
    FM_ONNX_PLAIN = 0, /* standard operators (opset 13) only: runs in onnxruntime */
    FM_ONNX_QONNX = 1  /* binary and ternary weights and sign activations through
                          QONNX's BipolarQuant and IntQuant (domain
                          qonnx.custom_op.general), for FINN-style tool chains */
} fm_onnx_dialect;

/* What fm_deploy_export_onnx wrote. */
typedef struct fm_export_onnx_info {
    uint64_t file_bytes; /* the size of the ONNX file */
    int64_t nodes;       /* the graph's nodes */
    int64_t weights;     /* weight values stored as float initialisers */
} fm_export_onnx_info;

/* 1 when this build writes ONNX (it was built with protobuf-c), else 0. */
int fm_onnx_available(void);

/* Writes the network as one ONNX model at path: input "pixels", float
 * [batch, height, width, channels] raw pixel values (0 .. 255 for 8-bit
 * images, the IDX files' order); output "scores", float [batch, classes], the
 * class scores of fm_deploy_predict up to the order of float additions. The
 * file is written through fm_write_file_atomic (a failure leaves what was at
 * path as it was: FM_EIO). FM_EUNSUPPORTED when this build has no ONNX
 * support (fm_onnx_available) or the weights as floats exceed 2 GB; FM_EINVAL
 * for a bad argument. info may be NULL. */
int fm_deploy_export_onnx(const fm_deploy *deploy, const char *path, fm_onnx_dialect dialect,
                          fm_export_onnx_info *info);

/* Reads an ONNX model into a deployed network (docs/deploy.md, "ONNX"): the
 * graphs fm_deploy_export_onnx writes, in both dialects (with the metadata it
 * writes, saving the result gives back the packed file byte for byte), and
 * graphs of the same operators from other tools (dense and conv layers whose
 * weights are +-1, {-1, 0, +1} or real, the folded batch norm as a Mul and an
 * Add, ReLU or sign, max-pool, global average pool). Anything else is refused
 * with a message naming the node: FM_EUNSUPPORTED; bytes that are not an ONNX
 * model: FM_EFORMAT or FM_ETRUNC; FM_EUNSUPPORTED too when this build has no
 * ONNX support. origin names the bytes in messages (NULL: "<memory>"). */
int fm_deploy_import_onnx(const char *path, fm_deploy **out);
int fm_deploy_import_onnx_memory(const void *data, size_t size, const char *origin, fm_deploy **out);

#ifdef __cplusplus
}
#endif
#endif /* FEWMUL_H */
