/* fewmul.c — the `fewmul` command: `fewmul train` trains a network with binary,
 * ternary, synapse-like or full-precision weights and optional quantized
 * back-propagation (with --ledger, it also reports the run's work, priced);
 * `fewmul eval` measures a saved model's error; `fewmul infer`, `info` and
 * `bench infer` run, describe and time a packed (deployed) model; `fewmul
 * energy` counts and prices one training step and one inference pass against
 * fp32. It uses only the public header fewmul.h. Exit status: 0 ok, 1 failure,
 * 2 usage error, 130 interrupted (docs/cli.md, docs/fewmul.1). */
#define _POSIX_C_SOURCE 200809L

#include "fewmul.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

/* ---- messages ------------------------------------------------------------ */

/* The subcommand whose --help a usage error points to (NULL: the top level). */
static const char *g_command;

/* Every error is exactly one line: control characters that a file name or an
 * argument could smuggle in are shown as '?'. */
static void print_error_line(const char *hint, const char *fmt, va_list args)
{
    char message[1024];
    vsnprintf(message, sizeof message, fmt, args);
    for (char *c = message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    fflush(stdout);
    if (hint)
        fprintf(stderr, "fewmul: error: %s (%s)\n", message, hint);
    else
        fprintf(stderr, "fewmul: error: %s\n", message);
}

/* A mistake on the command line: exit status 2 and a pointer to the help. */
static int usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    char hint[64];
    if (g_command)
        snprintf(hint, sizeof hint, "try 'fewmul %s --help'", g_command);
    else
        snprintf(hint, sizeof hint, "try 'fewmul --help'");
    va_list args;
    va_start(args, fmt);
    print_error_line(hint, fmt, args);
    va_end(args);
    return CLI_USAGE;
}

/* A failure at run time (data, files, the library): exit status 1. */
static int failure(const char *fmt, ...) CLI_PRINTF(1, 2);
static int failure(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    print_error_line(NULL, fmt, args);
    va_end(args);
    return CLI_FAIL;
}

static int library_failure(void)
{
    return failure("%s", fm_last_error());
}

static void print_lines(FILE *f, const char *const *lines)
{
    for (; *lines; lines++)
        fprintf(f, "%s\n", *lines);
}

/* ---- help texts (arrays of lines: no string literal is too long for C11) -- */

static const char *const main_help[] = {
    "fewmul " FM_VERSION_STRING " - train neural networks with few multiplications",
    "",
    "Usage:",
    "  fewmul train [OPTIONS]              train a network, report its test error,",
    "                                      save it packed (--out) or in full (--state)",
    "  fewmul eval --model FILE [OPTIONS]  measure the error of a saved model",
    "  fewmul infer --model FILE [OPTIONS] predict a data set with a packed model:",
    "                                      error, images/s, latency",
    "  fewmul info FILE [--json]           describe a packed model, layer by layer",
    "  fewmul bench infer --model FILE     time every kernel variant of a packed",
    "                                      model against the fp32 yardstick",
    "  fewmul energy [OPTIONS]             count and price the work of one training",
    "                                      step and one inference pass",
    "  fewmul help [COMMAND]               show the help of a command",
    "  fewmul --version                    print the version",
    "",
    "Binary and ternary weights (BinaryConnect, TernaryConnect) turn the forward",
    "pass's multiplications into sign changes; quantized back-propagation (--qb)",
    "turns those of the weight gradient into shifts. After Lin, Courbariaux,",
    "Memisevic, Bengio, \"Neural Networks with Few Multiplications\", ICLR 2016.",
    "",
    "A packed model (--out) holds 1-bit binary, 2-bit ternary or 5- to 6-bit",
    "synapse weights with batch norm folded in, and runs on kernels that add,",
    "look up and count bits instead of multiplying.",
    "",
    "Environment:",
    "  FEWMUL_KERNELS=ref|avx2|avx512",
    "       the kernel variant a packed model gets when it is loaded (default: the",
    "       best this CPU supports); a value that is not one of these, or a",
    "       variant this CPU lacks, makes loading fail (exit 1)",
    "",
    "Exit status:",
    "  0    success",
    "  1    failure: unreadable or malformed data or model file, I/O error,",
    "       a kernel variant this CPU lacks",
    "  2    usage error: unknown command or option, bad value",
    "  130  interrupted (Ctrl-C)",
    "",
    "Run 'fewmul help COMMAND' (train, eval, infer, info, bench, energy) or",
    "'man fewmul' for details.",
    NULL};

static const char *const train_help[] = {
    "Usage: fewmul train [OPTIONS]",
    "",
    "Train a network on a training set, keeping its last --valid images for",
    "validation, and report the test error at the epoch of best validation",
    "error. Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "Data and model:",
    "  --data SPEC        fashion (default): Fashion-MNIST from Debian's",
    "                     dataset-fashion-mnist (" FM_FASHION_DIR ");",
    "                     mnist:DIR or idx:DIR: a folder with train-images-idx3-ubyte,",
    "                     train-labels-idx1-ubyte, t10k-images-idx3-ubyte,",
    "                     t10k-labels-idx1-ubyte, raw or gzip-compressed (.gz)",
    "                     cifar10:DIR: the CIFAR-10 binary version (data_batch_1.bin",
    "                     .. data_batch_5.bin, test_batch.bin)",
    "                     svhn:DIR: SVHN cropped digits (train_32x32.mat,",
    "                     test_32x32.mat, and extra_32x32.mat when present,",
    "                     appended to the training set)",
    "  --arch ARCH        the network; batch norm follows every layer (after the",
    "                     pool in a convolution block), ReLU every hidden one:",
    "                     paper-mlp (default): 1024-1024-1024, dense",
    "                     mlp:H1,H2,...: those hidden widths, dense",
    "                     paper-cnn: the paper's CIFAR-10/SVHN net, unpadded:",
    "                       conv:128k3,128k3,pool2,256k2,256k2,pool2,512k2,512k2,",
    "                       pool2,1024k2,fc1024",
    "                     bc-cnn: BinaryConnect's VGG-like net, padded:",
    "                       conv:128k3same,128k3same,pool2,256k3same,256k3same,",
    "                       pool2,512k3same,512k3same,pool2,fc1024,fc1024",
    "                     conv:ITEM,...: FkK[sS][same|valid] a convolution of F",
    "                       filters KxK, stride S (default 1), padding 'same' or",
    "                       none (default); poolP[sS] max-pool of PxP windows",
    "                       moved by S (default P), right after a convolution;",
    "                       fcH a dense layer of H units, after the convolutions.",
    "                       The input shape comes from the data, and the class",
    "                       scores layer is added at the end",
    "",
    "Saving (both written beside FILE and renamed into place):",
    "  --out FILE         save the best validation epoch's network packed for",
    "                     deployment: weights of 1 bit (binary), 2 bits (ternary)",
    "                     or 1 + ceil(log2 N) bits (synapse), batch norm folded",
    "                     into a scale and offset per unit, the input shape of",
    "                     the training images; read by 'fewmul infer', 'info',",
    "                     'bench infer', 'eval' and fm_deploy_load. A network the",
    "                     format cannot hold (over 32 synapse levels with",
    "                     --export det) is refused before training (exit 2)",
    "  --state FILE       save the full training state (latent fp32 weights, batch",
    "                     norm statistics, configuration, input mean) in the",
    "                     training format, which 'fewmul eval' evaluates exactly",
    "                     as training did",
    "  --export det|mean  the weights --out deploys for the stochastic modes bc,",
    "                     tc and synapse. det (default): the deterministic",
    "                     quantization, packed: bc H*sign(W); tc H*sign(W) where",
    "                     |W| > H/2, else 0; synapse the level nearest in log.",
    "                     mean: the real-valued weights W, which the paper",
    "                     evaluates with (for bc and tc the expected value of the",
    "                     stochastic weight), stored as 32-bit floats and run by",
    "                     multiplying. The deterministic modes bc-det and tc-det",
    "                     always deploy their quantized weights and fp32 its",
    "                     floats: --export changes nothing for them",
    "",
    "Weights and quantization:",
    "  --weights MODE     fp32 (default): full precision",
    "                     bc, bc-det: binary (BinaryConnect), stochastic or",
    "                       deterministic",
    "                     tc, tc-det: ternary (TernaryConnect), stochastic or",
    "                       deterministic",
    "                     synapse[:N]: N log-spaced magnitudes with sign,",
    "                       stochastic rounding (default N 26)",
    "  --synapse-range R  largest/smallest synapse magnitude, R > 1 (default 60)",
    "  --scale glorot|one weight scale H of binary/ternary values and of the clip",
    "                     box: glorot (default) H = sqrt(6/(fan_in+fan_out))/2, or 1",
    "  --qb[=EMIN:EMAX]   quantized back-prop: the layer inputs used in the weight",
    "                     gradient are rounded stochastically to signed powers of",
    "                     two; EMIN:EMAX clips the exponent (integers, EMIN <= EMAX,",
    "                     each in -126..126); plain --qb leaves it unbounded",
    "                     in dense layers (the authors' code clips only",
    "                     convolutions: see --qb-conv)",
    "  --qb-conv EMIN:EMAX|none",
    "                     the exponent clip of Q(x) in convolutions (default -4:3,",
    "                     the authors' code; Q(0) stays 0, see docs/method.md)",
    "  --qb-bn-jacobian   with --qb, use the exact pre-batch-norm error for a",
    "                     dense layer's weight gradient (default: the error at the",
    "                     batch norm's output, as the authors' code; convolutions",
    "                     always use the exact error at their output, as theirs)",
    "  --test-weights real|quantized",
    "                     evaluate stochastic modes with the real weights (default,",
    "                     the paper) or with deterministic quantized weights",
    "  --acts relu|binary hidden activations: relu (default, the paper), or binary:",
    "                     sign(x) in {-1, +1} with sign(0) = +1, trained with the",
    "                     straight-through estimator (the gradient passes where",
    "                     |x| <= 1). With --weights bc or bc-det, the deployed",
    "                     network's layers after the first (whose inputs are",
    "                     pixels) multiply +-1 inputs by +-1 weights: xnor and",
    "                     popcount",
    "  --exec default|mulfree",
    "                     how the dense layers' products run. default: float",
    "                     GEMMs of the quantized weights (OpenBLAS), the fastest",
    "                     path, as the authors' code emulates the method.",
    "                     mulfree: the method executed, no float multiply in the",
    "                     products: Wb*x and Wb'*delta by table lookups and adds",
    "                     from packed sign (and zero) masks, Q(x)'*delta by",
    "                     exponent adds; one multiply by H per output remains, and",
    "                     batch norm, the loss and the update multiply as before.",
    "                     Needs --weights other than fp32 (synapse: N <= 32) and",
    "                     --qb. Same results as default up to the order of float",
    "                     additions. Kernel variant: FEWMUL_KERNELS=ref|avx2|avx512,",
    "                     else the best this CPU has (docs/mulfree.md)",
    "",
    "Training:",
    "  --epochs N         epochs, 1..1000000 (default 20)",
    "  --batch B          minibatch size, 1..65536 (default 200)",
    "  --opt sgd|adam     optimizer (default sgd)",
    "  --lr X             initial learning rate, > 0 (default sgd 0.3, adam 0.003)",
    "  --lr-final X       rate after the last epoch, > 0, reached by exponential",
    "                     decay per epoch (default sgd 0.01, adam 2e-6)",
    "  --momentum X       SGD momentum, 0 <= X < 1 (default 0)",
    "  --loss hinge|xent  squared hinge summed over classes (default) or softmax",
    "                     cross-entropy",
    "  --preproc center|unit|gcn-zca|gcn-lcn",
    "                     center: x/255 minus the training images' per-pixel mean",
    "                     (default for MNIST-like data); unit: x/255 in [0,1];",
    "                     gcn-zca: global contrast normalization, then ZCA",
    "                     whitening fitted on the training split (default for",
    "                     cifar10); gcn-lcn: global, then local contrast",
    "                     normalization (default for svhn). docs/data.md",
    "  --dropout P        drop probability of hidden units, 0 <= P < 1 (default 0)",
    "  --bn-stats paper|running",
    "                     batch-norm inference statistics: recomputed after each",
    "                     epoch as the authors' code (default), or moving averages",
    "  --valid N          validation images taken from the end of the training",
    "                     set, N >= 0 (default: the paper's split, 10000 for",
    "                     MNIST-like data, 5000 for cifar10, 6000 for svhn; 0:",
    "                     none). Without --valid, svhn's validation images are",
    "                     400 per class from train_32x32 and 200 from extra_32x32",
    "                     (600 from train_32x32 without extra), as pylearn2's",
    "                     split, moved to the end of the training set",
    "  --train-limit N    use only the first N remaining training images (0: all)",
    "  --seed S           random seed, 0..18446744073709551615 (default 1234)",
    "  --threads T        worker threads, 1..1024 (default: all cores)",
    "",
    "Evaluation:",
    "  --eval-every N     measure validation and test error every N epochs and",
    "                     after the last, N >= 1 (default 1)",
    "  --no-eval          measure no validation or test error (benchmarks)",
    "",
    "Output:",
    "  --log FILE         write one JSON object per epoch to FILE (JSON Lines;",
    "                     the file is truncated first and flushed every epoch)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, instead of the human summary",
    "  --quiet            no progress bar and no per-epoch lines",
    "  --ledger           record the run's work (operations and bytes per layer and",
    "                     phase, training steps and evaluation passes) and print it,",
    "                     priced with --table, after the summary; with --json, under",
    "                     the keys \"ledger\" and \"table\" ('fewmul help energy')",
    "  --table NAME|FILE  energy table that prices the ledger: a built-in name",
    "                     (default horowitz45; 'fewmul energy --list-tables') or a",
    "                     table file; implies --ledger. A missing or malformed table",
    "                     fails (exit 1) before any data is read",
    "  -h, --help         show this help",
    "",
    "Unless --quiet, each epoch prints a line on standard error, and a progress",
    "bar is drawn while standard error is a terminal:",
    "  epoch 3/20  loss 0.1234  train 2.10%  valid 1.90%  test 2.00%  best 1.90%@3",
    "  lr 0.2800  8.2 s  6100 img/s",
    "Ctrl-C stops training at the next minibatch; fewmul then prints",
    "'interrupted' and exits with status 130 without saving.",
    "",
    "JSON keys: test_error_pct, valid_error_pct, best_epoch, epochs,",
    "train_seconds, train_images_per_s, total_seconds, final_train_loss, arch,",
    "model, weights, synapse_levels, qb, qb_emin, qb_emax, qb_conv_emin,",
    "qb_conv_emax, batch, seed, threads, params, data, preproc, valid, lr,",
    "lr_final, opt, acts, exec, kernels, ldexp_fallbacks, out,",
    "out_bytes, bits_per_weight, out_weights, export, state (null when absent or",
    "not measured); with",
    "--ledger also table and ledger.",
    "",
    "Exit status: 0 success; 1 failure (data, model or table file, I/O, library);",
    "2 usage error (bad option or value); 130 interrupted.",
    "",
    "Examples:",
    "  fewmul train --weights bc --qb --epochs 50 --out bc-qb.fmp --state bc-qb.fm",
    "  fewmul train --weights bc-det --acts binary --out xnor.fmp",
    "  fewmul train --data mnist:/data/mnist --arch mlp:512,512 --opt adam --json",
    NULL};

static const char *const eval_help[] = {
    "Usage: fewmul eval --model FILE [OPTIONS]",
    "",
    "Load a model saved by 'fewmul train' and print its classification error on",
    "a data set, with the preprocessing stored in the model. Both files are",
    "read, told apart by their first 8 bytes: a training state (--state,",
    "FMULMODL) is evaluated as training evaluates it; a packed model (--out,",
    "FMULPACK) is run by its kernels, as 'fewmul infer' runs it.",
    "Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "  --model FILE       the model file (required)",
    "  --data SPEC        fashion (default), mnist:DIR, idx:DIR, cifar10:DIR or",
    "                     svhn:DIR, as for train;",
    "                     the images must have the model's input size",
    "  --set test|train   which set of the data to measure (default test)",
    "  --threads T        worker threads, 1..1024 (default: all cores)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, with the keys error_pct, images,",
    "                     model, describe, format (state or packed), kernels",
    "                     (null for a state), data, set, seconds, threads",
    "  -h, --help         show this help",
    "",
    "Exit status: 0 success; 1 failure (model or data file, size mismatch,",
    "FEWMUL_KERNELS invalid); 2 usage error (bad option or value).",
    NULL};

static const char *const infer_help[] = {
    "Usage: fewmul infer --model FILE [OPTIONS]",
    "",
    "Load a packed model (written by 'fewmul train --out') and predict every",
    "image of a data set in batches, as a deployed program would: report the",
    "classification error, the images per second and the median time of one",
    "batch. One untimed batch goes first, to start the threads and warm the",
    "caches. Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "  --model FILE       the packed model file (required)",
    "  --data SPEC        fashion (default), mnist:DIR, idx:DIR, cifar10:DIR or",
    "                     svhn:DIR, as for train;",
    "                     the images must have the model's input shape",
    "                     (height x width x channels) and no label may reach",
    "                     the model's class count",
    "  --set test|train   which set of the data to predict (default test)",
    "  --batch B          examples per call of fm_deploy_predict, 1..65536",
    "                     (default 256)",
    "  --threads T        worker threads, 1..1024 (default: all cores); the",
    "                     examples of a batch are spread over them",
    "  --kernels ref|avx2|avx512|fp32",
    "                     the kernel variant (default: FEWMUL_KERNELS, else the",
    "                     best this CPU supports). ref is portable C; avx2 and",
    "                     avx512 give bit-identical results faster; fp32 is the",
    "                     yardstick: the same network with its weights unpacked",
    "                     to floats and multiplied through BLAS. A variant this",
    "                     CPU lacks fails (exit 1)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, with the keys error_pct, images,",
    "                     images_per_s, latency_us_median, batch, batches,",
    "                     seconds, kernels, threads, model, describe, input,",
    "                     input_dim, classes, data, set",
    "  -h, --help         show this help",
    "",
    "Environment: FEWMUL_KERNELS=ref|avx2|avx512 chooses the variant at load;",
    "an invalid value fails (exit 1).",
    "",
    "Exit status: 0 success; 1 failure (model or data file, shape or class",
    "mismatch, variant unsupported here, FEWMUL_KERNELS invalid); 2 usage error",
    "(bad option or value).",
    "",
    "Example:",
    "  fewmul infer --model bc.fmp --data mnist:/data/mnist --batch 1 --threads 1",
    NULL};

