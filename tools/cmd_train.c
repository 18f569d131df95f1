/* cmd_train.c — `fewmul train`: its help, the parsing and checking of its
 * options (parse_train), the progress bar, epoch lines, JSON log, SIGINT and
 * SIGTERM handling, checkpoints and resuming, and the run: data, model,
 * training, saving and the reports. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const train_help[] = {
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
    "                       gap the mean of each channel over the map (global",
    "                       average pooling), after a convolution or pool;",
    "                       fcH a dense layer of H units, after the convolutions.",
    "                       The input shape comes from the data, and the class",
    "                       scores layer is added at the end",
    "",
    "Saving (both written beside FILE and renamed into place; an output that is",
    "a folder, a FIFO or a device is refused, and two options naming one file,",
    "or an output naming an input, by any spelling):",
    "  --out FILE         save the best validation epoch's network packed for",
    "                     deployment: dense layers, convolutions, pools and gap;",
    "                     weights of 1 bit (binary), 2 bits (ternary) or",
    "                     1 + ceil(log2 N) bits (synapse), batch norm folded into",
    "                     a scale and offset per unit or channel, the input shape",
    "                     of the training images; read by 'fewmul infer', 'info',",
    "                     'bench infer', 'eval' and fm_deploy_load. A network the",
    "                     format cannot hold (over 32 synapse levels with",
    "                     --export det, gcn-* preprocessing) is refused before",
    "                     training (exit 2)",
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
    "  --synapse-range R  largest/smallest synapse magnitude, R > 1 (default 60);",
    "                     the smallest magnitude H/R must be at least 2^-63 in",
    "                     every layer (R at most 2^63 = 9.2e18, H*2^63 with each",
    "                     layer's Glorot H), and N levels must stay apart as",
    "                     floats (R at least 1.000024 for 26)",
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
    "  --qb-bn-shortcut   with --qb, a dense layer's weight gradient takes the",
    "                     error at its batch norm's output, skipping the batch",
    "                     norm's Jacobian, as the authors' code does (fidelity;",
    "                     unstable with --opt adam, which the command warns of)",
    "  --qb-bn-jacobian   the default: the exact pre-batch-norm error (convolutions",
    "                     always take the exact error at their output, as theirs)",
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
    "                     how the dense and convolution layers' products run.",
    "                     default: float GEMMs of the quantized weights",
    "                     (OpenBLAS), the fastest path, as the authors' code",
    "                     emulates the method. mulfree: the method executed, no",
    "                     float multiply in the products: Wb*x and Wb'*delta by",
    "                     table lookups and adds from packed sign (and zero) masks",
    "                     (convolutions: over each window), Q(x)'*delta by",
    "                     exponent adds; one multiply by H per output remains, and",
    "                     batch norm, the loss and the update multiply as before.",
    "                     Needs --weights other than fp32 (synapse: N <= 32) and",
    "                     --qb. Same results as default up to the order of float",
    "                     additions. Kernel variant:",
    "                     FEWMUL_KERNELS=ref|avx2|avx512|neon, else the best",
    "                     this CPU has (docs/mulfree.md)",
    "",
    "Training:",
    "  --epochs N         epochs, 1..1000000 (default 20)",
    "  --batch B          minibatch size, 1..65536 (default 200)",
    "  --opt sgd|adam|bop optimizer (default sgd); bop (Helwegen et al. 2019,",
    "                     --weights bc-det only): the weights are their bits, each",
    "                     flipped when its momentum passes --bop-threshold with",
    "                     its sign; no fp32 latent weights; batch norm by Adam",
    "  --bop-gamma X      bop's momentum rate, m = (1-X)*m + X*g, 0 < X < 1",
    "                     (default 0.001)",
    "  --bop-threshold X  bop's flip threshold on |m|, >= 0 (default 1e-6)",
    "  --bop-gamma-final X",
    "                     bop's gamma after the last epoch, 0 < X < 1, reached by",
    "                     exponential decay per epoch as the rate (default: none)",
    "  --latent fp32|bf16 the learning state kept per weight between steps (the",
    "                     latent weights of a quantized mode, bop's momenta):",
    "                     fp32 (default), or bf16 with stochastic rounding after",
    "                     every update (needs a quantized --weights or bop)",
    "  --fuse             fold each dense layer's update into the backward pass,",
    "                     a tile of weight-gradient rows at a time, and draw the",
    "                     next step's quantized weights from the fresh latent",
    "                     ones there: the same bits as without, no whole dW, and",
    "                     the latent weights read and written once a step (bop",
    "                     always fuses; not in an MPI run, whose ranks sum dW",
    "                     first). A resumed run may add or drop it",
    "  --lr X             initial learning rate, > 0 (default sgd 0.3, adam and",
    "                     bop 0.003; bop's is batch norm's Adam)",
    "                     and a normal 32-bit float (1.2e-38 to 3.4e38), as are",
    "                     --lr-final, --momentum, --dropout and --synapse-range:",
    "                     training computes with floats",
    "  --lr-final X       rate after the last epoch, > 0, reached by exponential",
    "                     decay per epoch (default sgd 0.01, adam and bop 2e-6)",
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
    "  --preproc-cache MIB",
    "                     gcn-* images are preprocessed once per run and kept as",
    "                     floats when they take at most MIB MiB (default 1024;",
    "                     0: never), else at each batch load; 0..1048576",
    "  --dropout P        drop probability of hidden units, 0 <= P < 1 (default 0)",
    "  --bn-stats paper|running",
    "                     batch-norm inference statistics: recomputed after each",
    "                     epoch as the authors' code (default), or moving averages",
    "  --valid N          validation images taken from the end of the training",
    "                     set, N >= 0 (default: the paper's split, 10000 for",
    "                     MNIST-like data, 5000 for cifar10, 6000 for svhn; 0:",
    "                     none). With the default 6000, svhn's validation images are",
    "                     400 per class from train_32x32 and 200 from extra_32x32",
    "                     (600 from train_32x32 without extra), as pylearn2's",
    "                     split, moved to the end of the training set",
    "  --train-limit N    use only the first N remaining training images (0: all)",
    "  --seed S           random seed, 0..18446744073709551615 (default 1234)",
    "  --threads T        worker threads, 1..1024 (default: all cores; in an MPI",
    "                     run, the machine's cores divided by its ranks, each);",
    "                     the results do not depend on it, resumed or not",
    "",
    "Data-parallel training (mpirun -np N fewmul train ...; docs/distributed.md):",
    "  Each global minibatch of --batch images is shared by the N ranks, batch",
    "  norm takes the statistics of the whole minibatch, gradients are summed",
    "  every step: the result is one process's, up to float rounding. Rank 0",
    "  alone prints and writes --out, --state, --log, --json and checkpoints.",
    "  A rank that fails stops every other (exit 7, naming it). Every rank must",
    "  be given the same options. With --ledger, the bytes between ranks are the",
    "  ledger's network level. Open MPI as root needs --allow-run-as-root.",
    "  --compress none|int8|pow2",
    "                     the gradient exchange: fp32 (default), or one byte per",
    "                     value, 8-bit integers or signed powers of two, with",
    "                     error feedback (a quarter of the bytes); no effect in",
    "                     one process",
    "",
    "Evaluation:",
    "  --eval-every N     measure validation and test error every N epochs and",
    "                     after the last, N >= 1 (default 1)",
    "  --no-eval          measure no validation or test error (benchmarks)",
    "",
    "Output:",
    "  --log FILE         write one JSON object per epoch to FILE (JSON Lines;",
    "                     replaced once the run's checks have passed, so a run",
    "                     that fails at once leaves it whole; flushed every epoch)",
    "  --json             print the result as one JSON object, the last line of",
    "                     standard output, instead of the human summary",
    "  --quiet            no progress bar and no per-epoch lines",
    "  --ledger           record the run's work (operations and bytes per layer and",
    "                     phase, training steps and evaluation passes) and print it,",
    "                     priced with --table, after the summary; with --json, under",
    "                     the keys \"ledger\" and \"table\" ('fewmul help energy')",
    "  --table NAME|FILE  energy table that prices the ledger: a built-in name",
    "                     (default horowitz45; 'fewmul energy --list-tables') or a",
    "                     table file; implies --ledger. A missing, unreadable or",
    "                     malformed table fails (exit 3, 5 or 4) before any data",
    "                     is read",
    "  -h, --help         show this help",
    "",
    "Checkpoints (docs/checkpoint-format.md):",
    "  --checkpoint FILE  keep the whole state of the run in FILE: weights,",
    "                     optimizer state, batch-norm statistics, data order and",
    "                     position, learning rate, best epoch and its weights,",
    "                     the ledger; written at the end of every epoch, at",
    "                     --checkpoint-every, and when SIGINT or SIGTERM stops",
    "                     the run, each time to a temporary file beside it, synced",
    "                     and renamed, so that a crash, a kill or a full disk",
    "                     leaves the previous checkpoint whole. A checkpoint that",
    "                     cannot be written ends the run (exit 5), keeping the one",
    "                     before. The run locks FILE.lock: a second run with the",
    "                     same checkpoint exits 5 at once, naming the first's pid",
    "  --checkpoint-every N|Ns|Nm|Nh",
    "                     also write it every N training steps, or every N",
    "                     seconds, minutes or hours (needs --checkpoint or",
    "                     --resume)",
    "  --resume FILE      continue the run paused in FILE (a --checkpoint): same",
    "                     configuration, same data (checked: counts and CRCs),",
    "                     and, with the same --threads, the same bits as the run",
    "                     would have ended with uninterrupted. --data defaults",
    "                     to the spec the run recorded; checkpoints go on to FILE",
    "                     unless --checkpoint names another; a run that kept a",
    "                     ledger keeps it. Only --data, --out, --state, --export,",
    "                     --log, --json, --quiet, --ledger, --table, --threads,",
    "                     --preproc-cache, --checkpoint and --checkpoint-every",
    "                     may be given with it (exit 2 for any other). The --log",
    "                     file keeps the lines of the epochs the checkpoint",
    "                     finished and grows from there",
    "",
    "Unless --quiet, each epoch prints a line on standard error, and a progress",
    "bar is drawn while standard error is a terminal:",
    "  epoch 3/20  loss 0.1234  train 2.10%  valid 1.90%  test 2.00%  best 1.90%@3",
    "  lr 0.2800  8.2 s  6100 img/s",
    "SIGINT (Ctrl-C) or SIGTERM stops training after the minibatch it is in;",
    "with --checkpoint the run's state is written first. fewmul then says so in",
    "one line, 'fewmul: interrupted by SIGINT in epoch 3/20 after 12000 of 50000",
    "images; checkpoint saved to FILE; continue with ...' (or 'nothing saved'),",
    "and exits with status 130 (SIGINT) or 143 (SIGTERM). A second signal ends",
    "the process at once; the previous checkpoint then stays whole.",
    "",
    "JSON keys: test_error_pct, valid_error_pct, best_epoch, epochs,",
    "train_seconds, train_images_per_s, total_seconds, final_train_loss, arch,",
    "model, weights, synapse_levels, qb, qb_error, qb_emin, qb_emax,",
    "qb_conv_emin, qb_conv_emax, batch, seed, threads, params, data, preproc, valid, lr,",
    "lr_final, opt, acts, exec, kernels, ldexp_fallbacks, latent (with --latent",
    "bf16 only), fuse (with --fuse only), bop_gamma, bop_gamma_final and",
    "bop_threshold (with --opt bop only), out,",
    "out_bytes, bits_per_weight, out_weights, export, state, checkpoint,",
    "resumed_from (null when absent or not measured), ranks, compress (null",
    "for one process); with --ledger also table",
    "and ledger.",
    "",
    "Exit status: 0 success; 1 FEWMUL_KERNELS invalid (with --out), or training",
    "diverged with --out or --state (the weights are not finite: neither is",
    "written, the result is printed and the loss shown as nan); 2 usage",
    "error (bad option or value, options that conflict, two naming one file, a",
    "changed option with --resume); 3 a data, table or checkpoint file or folder",
    "not found; 4 bad input: a malformed, truncated or unsupported file, data",
    "that do not fit each other or the checkpoint's run; 5 I/O error: a file",
    "that cannot be read or written (permission, disk full, not a regular file),",
    "also a log or checkpoint, or a checkpoint another run holds; 6 out of",
    "memory; 7 another rank of an MPI run failed (the message names it); 130",
    "interrupted by SIGINT, 143 by SIGTERM. docs/errors.md lists the cases.",
    "",
    "Examples:",
    "  fewmul train --weights bc --qb --epochs 50 --out bc-qb.fmp --state bc-qb.fm",
    "  fewmul train --weights bc-det --acts binary --out xnor.fmp",
    "  fewmul train --data mnist:/data/mnist --arch mlp:512,512 --opt adam --json",
    "  fewmul train --weights tc --qb --epochs 500 --checkpoint tc.fmc \\",
    "               --checkpoint-every 10m --log tc.jsonl   (stopped, then:)",
    "  fewmul train --resume tc.fmc --log tc.jsonl --state tc.fm",
    "  mpirun -np 4 fewmul train --weights bc --qb --compress int8 --log bc.jsonl",
    NULL};

/* ---- progress, epochs, interruption -------------------------------------- */

/* The signal (SIGINT or SIGTERM) that asked the run to stop, polled by
 * fm_callbacks.should_stop after every minibatch; 0 while none has. */
static volatile sig_atomic_t g_signal;

static void on_stop_signal(int sig)
{
    g_signal = sig;
}

/* SA_RESETHAND: a second signal ends the process at once if the first goes
 * unanswered (a checkpoint on a slow disk, say); the checkpoint on disk is
 * then the one before, whole. */
static void set_stop_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = handler == SIG_DFL ? 0 : (int)SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct run_state {
    const train_opts *o;
    FILE *log;
    int log_errno;       /* nonzero once writing the log failed: training stops */
    int bar;             /* draw the progress bar */
    int bar_drawn;       /* characters of the bar now on screen */
    double last_draw;
    double best_valid;   /* best validation error so far, -1 before any */
    int diverged_epoch;  /* the first epoch whose loss was not finite (0: none) */
    double diverged_loss; /* that loss: nan or inf */
    int checkpoints;     /* written so far, and where the last one stands */
    fm_checkpoint_info last_checkpoint;
} run_state;

static void bar_clear(run_state *st)
{
    if (st->bar_drawn > 0) {
        fprintf(stderr, "\r%*s\r", st->bar_drawn, "");
        fflush(stderr);
        st->bar_drawn = 0;
    }
}