static const char *const info_help[] = {
    "Usage: fewmul info FILE [--json]",
    "",
    "Describe a packed model (written by 'fewmul train --out'): its network,",
    "input shape, classes and file size; per layer its inputs and outputs, the",
    "kind of its weights (fp32, binary, ternary, synapse), their bits and",
    "levels, whether its input is real or binary (+-1 from a sign layer), its",
    "activation (relu, sign, or none for the class scores) and its weight bytes;",
    "the total weight bits and bits per weight; the kernel variant that would",
    "run it here and the variants available.",
    "",
    "  --json             print one JSON object, the last line of standard",
    "                     output, with the keys file, describe, input, input_dim,",
    "                     classes, file_bytes, layers (in, out, weights, bits,",
    "                     levels, input, activation, weight_bytes), weights,",
    "                     weight_bits, weight_bytes, bits_per_weight, kernels,",
    "                     kernels_available",
    "  -h, --help         show this help",
    "",
    "Environment: FEWMUL_KERNELS=ref|avx2|avx512 chooses the variant at load;",
    "an invalid value fails (exit 1).",
    "",
    "Exit status: 0 success; 1 failure (missing, truncated or malformed file, a",
    "training-state file, FEWMUL_KERNELS invalid); 2 usage error (no FILE, bad",
    "option).",
    NULL};

static const char *const bench_help[] = {
    "Usage: fewmul bench infer --model FILE [--runs N] [--threads T] [--json]",
    "",
    "Time a packed model (written by 'fewmul train --out') with every kernel",
    "variant available here (ref, avx2, avx512 where the CPU has them, and",
    "fp32, the yardstick that multiplies unpacked float weights through BLAS),",
    "in one invocation, on pseudo-random pixels of the model's input size",
    "(256 images from a fixed seed, the same on every run and machine):",
    "  batch-1 latency: one example per fm_deploy_predict call on 1 thread,",
    "    the median of N runs, in microseconds; each timed call follows an",
    "    untimed one of the same variant, so its weights are in cache as when",
    "    serving steadily",
    "  throughput: batches of 256 on --threads threads, the median of",
    "    max(5, N/20) runs, in images per second",
    "Each variant is warmed up first. The runs are interleaved: every round",
    "runs each variant once, so machine noise hits them all alike. The report",
    "gives each variant's speedup over fp32 for both measurements, and the",
    "number of the 256 inputs whose predicted class differs from ref's (the",
    "packed variants are bit-identical; fp32 adds in another order). A",
    "mismatch is printed, but is not an error.",
    "",
    "  --model FILE       the packed model file (required)",
    "  --runs N           batch-1 runs per variant, 1..1000000 (default 200)",
    "  --threads T        threads of the throughput runs, 1..1024 (default: all",
    "                     cores)",
    "  --json             print one JSON object, the last line of standard",
    "                     output, instead of the table: command, model, describe,",
    "                     input, classes, runs, throughput_runs, batch, threads,",
    "                     seed, default_kernels, variants (name, latency_us,",
    "                     images_per_s, latency_speedup_vs_fp32,",
    "                     throughput_speedup_vs_fp32, mismatches), mismatches",
    "  -h, --help         show this help",
    "",
    "Environment: FEWMUL_KERNELS=ref|avx2|avx512 sets only the variant the",
    "model is loaded with (reported as default_kernels); an invalid value fails",
    "(exit 1).",
    "",
    "Exit status: 0 success (also with mismatches); 1 failure (model file,",
    "FEWMUL_KERNELS invalid, library); 2 usage error (no or unknown subcommand,",
    "bad option or value).",
    "",
    "Example:",
    "  fewmul bench infer --model bc.fmp --runs 500 --json",
    NULL};

static const char *const energy_help[] = {
    "Usage: fewmul energy [OPTIONS]",
    "       fewmul energy --list-tables | --print-table NAME",
    "",
    "Build a network, run one real training step (forward, backward, update) and",
    "one inference pass on a batch of synthetic examples, and report the ledger of",
    "that work: every scalar operation by kind (fp32 multiply, add, multiply-add,",
    "shift, sign flip or select, ...) and every byte each layer reads and writes,",
    "per layer and phase. An energy table prices it: a cost per operation, and a",
    "cost per byte read or written at the memory level that holds each tensor (the",
    "smallest level its footprint fits in). The same network with fp32 weights and",
    "without --qb is measured beside it, and the multiplications per minibatch are",
    "also given as the paper's table counts them. docs/ledger.md explains the",
    "counting and the memory model, docs/energy-tables.md the table format.",
    "Options take their value as '--opt VALUE' or '--opt=VALUE'.",
    "",
    "Network and step (as for 'fewmul train'):",
    "  --arch ARCH        paper-mlp (default), mlp:H1,H2,..., paper-cnn, bc-cnn or",
    "                     conv:ITEM,... (as for train)",
    "  --input N|HxWxC    input values: N, or height x width x channels (the",
    "                     convolutional networks need HxWxC, e.g. 32x32x3)",
    "                     (default 28x28x1 = 784; at most 1048576 values)",
    "  --classes C        outputs, 2..256 (default 10; labels are bytes)",
    "  --weights MODE     fp32 (default), bc, bc-det, tc, tc-det, synapse[:N]",
    "  --synapse-range R  largest/smallest synapse magnitude, R > 1 (default 60)",
    "  --scale glorot|one weight scale H (default glorot)",
    "  --qb[=EMIN:EMAX]   quantized back-prop (exponent clip as for train)",
    "  --qb-conv EMIN:EMAX|none",
    "                     the exponent clip in convolutions (default -4:3)",
    "  --qb-bn-jacobian   with --qb, the exact pre-batch-norm error",
    "  --acts relu|binary hidden activations (default relu; binary: sign, as train)",
    "  --exec default|mulfree",
    "                     the arithmetic the dense products are counted in, as",
    "                     train: default, the method's sign selects and adds per",
    "                     term (the default path computes the same values with",
    "                     float GEMMs); mulfree, what the multiplication-free",
    "                     kernels execute: table lookups per 4 weights, exponent",
    "                     adds (needs a quantized mode and --qb; docs/mulfree.md)",
    "  --batch B          examples in the step and the inference pass, 1..65536",
    "                     (default 200)",
    "  --loss hinge|xent  loss (default hinge)",
    "  --opt sgd|adam     optimizer of the update (default sgd)",
    "  --momentum X       SGD momentum, 0 <= X < 1 (default 0)",
    "  --dropout P        drop probability of hidden units, 0 <= P < 1 (default 0)",
    "  --seed S           random seed (default 1234)",
    "  --threads T        worker threads, 1..1024 (default: all cores); the counts",
    "                     do not depend on it",
    "",
    "Energy table:",
    "  --table NAME|FILE  a built-in table (default horowitz45) or a table file;",
    "                     a missing or malformed file fails with exit status 1",
    "  --list-tables      print the built-in tables, their units and sources",
    "  --print-table NAME print a built-in table in the file format, a start for",
    "                     one's own table file",
    "",
    "Output:",
    "  --verbose          list every tensor with its size and memory level (the",
    "                     report lists the largest few)",
    "  --json             print one JSON object, the last line of standard output,",
    "                     instead of the report",
    "  -h, --help         show this help",
    "",
    "The report has, for the training step and for the inference pass, one row per",
    "layer and phase with work, then each phase over all layers and the total.",
    "Columns: mul+fma (fmul, fma), add (fadd, iadd), shift, sign/sel, other",
    "(fspecial, xnor_popcount, cmp, rand), bytes read and written, compute and",
    "communication cost, and their ratio. Then the bytes and cost at each memory",
    "level, the method against fp32 with the energy saved, the Landauer floor",
    "(kT ln 2 at 300 K per bit; physical tables only), and the paper's count.",
    "Costs are in joules with an SI prefix when the table is physical, else in",
    "the table's unit times a power of 1000 (\"1e6 MAC\").",
    "",
    "JSON keys: command, arch, weights, synapse_levels, qb, qb_emin, qb_emax,",
    "qb_conv_emin, qb_conv_emax,",
    "batch, input, input_dim, classes, seed, describe, params, table, train_step,",
    "inference, fp32 (describe, train_step, inference), saved, paper_mults_standard,",
    "paper_mults_method, paper_ratio, landauer_j_per_bit. A ledger has layers",
    "(name, shape, phases), tensors (name, bytes, level), phases and total; each",
    "priced part has ops (the ten kinds, exact integers), read_bytes and",
    "written_bytes by level, compute, communication, comm_to_compute,",
    "landauer_bits, and compute_j, communication_j, landauer_j when the table is",
    "physical. docs/cli.md lists them in full.",
    "",
    "Exit status: 0 success; 1 failure (table file missing or malformed, library",
    "error); 2 usage error (bad option or value, unknown --print-table name).",
    "",
    "Examples:",
    "  fewmul energy --weights bc --qb",
    "  fewmul energy --arch mlp:512,512 --input 32x32x3 --weights tc --qb=-4:3",
    "  fewmul energy --print-table horowitz45 > my.table   (edit it, then)",
    "  fewmul energy --weights bc --qb --table my.table --json",
    NULL};

/* ---- strict numbers ------------------------------------------------------ */

typedef enum { NUM_OK, NUM_SYNTAX, NUM_RANGE } num_status;

/* strtol and friends skip leading white space and stop at the first stray
 * character; a command line value must be a number and nothing else. */
static int starts_badly(const char *s)
{
    return *s == '\0' || isspace((unsigned char)*s);
}

static num_status parse_long(const char *s, long *out)
{
    if (starts_badly(s))
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end)
        return NUM_SYNTAX;
    if (errno == ERANGE)
        return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

/* strtoull accepts "-1" and wraps it: a seed never starts with '-'. */
static num_status parse_u64(const char *s, uint64_t *out)
{
    if (starts_badly(s) || *s == '-')
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end)
        return NUM_SYNTAX;
    if (errno == ERANGE || v > UINT64_MAX)
        return NUM_RANGE;
    *out = (uint64_t)v;
    return NUM_OK;
}

/* Overflow and underflow both count as out of range; nan and inf parse but are
 * never a sensible rate or probability. */
static num_status parse_double(const char *s, double *out)
{
    if (starts_badly(s))
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end)
        return NUM_SYNTAX;
    if (errno == ERANGE || !isfinite(v))
        return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

/* ---- the option table ---------------------------------------------------- */

typedef enum { T_FLAG, T_INT, T_U64, T_DOUBLE, T_STRING, T_CHOICE, T_CUSTOM } value_type;
typedef enum { ARG_NONE, ARG_REQUIRED, ARG_OPTIONAL } arg_kind;
enum { LO_OPEN = 1, HI_OPEN = 2 }; /* range bounds excluded (T_DOUBLE) */

typedef struct choice {
    const char *name;
    int value;
} choice;

typedef struct option_def {
    const char *name;     /* without the leading "--" */
    value_type type;
    size_t offset;        /* of the field set, in the command's options struct */
    double lo, hi;        /* inclusive range of T_INT and T_DOUBLE, unless flags */
    unsigned flags;
    const choice *choices; /* T_CHOICE, ends with a NULL name */
    arg_kind arg;         /* T_CUSTOM only; the others follow from the type */
    /* T_CUSTOM: value is NULL when an optional value is absent; returns 0 or
     * CLI_USAGE after printing the error. */
    int (*custom)(void *opts, const char *value);
} option_def;

static arg_kind option_arg(const option_def *d)
{
    if (d->type == T_CUSTOM)
        return d->arg;
    return d->type == T_FLAG ? ARG_NONE : ARG_REQUIRED;
}

static int out_of_range(const option_def *d, const char *value);

static int bad_number(const option_def *d, const char *value, num_status st)
{
    if (st == NUM_SYNTAX)
        return usage_error("--%s: '%s' is not %s", d->name, value,
                           d->type == T_DOUBLE ? "a number"
                           : d->type == T_U64  ? "a non-negative integer"
                                               : "an integer");
    if (d->type == T_U64)
        return usage_error("--%s: %s is out of range (must be at most %llu)", d->name, value,
                           (unsigned long long)UINT64_MAX);
    return out_of_range(d, value);
}

/* "between 1 and 1000000", "> 0", "in [0, 1)": the range as a reader says it. */
static void describe_range(const option_def *d, char *buf, size_t cap)
{
    if (d->type == T_INT || d->type == T_U64) {
        if (d->hi >= (double)INT_MAX)
            snprintf(buf, cap, ">= %.0f", d->lo);
        else
            snprintf(buf, cap, "between %.0f and %.0f", d->lo, d->hi);
    } else if (isinf(d->hi)) {
        snprintf(buf, cap, "%s %g", (d->flags & LO_OPEN) ? ">" : ">=", d->lo);
    } else {
        snprintf(buf, cap, "in %c%g, %g%c", (d->flags & LO_OPEN) ? '(' : '[', d->lo, d->hi,
                 (d->flags & HI_OPEN) ? ')' : ']');
    }
}

static int in_range(const option_def *d, double v)
{
    int lo_ok = (d->flags & LO_OPEN) ? v > d->lo : v >= d->lo;
    int hi_ok = (d->flags & HI_OPEN) ? v < d->hi : v <= d->hi;
    return lo_ok && hi_ok;
}

static int out_of_range(const option_def *d, const char *value)
{
    char range[96];
    describe_range(d, range, sizeof range);
    return usage_error("--%s: %s is out of range (must be %s)", d->name, value, range);
}

static int set_choice(const option_def *d, int *field, const char *value)
{
    char names[256] = "";
    for (const choice *c = d->choices; c->name; c++) {
        if (strcmp(c->name, value) == 0) {
            *field = c->value;
            return 0;
        }
        if (names[0])
            strncat(names, "|", sizeof names - strlen(names) - 1);
        strncat(names, c->name, sizeof names - strlen(names) - 1);
    }
    return usage_error("--%s: unknown value '%s' (expected %s)", d->name, value, names);
}

/* Stores one option's value into opts after checking it. */
static int set_option(const option_def *d, void *opts, const char *value)
{
    char *field = (char *)opts + d->offset;
    num_status st;
    switch (d->type) {
    case T_FLAG:
        *(int *)field = 1;
        return 0;
    case T_STRING:
        *(const char **)field = value;
        return 0;
    case T_CHOICE:
        return set_choice(d, (int *)field, value);
    case T_CUSTOM:
        return d->custom(opts, value);
    case T_INT: {
        long v = 0;
        if ((st = parse_long(value, &v)) != NUM_OK)
            return bad_number(d, value, st);
        if (!in_range(d, (double)v))
            return out_of_range(d, value);
        *(int *)field = (int)v;
        return 0;
    }
    case T_U64: {
        uint64_t v = 0;
        if ((st = parse_u64(value, &v)) != NUM_OK)
            return bad_number(d, value, st);
        *(uint64_t *)field = v;
        return 0;
    }
    case T_DOUBLE: {
        double v = 0;
        if ((st = parse_double(value, &v)) != NUM_OK) {
            if (st == NUM_RANGE)
                return usage_error("--%s: '%s' is not a finite number", d->name, value);
            return bad_number(d, value, st);
        }
        if (!in_range(d, v))
            return out_of_range(d, value);
        *(double *)field = v;
        return 0;
    }
    }
    return usage_error("--%s: internal error: bad option type", d->name);
}

static const option_def *find_option(const option_def *table, const char *name, size_t len)
{
    for (const option_def *d = table; d->name; d++)
        if (strlen(d->name) == len && strncmp(d->name, name, len) == 0)
            return d;
    return NULL;
}

/* Parses argv[first..argc) against table into opts. Returns 0, or CLI_USAGE
 * after printing the one error line. `help` is set on -h/--help, which ends
 * parsing at once so that help works whatever else is on the line. When
 * `positional` is not NULL, one argument that is not an option (a FILE, as in
 * `fewmul info FILE`) is stored there, wherever it stands on the line. */
static int parse_options(const option_def *table, void *opts, int *help, int argc,
                         char **argv, int first, const char **positional)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *help = 1;
            return 0;
        }
        if (positional && strncmp(arg, "--", 2) != 0 && arg[0] != '\0' && !*positional) {
            *positional = arg;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return usage_error("unexpected argument '%s'", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_def *d = find_option(table, name, len);
        if (!d)
            return usage_error("unknown option '--%.*s'", (int)len, name);
        const char *value = eq ? eq + 1 : NULL;
        arg_kind kind = option_arg(d);
        if (kind == ARG_NONE && value)
            return usage_error("option '--%s' takes no value", d->name);
        /* An optional value is only ever attached with '=' ("--qb=-4:3"), so
         * "--qb --epochs 3" never swallows the next option. A required value
         * may follow as the next argument, unless that is another option. */
        if (kind == ARG_REQUIRED && !value) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return usage_error("option '--%s' needs a value", d->name);
            value = argv[++i];
        }
        if (kind == ARG_OPTIONAL && !value && i + 1 < argc &&
            strncmp(argv[i + 1], "--", 2) != 0 && strcmp(argv[i + 1], "-h") != 0)
            return usage_error("option '--%s' takes its value as '--%s=%s'", d->name, d->name,
                               argv[i + 1]);
        if (value && value[0] == '\0')
            return usage_error("option '--%s' needs a non-empty value", d->name);
        int rc = set_option(d, opts, value);
        if (rc)
            return rc;
    }
    return 0;
}