/* A loss as the lines show it: "0.1234", "3.1e+17" when large, "nan" or
 * "inf" when it diverged (never "-nan"). */
static const char *format_loss(char *buf, size_t cap, double loss)
{
    if (isnan(loss))
        snprintf(buf, cap, "nan");
    else if (isinf(loss))
        snprintf(buf, cap, "%sinf", loss < 0 ? "-" : "");
    else
        snprintf(buf, cap, fabs(loss) < 1e6 ? "%.4f" : "%.4g", loss);
    return buf;
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

    char line[256], loss[32];
    size_t len = 0;
    append(line, sizeof line, &len, "epoch %d/%d [%s] %3d%%  %.0f img/s  loss %s  ETA %s",
           p->epoch, p->epochs, bar, (int)(frac * 100), p->images_per_s,
           format_loss(loss, sizeof loss, p->loss), eta);
    int pad = st->bar_drawn > (int)len ? st->bar_drawn - (int)len : 0;
    fprintf(stderr, "\r%s%*s", line, pad, "");
    fflush(stderr);
    st->bar_drawn = (int)len + pad;
}

static void format_lr(char *buf, size_t cap, double lr)
{
    snprintf(buf, cap, lr >= 1e-3 && lr < 1e4 ? "%.4f" : "%.3e", lr);
}

/* "epoch 3/20  loss 0.1234  train 2.10%  valid 1.90%  test 2.00%  best 1.90%@3
 *  lr 0.2800  8.2 s  6100 img/s", leaving out what was not measured. */
static void print_epoch_line(const run_state *st, const fm_epoch_report *r)
{
    char line[512], lr[32], loss[32];
    size_t len = 0;
    format_lr(lr, sizeof lr, r->lr);
    append(line, sizeof line, &len, "epoch %d/%d  loss %s  train %.2f%%", r->epoch, r->epochs,
           format_loss(loss, sizeof loss, r->train_loss), r->train_error_pct);
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
    if (!isfinite(r->train_loss) && !st->diverged_epoch) {
        st->diverged_epoch = r->epoch;
        st->diverged_loss = r->train_loss;
    }
    bar_clear(st);
    if (!st->o->quiet)
        print_epoch_line(st, r);
    if (st->log && !st->log_errno)
        write_log_line(st, r);
}

static int should_stop(void *user)
{
    const run_state *st = user;
    return g_signal || st->log_errno;
}