/* The forms fm_data_load accepts (fewmul.h); checked here so that a mistyped
 * spec is a usage error, while a missing or broken folder is a failure. */
static int check_data_spec(const char *spec)
{
    if (fm_data_default_valid(spec) < 0)
        return usage_error("--data: %s", fm_last_error());
    return 0;
}

/* ---- train: options ------------------------------------------------------ */

typedef struct train_opts {
    fm_config cfg;
    const char *data, *log;
    const char *out;   /* the packed deployment file */
    const char *state; /* the full training state */
    /* Enumerations are parsed as int and copied into cfg afterwards, since
     * the size of an enum type is the compiler's choice. */
    int opt, loss, preproc, bn_stats, scale, test_quantized, acts, exec;
    int export_how;    /* fm_export_weights of --out */
    int json, quiet, help;
    /* the energy ledger: train --ledger [--table], and `fewmul energy` */
    int ledger, verbose, list_tables;
    const char *table, *print_table;
    const char *input;      /* energy --input as given ("28x28x1") */
    int input_dim, classes; /* energy: the network's input values and outputs */
    int input_shape[3];     /* energy: height, width, channels */
    int valid_given;        /* train: --valid was on the command line */
} train_opts;

static const choice opt_choices[] = {{"sgd", FM_OPT_SGD}, {"adam", FM_OPT_ADAM}, {NULL, 0}};
static const choice loss_choices[] = {{"hinge", FM_LOSS_HINGE}, {"xent", FM_LOSS_XENT}, {NULL, 0}};
static const choice preproc_choices[] = {{"center", FM_PRE_CENTER},   {"unit", FM_PRE_UNIT},
                                         {"gcn-zca", FM_PRE_GCN_ZCA}, {"gcn-lcn", FM_PRE_GCN_LCN},
                                         {NULL, 0}};
static const choice bn_choices[] = {{"paper", FM_BN_PAPER}, {"running", FM_BN_RUNNING}, {NULL, 0}};
static const choice scale_choices[] = {{"glorot", FM_SCALE_GLOROT}, {"one", FM_SCALE_ONE}, {NULL, 0}};
static const choice test_weight_choices[] = {{"real", 0}, {"quantized", 1}, {NULL, 0}};
static const choice export_choices[] = {{"det", FM_EXPORT_DET}, {"mean", FM_EXPORT_MEAN}, {NULL, 0}};
static const choice acts_choices[] = {{"relu", FM_ACTS_RELU}, {"binary", FM_ACTS_BINARY}, {NULL, 0}};
static const choice exec_choices[] = {{"default", FM_EXEC_DEFAULT}, {"mulfree", FM_EXEC_MULFREE}, {NULL, 0}};

static int set_weights(void *opts, const char *value)
{
    train_opts *o = opts;
    if (fm_parse_weights(value, &o->cfg) != FM_OK)
        return usage_error("--weights: %s", fm_last_error());
    return 0;
}

/* "--qb" alone: unbounded exponents; "--qb=EMIN:EMAX": the clip range. */
static int set_qb(void *opts, const char *value)
{
    train_opts *o = opts;
    o->cfg.qb = 1;
    o->cfg.qb_emin = o->cfg.qb_emax = FM_QB_UNBOUNDED;
    if (!value)
        return 0;
    const char *colon = strchr(value, ':');
    char emin_text[32];
    size_t len = colon ? (size_t)(colon - value) : 0;
    if (!colon || len >= sizeof emin_text)
        return usage_error("--qb: '%s' is not EMIN:EMAX (e.g. --qb=-4:3)", value);
    memcpy(emin_text, value, len);
    emin_text[len] = '\0';
    long emin = 0, emax = 0;
    if (parse_long(emin_text, &emin) != NUM_OK || parse_long(colon + 1, &emax) != NUM_OK)
        return usage_error("--qb: '%s' is not EMIN:EMAX with integer exponents", value);
    if (emin < -126 || emin > 126 || emax < -126 || emax > 126)
        return usage_error("--qb: exponents of '%s' must lie in -126..126", value);
    if (emin > emax)
        return usage_error("--qb: EMIN %ld is greater than EMAX %ld", emin, emax);
    o->cfg.qb_emin = (int)emin;
    o->cfg.qb_emax = (int)emax;
    return 0;
}

/* "--qb-conv=EMIN:EMAX" or "--qb-conv=none": the exponent clip of Q(x) in
 * convolutions (default -4:3, the authors' conv code). */
static int set_qb_conv(void *opts, const char *value)
{
    train_opts *o = opts;
    if (strcmp(value, "none") == 0) {
        o->cfg.qb_conv_emin = o->cfg.qb_conv_emax = FM_QB_UNBOUNDED;
        return 0;
    }
    const char *colon = strchr(value, ':');
    char emin_text[32];
    size_t len = colon ? (size_t)(colon - value) : 0;
    long emin = 0, emax = 0;
    if (!colon || len >= sizeof emin_text)
        return usage_error("--qb-conv: '%s' is not EMIN:EMAX or none (e.g. --qb-conv=-4:3)", value);
    memcpy(emin_text, value, len);
    emin_text[len] = '\0';
    if (parse_long(emin_text, &emin) != NUM_OK || parse_long(colon + 1, &emax) != NUM_OK)
        return usage_error("--qb-conv: '%s' is not EMIN:EMAX with integer exponents", value);
    if (emin < -126 || emin > 126 || emax < -126 || emax > 126)
        return usage_error("--qb-conv: exponents of '%s' must lie in -126..126", value);
    if (emin > emax)
        return usage_error("--qb-conv: EMIN %ld is greater than EMAX %ld", emin, emax);
    o->cfg.qb_conv_emin = (int)emin;
    o->cfg.qb_conv_emax = (int)emax;
    return 0;
}

/* Largest --input of `fewmul energy`: a 1024x1024 image, or 224x224x3. */
#define MAX_INPUT_DIM 1048576L

/* "N" or "HxWxC": the input values of `fewmul energy`'s network. */
static int set_input(void *opts, const char *value)
{
    train_opts *o = opts;
    long dims[3], product = 1;
    int n = 0;
    const char *p = value;
    for (;;) {
        char part[32];
        size_t len = strcspn(p, "x");
        if (n == 3 || len == 0 || len >= sizeof part)
            return usage_error("--input: '%s' is not N or HxWxC (e.g. 784 or 28x28x1)", value);
        memcpy(part, p, len);
        part[len] = '\0';
        if (parse_long(part, &dims[n]) != NUM_OK)
            return usage_error("--input: '%s' is not N or HxWxC (e.g. 784 or 28x28x1)", value);
        if (dims[n] < 1 || dims[n] > MAX_INPUT_DIM)
            return usage_error("--input: %s in '%s' is out of range (each size must be >= 1)",
                               part, value);
        product *= dims[n++];
        if (product > MAX_INPUT_DIM)
            return usage_error("--input: '%s' is more than %ld values", value, MAX_INPUT_DIM);
        if (!p[len])
            break;
        p += len + 1;
    }
    if (n != 1 && n != 3)
        return usage_error("--input: '%s' has %d sizes; give N or HxWxC (e.g. 28x28x1)", value,
                           n);
    o->input = value;
    o->input_dim = (int)product;
    for (int i = 0; i < 3; i++)
        o->input_shape[i] = n == 3 ? (int)dims[i] : i == 0 ? (int)product : 1;
    return 0;
}

#define TOPT(field) offsetof(train_opts, field)
static const option_def train_options[] = {
    {"data", T_STRING, TOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"arch", T_STRING, TOPT(cfg.arch), 0, 0, 0, NULL, 0, NULL},
    {"out", T_STRING, TOPT(out), 0, 0, 0, NULL, 0, NULL},
    {"state", T_STRING, TOPT(state), 0, 0, 0, NULL, 0, NULL},
    {"export", T_CHOICE, TOPT(export_how), 0, 0, 0, export_choices, 0, NULL},
    {"acts", T_CHOICE, TOPT(acts), 0, 0, 0, acts_choices, 0, NULL},
    {"exec", T_CHOICE, TOPT(exec), 0, 0, 0, exec_choices, 0, NULL},
    {"weights", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_weights},
    {"synapse-range", T_DOUBLE, TOPT(cfg.synapse_range), 1, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"scale", T_CHOICE, TOPT(scale), 0, 0, 0, scale_choices, 0, NULL},
    {"qb", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_OPTIONAL, set_qb},
    {"qb-bn-jacobian", T_FLAG, TOPT(cfg.qb_bn_jacobian), 0, 0, 0, NULL, 0, NULL},
    {"qb-conv", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_qb_conv},
    {"test-weights", T_CHOICE, TOPT(test_quantized), 0, 0, 0, test_weight_choices, 0, NULL},
    {"epochs", T_INT, TOPT(cfg.epochs), 1, 1000000, 0, NULL, 0, NULL},
    {"batch", T_INT, TOPT(cfg.batch), 1, 65536, 0, NULL, 0, NULL},
    {"opt", T_CHOICE, TOPT(opt), 0, 0, 0, opt_choices, 0, NULL},
    {"lr", T_DOUBLE, TOPT(cfg.lr), 0, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"lr-final", T_DOUBLE, TOPT(cfg.lr_final), 0, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"momentum", T_DOUBLE, TOPT(cfg.momentum), 0, 1, HI_OPEN, NULL, 0, NULL},
    {"loss", T_CHOICE, TOPT(loss), 0, 0, 0, loss_choices, 0, NULL},
    {"preproc", T_CHOICE, TOPT(preproc), 0, 0, 0, preproc_choices, 0, NULL},
    {"dropout", T_DOUBLE, TOPT(cfg.dropout), 0, 1, HI_OPEN, NULL, 0, NULL},
    {"bn-stats", T_CHOICE, TOPT(bn_stats), 0, 0, 0, bn_choices, 0, NULL},
    {"valid", T_INT, TOPT(cfg.valid), 0, INT_MAX, 0, NULL, 0, NULL},
    {"train-limit", T_INT, TOPT(cfg.train_limit), 0, INT_MAX, 0, NULL, 0, NULL},
    {"seed", T_U64, TOPT(cfg.seed), 0, 0, 0, NULL, 0, NULL},
    {"threads", T_INT, TOPT(cfg.threads), 1, 1024, 0, NULL, 0, NULL},
    {"eval-every", T_INT, TOPT(cfg.eval_every), 1, 1000000, 0, NULL, 0, NULL},
    {"no-eval", T_FLAG, TOPT(cfg.no_eval), 0, 0, 0, NULL, 0, NULL},
    {"log", T_STRING, TOPT(log), 0, 0, 0, NULL, 0, NULL},
    {"json", T_FLAG, TOPT(json), 0, 0, 0, NULL, 0, NULL},
    {"quiet", T_FLAG, TOPT(quiet), 0, 0, 0, NULL, 0, NULL},
    {"ledger", T_FLAG, TOPT(ledger), 0, 0, 0, NULL, 0, NULL},
    {"table", T_STRING, TOPT(table), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};

/* `fewmul energy`: train's options that shape the network and its step, with
 * the same names and meanings, and its own. */
static const option_def energy_options[] = {
    {"arch", T_STRING, TOPT(cfg.arch), 0, 0, 0, NULL, 0, NULL},
    {"weights", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_weights},
    {"synapse-range", T_DOUBLE, TOPT(cfg.synapse_range), 1, INFINITY, LO_OPEN, NULL, 0, NULL},
    {"scale", T_CHOICE, TOPT(scale), 0, 0, 0, scale_choices, 0, NULL},
    {"qb", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_OPTIONAL, set_qb},
    {"qb-bn-jacobian", T_FLAG, TOPT(cfg.qb_bn_jacobian), 0, 0, 0, NULL, 0, NULL},
    {"qb-conv", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_qb_conv},
    {"acts", T_CHOICE, TOPT(acts), 0, 0, 0, acts_choices, 0, NULL},
    {"exec", T_CHOICE, TOPT(exec), 0, 0, 0, exec_choices, 0, NULL},
    {"batch", T_INT, TOPT(cfg.batch), 1, 65536, 0, NULL, 0, NULL},
    {"opt", T_CHOICE, TOPT(opt), 0, 0, 0, opt_choices, 0, NULL},
    {"momentum", T_DOUBLE, TOPT(cfg.momentum), 0, 1, HI_OPEN, NULL, 0, NULL},
    {"loss", T_CHOICE, TOPT(loss), 0, 0, 0, loss_choices, 0, NULL},
    {"dropout", T_DOUBLE, TOPT(cfg.dropout), 0, 1, HI_OPEN, NULL, 0, NULL},
    {"seed", T_U64, TOPT(cfg.seed), 0, 0, 0, NULL, 0, NULL},
    {"threads", T_INT, TOPT(cfg.threads), 1, 1024, 0, NULL, 0, NULL},
    {"input", T_CUSTOM, 0, 0, 0, 0, NULL, ARG_REQUIRED, set_input},
    {"classes", T_INT, TOPT(classes), 2, 256, 0, NULL, 0, NULL},
    {"table", T_STRING, TOPT(table), 0, 0, 0, NULL, 0, NULL},
    {"list-tables", T_FLAG, TOPT(list_tables), 0, 0, 0, NULL, 0, NULL},
    {"print-table", T_STRING, TOPT(print_table), 0, 0, 0, NULL, 0, NULL},
    {"verbose", T_FLAG, TOPT(verbose), 0, 0, 0, NULL, 0, NULL},
    {"json", T_FLAG, TOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef TOPT

static void train_opts_default(train_opts *o)
{
    memset(o, 0, sizeof *o);
    fm_config_default(&o->cfg);
    o->data = "fashion";
    o->opt = (int)o->cfg.opt;
    o->loss = (int)o->cfg.loss;
    o->preproc = (int)o->cfg.preproc;
    o->bn_stats = (int)o->cfg.bn_stats;
    o->scale = (int)o->cfg.scale;
    o->test_quantized = o->cfg.test_quantized;
    o->acts = (int)o->cfg.acts;
    o->exec = (int)o->cfg.exec;
    o->export_how = FM_EXPORT_DET;
    o->input = "28x28x1";
    o->input_dim = 784;
    o->input_shape[0] = o->input_shape[1] = 28;
    o->input_shape[2] = 1;
    o->classes = 10;
    /* chosen by the data set unless given (train_opts_finish) */
    o->cfg.valid = -1;
    o->preproc = -1;
}

/* Copies the parsed enumerations into the config and resolves the default
 * learning rates, so that what is reported is what is used. */
static void train_opts_finish(train_opts *o)
{
    fm_config *c = &o->cfg;
    /* the paper's split and preprocessing of the data set, unless given */
    o->valid_given = c->valid >= 0;
    if (c->valid < 0) {
        int valid = fm_data_default_valid(o->data ? o->data : "fashion");
        c->valid = valid >= 0 ? valid : 10000;
    }
    if (o->preproc < 0)
        o->preproc = o->data && strncmp(o->data, "cifar10:", 8) == 0 ? FM_PRE_GCN_ZCA
                     : o->data && strncmp(o->data, "svhn:", 5) == 0  ? FM_PRE_GCN_LCN
                                                                      : FM_PRE_CENTER;
    c->opt = (fm_optimizer)o->opt;
    c->loss = (fm_loss)o->loss;
    c->preproc = (fm_preproc)o->preproc;
    c->bn_stats = (fm_bn_stats)o->bn_stats;
    c->scale = (fm_scale)o->scale;
    c->test_quantized = o->test_quantized;
    c->acts = (fm_acts)o->acts;
    c->exec = (fm_exec)o->exec;
    /* resolve the optimizer's defaults so the reports show the rates used */
    fm_config_learning_rates(c, &c->lr, &c->lr_final);
}

/* ---- small utilities ----------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The thread count to report: the requested one, or the cores online. */
static int threads_reported(int requested)
{
    if (requested > 0)
        return requested;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n <= INT_MAX ? (int)n : 1;
}

static const char *choice_name(const choice *choices, int value)
{
    for (const choice *c = choices; c->name; c++)
        if (c->value == value)
            return c->name;
    return "?";
}

/* Appends formatted text to buf (capacity cap, current length *len). */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) CLI_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, args);
    va_end(args);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* Highest label + 1 over a set (0 when the set is empty or absent). */
static int classes_in(const fm_images *images)
{
    int top = -1;
    if (!images || !images->labels)
        return 0;
    for (int32_t i = 0; i < images->count; i++)
        if (images->labels[i] > top)
            top = images->labels[i];
    return top + 1;
}

/* height*width*channels, or -1 when it does not fit in an int. */
static int input_dim_of(const fm_images *images)
{
    long long dim = (long long)images->height * images->width * images->channels;
    return dim > 0 && dim <= INT_MAX ? (int)dim : -1;
}

/* ---- JSON output --------------------------------------------------------- */

/* One JSON object written as it goes, on one line; objects and arrays nest
 * (json_open ... json_close). */
enum { JSON_MAX_DEPTH = 16 };
typedef struct json_writer {
    FILE *f;
    int depth;
    int items[JSON_MAX_DEPTH]; /* values written so far at each depth */
} json_writer;

/* The length of the valid UTF-8 sequence at s, or 0 when it is not one. */
static int utf8_length(const unsigned char *s)
{
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
          : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 2 && s[0] < 0xc2)
        return 0; /* overlong */
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string: quotes, backslashes and control characters escaped, and any
 * byte that is not valid UTF-8 (a user's table file) replaced by U+FFFD. */
static void json_put_string(FILE *f, const char *value)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)value; *c;) {
        int n = utf8_length(c);
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\u%04x", *c);
        else if (n > 1) {
            fwrite(c, 1, (size_t)n, f);
            c += n;
            continue;
        } else if (n == 0)
            fputs("\\ufffd", f);
        else
            fputc(*c, f);
        c++;
    }
    fputc('"', f);
}