static void on_checkpoint(const char *path, const fm_checkpoint_info *where, void *user)
{
    (void)path;
    run_state *st = user;
    st->checkpoints++;
    st->last_checkpoint = *where;
}

/* ---- the run ------------------------------------------------------------- */

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
            "%d epoch%s of batch %d, %s lr %s -> %s, %d threads",
            fm_model_describe(model), fm_model_param_count(model), o->data, fit, c->valid,
            test ? test->count : 0, c->epochs, c->epochs == 1 ? "" : "s", c->batch,
            choice_name(opt_choices, o->opt), lr, lr_final, threads_reported(c->threads));
    if (c->opt == FM_OPT_BOP && c->bop_gamma_final > 0.0)
        fprintf(stderr, " (the rate is batch norm's Adam; bop gamma %g -> %g, threshold %g)",
                c->bop_gamma, c->bop_gamma_final, c->bop_threshold);
    else if (c->opt == FM_OPT_BOP)
        fprintf(stderr, " (the rate is batch norm's Adam; bop gamma %g, threshold %g)", c->bop_gamma,
                c->bop_threshold);
    if (c->latent != FM_LATENT_FP32)
        fprintf(stderr, ", %s learning state", choice_name(latent_choices, o->latent));
    if (c->fuse)
        fprintf(stderr, ", update fused into the backward pass");
    if (o->ranks > 1)
        fprintf(stderr, " on each of %d MPI ranks (gradients exchanged %s)", o->ranks,
                o->compress == FM_COMPRESS_NONE ? "as fp32"
                                                : o->compress == FM_COMPRESS_POW2
                                                      ? "as powers of two"
                                                      : "as 8-bit integers");
    fputc('\n', stderr);
}

/* "fewmul: resuming run.fmc: epoch 3/20, 12000 of 50000 images done (step 660)". */
static void print_resume(const char *path, const fm_checkpoint_info *at)
{
    if (at->epoch > at->epochs)
        fprintf(stderr, "fewmul: resuming %s: all %d epochs done (step %" PRIu64 ")\n", path,
                at->epochs, at->step);
    else
        fprintf(stderr, "fewmul: resuming %s: epoch %d/%d, %ld of %ld images done (step %" PRIu64 ")\n",
                path, at->epoch, at->epochs, at->images_done, at->images_total, at->step);
}

/* What train wrote; a file is NULL when not asked for or not written. */
typedef struct saved_files {
    const char *out, *state;
    const char *checkpoint; /* the last checkpoint written, if any */
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
/* The run's result object (train --json, and the last line of --log) as the
 * fields of the object open in w; returns nonzero if the ledger could not be
 * priced. */
static int write_result_fields(json_writer *wp, const train_opts *o, const fm_model *model,
                               const fm_result *r, const saved_files *saved,
                               const fm_ledger *ledger, const fm_energy_table *table)
{
    int bad = 0;
    const fm_config *c = &o->cfg;
    json_writer w = *wp;
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
    json_int(&w, "ranks", o->ranks > 1 ? o->ranks : 1);
    json_string(&w, "compress", o->ranks > 1 ? choice_name(compress_choices, o->compress) : NULL);
    json_uint(&w, "params", (unsigned long long)fm_model_param_count(model));
    json_string(&w, "data", o->data);
    json_string(&w, "preproc", choice_name(preproc_choices, o->preproc));
    json_int(&w, "valid", c->valid);
    json_number(&w, "lr", c->lr);
    json_number(&w, "lr_final", c->lr_final);
    json_string(&w, "opt", choice_name(opt_choices, o->opt));
    json_bop(&w, c);
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
    json_string(&w, "checkpoint", saved->checkpoint);
    json_string(&w, "resumed_from", o->resume);
    if (ledger) {
        json_table(&w, "table", table);
        json_ledger(&w, "ledger", ledger, table, 1, &bad);
    }
    *wp = w;
    return bad;
}

static int print_train_json(const train_opts *o, const fm_model *model, const fm_result *r,
                            const saved_files *saved, const fm_ledger *ledger,
                            const fm_energy_table *table)
{
    json_writer w;
    json_begin(&w, stdout);
    int bad = write_result_fields(&w, o, model, r, saved, ledger, table);
    json_end(&w);
    return bad;
}

/* A finished run's --log ends with {"result": R}, R the --json object, so a
 * log alone is enough for `fewmul report`. */
static int write_log_result(FILE *log, const train_opts *o, const fm_model *model,
                            const fm_result *r, const saved_files *saved,
                            const fm_ledger *ledger, const fm_energy_table *table)
{
    json_writer w;
    json_begin(&w, log);
    json_open(&w, "result", '{');
    int bad = write_result_fields(&w, o, model, r, saved, ledger, table);
    json_close(&w, '}');
    json_end(&w);
    if (fflush(log) != 0 || ferror(log))
        return failure_as(FM_EIO, "writing log file '%s': %s", o->log, strerror(errno ? errno : EIO));
    return bad ? library_failure() : 0;
}

/* "the loss diverged (nan) in epoch 3", or "" when it has not (a loss that
 * came back to finite numbers has not). */
static const char *divergence(char *buf, size_t cap, const run_state *st, const fm_result *r)
{
    char loss[32];
    buf[0] = '\0';
    if (st->diverged_epoch > 0 && !isfinite(r->final_train_loss))
        snprintf(buf, cap, "the loss diverged (%s) in epoch %d",
                 format_loss(loss, sizeof loss, st->diverged_loss), st->diverged_epoch);
    return buf;
}

static void print_train_summary(const fm_result *r, const saved_files *saved, const run_state *st)
{
    char loss[32], diverged[96];
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
    printf("%d epoch%s: %.1f s of training (%.0f img/s), %.1f s in all, final loss %s%s%s\n",
           r->epochs, r->epochs == 1 ? "" : "s", r->train_seconds, r->train_images_per_s,
           r->total_seconds, format_loss(loss, sizeof loss, r->final_train_loss),
           divergence(diverged, sizeof diverged, st, r)[0] ? "; " : "", diverged);
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
        return failure_as(FM_EUNSUPPORTED, "%s: training images of %dx%dx%d values are too large", o->data,
                       train->height, train->width, train->channels);
    if (input_dim_of(test) != *input_dim)
        return failure_as(FM_EMISMATCH, "%s: test images are %dx%dx%d but training images %dx%dx%d", o->data,
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

typedef struct train_run {
    fm_images train, test;
    fm_model *model;
    FILE *log;
    fm_ledger *ledger;      /* --ledger */
    fm_energy_table *table; /* --table, opened before training */
    fm_checkpoint *resume;  /* --resume: the paused run (its config is the run's) */
    cli_ranks ranks;        /* an MPI run's ranks (one, outside MPI) */
    file_lock lock;         /* on --checkpoint, held by rank 0 for the whole run */
} train_run;

static void train_run_free(train_run *t)
{
    fm_ledger_free(t->ledger);
    fm_energy_table_free(t->table);
    fm_images_free(&t->train);
    fm_images_free(&t->test);
    fm_model_free(t->model);
    fm_checkpoint_free(t->resume);
    if (t->log)
        fclose(t->log);
    unlock_checkpoint(&t->lock);
}

/* The options a resumed run may be given: where its data are, what it
 * writes and how it reports, its threads and the memory of its preprocessed
 * inputs. Any other would change the run. */
static const char *const resume_options[] = {
    "data", "out", "state", "export", "log", "json", "quiet", "ledger", "table", "threads",
    "fuse", "checkpoint", "checkpoint-every", "resume", "compress", "preproc-cache", NULL};

/* The first option on the line (after a successful parse) that a resumed run
 * may not be given, or NULL. */
static const char *option_changing_run(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            continue; /* a value */
        size_t len = strcspn(a + 2, "=");
        int allowed = 0;
        for (const char *const *r = resume_options; *r && !allowed; r++)
            allowed = strlen(*r) == len && strncmp(*r, a + 2, len) == 0;
        if (!allowed)
            return a;
    }
    return NULL;
}

/* --resume: the checkpoint's run becomes the options' configuration (threads
 * aside, when given), its data spec the data unless --data is given, and its
 * ledger the run's --ledger. Checkpoints go on to the same file unless
 * --checkpoint names another. */
static int take_resumed_run(train_opts *o, train_run *t, int threads_given, int data_given)
{
    if (fm_checkpoint_load(o->resume, &t->resume) != FM_OK)
        return library_failure();
    fm_checkpoint_info at;
    fm_checkpoint_position(t->resume, &at);
    const int threads = o->cfg.threads, fuse = o->cfg.fuse;
    train_opts_take_config(o, fm_checkpoint_config(t->resume));
    if (threads_given)
        o->cfg.threads = threads;
    o->cfg.fuse = fuse; /* not the run's: how it runs, as threads */
    if (!data_given) {
        o->data = fm_checkpoint_data(t->resume);
        if (!o->data[0])
            return usage_error("--resume: %s records no data spec; give --data", o->resume);
        if (check_data_spec(o->data) != 0)
            return CLI_USAGE;
    }
    if (o->ledger && !at.has_ledger)
        return usage_error("--%s: the run in %s kept no energy ledger, so one could not cover "
                           "the whole run", o->table ? "table" : "ledger", o->resume);
    o->ledger = at.has_ledger;
    if (!o->checkpoint)
        o->checkpoint = o->resume;
    if (!o->quiet)
        print_resume(o->resume, &at);
    return 0;
}

/* A JSON Lines log line's epoch ({"epoch": N, ...}), or -1. */
static long log_line_epoch(const char *line)
{
    static const char key[] = "{\"epoch\": ";
    if (strncmp(line, key, sizeof key - 1) != 0)
        return -1;
    char *end;
    long epoch = strtol(line + sizeof key - 1, &end, 10);
    return end > line + sizeof key - 1 && *end == ',' ? epoch : -1;
}

/* The lines of a log that a resumed run keeps: those of finished epochs. */
typedef struct kept_log {
    FILE *old; /* NULL: there was no log */
    int epochs_done;
} kept_log;

static int write_kept_lines(FILE *f, void *user)
{
    const kept_log *k = user;
    char line[8192];
    while (k->old && fgets(line, sizeof line, k->old)) {
        size_t n = strlen(line);
        long epoch = log_line_epoch(line);
        if (n > 0 && line[n - 1] == '\n' && epoch >= 1 && epoch <= k->epochs_done)
            fputs(line, f);
    }
    return k->old && ferror(k->old) ? (errno ? errno : EIO) : 0;
}

/* The previous log, read by a resumed run (fm_open_input): without blocking
 * on a FIFO that may have been put at the name since the options were
 * checked, and refusing a device. *old stays NULL when there is none. */
static int open_old_log(const char *path, FILE **old)
{
    *old = NULL;
    int fd = fm_open_input(path, 0);
    if (fd == FM_ENOENT)
        return 0;
    if (fd < 0)
        return library_failure();
    if (!(*old = fdopen(fd, "r"))) {
        int e = errno;
        close(fd);
        return failure_as(FM_EIO, "cannot read log file '%s': %s", path, strerror(e));
    }
    return 0;
}

/* --log, once the run's own checks have passed (so that a run that fails at
 * once leaves the log there before as it was): a new file, written through a
 * temporary file and renamed over LOG (fm_write_file_atomic_open), then kept
 * open and appended to every epoch. Nothing planted at the name is written
 * through: a symbolic or hard link there is replaced, a device or FIFO
 * refused. A resumed run's log keeps the lines of the epochs the checkpoint
 * has finished; whatever the interrupted run wrote after it goes (a torn
 * last line included), and a crash while it is rewritten loses nothing. */
static int open_log(const char *path, int resumed, int epochs_done, FILE **out)
{
    kept_log kept = {NULL, epochs_done};
    int err = resumed ? open_old_log(path, &kept.old) : 0;
    if (err)
        return err;
    fm_write_failure failed;
    int rc = fm_write_file_atomic_open(path, write_kept_lines, &kept, &failed, out);
    if (kept.old)
        fclose(kept.old);
    if (rc == FM_OK)
        return 0;
    switch (failed.step) {
    case FM_WRITE_STEP_CREATE:
        return failure_as(FM_EIO, "cannot create log file '%s': %s", path,
                          strerror(failed.sys_errno));
    case FM_WRITE_STEP_WRITE:
    case FM_WRITE_STEP_RENAME:
        return failure_as(FM_EIO, "%s log file '%s': %s", resumed ? "rewriting" : "writing",
                          path, strerror(failed.sys_errno));
    case FM_WRITE_STEP_TARGET:
        return failure_as(FM_EIO, "--log: %s", fm_last_error());
    default:
        return library_failure();
    }
}

/* Ended by SIGINT or SIGTERM: says what was kept and how to go on. In an
 * MPI run every rank stops after the same minibatch when any rank got a
 * signal (a scheduler's cancel signals them all; a Ctrl-C may reach one):
 * the ranks learn which signal it was (SIGTERM over SIGINT), each exits with
 * its status, and rank 0 alone, which wrote the checkpoint, says so. */
static int report_interruption(const train_opts *o, const run_state *st, const cli_ranks *ranks,
                               int sig)
{
    if (ranks->rank > 0)
        return sig == SIGTERM ? CLI_TERMINATED : CLI_INTERRUPTED;
    const char *name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    fflush(stdout);
    FILE *err = cli_err_file();
    if (o->checkpoint && st->checkpoints > 0) {
        const fm_checkpoint_info *at = &st->last_checkpoint;
        fprintf(err, "fewmul: interrupted by %s in epoch %d/%d after %ld of %ld images; "
                     "checkpoint saved to %s; continue with 'fewmul train --resume %s'\n",
                name, at->epoch, at->epochs, at->images_done, at->images_total, o->checkpoint,
                o->checkpoint);
    } else {
        fprintf(err, "fewmul: interrupted by %s; nothing saved (--checkpoint FILE keeps a run's "
                     "progress)\n", name);
    }
    return sig == SIGTERM ? CLI_TERMINATED : CLI_INTERRUPTED;
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
 * first failure's message goes to err and its code to *code. */
static void save_outputs(const train_opts *o, const train_run *t, saved_files *saved, char *err,
                         size_t cap, int *code)
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
            *code = fm_last_error_code();
        }
        fm_deploy_free(d);
    }
    if (o->state) {
        if (fm_model_save(t->model, o->state) == FM_OK) {
            saved->state = o->state;
        } else if (!err[0]) {
            snprintf(err, cap, "%s", fm_last_error());
            *code = fm_last_error_code();
        }
    }
}