static void json_begin(json_writer *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    w->items[0] = 0;
    fputc('{', f);
}

/* The separator and, inside an object, the key (NULL inside an array). */
static void json_key(json_writer *w, const char *key)
{
    if (w->items[w->depth]++)
        fputs(", ", w->f);
    if (key) {
        json_put_string(w->f, key);
        fputs(": ", w->f);
    }
}

/* Opens an object ('{') or array ('[') as the value of key. */
static void json_open(json_writer *w, const char *key, char bracket)
{
    json_key(w, key);
    fputc(bracket, w->f);
    if (w->depth + 1 < JSON_MAX_DEPTH)
        w->items[++w->depth] = 0;
}

static void json_close(json_writer *w, char bracket)
{
    fputc(bracket, w->f);
    if (w->depth > 0)
        w->depth--;
}

static void json_string(json_writer *w, const char *key, const char *value)
{
    json_key(w, key);
    if (!value)
        fputs("null", w->f);
    else
        json_put_string(w->f, value);
}

/* JSON has no nan or inf: a diverged loss is written as null. */
static void json_number(json_writer *w, const char *key, double value)
{
    json_key(w, key);
    if (isfinite(value))
        fprintf(w->f, "%.10g", value);
    else
        fputs("null", w->f);
}

/* Percentages the library reports as -1 when not measured. */
static void json_pct(json_writer *w, const char *key, double value)
{
    if (value < 0)
        value = NAN;
    json_number(w, key, value);
}

static void json_int(json_writer *w, const char *key, long long value)
{
    json_key(w, key);
    fprintf(w->f, "%lld", value);
}

static void json_uint(json_writer *w, const char *key, unsigned long long value)
{
    json_key(w, key);
    fprintf(w->f, "%llu", value);
}

static void json_u64(json_writer *w, const char *key, uint64_t value)
{
    json_key(w, key);
    fprintf(w->f, "%" PRIu64, value);
}

static void json_bool(json_writer *w, const char *key, int value)
{
    json_key(w, key);
    fputs(value ? "true" : "false", w->f);
}

static void json_null(json_writer *w, const char *key)
{
    json_key(w, key);
    fputs("null", w->f);
}

static void json_end(json_writer *w)
{
    fputs("}\n", w->f);
}

/* ---- the energy ledger: pricing and reports ------------------------------ */

/* Whether one layer and phase of a ledger (negative: all) has any work. */
static int has_work(const fm_ledger *l, int layer, int phase)
{
    for (int op = 0; op < FM_OP_KINDS; op++)
        if (fm_ledger_ops(l, layer, phase, (fm_op)op))
            return 1;
    return fm_ledger_bytes(l, layer, phase, -1, 0) || fm_ledger_bytes(l, layer, phase, -1, 1);
}

static int phases_with_work(const fm_ledger *l, int layer)
{
    int n = 0;
    for (int p = 0; p < FM_PHASES; p++)
        n += has_work(l, layer, p);
    return n;
}

static int price(const fm_ledger *l, const fm_energy_table *t, int layer, int phase,
                 fm_energy *e)
{
    memset(e, 0, sizeof *e);
    return fm_ledger_price(l, t, layer, phase, e);
}

static double jpu_of(const fm_energy_table *t)
{
    double jpu = fm_energy_table_joules_per_unit(t);
    return jpu > 0 && isfinite(jpu) ? jpu : 0;
}

/* SI prefixes for joules, largest first. */
static const struct si_prefix {
    double factor;
    const char *name;
} si_prefixes[] = {{1, ""},      {1e-3, "m"},   {1e-6, "\xc2\xb5"}, {1e-9, "n"},
                   {1e-12, "p"}, {1e-15, "f"},  {1e-18, "a"},       {1e-21, "z"}};
enum { SI_PREFIXES = sizeof si_prefixes / sizeof si_prefixes[0] };

static int si_index(double joules)
{
    int i = 0;
    if (!(joules > 0))
        return 0;
    while (i + 1 < SI_PREFIXES && joules < si_prefixes[i].factor)
        i++;
    return i;
}

/* "1.23 µJ" */
static const char *fmt_joules(char *buf, size_t cap, double joules)
{
    int i = si_index(joules);
    snprintf(buf, cap, "%.3g %sJ", joules / si_prefixes[i].factor, si_prefixes[i].name);
    return buf;
}

/* How costs are shown in a text table: joules with the SI prefix that puts
 * `largest` (table units) in [1, 1000), or the table's own unit when it is not
 * physical. */
typedef struct cost_unit {
    double scale; /* shown value = table units * scale */
    char name[48];
} cost_unit;

static void choose_unit(cost_unit *u, const fm_energy_table *t, double largest)
{
    double jpu = jpu_of(t);
    if (jpu == 0) {
        /* "1e6 MAC": a power of 1000 of the table's unit */
        int k = 0;
        u->scale = 1;
        while (largest * u->scale >= 1000 && k < 30) {
            u->scale /= 1000;
            k += 3;
        }
        if (k)
            snprintf(u->name, sizeof u->name, "1e%d %s", k, fm_energy_table_unit(t));
        else
            snprintf(u->name, sizeof u->name, "%s", fm_energy_table_unit(t));
        return;
    }
    int i = si_index(largest * jpu);
    u->scale = jpu / si_prefixes[i].factor;
    snprintf(u->name, sizeof u->name, "%sJ", si_prefixes[i].name);
}

/* 12345, 160.6M, 1.748G: counts readable at a glance (JSON has them exact). */
static const char *fmt_count(char *buf, size_t cap, uint64_t n)
{
    static const char suffix[] = "kMGTPE";
    if (n < 100000) {
        snprintf(buf, cap, "%" PRIu64, n);
        return buf;
    }
    double v = (double)n;
    int i = -1;
    while (v >= 999.95 && i < 5) {
        v /= 1000;
        i++;
    }
    snprintf(buf, cap, "%.4g%c", v, suffix[i]);
    return buf;
}

/* "8 KiB", "3.1 MiB", "512 B". */
static const char *fmt_size(char *buf, size_t cap, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    double v = (double)n;
    while (v >= 1024 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0 || v == floor(v))
        snprintf(buf, cap, "%.0f %s", v, units[i]);
    else
        snprintf(buf, cap, "%.1f %s", v, units[i]);
    return buf;
}

static const char *fmt_cost(char *buf, size_t cap, double units, const cost_unit *u)
{
    snprintf(buf, cap, "%.3g", units * u->scale);
    return buf;
}

static const char *fmt_ratio(char *buf, size_t cap, double num, double den)
{
    if (den > 0 && isfinite(num / den))
        snprintf(buf, cap, num / den >= 1000 && num / den < 1e9 ? "%.0f" : "%.3g", num / den);
    else
        snprintf(buf, cap, "-");
    return buf;
}

static const char *level_name(const fm_energy_table *t, int level)
{
    const char *name = level >= 0 ? fm_energy_table_level_name(t, level) : NULL;
    return name ? name : "?";
}

/* The rows of the text report: operation columns group the ten kinds. */
static void print_rows_header(void)
{
    printf("  %-14s%7s%7s%7s%9s%7s%8s%8s%9s%9s%10s\n", "layer/phase", "mul+fma", "add",
           "shift", "sign/sel", "other", "read B", "write B", "compute", "comm", "comm/comp");
}

static void print_row(const char *label, const fm_ledger *l, int layer, int phase,
                      const fm_energy *e, const cost_unit *u)
{
#define OPS(op) fm_ledger_ops(l, layer, phase, op)
    uint64_t mul = OPS(FM_OP_FMUL) + OPS(FM_OP_FMA), add = OPS(FM_OP_FADD) + OPS(FM_OP_IADD);
    uint64_t shift = OPS(FM_OP_SHIFT), sign = OPS(FM_OP_SIGN);
    uint64_t other = OPS(FM_OP_FSPECIAL) + OPS(FM_OP_XNOR_POPCOUNT) + OPS(FM_OP_CMP) +
                     OPS(FM_OP_RAND);
#undef OPS
    char c[11][32];
    printf("    %-12s%7s%7s%7s%9s%7s%8s%8s%9s%9s%10s\n", label, fmt_count(c[0], 32, mul),
           fmt_count(c[1], 32, add), fmt_count(c[2], 32, shift), fmt_count(c[3], 32, sign),
           fmt_count(c[4], 32, other), fmt_count(c[5], 32, fm_ledger_bytes(l, layer, phase, -1, 0)),
           fmt_count(c[6], 32, fm_ledger_bytes(l, layer, phase, -1, 1)),
           fmt_cost(c[7], 32, e->compute, u), fmt_cost(c[8], 32, e->communication, u),
           fmt_ratio(c[9], 32, e->communication, e->compute));
}

/* Prints `items` (already formatted) after `lead`, wrapped before 98 columns. */
static void print_wrapped(const char *lead, const char *const *items, int n, const char *tail)
{
    size_t col = strlen(lead);
    fputs(lead, stdout);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(items[i]) + (i + 1 < n ? 1 : 0);
        if (i > 0 && col + 1 + len > 98) {
            printf("\n    ");
            col = 4;
        } else if (i > 0) {
            putchar(' ');
            col++;
        }
        printf("%s%s", items[i], i + 1 < n ? "," : "");
        col += len;
    }
    printf("%s\n", tail ? tail : "");
}

/* The tensors of a ledger, largest first (ties in recording order). */
static int *tensors_by_size(const fm_ledger *l, int *count)
{
    int n = fm_ledger_tensors(l);
    *count = n > 0 ? n : 0;
    int *order = malloc(sizeof *order * (size_t)(*count + 1));
    if (!order)
        return NULL;
    for (int i = 0; i < *count; i++) {
        int j = i;
        uint64_t b = fm_ledger_tensor_bytes(l, i);
        while (j > 0 && fm_ledger_tensor_bytes(l, order[j - 1]) < b) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    return order;
}

/* Memory levels (bytes and cost of the whole ledger at each) and tensors:
 * all of them when `all`, else the largest few. */
static int print_memory(const fm_ledger *l, const fm_energy_table *t, const cost_unit *u,
                        int all, const char *more_hint)
{
    fm_energy e;
    if (price(l, t, -1, -1, &e) != FM_OK)
        return library_failure();
    int levels = fm_energy_table_levels(t), count = 0;
    int *order = tensors_by_size(l, &count);
    if (!order)
        return failure("out of memory");
    printf("  %-14s%10s%10s%10s%10s%9s\n", "memory level", "capacity", "read B", "write B",
           "cost", "tensors");
    for (int lv = 0; lv < levels && lv < FM_ENERGY_MAX_LEVELS; lv++) {
        char cap[32], r[32], w[32], cost[32];
        uint64_t capacity = fm_energy_table_level_capacity(t, lv);
        int held = 0;
        for (int i = 0; i < count; i++)
            held += fm_ledger_tensor_level(l, t, i) == lv;
        if (capacity == FM_ENERGY_UNBOUNDED)
            snprintf(cap, sizeof cap, "-");
        else
            fmt_size(cap, sizeof cap, capacity);
        printf("  %-14s%10s%10s%10s%10s%9d\n", level_name(t, lv), cap,
               fmt_count(r, sizeof r, e.read_bytes[lv]),
               fmt_count(w, sizeof w, e.written_bytes[lv]),
               fmt_cost(cost, sizeof cost, e.level_cost[lv], u), held);
    }
    if (count > 0) {
        int shown = all || count <= 6 ? count : 4;
        char(*text)[160] = malloc(sizeof *text * (size_t)shown);
        const char **items = malloc(sizeof *items * (size_t)shown);
        if (!text || !items) {
            free(text);
            free(items);
            free(order);
            return failure("out of memory");
        }
        for (int i = 0; i < shown; i++) {
            char size[32];
            snprintf(text[i], sizeof text[i], "%s %s (%s)", fm_ledger_tensor_name(l, order[i]),
                     fmt_size(size, sizeof size, fm_ledger_tensor_bytes(l, order[i])),
                     level_name(t, fm_ledger_tensor_level(l, t, order[i])));
            items[i] = text[i];
        }
        char tail[128] = "";
        if (shown < count)
            snprintf(tail, sizeof tail, ", ... (%d in all; %s)", count, more_hint);
        print_wrapped(shown < count ? "  largest tensors: " : "  tensors: ", items, shown, tail);
        free(text);
        free(items);
    }
    free(order);
    return 0;
}

/* The rows of a ledger: each layer's phases with work, then all layers by
 * phase and in total, then memory and tensors. */
static int print_ledger_rows(const fm_ledger *l, const fm_energy_table *t, const cost_unit *u,
                             int all_tensors, const char *more_hint)
{
    fm_energy e;
    print_rows_header();
    for (int layer = 0; layer < fm_ledger_layers(l); layer++) {
        if (!phases_with_work(l, layer))
            continue;
        const char *name = fm_ledger_layer_name(l, layer), *shape = fm_ledger_layer_shape(l, layer);
        printf("  %s%s%s\n", name ? name : "?", shape && shape[0] ? " " : "", shape ? shape : "");
        for (int p = 0; p < FM_PHASES; p++) {
            if (!has_work(l, layer, p))
                continue;
            if (price(l, t, layer, p, &e) != FM_OK)
                return library_failure();
            print_row(fm_phase_name((fm_phase)p), l, layer, p, &e, u);
        }
    }
    printf("  all layers\n");
    for (int p = 0; p < FM_PHASES; p++) {
        if (!has_work(l, -1, p))
            continue;
        if (price(l, t, -1, p, &e) != FM_OK)
            return library_failure();
        print_row(fm_phase_name((fm_phase)p), l, -1, p, &e, u);
    }
    if (phases_with_work(l, -1) != 1) {
        if (price(l, t, -1, -1, &e) != FM_OK)
            return library_failure();
        print_row("total", l, -1, -1, &e, u);
    }
    return print_memory(l, t, u, all_tensors, more_hint);
}

/* A cost unit for a whole ledger, from its total. */
static int ledger_unit(const fm_ledger *l, const fm_energy_table *t, cost_unit *u)
{
    fm_energy e;
    if (price(l, t, -1, -1, &e) != FM_OK)
        return library_failure();
    choose_unit(u, t, e.compute > e.communication ? e.compute : e.communication);
    return 0;
}

/* Prints lead then text, wrapped at spaces before 98 columns; continuation
 * lines are indented by 4. */
static void print_words(const char *lead, const char *text)
{
    size_t col = strlen(lead);
    int first = 1;
    fputs(lead, stdout);
    for (;;) {
        while (*text == ' ')
            text++;
        if (!*text)
            break;
        size_t word = strcspn(text, " ");
        if (!first && col + 1 + word > 98) {
            fputs("\n    ", stdout);
            col = 4;
        } else if (!first) {
            putchar(' ');
            col++;
        }
        fwrite(text, 1, word, stdout);
        col += word;
        text += word;
        first = 0;
    }
    putchar('\n');
}

static void print_table_heading(const fm_energy_table *t)
{
    const char *source = fm_energy_table_source(t);
    char lead[160];
    snprintf(lead, sizeof lead, "table %s (%s): ", fm_energy_table_name(t),
             fm_energy_table_unit(t));
    print_words(lead, source && source[0] ? source : "no source given");
    int levels = fm_energy_table_levels(t);
    char(*text)[96] = malloc(sizeof *text * (size_t)(levels > 0 ? levels : 1));
    const char **items = malloc(sizeof *items * (size_t)(levels > 0 ? levels : 1));
    if (text && items) {
        for (int lv = 0; lv < levels; lv++) {
            char size[32];
            uint64_t capacity = fm_energy_table_level_capacity(t, lv);
            if (capacity == FM_ENERGY_UNBOUNDED)
                snprintf(text[lv], sizeof text[lv], "%s", level_name(t, lv));
            else
                snprintf(text[lv], sizeof text[lv], "%s %s", level_name(t, lv),
                         fmt_size(size, sizeof size, capacity));
            items[lv] = text[lv];
        }
        print_wrapped("levels: ", items, levels, NULL);
    }
    free(text);
    free(items);
}

/* ---- the energy ledger: JSON --------------------------------------------- */

/* One priced part P of a ledger; sets *bad when the library failed. */
static void json_priced(json_writer *w, const char *key, const fm_ledger *l,
                        const fm_energy_table *t, int layer, int phase, int *bad)
{
    fm_energy e;
    if (price(l, t, layer, phase, &e) != FM_OK) {
        *bad = 1;
        json_null(w, key);
        return;
    }
    double jpu = jpu_of(t);
    int levels = fm_energy_table_levels(t);
    json_open(w, key, '{');
    json_open(w, "ops", '{');
    for (int op = 0; op < FM_OP_KINDS; op++)
        json_u64(w, fm_op_name((fm_op)op), fm_ledger_ops(l, layer, phase, (fm_op)op));
    json_close(w, '}');
    for (int written = 0; written <= 1; written++) {
        json_open(w, written ? "written_bytes" : "read_bytes", '{');
        for (int lv = 0; lv < levels && lv < FM_ENERGY_MAX_LEVELS; lv++)
            json_u64(w, level_name(t, lv), written ? e.written_bytes[lv] : e.read_bytes[lv]);
        json_close(w, '}');
    }
    json_number(w, "compute", e.compute);
    json_number(w, "communication", e.communication);
    if (jpu > 0) {
        json_number(w, "compute_j", e.compute * jpu);
        json_number(w, "communication_j", e.communication * jpu);
    }
    json_number(w, "comm_to_compute", e.compute > 0 ? e.communication / e.compute : NAN);
    json_number(w, "landauer_bits", e.landauer_bits);
    if (jpu > 0)
        json_number(w, "landauer_j", e.landauer_bits * FM_LANDAUER_J_PER_BIT);
    json_close(w, '}');
}

/* A ledger L: its layers with their phases that have work, its tensors and
 * their levels, each phase over all layers, the total, and (runs) the passes. */
static void json_ledger(json_writer *w, const char *key, const fm_ledger *l,
                        const fm_energy_table *t, int with_passes, int *bad)
{
    json_open(w, key, '{');
    json_open(w, "layers", '[');
    for (int layer = 0; layer < fm_ledger_layers(l); layer++) {
        json_open(w, NULL, '{');
        json_string(w, "name", fm_ledger_layer_name(l, layer));
        json_string(w, "shape", fm_ledger_layer_shape(l, layer));
        json_open(w, "phases", '{');
        for (int p = 0; p < FM_PHASES; p++)
            if (has_work(l, layer, p))
                json_priced(w, fm_phase_name((fm_phase)p), l, t, layer, p, bad);
        json_close(w, '}');
        json_close(w, '}');
    }
    json_close(w, ']');
    json_open(w, "tensors", '[');
    for (int i = 0; i < fm_ledger_tensors(l); i++) {
        json_open(w, NULL, '{');
        json_string(w, "name", fm_ledger_tensor_name(l, i));
        json_u64(w, "bytes", fm_ledger_tensor_bytes(l, i));
        int lv = fm_ledger_tensor_level(l, t, i);
        json_string(w, "level", lv >= 0 ? level_name(t, lv) : NULL);
        json_close(w, '}');
    }
    json_close(w, ']');
    json_open(w, "phases", '{');
    for (int p = 0; p < FM_PHASES; p++)
        if (has_work(l, -1, p))
            json_priced(w, fm_phase_name((fm_phase)p), l, t, -1, p, bad);
    json_close(w, '}');
    json_priced(w, "total", l, t, -1, -1, bad);
    if (with_passes) {
        json_open(w, "passes", '{');
        for (int p = 0; p < FM_PHASES; p++) {
            uint64_t examples = 0, passes = fm_ledger_passes(l, p, &examples);
            json_open(w, fm_phase_name((fm_phase)p), '{');
            json_u64(w, "passes", passes);
            json_u64(w, "examples", examples);
            json_close(w, '}');
        }
        json_close(w, '}');
    }
    json_close(w, '}');
}

static void json_table(json_writer *w, const char *key, const fm_energy_table *t)
{
    json_open(w, key, '{');
    json_string(w, "name", fm_energy_table_name(t));
    json_string(w, "source", fm_energy_table_source(t));
    json_string(w, "unit", fm_energy_table_unit(t));
    json_number(w, "joules_per_unit", jpu_of(t));
    json_open(w, "levels", '[');
    for (int lv = 0; lv < fm_energy_table_levels(t); lv++) {
        uint64_t capacity = fm_energy_table_level_capacity(t, lv);
        json_open(w, NULL, '{');
        json_string(w, "name", level_name(t, lv));
        if (capacity == FM_ENERGY_UNBOUNDED)
            json_null(w, "capacity_bytes");
        else
            json_u64(w, "capacity_bytes", capacity);
        json_number(w, "read_cost_per_byte", fm_energy_table_level_cost(t, lv, 0));
        json_number(w, "write_cost_per_byte", fm_energy_table_level_cost(t, lv, 1));
        json_close(w, '}');
    }
    json_close(w, ']');
    json_open(w, "ops", '{');
    for (int op = 0; op < FM_OP_KINDS; op++)
        json_number(w, fm_op_name((fm_op)op), fm_energy_table_op_cost(t, (fm_op)op));
    json_close(w, '}');
    json_close(w, '}');
}

/* --table: a built-in name or a file; a missing, unreadable or malformed
 * table is a failure (exit 1) with the library's message, which names the
 * file (and line), or the built-in tables when a name is neither. */
static int open_table(const char *name, fm_energy_table **out)
{
    if (!name)
        name = fm_energy_table_builtin(0);
    if (fm_energy_table_open(name, out) != FM_OK)
        return failure("--table: %s", fm_last_error());
    return 0;
}

/* ---- deployed networks: shared helpers ----------------------------------- */

/* The weights of a deployed network, summed over its layers; 0 or -1. */
typedef struct weight_totals {
    uint64_t weights; /* in x out */
    uint64_t bits;    /* weights x bits per weight */
    uint64_t bytes;   /* packed weight bytes in the file */
    const char *kind; /* the layers' weight kind ("binary"), or "mixed" */
} weight_totals;

static int weight_totals_of(const fm_deploy *d, weight_totals *t)
{
    memset(t, 0, sizeof *t);
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        if (fm_deploy_describe_layer(d, l, &info) != FM_OK)
            return -1; /* the library's message is set */
        uint64_t n = (uint64_t)info.in * (uint64_t)info.out;
        t->weights += n;
        t->bits += n * (uint64_t)info.bits;
        t->bytes += info.weight_bytes;
        t->kind = !t->kind || strcmp(t->kind, info.weights) == 0 ? info.weights : "mixed";
    }
    return 0;
}

static double bits_per_weight(const weight_totals *t)
{
    return t->weights ? (double)t->bits / (double)t->weights : 0;
}

/* The two model files differ in their first 8 bytes (docs/model-format.md,
 * docs/format.md). A file too short or unreadable is "other": the library's
 * reader then says what is wrong with it, naming it. */
typedef enum { MODEL_FILE_OTHER, MODEL_FILE_STATE, MODEL_FILE_PACKED } model_file_kind;

static model_file_kind model_file_kind_of(const char *path)
{
    char magic[8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return MODEL_FILE_OTHER;
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (n == sizeof magic && memcmp(magic, "FMULPACK", 8) == 0)
        return MODEL_FILE_PACKED;
    if (n == sizeof magic && memcmp(magic, "FMULMODL", 8) == 0)
        return MODEL_FILE_STATE;
    return MODEL_FILE_OTHER;
}

/* A packed model for info, infer and bench. A training-state file gets a
 * message that says which file these commands read, rather than "bad magic". */
static int load_packed(const char *path, fm_deploy **out)
{
    if (model_file_kind_of(path) == MODEL_FILE_STATE)
        return failure("%s: a training-state file (fewmul train --state); 'fewmul %s' reads "
                       "packed models (fewmul train --out)",
                       path, g_command ? g_command : "");
    if (fm_deploy_load(path, out) != FM_OK)
        return library_failure();
    return 0;
}

/* ---- train: progress, epochs, interruption ------------------------------- */

/* Set by SIGINT, polled by fm_callbacks.should_stop at every minibatch. */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* SA_RESETHAND: a second Ctrl-C kills at once if the first goes unanswered. */
static void install_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = (int)SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
}

typedef struct run_state {
    const train_opts *o;
    FILE *log;
    int log_errno;       /* nonzero once writing the log failed: training stops */
    int bar;             /* draw the progress bar */
    int bar_drawn;       /* characters of the bar now on screen */
    double last_draw;
    double best_valid;   /* best validation error so far, -1 before any */
} run_state;

static void bar_clear(run_state *st)
{
    if (st->bar_drawn > 0) {
        fprintf(stderr, "\r%*s\r", st->bar_drawn, "");
        fflush(stderr);
        st->bar_drawn = 0;
    }
}

static void format_duration(char *buf, size_t cap, double s)
{
    long t = s < 0 ? 0 : s > 1e8 ? 100000000L : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lds", t);
}

/* "epoch 3/20 [#########.........] 45%  6123 img/s  loss 0.1234  ETA 1m23s";
 * the ETA is for the whole run, from the time and images so far. */