/* The weights to save are not finite: training diverged. Nothing is
 * written (a packed model could not hold them; a training state of them is
 * no model); the message names the files and the reason, and the status is
 * 1, a failure of the run (FM_EINVAL's). */
static int not_finite(const train_opts *o, const run_state *st, const fm_result *r, char *err,
                      size_t cap)
{
    char why[512], diverged[96], files[400];
    snprintf(why, sizeof why, "%s", fm_last_error());
    divergence(diverged, sizeof diverged, st, r);
    if (o->out && o->state)
        snprintf(files, sizeof files, "--out %s and --state %s", elided(o->out), elided(o->state));
    else
        snprintf(files, sizeof files, "--%s %s", o->out ? "out" : "state",
                 elided(o->out ? o->out : o->state));
    snprintf(err, cap, "%s not written: training diverged, the trained weights are not finite "
                       "(%s%s%s); a smaller --lr may help",
             files, why, diverged[0] ? "; " : "", diverged);
    return FM_EINVAL;
}

/* Before training: the table, the ledger, the data, the model, then the log. */
static int prepare(const train_opts *o, train_run *t, fm_checkpoint_info *at)
{
    /* the table first: a bad one fails before any data is read */
    int rc = 0;
    if (o->ledger) {
        if ((rc = open_table(o->table, &t->table)) != 0)
            return rc;
        if (fm_ledger_create(&t->ledger) != FM_OK)
            return library_failure();
    }
    if (t->resume)
        fm_checkpoint_position(t->resume, at);
    int32_t train_part = 0;
    if (fm_data_load_parts(o->data, &t->train, &t->test, &train_part) != FM_OK)
        return library_failure();
    int input_dim = 0, classes = 0;
    rc = check_data(o, &t->train, &t->test, &input_dim, &classes);
    if (rc)
        return rc;
    /* the data set's own validation split (SVHN's is class-balanced); with
     * the same --valid and --seed a resumed run splits its data as the run
     * it continues did */
    fm_data_kind kind = FM_DATA_FASHION;
    if (fm_data_kind_of(o->data, &kind) != FM_OK ||
        fm_data_split_validation(kind, &t->train, train_part, o->cfg.valid, classes, o->cfg.seed) != FM_OK)
        return library_failure();
    /* the architecture is checked against the images' shape only here, so a
     * kernel or pool larger than its map is still the options' fault */
    if (t->resume)
        rc = fm_checkpoint_model(t->resume, &t->model);
    else
        rc = fm_model_create_image(&o->cfg, t->train.height, t->train.width, t->train.channels,
                                   classes, &t->model);
    if (rc == FM_EINVAL && !t->resume)
        return usage_error("%s", fm_last_error());
    if (rc != FM_OK)
        return library_failure();
    if (o->out && (rc = check_deployable(o, t)) != 0)
        return rc;
    /* the last step: every check before it leaves the previous log whole */
    if (o->log && (rc = open_log(o->log, t->resume != NULL, at->epoch - 1, &t->log)) != 0)
        return rc;
    if (!o->quiet)
        print_plan(o, t->model, &t->train, &t->test);
    return 0;
}