static void on_progress(const fm_progress *p, void *user)
{
    run_state *st = user;
    if (!st->bar || p->images_total <= 0)
        return;
    double now = now_seconds();
    if (now - st->last_draw < 0.1)
        return;
    st->last_draw = now;

    enum { WIDTH = 20 };
    double frac = (double)p->images_done / (double)p->images_total;
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    int filled = (int)(frac * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';

    double done = (double)(p->epoch - 1) * (double)p->images_total + (double)p->images_done;
    double total = (double)p->epochs * (double)p->images_total;
    char eta[32] = "?";
    if (done > 0 && p->elapsed_s > 0)
        format_duration(eta, sizeof eta, p->elapsed_s * (total - done) / done);

    char line[256];
    size_t len = 0;
    append(line, sizeof line, &len, "epoch %d/%d [%s] %3d%%  %.0f img/s  loss %.4f  ETA %s",
           p->epoch, p->epochs, bar, (int)(frac * 100), p->images_per_s, p->loss, eta);
    int pad = st->bar_drawn > (int)len ? st->bar_drawn - (int)len : 0;
    fprintf(stderr, "\r%s%*s", line, pad, "");
    fflush(stderr);
    st->bar_drawn = (int)len + pad;
}

static void format_lr(char *buf, size_t cap, double lr)
{
    snprintf(buf, cap, lr >= 1e-3 ? "%.4f" : "%.3e", lr);
}

/* "epoch 3/20  loss 0.1234  train 2.10%  valid 1.90%  test 2.00%  best 1.90%@3
 *  lr 0.2800  8.2 s  6100 img/s", leaving out what was not measured. */
static void print_epoch_line(const run_state *st, const fm_epoch_report *r)
{
    char line[512], lr[32];
    size_t len = 0;
    format_lr(lr, sizeof lr, r->lr);
    append(line, sizeof line, &len, "epoch %d/%d  loss %.4f  train %.2f%%", r->epoch, r->epochs,
           r->train_loss, r->train_error_pct);
    if (r->valid_error_pct >= 0)
        append(line, sizeof line, &len, "  valid %.2f%%", r->valid_error_pct);
    if (r->test_error_pct >= 0)
        append(line, sizeof line, &len, "  test %.2f%%", r->test_error_pct);
    if (r->best_epoch > 0 && st->best_valid >= 0)
        append(line, sizeof line, &len, "  best %.2f%%@%d", st->best_valid, r->best_epoch);
    append(line, sizeof line, &len, "  lr %s  %.1f s  %.0f img/s", lr, r->epoch_seconds,
           r->images_per_s);
    fprintf(stderr, "%s\n", line);
}

static void write_log_line(run_state *st, const fm_epoch_report *r)
{
    json_writer w;
    json_begin(&w, st->log);
    json_int(&w, "epoch", r->epoch);
    json_int(&w, "epochs", r->epochs);
    json_number(&w, "lr", r->lr);
    json_number(&w, "train_loss", r->train_loss);
    json_number(&w, "train_error_pct", r->train_error_pct);
    json_pct(&w, "valid_error_pct", r->valid_error_pct);
    json_pct(&w, "test_error_pct", r->test_error_pct);
    json_int(&w, "best_epoch", r->best_epoch);
    json_pct(&w, "best_test_error_pct", r->best_epoch > 0 ? r->best_test_error_pct : -1);
    json_number(&w, "train_seconds", r->train_seconds);
    json_number(&w, "epoch_seconds", r->epoch_seconds);
    json_number(&w, "images_per_s", r->images_per_s);
    json_end(&w);
    /* Flushed every epoch so that a run can be followed, or survives a crash. */
    if (fflush(st->log) != 0 || ferror(st->log))
        st->log_errno = errno ? errno : EIO;
}

static void on_epoch(const fm_epoch_report *r, void *user)
{
    run_state *st = user;
    if (r->best_epoch == r->epoch && r->valid_error_pct >= 0)
        st->best_valid = r->valid_error_pct;
    bar_clear(st);
    if (!st->o->quiet)
        print_epoch_line(st, r);
    if (st->log && !st->log_errno)
        write_log_line(st, r);
}

static int should_stop(void *user)
{
    const run_state *st = user;
    return g_interrupted || st->log_errno;
}

/* ---- train: the command -------------------------------------------------- */

/* The one line that tells what is about to run, on stderr. */
static void print_plan(const train_opts *o, const fm_model *model, const fm_images *train,
                       const fm_images *test)
{
    const fm_config *c = &o->cfg;
    long fit = (long)train->count - c->valid;
    if (c->train_limit > 0 && c->train_limit < fit)
        fit = c->train_limit;
    char lr[32], lr_final[32];
    format_lr(lr, sizeof lr, c->lr);
    format_lr(lr_final, sizeof lr_final, c->lr_final);
    fprintf(stderr,
            "fewmul: %s, %zu parameters; data %s: %ld train, %d valid, %d test images; "
            "%d epoch%s of batch %d, %s lr %s -> %s, %d threads\n",
            fm_model_describe(model), fm_model_param_count(model), o->data, fit, c->valid,
            test ? test->count : 0, c->epochs, c->epochs == 1 ? "" : "s", c->batch,
            choice_name(opt_choices, o->opt), lr, lr_final, threads_reported(c->threads));
}

/* The weight mode of a configuration: weights, synapse_levels, qb, qb_emin,
 * qb_emax, qb_conv_emin, qb_conv_emax (null where they do not apply). */
static void json_mode(json_writer *w, const fm_config *c)
{
    json_string(w, "weights", fm_weights_name(c->weights));
    if (c->weights == FM_WEIGHTS_SYNAPSE)
        json_int(w, "synapse_levels", c->synapse_levels);
    else
        json_null(w, "synapse_levels");
    json_bool(w, "qb", c->qb);
    if (c->qb && c->qb_emin != FM_QB_UNBOUNDED) {
        json_int(w, "qb_emin", c->qb_emin);
        json_int(w, "qb_emax", c->qb_emax);
    } else {
        json_null(w, "qb_emin");
        json_null(w, "qb_emax");
    }
    if (c->qb && c->qb_conv_emin != FM_QB_UNBOUNDED && fm_arch_is_conv(c->arch)) {
        json_int(w, "qb_conv_emin", c->qb_conv_emin);
        json_int(w, "qb_conv_emax", c->qb_conv_emax);
    } else {
        json_null(w, "qb_conv_emin");
        json_null(w, "qb_conv_emax");
    }
}
/* What train wrote; a file is NULL when not asked for or not written. */
typedef struct saved_files {
    const char *out, *state;
    uint64_t out_bytes;
    double bits_per_weight;
    const char *out_weights; /* the packed layers' weight kind */
} saved_files;

/* The weights --out deploys: --export for the stochastic modes; the
 * deterministic modes always deploy their quantized weights, fp32 its floats
 * (null: --export has no say). */
static const char *export_applied(const train_opts *o)
{
    switch (o->cfg.weights) {
    case FM_WEIGHTS_FP32:
        return NULL;
    case FM_WEIGHTS_BC_DET:
    case FM_WEIGHTS_TC_DET:
        return "det";
    default:
        return choice_name(export_choices, o->export_how);
    }
}

/* The result object; with a ledger, its priced totals under "ledger". Returns
 * nonzero when pricing the ledger failed (the library's message is set). */
static int print_train_json(const train_opts *o, const fm_model *model, const fm_result *r,
                            const saved_files *saved, const fm_ledger *ledger,
                            const fm_energy_table *table)
{
    int bad = 0;
    const fm_config *c = &o->cfg;
    json_writer w;
    json_begin(&w, stdout);
    json_pct(&w, "test_error_pct", r->test_error_pct);
    json_pct(&w, "valid_error_pct", r->valid_error_pct);
    json_int(&w, "best_epoch", r->best_epoch);
    json_int(&w, "epochs", r->epochs);
    json_number(&w, "train_seconds", r->train_seconds);
    json_number(&w, "train_images_per_s", r->train_images_per_s);
    json_number(&w, "total_seconds", r->total_seconds);
    json_number(&w, "final_train_loss", r->final_train_loss);
    json_string(&w, "arch", c->arch);
    json_string(&w, "model", fm_model_describe(model));
    json_mode(&w, c);
    json_int(&w, "batch", c->batch);
    json_uint(&w, "seed", (unsigned long long)c->seed);
    json_int(&w, "threads", threads_reported(c->threads));
    json_uint(&w, "params", (unsigned long long)fm_model_param_count(model));
    json_string(&w, "data", o->data);
    json_string(&w, "preproc", choice_name(preproc_choices, o->preproc));
    json_int(&w, "valid", c->valid);
    json_number(&w, "lr", c->lr);
    json_number(&w, "lr_final", c->lr_final);
    json_string(&w, "opt", choice_name(opt_choices, o->opt));
    json_string(&w, "acts", choice_name(acts_choices, o->acts));
    json_string(&w, "exec", choice_name(exec_choices, o->exec));
    json_string(&w, "kernels", r->kernels);
    if (r->kernels)
        json_int(&w, "ldexp_fallbacks", r->ldexp_fallbacks > INT_MAX ? INT_MAX : (int)r->ldexp_fallbacks);
    else
        json_null(&w, "ldexp_fallbacks");
    json_string(&w, "out", saved->out);
    if (saved->out) {
        json_u64(&w, "out_bytes", saved->out_bytes);
        json_number(&w, "bits_per_weight", saved->bits_per_weight);
        json_string(&w, "out_weights", saved->out_weights);
    } else {
        json_null(&w, "out_bytes");
        json_null(&w, "bits_per_weight");
        json_null(&w, "out_weights");
    }
    json_string(&w, "export", export_applied(o));
    json_string(&w, "state", saved->state);
    if (ledger) {
        json_table(&w, "table", table);
        json_ledger(&w, "ledger", ledger, table, 1, &bad);
    }
    json_end(&w);
    return bad;
}

/* After the summary: what the run did, priced with the table. */
static int print_run_ledger(const fm_ledger *l, const fm_energy_table *t)
{
    cost_unit u;
    int rc = ledger_unit(l, t, &u);
    if (rc)
        return rc;
    printf("\nledger of the run (costs in %s):\n", u.name);
    print_table_heading(t);
    char text[FM_PHASES][96];
    const char *items[FM_PHASES];
    for (int p = 0; p < FM_PHASES; p++) {
        uint64_t examples = 0, passes = fm_ledger_passes(l, p, &examples);
        snprintf(text[p], sizeof text[p], "%s %" PRIu64 " (%" PRIu64 " examples)",
                 fm_phase_name((fm_phase)p), passes, examples);
        items[p] = text[p];
    }
    print_wrapped("passes: ", items, FM_PHASES, NULL);
    rc = print_ledger_rows(l, t, &u, 0, "--json lists them all");
    if (rc)
        return rc;
    fm_energy e;
    if (price(l, t, -1, -1, &e) != FM_OK)
        return library_failure();
    double jpu = jpu_of(t);
    if (jpu > 0) {
        char a[48], b[48], c[48];
        printf("run total: compute %s, communication %s; Landauer floor %s\n",
               fmt_joules(a, sizeof a, e.compute * jpu),
               fmt_joules(b, sizeof b, e.communication * jpu),
               fmt_joules(c, sizeof c, e.landauer_bits * FM_LANDAUER_J_PER_BIT));
    }
    return 0;
}

static void print_train_summary(const fm_result *r, const saved_files *saved)
{
    if (r->test_error_pct >= 0 && r->best_epoch > 0 && r->valid_error_pct >= 0)
        printf("test error %.2f%% at epoch %d, the best validation error (%.2f%%)\n",
               r->test_error_pct, r->best_epoch, r->valid_error_pct);
    else if (r->test_error_pct >= 0)
        printf("test error %.2f%% after the last epoch (no validation set)\n", r->test_error_pct);
    else if (r->valid_error_pct >= 0)
        printf("best validation error %.2f%% at epoch %d (no test set measured)\n",
               r->valid_error_pct, r->best_epoch);
    else
        printf("no error measured\n");
    printf("%d epoch%s: %.1f s of training (%.0f img/s), %.1f s in all, final loss %.4f\n",
           r->epochs, r->epochs == 1 ? "" : "s", r->train_seconds, r->train_images_per_s, r->total_seconds,
           r->final_train_loss);
    if (r->kernels)
        printf("multiplication-free execution on the %s kernels; %ld weight gradient%s formed "
               "with ldexpf (an exponent add would have left the float range)\n",
               r->kernels, r->ldexp_fallbacks, r->ldexp_fallbacks == 1 ? "" : "s");
    if (saved->out) {
        char size[32];
        printf("packed model saved to %s: %s (%" PRIu64 " bytes), %.3g bit%s per weight (%s)\n",
               saved->out, fmt_size(size, sizeof size, saved->out_bytes), saved->out_bytes,
               saved->bits_per_weight, saved->bits_per_weight == 1 ? "" : "s",
               saved->out_weights);
    }
    if (saved->state)
        printf("training state saved to %s\n", saved->state);
}

/* Checks the loaded sets against the options; prints the error. */
static int check_data(const train_opts *o, const fm_images *train, const fm_images *test,
                      int *input_dim, int *classes)
{
    *input_dim = input_dim_of(train);
    if (*input_dim < 0)
        return failure("%s: training images of %dx%dx%d values are too large", o->data,
                       train->height, train->width, train->channels);
    if (input_dim_of(test) != *input_dim)
        return failure("%s: test images are %dx%dx%d but training images %dx%dx%d", o->data,
                       test->height, test->width, test->channels, train->height, train->width,
                       train->channels);
    if (o->cfg.valid >= train->count)
        return usage_error("--valid %d leaves no training images: %s has %d", o->cfg.valid,
                           o->data, (int)train->count);
    int a = classes_in(train), b = classes_in(test);
    *classes = a > b ? a : b;
    if (*classes < 2)
        *classes = 2;
    return 0;
}

/* SVHN's validation set as the paper's (pylearn2's "splitted_train"): 400
 * images per class from train_32x32.mat and 200 from extra_32x32.mat, or
 * 600 per class from train_32x32.mat when there is no extra set, moved to
 * the end of the training set where fm_train takes them. */
static int svhn_split(const train_opts *o, fm_images *train, int32_t train_part, int classes)
{
    const int extra = train_part < train->count;
    if (fm_images_split_balanced(train, train_part, extra ? 400 : 600, extra ? 200 : 0, classes,
                                 o->cfg.seed) != FM_OK)
        return library_failure();
    return 0;
}

typedef struct train_run {
    fm_images train, test;
    fm_model *model;
    FILE *log;
    fm_ledger *ledger;      /* --ledger */
    fm_energy_table *table; /* --table, opened before training */
} train_run;

static void train_run_free(train_run *t)
{
    fm_ledger_free(t->ledger);
    fm_energy_table_free(t->table);
    fm_images_free(&t->train);
    fm_images_free(&t->test);
    fm_model_free(t->model);
    if (t->log)
        fclose(t->log);
}

/* --out exports the trained model: a network the packed format cannot hold
 * (more than 32 synapse levels) is refused before training rather than after,
 * by exporting the fresh model once. */
static int check_deployable(const train_opts *o, const train_run *t)
{
    fm_deploy *d = NULL;
    int err = fm_deploy_from_model(t->model, (fm_export_weights)o->export_how, t->train.height,
                                   t->train.width, t->train.channels, &d);
    fm_deploy_free(d);
    if (err == FM_OK)
        return 0;
    /* the options asked for what cannot be (an invalid FEWMUL_KERNELS fails
     * here too, but that is the environment's fault, not the command line's) */
    if (err == FM_EUNSUPPORTED)
        return usage_error("--out: %s", fm_last_error());
    return library_failure();
}

/* Writes --out (packed, with the training images' shape) and --state; the
 * first failure's message goes to err. */
static void save_outputs(const train_opts *o, const train_run *t, saved_files *saved, char *err,
                         size_t cap)
{
    if (o->out) {
        fm_deploy *d = NULL;
        weight_totals w;
        if (fm_deploy_from_model(t->model, (fm_export_weights)o->export_how, t->train.height,
                                 t->train.width, t->train.channels, &d) == FM_OK &&
            fm_deploy_save(d, o->out) == FM_OK && weight_totals_of(d, &w) == 0) {
            saved->out = o->out;
            saved->out_bytes = fm_deploy_file_bytes(d);
            saved->bits_per_weight = bits_per_weight(&w);
            saved->out_weights = w.kind;
        } else {
            snprintf(err, cap, "%s", fm_last_error());
        }
        fm_deploy_free(d);
    }
    if (o->state) {
        if (fm_model_save(t->model, o->state) == FM_OK)
            saved->state = o->state;
        else if (!err[0])
            snprintf(err, cap, "%s", fm_last_error());
    }
}

/* Everything after the options are known: data, model, training, reports. */
static int train_with(const train_opts *o, train_run *t)
{
    /* the table first: a bad one fails before any data is read */
    int rc = 0;
    if (o->ledger) {
        if ((rc = open_table(o->table, &t->table)) != 0)
            return rc;
        if (fm_ledger_create(&t->ledger) != FM_OK)
            return library_failure();
    }
    if (o->log && !(t->log = fopen(o->log, "w")))
        return failure("cannot create log file '%s': %s", o->log, strerror(errno));
    int32_t train_part = 0;
    if (fm_data_load_parts(o->data, &t->train, &t->test, &train_part) != FM_OK)
        return library_failure();
    int input_dim = 0, classes = 0;
    rc = check_data(o, &t->train, &t->test, &input_dim, &classes);
    if (rc)
        return rc;
    if (strncmp(o->data, "svhn:", 5) == 0 && !o->valid_given &&
        (rc = svhn_split(o, &t->train, train_part, classes)) != 0)
        return rc;
    /* the architecture is checked against the images' shape only here, so a
     * kernel or pool larger than its map is still the options' fault */
    rc = fm_model_create_image(&o->cfg, t->train.height, t->train.width, t->train.channels, classes,
                               &t->model);
    if (rc == FM_EINVAL)
        return usage_error("%s", fm_last_error());
    if (rc != FM_OK)
        return library_failure();
    if (o->out && (rc = check_deployable(o, t)) != 0)
        return rc;
    if (!o->quiet)
        print_plan(o, t->model, &t->train, &t->test);

    run_state st = {.o = o, .log = t->log, .best_valid = -1};
    st.bar = !o->quiet && isatty(STDERR_FILENO);
    fm_callbacks cb = {.on_progress = on_progress,
                       .on_epoch = on_epoch,
                       .should_stop = should_stop,
                       .user = &st,
                       .ledger = t->ledger};
    fm_result result;
    memset(&result, 0, sizeof result);
    install_sigint();
    rc = fm_train(t->model, &t->train, &t->test, &o->cfg, &cb, &result);
    signal(SIGINT, SIG_DFL);
    bar_clear(&st);
    if (st.log_errno)
        return failure("writing log file '%s': %s", o->log, strerror(st.log_errno));
    if (rc == FM_ECANCELED && g_interrupted) {
        fflush(stdout);
        fprintf(stderr, "interrupted\n");
        return CLI_INTERRUPTED;
    }
    if (rc != FM_OK)
        return library_failure();

    /* A failed save still reports the training, then fails: the numbers of a
     * long run are worth having even when the disk is full. */
    saved_files saved;
    memset(&saved, 0, sizeof saved);
    char save_error[512] = "";
    save_outputs(o, t, &saved, save_error, sizeof save_error);
    if (o->json) {
        if (print_train_json(o, t->model, &result, &saved, t->ledger, t->table))
            rc = library_failure();
    } else {
        print_train_summary(&result, &saved);
        if (t->ledger)
            rc = print_run_ledger(t->ledger, t->table);
    }
    if (save_error[0])
        return failure("%s", save_error);
    return rc;
}

static int cmd_train(int argc, char **argv)
{
    train_opts o;
    train_opts_default(&o);
    int rc = parse_options(train_options, &o, &o.help, argc, argv, 2, NULL);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, train_help);
        return CLI_OK;
    }
    train_opts_finish(&o);
    if (o.table)
        o.ledger = 1; /* --table prices a ledger: it implies --ledger */
    if ((rc = check_data_spec(o.data)) != 0)
        return rc;
    if (o.out && o.state && strcmp(o.out, o.state) == 0)
        return usage_error("--out and --state name the same file '%s'", o.out);
    if (fm_config_check(&o.cfg) != FM_OK)
        return usage_error("%s", fm_last_error());
    train_run t;
    memset(&t, 0, sizeof t);
    rc = train_with(&o, &t);
    train_run_free(&t);
    return rc;
}

/* ---- eval ---------------------------------------------------------------- */

typedef struct eval_opts {
    const char *model, *data;
    int set; /* 0 test, 1 train */
    int threads;
    int json, help;
} eval_opts;

static const choice set_choices[] = {{"test", 0}, {"train", 1}, {NULL, 0}};

#define EOPT(field) offsetof(eval_opts, field)
static const option_def eval_options[] = {
    {"model", T_STRING, EOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"data", T_STRING, EOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"set", T_CHOICE, EOPT(set), 0, 0, 0, set_choices, 0, NULL},
    {"threads", T_INT, EOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"json", T_FLAG, EOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef EOPT

static int check_eval_data(const eval_opts *o, const fm_model *model, const fm_images *images)
{
    int want = fm_model_input_dim(model);
    if (input_dim_of(images) != want)
        return failure("%s: %s images are %dx%dx%d = %lld values, but model '%s' expects %d inputs",
                       o->data, choice_name(set_choices, o->set), images->height, images->width,
                       images->channels,
                       (long long)images->height * images->width * images->channels, o->model,
                       want);
    if (classes_in(images) > fm_model_classes(model))
        return failure("%s: labels go up to %d, but model '%s' has %d classes", o->data,
                       classes_in(images) - 1, o->model, fm_model_classes(model));
    if (images->count <= 0)
        return failure("%s: the %s set is empty", o->data, choice_name(set_choices, o->set));
    return 0;
}

/* Checks a set of images against a packed model: their shape (the product
 * alone when the model's shape is flat, N x 1 x 1) and their labels. */
static int check_deploy_data(const char *model, const char *data, const char *set,
                             const fm_deploy *d, const fm_images *images)
{
    int h = 0, w = 0, c = 0;
    int dim = fm_deploy_input_shape(d, &h, &w, &c);
    int flat = h == dim && w == 1 && c == 1;
    if (input_dim_of(images) != dim ||
        (!flat && (images->height != h || images->width != w || images->channels != c)))
        return failure("%s: %s images are %dx%dx%d = %lld values, but model '%s' expects "
                       "%dx%dx%d = %d inputs",
                       data, set, images->height, images->width, images->channels,
                       (long long)images->height * images->width * images->channels, model, h, w,
                       c, dim);
    if (classes_in(images) > fm_deploy_classes(d))
        return failure("%s: labels go up to %d, but model '%s' has %d classes", data,
                       classes_in(images) - 1, model, fm_deploy_classes(d));
    if (images->count <= 0)
        return failure("%s: the %s set is empty", data, set);
    return 0;
}

/* Predicts every image in batches of `batch` and counts the wrong classes;
 * each batch's seconds go to latency[] when it is not NULL. */
static int predict_batches(const fm_deploy *d, const fm_images *images, int batch, int threads,
                           long *errors, double *latency, double *seconds)
{
    const size_t dim = (size_t)fm_deploy_input_shape(d, NULL, NULL, NULL);
    uint8_t *classes = malloc((size_t)batch);
    if (!classes)
        return failure("out of memory");
    *errors = 0;
    *seconds = 0;
    for (int first = 0, b = 0; first < images->count; first += batch, b++) {
        int n = images->count - first < batch ? images->count - first : batch;
        double start = now_seconds();
        if (fm_deploy_predict(d, images->pixels + (size_t)first * dim, n, threads, classes, NULL) !=
            FM_OK) {
            free(classes);
            return library_failure();
        }
        double dt = now_seconds() - start;
        *seconds += dt;
        if (latency)
            latency[b] = dt;
        for (int i = 0; i < n; i++)
            *errors += classes[i] != images->labels[first + i];
    }
    free(classes);
    return 0;
}

/* The models eval may hold: a training state or a packed network. */
typedef struct eval_models {
    fm_model *model;
    fm_deploy *deploy;
} eval_models;

/* The training state is evaluated as training does (fm_model_evaluate); a
 * packed file by its kernels, told apart by the first 8 bytes. */
static int eval_with(const eval_opts *o, eval_models *m, fm_images *images)
{
    const char *set = choice_name(set_choices, o->set);
    if (model_file_kind_of(o->model) == MODEL_FILE_PACKED) {
        if (fm_deploy_load(o->model, &m->deploy) != FM_OK)
            return library_failure();
    } else if (fm_model_load(o->model, &m->model) != FM_OK) {
        return library_failure();
    }
    int want_train = o->set == 1;
    if (fm_data_load(o->data, want_train ? images : NULL, want_train ? NULL : images) != FM_OK)
        return library_failure();
    int rc = m->deploy ? check_deploy_data(o->model, o->data, set, m->deploy, images)
                       : check_eval_data(o, m->model, images);
    if (rc)
        return rc;
    double error_pct = 0, seconds = 0, start = now_seconds();
    if (m->deploy) {
        long errors = 0;
        rc = predict_batches(m->deploy, images, images->count, o->threads, &errors, NULL, &seconds);
        if (rc)
            return rc;
        error_pct = 100.0 * (double)errors / (double)images->count;
    } else {
        if (fm_model_evaluate(m->model, images, o->threads, &error_pct) != FM_OK)
            return library_failure();
        seconds = now_seconds() - start;
    }
    const char *describe = m->deploy ? fm_deploy_describe(m->deploy) : fm_model_describe(m->model);
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_number(&w, "error_pct", error_pct);
        json_int(&w, "images", images->count);
        json_string(&w, "model", o->model);
        json_string(&w, "describe", describe);
        json_string(&w, "format", m->deploy ? "packed" : "state");
        json_string(&w, "kernels", m->deploy ? fm_deploy_kernels(m->deploy) : NULL);
        json_string(&w, "data", o->data);
        json_string(&w, "set", set);
        json_number(&w, "seconds", seconds);
        json_int(&w, "threads", threads_reported(o->threads));
        json_end(&w);
    } else {
        printf("%s error %.2f%% on %d images of %s (%s; %.1f s)\n", set, error_pct,
               (int)images->count, o->data, describe, seconds);
    }
    return CLI_OK;
}

static int cmd_eval(int argc, char **argv)
{
    eval_opts o = {.data = "fashion"};
    int rc = parse_options(eval_options, &o, &o.help, argc, argv, 2, NULL);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, eval_help);
        return CLI_OK;
    }
    if (!o.model)
        return usage_error("missing --model FILE");
    if ((rc = check_data_spec(o.data)) != 0)
        return rc;
    eval_models m = {NULL, NULL};
    fm_images images;
    memset(&images, 0, sizeof images);
    rc = eval_with(&o, &m, &images);
    fm_images_free(&images);
    fm_model_free(m.model);
    fm_deploy_free(m.deploy);
    return rc;
}

/* ---- infer --------------------------------------------------------------- */

/* Every variant name the library knows; which of them this CPU runs is
 * fm_kernels_name's business (an unsupported one fails, exit 1). */
static const choice kernel_choices[] = {
    {"ref", 0}, {"avx2", 1}, {"avx512", 2}, {"fp32", 3}, {NULL, 0}};

typedef struct infer_opts {
    const char *model, *data;
    int set, batch, threads;
    int kernels; /* index in kernel_choices, -1: the variant chosen at load */
    int json, help;
} infer_opts;

#define IOPT(field) offsetof(infer_opts, field)
static const option_def infer_options[] = {
    {"model", T_STRING, IOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"data", T_STRING, IOPT(data), 0, 0, 0, NULL, 0, NULL},
    {"set", T_CHOICE, IOPT(set), 0, 0, 0, set_choices, 0, NULL},
    {"batch", T_INT, IOPT(batch), 1, 65536, 0, NULL, 0, NULL},
    {"threads", T_INT, IOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"kernels", T_CHOICE, IOPT(kernels), 0, 0, 0, kernel_choices, 0, NULL},
    {"json", T_FLAG, IOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef IOPT

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorted in place); the mean of the middle two when n
 * is even. */
static double median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "28x28x1" */
static const char *fmt_shape(char *buf, size_t cap, const fm_deploy *d)
{
    int h = 0, w = 0, c = 0;
    fm_deploy_input_shape(d, &h, &w, &c);
    snprintf(buf, cap, "%dx%dx%d", h, w, c);
    return buf;
}

/* --kernels NAME: a variant this CPU lacks is a failure with the library's
 * message, not a usage error: the same line works on another machine. */
static int apply_kernels(fm_deploy *d, int choice_index)
{
    if (choice_index < 0)
        return 0;
    if (fm_deploy_set_kernels(d, choice_name(kernel_choices, choice_index)) != FM_OK)
        return failure("--kernels: %s", fm_last_error());
    return 0;
}

static int infer_with(const infer_opts *o, fm_deploy **d, fm_images *images)
{
    const char *set = choice_name(set_choices, o->set);
    int rc = load_packed(o->model, d);
    if (rc || (rc = apply_kernels(*d, o->kernels)) != 0)
        return rc;
    int want_train = o->set == 1;
    if (fm_data_load(o->data, want_train ? images : NULL, want_train ? NULL : images) != FM_OK)
        return library_failure();
    if ((rc = check_deploy_data(o->model, o->data, set, *d, images)) != 0)
        return rc;
    /* One untimed batch first: the first call pays for starting the threads
     * and bringing the weights into cache, which no later batch does. */
    int warm_count = images->count < o->batch ? images->count : o->batch;
    uint8_t *warm = malloc((size_t)warm_count);
    if (!warm)
        return failure("out of memory");
    rc = fm_deploy_predict(*d, images->pixels, warm_count, o->threads, warm, NULL);
    free(warm);
    if (rc != FM_OK)
        return library_failure();
    const int batches = (int)((images->count + (long)o->batch - 1) / o->batch);
    double *latency = malloc(sizeof *latency * (size_t)batches);
    if (!latency)
        return failure("out of memory");
    long errors = 0;
    double seconds = 0;
    rc = predict_batches(*d, images, o->batch, o->threads, &errors, latency, &seconds);
    double latency_us = median(latency, batches) * 1e6;
    free(latency);
    if (rc)
        return rc;
    double error_pct = 100.0 * (double)errors / (double)images->count;
    double images_per_s = seconds > 0 ? (double)images->count / seconds : NAN;
    char shape[64];
    fmt_shape(shape, sizeof shape, *d);
    if (o->json) {
        json_writer w;
        json_begin(&w, stdout);
        json_number(&w, "error_pct", error_pct);
        json_int(&w, "images", images->count);
        json_number(&w, "images_per_s", images_per_s);
        json_number(&w, "latency_us_median", latency_us);
        json_int(&w, "batch", o->batch);
        json_int(&w, "batches", batches);
        json_number(&w, "seconds", seconds);
        json_string(&w, "kernels", fm_deploy_kernels(*d));
        json_int(&w, "threads", threads_reported(o->threads));
        json_string(&w, "model", o->model);
        json_string(&w, "describe", fm_deploy_describe(*d));
        json_string(&w, "input", shape);
        json_int(&w, "input_dim", fm_deploy_input_shape(*d, NULL, NULL, NULL));
        json_int(&w, "classes", fm_deploy_classes(*d));
        json_string(&w, "data", o->data);
        json_string(&w, "set", set);
        json_end(&w);
    } else {
        printf("%s error %.2f%% on %d images of %s (%s)\n", set, error_pct, (int)images->count,
               o->data, fm_deploy_describe(*d));
        printf("kernels %s, batch %d, %d thread%s: %.0f images/s, median batch latency %.1f "
               "\xc2\xb5s over %d batch%s (%.3f s in all)\n",
               fm_deploy_kernels(*d), o->batch, threads_reported(o->threads),
               threads_reported(o->threads) == 1 ? "" : "s", images_per_s, latency_us, batches,
               batches == 1 ? "" : "es", seconds);
    }
    return CLI_OK;
}

static int cmd_infer(int argc, char **argv)
{
    infer_opts o = {.data = "fashion", .batch = 256, .kernels = -1};
    int rc = parse_options(infer_options, &o, &o.help, argc, argv, 2, NULL);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, infer_help);
        return CLI_OK;
    }
    if (!o.model)
        return usage_error("missing --model FILE");
    if ((rc = check_data_spec(o.data)) != 0)
        return rc;
    fm_deploy *d = NULL;
    fm_images images;
    memset(&images, 0, sizeof images);
    rc = infer_with(&o, &d, &images);
    fm_images_free(&images);
    fm_deploy_free(d);
    return rc;
}

/* ---- info ---------------------------------------------------------------- */

typedef struct info_opts {
    const char *file;
    int json, help;
} info_opts;

static const option_def info_options[] = {
    {"json", T_FLAG, offsetof(info_opts, json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};

static int print_info_json(const info_opts *o, const fm_deploy *d, const weight_totals *t)
{
    char shape[64];
    json_writer w;
    json_begin(&w, stdout);
    json_string(&w, "file", o->file);
    json_string(&w, "describe", fm_deploy_describe(d));
    json_string(&w, "input", fmt_shape(shape, sizeof shape, d));
    json_int(&w, "input_dim", fm_deploy_input_shape(d, NULL, NULL, NULL));
    json_int(&w, "classes", fm_deploy_classes(d));
    json_u64(&w, "file_bytes", fm_deploy_file_bytes(d));
    json_open(&w, "layers", '[');
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        if (fm_deploy_describe_layer(d, l, &info) != FM_OK)
            return library_failure();
        json_open(&w, NULL, '{');
        json_int(&w, "in", info.in);
        json_int(&w, "out", info.out);
        json_string(&w, "weights", info.weights);
        json_int(&w, "bits", info.bits);
        json_int(&w, "levels", info.levels);
        json_string(&w, "input", info.input);
        json_string(&w, "activation", info.activation);
        json_u64(&w, "weight_bytes", info.weight_bytes);
        json_close(&w, '}');
    }
    json_close(&w, ']');
    json_u64(&w, "weights", t->weights);
    json_u64(&w, "weight_bits", t->bits);
    json_u64(&w, "weight_bytes", t->bytes);
    json_number(&w, "bits_per_weight", bits_per_weight(t));
    json_string(&w, "kernels", fm_deploy_kernels(d));
    json_open(&w, "kernels_available", '[');
    for (int i = 0; fm_kernels_name(i); i++)
        json_string(&w, NULL, fm_kernels_name(i));
    json_close(&w, ']');
    json_end(&w);
    return 0;
}

static int print_info_text(const info_opts *o, const fm_deploy *d, const weight_totals *t)
{
    char shape[64], size[32], fp32[32];
    uint64_t file_bytes = fm_deploy_file_bytes(d);
    printf("%s: packed model, %s\n", o->file, fm_deploy_describe(d));
    printf("input %s (%d values), %d classes, file %s (%" PRIu64 " bytes)\n",
           fmt_shape(shape, sizeof shape, d), fm_deploy_input_shape(d, NULL, NULL, NULL),
           fm_deploy_classes(d), fmt_size(size, sizeof size, file_bytes), file_bytes);
    printf("%5s %8s %8s  %-8s %4s %6s  %-6s  %-10s %12s\n", "layer", "in", "out", "weights",
           "bits", "levels", "input", "activation", "weight bytes");
    for (int l = 0; l < fm_deploy_layers(d); l++) {
        fm_deploy_layer_info info;
        if (fm_deploy_describe_layer(d, l, &info) != FM_OK)
            return library_failure();
        char levels[16] = "-";
        if (info.levels > 0)
            snprintf(levels, sizeof levels, "%d", info.levels);
        printf("%5d %8d %8d  %-8s %4d %6s  %-6s  %-10s %12" PRIu64 "\n", l + 1, info.in, info.out,
               info.weights, info.bits, levels, info.input, info.activation, info.weight_bytes);
    }
    printf("weights: %" PRIu64 " in %" PRIu64 " bits (%s), %.3g bit%s per weight; as fp32 %s\n",
           t->weights, t->bits, fmt_size(size, sizeof size, t->bytes), bits_per_weight(t),
           bits_per_weight(t) == 1 ? "" : "s", fmt_size(fp32, sizeof fp32, 4 * t->weights));
    printf("kernels here: %s (%s); available:", fm_deploy_kernels(d),
           getenv("FEWMUL_KERNELS") ? "FEWMUL_KERNELS" : "the best this CPU supports");
    for (int i = 0; fm_kernels_name(i); i++)
        printf("%s %s", i ? "," : "", fm_kernels_name(i));
    putchar('\n');
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    info_opts o = {NULL, 0, 0};
    int rc = parse_options(info_options, &o, &o.help, argc, argv, 2, &o.file);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, info_help);
        return CLI_OK;
    }
    if (!o.file)
        return usage_error("missing FILE (fewmul info FILE)");
    fm_deploy *d = NULL;
    if ((rc = load_packed(o.file, &d)) != 0)
        return rc;
    weight_totals t;
    if (weight_totals_of(d, &t) != 0)
        rc = library_failure();
    else
        rc = o.json ? print_info_json(&o, d, &t) : print_info_text(&o, d, &t);
    fm_deploy_free(d);
    return rc;
}

/* ---- bench infer ----------------------------------------------------------- */

/* The examples of a throughput run, and the pseudo-random inputs' seed. */
enum { BENCH_BATCH = 256, BENCH_MAX_VARIANTS = 8 };
#define BENCH_SEED UINT64_C(1234)

typedef struct bench_opts {
    const char *model;
    int runs, threads;
    int json, help;
} bench_opts;

#define BOPT(field) offsetof(bench_opts, field)
static const option_def bench_infer_options[] = {
    {"model", T_STRING, BOPT(model), 0, 0, 0, NULL, 0, NULL},
    {"runs", T_INT, BOPT(runs), 1, 1000000, 0, NULL, 0, NULL},
    {"threads", T_INT, BOPT(threads), 1, 1024, 0, NULL, 0, NULL},
    {"json", T_FLAG, BOPT(json), 0, 0, 0, NULL, 0, NULL},
    {NULL, T_FLAG, 0, 0, 0, 0, NULL, 0, NULL}};
#undef BOPT

/* splitmix64: the same inputs on every machine and every run. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

typedef struct bench_variant {
    const char *name;
    double *latency;     /* seconds of each batch-1 run */
    double *throughput;  /* seconds of each batch run */
    uint8_t classes[BENCH_BATCH];
    double latency_us, images_per_s;
    long mismatches;     /* classes that differ from the first variant's (ref) */
} bench_variant;

typedef struct bench_run {
    fm_deploy *d;
    uint8_t *pixels;
    int n;               /* variants */
    bench_variant v[BENCH_MAX_VARIANTS];
    int latency_runs, throughput_runs, fp32; /* fp32: index of the yardstick, -1 if none */
} bench_run;

static void bench_run_free(bench_run *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->v[i].latency);
        free(b->v[i].throughput);
    }
    free(b->pixels);
    fm_deploy_free(b->d);
}

static int predict_timed(const bench_run *b, int first, int count, int threads, uint8_t *classes,
                         double *seconds)
{
    const size_t dim = (size_t)fm_deploy_input_shape(b->d, NULL, NULL, NULL);
    double start = now_seconds();
    if (fm_deploy_predict(b->d, b->pixels + (size_t)first * dim, count, threads, classes, NULL) !=
        FM_OK)
        return library_failure();
    if (seconds)
        *seconds = now_seconds() - start;
    return 0;
}

static int use_variant(bench_run *b, int i)
{
    if (fm_deploy_set_kernels(b->d, b->v[i].name) != FM_OK)
        return library_failure();
    return 0;
}

/* Warm-up and the agreement check, then the timed runs, interleaved: round r
 * runs every variant once, so that whatever else the machine does in that
 * moment slows all of them alike. */
static int bench_measure(bench_run *b, int threads)
{
    int rc;
    uint8_t one[1];
    for (int i = 0; i < b->n; i++) {
        if ((rc = use_variant(b, i)) != 0 ||
            (rc = predict_timed(b, 0, BENCH_BATCH, threads, b->v[i].classes, NULL)) != 0 ||
            (rc = predict_timed(b, 0, 1, 1, one, NULL)) != 0)
            return rc;
    }
    for (int r = 0; r < b->latency_runs; r++)
        for (int i = 0; i < b->n; i++) {
            /* an untimed run of the same variant first: a steadily serving
             * network has its own weights in cache, not the previous one's */
            int example = r % BENCH_BATCH;
            if ((rc = use_variant(b, i)) != 0 ||
                (rc = predict_timed(b, example, 1, 1, one, NULL)) != 0 ||
                (rc = predict_timed(b, example, 1, 1, one, &b->v[i].latency[r])) != 0)
                return rc;
        }
    uint8_t classes[BENCH_BATCH];
    for (int r = 0; r < b->throughput_runs; r++)
        for (int i = 0; i < b->n; i++)
            if ((rc = use_variant(b, i)) != 0 ||
                (rc = predict_timed(b, 0, BENCH_BATCH, threads, classes,
                                    &b->v[i].throughput[r])) != 0)
                return rc;
    for (int i = 0; i < b->n; i++) {
        bench_variant *v = &b->v[i];
        v->latency_us = median(v->latency, b->latency_runs) * 1e6;
        v->images_per_s = BENCH_BATCH / median(v->throughput, b->throughput_runs);
        v->mismatches = 0;
        for (int k = 0; k < BENCH_BATCH; k++)
            v->mismatches += v->classes[k] != b->v[0].classes[k];
    }
    return 0;
}

static long bench_mismatches(const bench_run *b)
{
    long n = 0;
    for (int i = 0; i < b->n; i++)
        n += b->v[i].mismatches;
    return n;
}

/* Speedups over the fp32 yardstick: its latency over the variant's, the
 * variant's images/s over its. */
static double latency_speedup(const bench_run *b, int i)
{
    return b->fp32 < 0 ? NAN : b->v[b->fp32].latency_us / b->v[i].latency_us;
}

static double throughput_speedup(const bench_run *b, int i)
{
    return b->fp32 < 0 ? NAN : b->v[i].images_per_s / b->v[b->fp32].images_per_s;
}

/* "6.28", or "-" without an fp32 variant to compare with. */
static void fmt_speedup(char *buf, size_t cap, double ratio)
{
    if (isfinite(ratio))
        snprintf(buf, cap, "%.3g", ratio);
    else
        snprintf(buf, cap, "-");
}

static void print_bench_json(const bench_opts *o, const bench_run *b, const char *loaded)
{
    char shape[64];
    json_writer w;
    json_begin(&w, stdout);
    json_string(&w, "command", "bench infer");
    json_string(&w, "model", o->model);
    json_string(&w, "describe", fm_deploy_describe(b->d));
    json_string(&w, "input", fmt_shape(shape, sizeof shape, b->d));
    json_int(&w, "classes", fm_deploy_classes(b->d));
    json_int(&w, "runs", b->latency_runs);
    json_int(&w, "throughput_runs", b->throughput_runs);
    json_int(&w, "batch", BENCH_BATCH);
    json_int(&w, "threads", threads_reported(o->threads));
    json_uint(&w, "seed", (unsigned long long)BENCH_SEED);
    json_string(&w, "default_kernels", loaded);
    json_open(&w, "variants", '[');
    for (int i = 0; i < b->n; i++) {
        json_open(&w, NULL, '{');
        json_string(&w, "name", b->v[i].name);
        json_number(&w, "latency_us", b->v[i].latency_us);
        json_number(&w, "images_per_s", b->v[i].images_per_s);
        json_number(&w, "latency_speedup_vs_fp32", latency_speedup(b, i));
        json_number(&w, "throughput_speedup_vs_fp32", throughput_speedup(b, i));
        json_int(&w, "mismatches", b->v[i].mismatches);
        json_close(&w, '}');
    }
    json_close(&w, ']');
    json_int(&w, "mismatches", bench_mismatches(b));
    json_end(&w);
}