/* Everything after the options are known: data, model, training, reports.
 * Every rank of an MPI run trains; rank 0 alone writes and prints. */
static int train_with(const train_opts *o, train_run *t)
{
    fm_checkpoint_info at = {0};
    int rc = prepare(o, t, &at);
    /* a rank that could not start stops the others, with its message */
    if ((rc = ranks_agree(&t->ranks, rc)) != 0)
        return rc;
    run_state st = {.o = o, .log = t->log, .best_valid = at.best_valid_error_pct};
    st.bar = !o->quiet && isatty(STDERR_FILENO);
    fm_callbacks cb = {.on_progress = on_progress,
                       .on_epoch = on_epoch,
                       .should_stop = should_stop,
                       .user = &st,
                       .ledger = t->ledger,
                       .checkpoint = o->checkpoint,
                       .checkpoint_every = o->checkpoint_every,
                       .checkpoint_seconds = o->checkpoint_seconds,
                       .data_spec = o->data,
                       .on_checkpoint = on_checkpoint,
                       .resume = t->resume,
                       .preproc_cache_mib = o->preproc_cache > 0 ? o->preproc_cache : -1,
                       .comm = t->ranks.mpi ? &t->ranks.comm : NULL};
    fm_result result;
    memset(&result, 0, sizeof result);
    set_stop_signals(on_stop_signal);
    rc = fm_train(t->model, &t->train, &t->test, &o->cfg, &cb, &result);
    set_stop_signals(SIG_DFL);
    bar_clear(&st);
    /* the signal that stopped an MPI run may have reached another rank only;
     * every rank asks, whatever stopped it (rank 0's log too) */
    int sig = g_signal;
    if (rc == FM_ECANCELED && t->ranks.mpi)
        sig = ranks_max(&t->ranks, sig);
    if (st.log_errno)
        return failure_as(FM_EIO, "writing log file '%s': %s", o->log, strerror(st.log_errno));
    if (rc == FM_ECANCELED && sig)
        return report_interruption(o, &st, &t->ranks, sig);
    if (rc == FM_EMISMATCH && t->resume)
        return failure_as(rc, "%s: %s", o->resume, fm_last_error());
    if (rc == FM_EPEER && ranks_failure())
        return failure_as(rc, "%s (%s)", fm_last_error(), ranks_failure());
    if (rc != FM_OK)
        return library_failure();
    if (t->ranks.rank > 0)
        return 0; /* rank 0 saves and reports the run, which every rank has */

    /* A failed save still reports the training, then fails: the numbers of a
     * long run are worth having even when the disk is full. */
    saved_files saved;
    memset(&saved, 0, sizeof saved);
    /* the file that holds the run's last state */
    saved.checkpoint = st.checkpoints > 0 ? o->checkpoint : o->resume;
    char save_error[1024] = "";
    int save_code = FM_OK;
    if ((o->out || o->state) && fm_model_check_finite(t->model) != FM_OK)
        save_code = not_finite(o, &st, &result, save_error, sizeof save_error);
    else
        save_outputs(o, t, &saved, save_error, sizeof save_error, &save_code);
    if (t->log && (rc = write_log_result(t->log, o, t->model, &result, &saved, t->ledger,
                                         t->table)) != 0)
        return rc;
    if (o->json) {
        if (print_train_json(o, t->model, &result, &saved, t->ledger, t->table))
            rc = library_failure();
    } else {
        print_train_summary(&result, &saved, &st);
        if (t->ledger)
            rc = print_run_ledger(t->ledger, t->table);
    }
    if (save_error[0])
        return failure_as(save_code, "%s", save_error);
    return rc;
}

/* The options, checked as far as they can be without reading a file. */
int parse_train(int argc, char **argv, train_opts *o)
{
    train_opts_default(o);
    int rc = parse_options(train_options, o, &o->help, argc, argv, 2, NULL);
    if (rc || o->help)
        return rc;
    train_opts_finish(o);
    if ((rc = train_opts_check_bop(o)) != 0)
        return rc;
    if (o->table)
        o->ledger = 1; /* --table prices a ledger: it implies --ledger */
    if ((rc = check_data_spec(o->data)) != 0)
        return rc;
    if (o->out && o->state && strcmp(o->out, o->state) == 0)
        return usage_error("--out and --state name the same file '%s'", o->out);
    const char *files[] = {o->out, o->state, o->log};
    for (int i = 0; i < 3; i++)
        if (o->checkpoint && files[i] && strcmp(o->checkpoint, files[i]) == 0)
            return usage_error("--checkpoint and --%s name the same file '%s'",
                               i == 0 ? "out" : i == 1 ? "state" : "log", o->checkpoint);
    if ((o->checkpoint_every || o->checkpoint_seconds) && !o->checkpoint && !o->resume)
        return usage_error("--checkpoint-every needs --checkpoint FILE (or --resume FILE)");
    if (o->resume) {
        const char *changing = option_changing_run(argc, argv);
        if (changing)
            return usage_error("%.*s cannot be given with --resume: a resumed run keeps the "
                               "configuration it was started with",
                               (int)strcspn(changing, "="), changing);
        for (int i = 0; i < 3; i++)
            if (files[i] && strcmp(o->resume, files[i]) == 0)
                return usage_error("--resume and --%s name the same file '%s'",
                                   i == 0 ? "out" : i == 1 ? "state" : "log", o->resume);
    }
    if (fm_config_check(&o->cfg) != FM_OK)
        return usage_error("%s", fm_last_error());
    return CLI_OK;
}

/* ---- the files of a run ---------------------------------------------------- */

/* One of the data set's files against the outputs (fm_data_files). */
typedef struct outputs_and_data {
    const named_path *outputs;
    int n, rc;
} outputs_and_data;

static int refuse_data_file(const char *path, void *user)
{
    outputs_and_data *c = user;
    const named_path data = {"--data", path};
    for (int i = 0; i < c->n && !c->rc; i++)
        c->rc = refuse_same_file(&c->outputs[i], &data);
    return c->rc;
}

static int builtin_table(const char *name)
{
    for (int i = 0; fm_energy_table_builtin(i); i++)
        if (strcmp(name, fm_energy_table_builtin(i)) == 0)
            return 1;
    return 0;
}

/* Before anything is opened for writing (the run's rank 0, which alone
 * writes): no two outputs, and no output and input, may be one file by any
 * spelling (exit 2), the --checkpoint of a resumed run being the one
 * exception; no output may be a device, a FIFO or a folder (exit 5). */
static int check_run_files(const train_opts *o)
{
    /* a resumed run's checkpoints go to the file it resumes unless told */
    const char *checkpoint_option = o->checkpoint == o->resume ? "--resume" : "--checkpoint";
    const named_path outputs[] = {{"--out", o->out},
                                  {"--state", o->state},
                                  {checkpoint_option, o->checkpoint},
                                  {"--log", o->log}};
    const int n = (int)(sizeof outputs / sizeof *outputs), checkpoint = 2;
    const named_path resume = {"--resume", o->resume};
    const named_path table = {"--table", o->table && !builtin_table(o->table) ? o->table : NULL};
    int rc = refuse_same_files(outputs, n);
    for (int i = 0; i < n && !rc; i++) {
        if (i != checkpoint) /* it goes on with the file it resumes */
            rc = refuse_same_file(&outputs[i], &resume);
        if (!rc)
            rc = refuse_same_file(&outputs[i], &table);
    }
    if (!rc) {
        outputs_and_data c = {outputs, n, 0};
        fm_data_files(o->data, refuse_data_file, &c);
        rc = c.rc;
    }
    return rc ? rc : check_outputs(outputs, n);
}

/* A rank's part in an MPI run: rank 0 writes the files and prints; the
 * others train in silence. Each rank takes its machine's share of the cores
 * unless --threads says otherwise. */
static void adopt_rank(train_opts *o, const cli_ranks *ranks)
{
    o->ranks = ranks->size;
    if (ranks->rank > 0) {
        o->quiet = 1;
        o->json = 0;
        o->log = o->out = o->state = NULL;
    }
}

static void share_cores(train_opts *o, const cli_ranks *ranks)
{
    if (ranks->mpi && o->cfg.threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int share = (int)(cores / (ranks->local_size > 0 ? ranks->local_size : 1));
        o->cfg.threads = share > 0 ? share : 1;
    }
}

/* Whether an option is on the line (after a successful parse). */
static int option_given(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, len) == 0 &&
            (argv[i][2 + len] == '\0' || argv[i][2 + len] == '='))
            return 1;
    return 0;
}

/* Recipes measured to fail are named when the run starts, not epochs later
 * (docs/method.md, "Which error"): the authors' shortcut error with Adam,
 * whose per-weight normalisation amplifies the error the shortcut makes. */
static void warn_unstable_recipe(const fm_config *c)
{
    if (c->qb && !c->qb_bn_jacobian && c->opt == FM_OPT_ADAM)
        fprintf(stderr, "fewmul train: warning: --qb-bn-shortcut with --opt adam is unstable "
                        "(paper-mlp on MNIST after 1 epoch: 10-25%% test error, against 4%% with "
                        "the exact error, the default); see docs/method.md\n");
}

int cmd_train(int argc, char **argv)
{
    train_opts o;
    int rc = parse_train(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        print_lines(stdout, train_help);
        return CLI_OK;
    }
    train_run t;
    memset(&t, 0, sizeof t);
    if ((rc = ranks_start(&t.ranks)) != 0)
        return rc;
    if (t.ranks.mpi)
        adopt_rank(&o, &t.ranks);
    if (o.resume)
        rc = take_resumed_run(&o, &t, option_given(argc, argv, "threads"),
                              option_given(argc, argv, "data"));
    share_cores(&o, &t.ranks);
    if (rc == 0 && t.ranks.rank == 0) {
        warn_unstable_recipe(&o.cfg);
        threads_reported(o.cfg.threads);
    }
    if (rc == 0 && t.ranks.rank == 0)
        rc = check_run_files(&o);
    /* rank 0 writes the checkpoints: it holds the lock for the whole run */
    if (rc == 0 && t.ranks.rank == 0 && o.checkpoint)
        rc = lock_checkpoint(o.checkpoint, &t.lock);
    t.ranks.comm.compress = (fm_compress)o.compress;
    if (rc == 0)
        rc = train_with(&o, &t);
    else
        rc = ranks_agree(&t.ranks, rc); /* the others wait for this rank's set-up */
    ranks_finish(&t.ranks);
    train_run_free(&t);
    return rc;
}