static void print_bench_text(const bench_opts *o, const bench_run *b, const char *loaded)
{
    char shape[64];
    int threads = threads_reported(o->threads);
    printf("fewmul bench infer: %s (%s; input %s)\n", o->model, fm_deploy_describe(b->d),
           fmt_shape(shape, sizeof shape, b->d));
    printf("batch 1: median of %d runs on 1 thread; batch %d: median of %d runs on %d thread%s;\n"
           "variants interleaved run by run; inputs: %d pseudo-random images (seed %" PRIu64 ")\n",
           b->latency_runs, BENCH_BATCH, b->throughput_runs, threads, threads == 1 ? "" : "s",
           BENCH_BATCH, BENCH_SEED);
    printf("%-8s %14s %8s %17s %8s %11s\n", "variant", "batch-1 \xc2\xb5s", "vs fp32",
           "batch-256 img/s", "vs fp32", "mismatches");
    for (int i = 0; i < b->n; i++) {
        char a[32], c[32];
        fmt_speedup(a, sizeof a, latency_speedup(b, i));
        fmt_speedup(c, sizeof c, throughput_speedup(b, i));
        printf("%-8s %13.1f %7sx %17.0f %7sx %11ld\n", b->v[i].name, b->v[i].latency_us, a,
               b->v[i].images_per_s, c, b->v[i].mismatches);
    }
    printf("default variant here: %s (%s)\n", loaded,
           getenv("FEWMUL_KERNELS") ? "FEWMUL_KERNELS" : "the best this CPU supports");
    long mismatches = bench_mismatches(b);
    if (mismatches)
        printf("MISMATCH: %ld predicted classes differ from %s's on the %d inputs\n", mismatches,
               b->v[0].name, BENCH_BATCH);
    else
        printf("all variants predict the same classes for the %d inputs\n", BENCH_BATCH);
}

static int bench_infer_with(const bench_opts *o, bench_run *b)
{
    int rc = load_packed(o->model, &b->d);
    if (rc)
        return rc;
    char loaded[32];
    snprintf(loaded, sizeof loaded, "%s", fm_deploy_kernels(b->d));
    b->latency_runs = o->runs;
    b->throughput_runs = o->runs / 20 > 5 ? o->runs / 20 : 5;
    b->fp32 = -1;
    for (int i = 0; fm_kernels_name(i) && b->n < BENCH_MAX_VARIANTS; i++) {
        bench_variant *v = &b->v[b->n++];
        v->name = fm_kernels_name(i);
        v->latency = malloc(sizeof *v->latency * (size_t)b->latency_runs);
        v->throughput = malloc(sizeof *v->throughput * (size_t)b->throughput_runs);
        if (!v->latency || !v->throughput)
            return failure("out of memory");
        if (strcmp(v->name, "fp32") == 0)
            b->fp32 = b->n - 1;
    }
    if (b->n == 0)
        return failure("no kernel variant is available");
    const size_t dim = (size_t)fm_deploy_input_shape(b->d, NULL, NULL, NULL);
    if (!(b->pixels = malloc(dim * BENCH_BATCH)))
        return failure("out of memory");
    uint64_t state = BENCH_SEED;
    for (size_t i = 0; i < dim * BENCH_BATCH; i++)
        b->pixels[i] = (uint8_t)(splitmix64(&state) >> 56);
    if ((rc = bench_measure(b, o->threads)) != 0)
        return rc;
    if (o->json)
        print_bench_json(o, b, loaded);
    else
        print_bench_text(o, b, loaded);
    return CLI_OK;
}

/* `fewmul bench SUBCOMMAND`: only `infer` so far. */
static int cmd_bench(int argc, char **argv)
{
    if (argc < 3)
        return usage_error("missing subcommand: fewmul bench infer --model FILE");
    const char *sub = argv[2];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        print_lines(stdout, bench_help);
        return CLI_OK;
    }
    if (strcmp(sub, "infer") != 0) {
        if (sub[0] == '-')
            return usage_error("'bench' takes its subcommand first: fewmul bench infer %s ...",
                               sub);
        return usage_error("unknown bench subcommand '%s' (expected infer)", sub);
    }
    g_command = "bench infer";
    bench_opts o = {.runs = 200};
    int rc = parse_options(bench_infer_options, &o, &o.help, argc, argv, 3, NULL);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, bench_help);
        return CLI_OK;
    }
    if (!o.model)
        return usage_error("missing --model FILE");
    bench_run b;
    memset(&b, 0, sizeof b);
    rc = bench_infer_with(&o, &b);
    bench_run_free(&b);
    return rc;
}

/* ---- energy -------------------------------------------------------------- */

/* --list-tables: each built-in table with its unit and source. */
static int list_tables(void)
{
    for (int i = 0; fm_energy_table_builtin(i); i++) {
        const char *name = fm_energy_table_builtin(i);
        fm_energy_table *t = NULL;
        if (fm_energy_table_open(name, &t) != FM_OK)
            return failure("built-in table %s: %s", name, fm_last_error());
        const char *source = fm_energy_table_source(t);
        printf("%-12s %-6s %s%s\n", name, fm_energy_table_unit(t),
               source && source[0] ? source : "no source given", i == 0 ? " (default)" : "");
        fm_energy_table_free(t);
    }
    return CLI_OK;
}

/* --print-table NAME: a built-in table's text, the start of one's own. */
static int print_builtin_table(const char *name)
{
    char names[256] = "";
    size_t len = 0;
    for (int i = 0; fm_energy_table_builtin(i); i++) {
        if (strcmp(fm_energy_table_builtin(i), name) == 0) {
            const char *text = fm_energy_table_builtin_text(i);
            if (!text)
                return failure("built-in table %s has no text", name);
            fputs(text, stdout);
            if (text[0] && text[strlen(text) - 1] != '\n')
                putchar('\n');
            return CLI_OK;
        }
        append(names, sizeof names, &len, "%s%s", i ? ", " : "", fm_energy_table_builtin(i));
    }
    return usage_error("--print-table: no built-in table '%s' (built in: %s)", name, names);
}

typedef struct energy_run {
    fm_energy_table *table;
    fm_model *model, *peer;          /* the network, and the same in plain fp32 */
    fm_ledger *step, *infer;         /* its training step and inference pass */
    fm_ledger *peer_step, *peer_infer;
    uint64_t paper_standard, paper_method;
} energy_run;

static void energy_run_free(energy_run *r)
{
    fm_ledger_free(r->step);
    fm_ledger_free(r->infer);
    fm_ledger_free(r->peer_step);
    fm_ledger_free(r->peer_infer);
    fm_model_free(r->model);
    fm_model_free(r->peer);
    fm_energy_table_free(r->table);
}

/* A model the options describe; the library refusing its shape is a usage
 * error, anything else a failure. */
static int create_model(const fm_config *cfg, const int shape[3], int classes, fm_model **out)
{
    int err = fm_model_create_image(cfg, shape[0], shape[1], shape[2], classes, out);
    if (err == FM_EINVAL || err == FM_EUNSUPPORTED)
        return usage_error("%s", fm_last_error());
    if (err != FM_OK)
        return library_failure();
    return 0;
}

static int measure(fm_model *model, int batch, fm_ledger **step, fm_ledger **infer)
{
    if (fm_ledger_create(step) != FM_OK || fm_ledger_create(infer) != FM_OK)
        return library_failure();
    if (fm_model_measure(model, batch, *step, *infer) != FM_OK)
        return library_failure();
    return 0;
}

static double ledger_total(const fm_ledger *l, const fm_energy_table *t, fm_energy *e)
{
    if (price(l, t, -1, -1, e) != FM_OK)
        return NAN;
    return e->compute + e->communication;
}

/* The method against fp32: compute, communication, their ratio, the total. */
static int print_comparison(const energy_run *r, const char *peer_describe)
{
    const fm_ledger *ls[4] = {r->step, r->peer_step, r->infer, r->peer_infer};
    fm_energy e[4];
    double total[4], largest = 0;
    for (int i = 0; i < 4; i++) {
        total[i] = ledger_total(ls[i], r->table, &e[i]);
        if (isnan(total[i]))
            return library_failure();
        if (total[i] > largest)
            largest = total[i];
    }
    cost_unit u;
    choose_unit(&u, r->table, largest);
    printf("\nmethod vs fp32 (%s; costs in %s)\n", peer_describe, u.name);
    printf("  %-16s%10s%10s%11s%10s%13s\n", "", "compute", "comm", "comm/comp", "total",
           "fp32/method");
    static const char *const labels[4] = {"training step", "  fp32", "inference", "  fp32"};
    for (int i = 0; i < 4; i++) {
        char c[5][32];
        if (i % 2)
            fmt_ratio(c[4], 32, total[i], total[i - 1]);
        else
            c[4][0] = '\0';
        if (i % 2 && strcmp(c[4], "-") != 0)
            strncat(c[4], "x", sizeof c[4] - strlen(c[4]) - 1);
        printf("  %-16s%10s%10s%11s%10s", labels[i], fmt_cost(c[0], 32, e[i].compute, &u),
               fmt_cost(c[1], 32, e[i].communication, &u),
               fmt_ratio(c[2], 32, e[i].communication, e[i].compute),
               fmt_cost(c[3], 32, total[i], &u));
        if (c[4][0])
            printf("%13s", c[4]);
        putchar('\n');
    }
    double jpu = jpu_of(r->table);
    if (jpu > 0) {
        char a[48], b[48], per_bit[48];
        printf("Landauer floor (kT ln 2 at 300 K, %s per bit): training step %s, inference %s\n",
               fmt_joules(per_bit, sizeof per_bit, FM_LANDAUER_J_PER_BIT),
               fmt_joules(a, sizeof a, e[0].landauer_bits * FM_LANDAUER_J_PER_BIT),
               fmt_joules(b, sizeof b, e[2].landauer_bits * FM_LANDAUER_J_PER_BIT));
    }
    return 0;
}

static int print_energy_text(const train_opts *o, const energy_run *r)
{
    const fm_config *c = &o->cfg;
    printf("fewmul energy: %s\n", fm_model_describe(r->model));
    printf("batch %d, input %s (%d values), %d classes, seed %" PRIu64 "\n", c->batch, o->input,
           o->input_dim, o->classes, c->seed);
    print_table_heading(r->table);

    static const char *const titles[2] = {"training step", "inference"};
    const fm_ledger *ls[2] = {r->step, r->infer};
    for (int i = 0; i < 2; i++) {
        cost_unit u;
        int rc = ledger_unit(ls[i], r->table, &u);
        if (rc)
            return rc;
        printf("\n%s (%d example%s; costs in %s)\n", titles[i], c->batch,
               c->batch == 1 ? "" : "s", u.name);
        rc = print_ledger_rows(ls[i], r->table, &u, o->verbose, "--verbose lists them all");
        if (rc)
            return rc;
    }
    char peer_describe[256];
    snprintf(peer_describe, sizeof peer_describe, "%s", fm_model_describe(r->peer));
    int rc = print_comparison(r, peer_describe);
    if (rc)
        return rc;
    char ratio[32] = "-";
    if (r->paper_standard)
        snprintf(ratio, sizeof ratio, "%.4g", (double)r->paper_method / (double)r->paper_standard);
    printf("paper view (multiplications per minibatch, as the paper's table):\n"
           "  standard %" PRIu64 ", this method %" PRIu64 " (ratio %s)\n",
           r->paper_standard, r->paper_method, ratio);
    return 0;
}

static int print_energy_json(const train_opts *o, const energy_run *r)
{
    const fm_config *c = &o->cfg;
    int bad = 0;
    json_writer w;
    json_begin(&w, stdout);
    json_string(&w, "command", "energy");
    json_string(&w, "arch", c->arch);
    json_mode(&w, c);
    json_int(&w, "batch", c->batch);
    json_string(&w, "input", o->input);
    json_int(&w, "input_dim", o->input_dim);
    json_int(&w, "classes", o->classes);
    json_uint(&w, "seed", (unsigned long long)c->seed);
    json_string(&w, "describe", fm_model_describe(r->model));
    json_uint(&w, "params", (unsigned long long)fm_model_param_count(r->model));
    json_table(&w, "table", r->table);
    json_ledger(&w, "train_step", r->step, r->table, 0, &bad);
    json_ledger(&w, "inference", r->infer, r->table, 0, &bad);
    json_open(&w, "fp32", '{');
    json_string(&w, "describe", fm_model_describe(r->peer));
    json_ledger(&w, "train_step", r->peer_step, r->table, 0, &bad);
    json_ledger(&w, "inference", r->peer_infer, r->table, 0, &bad);
    json_close(&w, '}');
    fm_energy e;
    json_open(&w, "saved", '{');
    json_number(&w, "train_step",
                ledger_total(r->peer_step, r->table, &e) / ledger_total(r->step, r->table, &e));
    json_number(&w, "inference",
                ledger_total(r->peer_infer, r->table, &e) / ledger_total(r->infer, r->table, &e));
    json_close(&w, '}');
    json_u64(&w, "paper_mults_standard", r->paper_standard);
    json_u64(&w, "paper_mults_method", r->paper_method);
    json_number(&w, "paper_ratio",
                r->paper_standard ? (double)r->paper_method / (double)r->paper_standard : NAN);
    json_number(&w, "landauer_j_per_bit", FM_LANDAUER_J_PER_BIT);
    json_end(&w);
    return bad ? library_failure() : 0;
}

static int energy_with(const train_opts *o, energy_run *r)
{
    const fm_config *c = &o->cfg;
    int rc = open_table(o->table, &r->table);
    if (rc)
        return rc;
    if ((rc = create_model(c, o->input_shape, o->classes, &r->model)) != 0)
        return rc;
    if ((rc = measure(r->model, c->batch, &r->step, &r->infer)) != 0)
        return rc;
    /* the peer: the same network and step with fp32 weights, no quantized back-prop */
    fm_config peer = *c;
    peer.weights = FM_WEIGHTS_FP32;
    peer.qb = 0;
    peer.qb_emin = peer.qb_emax = FM_QB_UNBOUNDED;
    peer.qb_bn_jacobian = 0;
    peer.exec = FM_EXEC_DEFAULT;
    if ((rc = create_model(&peer, o->input_shape, o->classes, &r->peer)) != 0)
        return rc;
    if ((rc = measure(r->peer, c->batch, &r->peer_step, &r->peer_infer)) != 0)
        return rc;
    if (fm_model_paper_mults(r->model, c->batch, &r->paper_standard, &r->paper_method) != FM_OK)
        return library_failure();
    return o->json ? print_energy_json(o, r) : print_energy_text(o, r);
}

static int cmd_energy(int argc, char **argv)
{
    train_opts o;
    train_opts_default(&o);
    int rc = parse_options(energy_options, &o, &o.help, argc, argv, 2, NULL);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, energy_help);
        return CLI_OK;
    }
    if (o.list_tables || o.print_table) {
        if (o.list_tables && (rc = list_tables()) != 0)
            return rc;
        return o.print_table ? print_builtin_table(o.print_table) : CLI_OK;
    }
    train_opts_finish(&o);
    if (fm_config_check(&o.cfg) != FM_OK)
        return usage_error("%s", fm_last_error());
    energy_run r;
    memset(&r, 0, sizeof r);
    rc = energy_with(&o, &r);
    energy_run_free(&r);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *const *help;
} command;

static const command commands[] = {
    {"train", cmd_train, train_help},
    {"eval", cmd_eval, eval_help},
    {"infer", cmd_infer, infer_help},
    {"info", cmd_info, info_help},
    {"bench", cmd_bench, bench_help},
    {"energy", cmd_energy, energy_help},
    {NULL, NULL, NULL}};

static const command *find_command(const char *name)
{
    for (const command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* "fewmul help [COMMAND]". */
static int cmd_help(int argc, char **argv)
{
    if (argc <= 2) {
        print_lines(stdout, main_help);
        return CLI_OK;
    }
    if (argc > 3)
        return usage_error("'help' takes one command name, got '%s' too", argv[3]);
    const command *c = find_command(argv[2]);
    if (!c)
        return usage_error("no help for unknown command '%s'", argv[2]);
    print_lines(stdout, c->help);
    return CLI_OK;
}

/* A write error on stdout (a full disk, a closed pipe) must not pass for success. */
static int finish_stdout(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno;
        fprintf(stderr, "fewmul: error: writing standard output: %s\n", strerror(err ? err : EIO));
        return rc ? rc : CLI_FAIL;
    }
    return rc;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2)
        return usage_error(
            "no command given; expected train, eval, infer, info, bench, energy or help");
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return cmd_help(argc, argv);
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 ||
        strcmp(name, "version") == 0) {
        printf("fewmul %s\n", FM_VERSION_STRING);
        return CLI_OK;
    }
    const command *c = find_command(name);
    if (!c) {
        if (name[0] == '-')
            return usage_error("unknown option '%s' before the command", name);
        return usage_error("unknown command '%s'", name);
    }
    g_command = c->name;
    return c->run(argc, argv);
}

/* OpenMP threads that spin between parallel regions take the cores from each
 * other whenever anything else runs on the machine (measured on 2 cores with a
 * second process busy: 2-5x slower training). The runtime reads its wait policy
 * once, when it loads, so the command re-executes itself with a passive policy
 * unless the user chose one. */
static void prefer_passive_waiting(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) == 0)
        execv("/proc/self/exe", argv); /* returns only on failure: carry on as we are */
}

int main(int argc, char **argv)
{
    prefer_passive_waiting(argv);
    return finish_stdout(dispatch(argc, argv));
}
