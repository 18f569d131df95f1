"""_ffi.py: the C declarations of include/fewmul.h that the package calls,
given to cffi in ABI mode (no compiler at install time), and the search for
libfewmul.so. The declarations must follow the header, whose struct layouts
are the ABI (python/tests/test_fewmul.py checks fm_config_default's values
through this layout, which a shifted field would garble)."""
import os

from cffi import FFI

ffi = FFI()
# enums are passed as int: the C enums of fewmul.h all fit in int
ffi.cdef(
    r"""
typedef int fm_weight_mode, fm_optimizer, fm_loss, fm_preproc, fm_bn_stats, fm_scale,
    fm_acts, fm_exec, fm_op, fm_phase, fm_export_weights, fm_onnx_dialect, fm_data_kind,
    fm_compress;

const char *fm_strerror(int err);
const char *fm_last_error(void);
int fm_last_error_code(void);
int fm_threads_usable(int threads, int *wanted);
const char *fm_gemm_libraries(void);

typedef struct fm_images {
    int32_t count, height, width, channels;
    uint8_t *pixels;
    uint8_t *labels;
} fm_images;
int fm_idx_read(const char *images_path, const char *labels_path, fm_images *out);
int fm_data_load_parts(const char *spec, fm_images *train, fm_images *test, int32_t *train_part);
void fm_images_free(fm_images *images);
int fm_data_kind_of(const char *spec, fm_data_kind *kind);
int fm_data_defaults(fm_data_kind kind, fm_preproc *preproc, int *valid);
int fm_data_split_validation(fm_data_kind kind, fm_images *train, int32_t train_part, int valid,
                             int classes, uint64_t seed);

typedef struct fm_config {
    const char *arch;
    fm_weight_mode weights;
    int synapse_levels;
    double synapse_range;
    fm_scale scale;
    int qb;
    int qb_emin, qb_emax;
    int qb_conv_emin, qb_conv_emax;
    int qb_bn_jacobian;
    int test_quantized;
    int epochs;
    int batch;
    fm_optimizer opt;
    double lr;
    double lr_final;
    double momentum;
    fm_loss loss;
    fm_preproc preproc;
    int valid;
    int train_limit;
    double dropout;
    fm_acts acts;
    fm_bn_stats bn_stats;
    double bn_momentum;
    double bn_eps;
    int eval_every;
    int no_eval;
    uint64_t seed;
    int threads;
    fm_exec exec;
    double bop_gamma;
    double bop_threshold;
} fm_config;
void fm_config_default(fm_config *config);
int fm_parse_weights(const char *text, fm_config *config);
const char *fm_weights_name(fm_weight_mode mode);
void fm_config_learning_rates(const fm_config *config, double *lr, double *lr_final);
int fm_config_check(const fm_config *config);

typedef struct fm_model fm_model;
int fm_model_create(const fm_config *config, int input_dim, int classes, fm_model **out);
int fm_model_create_image(const fm_config *config, int height, int width, int channels,
                          int classes, fm_model **out);
int fm_model_input_shape(const fm_model *model, int *height, int *width, int *channels);
void fm_model_free(fm_model *model);
size_t fm_model_param_count(const fm_model *model);
const char *fm_model_describe(const fm_model *model);
int fm_model_input_dim(const fm_model *model);
int fm_model_classes(const fm_model *model);
long fm_model_weights(const fm_model *model, int index, float *dst, size_t capacity);
int fm_model_check_finite(const fm_model *model);
int fm_model_save(const fm_model *model, const char *path);
int fm_model_load(const char *path, fm_model **out);

typedef struct fm_progress {
    int epoch, epochs;
    long images_done, images_total;
    double loss;
    double images_per_s;
    double elapsed_s;
} fm_progress;
typedef struct fm_epoch_report {
    int epoch, epochs;
    double lr;
    double train_loss;
    double train_error_pct;
    double valid_error_pct;
    double test_error_pct;
    int best_epoch;
    double best_test_error_pct;
    double train_seconds;
    double epoch_seconds;
    double images_per_s;
} fm_epoch_report;
typedef struct fm_checkpoint fm_checkpoint;
typedef struct fm_checkpoint_info {
    int epoch, epochs;
    long images_done, images_total;
    uint64_t step;
    double lr;
    int best_epoch;
    double best_valid_error_pct, best_test_error_pct;
    int has_ledger;
} fm_checkpoint_info;
typedef struct fm_comm fm_comm;
typedef struct fm_ledger fm_ledger;
typedef struct fm_callbacks {
    void (*on_progress)(const fm_progress *progress, void *user);
    void (*on_epoch)(const fm_epoch_report *report, void *user);
    int (*should_stop)(void *user);
    void *user;
    fm_ledger *ledger;
    const char *checkpoint;
    long checkpoint_every;
    double checkpoint_seconds;
    const char *data_spec;
    void (*on_checkpoint)(const char *path, const fm_checkpoint_info *where, void *user);
    const fm_checkpoint *resume;
    const fm_comm *comm;
    long preproc_cache_mib;
} fm_callbacks;
typedef struct fm_result {
    double test_error_pct;
    double valid_error_pct;
    int best_epoch;
    int epochs;
    double train_seconds;
    double total_seconds;
    double train_images_per_s;
    double final_train_loss;
    const char *kernels;
    long ldexp_fallbacks;
} fm_result;
int fm_train(fm_model *model, const fm_images *train, const fm_images *test,
             const fm_config *config, const fm_callbacks *callbacks, fm_result *result);
int fm_checkpoint_load(const char *path, fm_checkpoint **out);
void fm_checkpoint_free(fm_checkpoint *checkpoint);
const fm_config *fm_checkpoint_config(const fm_checkpoint *checkpoint);
const char *fm_checkpoint_data(const fm_checkpoint *checkpoint);
int fm_checkpoint_position(const fm_checkpoint *checkpoint, fm_checkpoint_info *info);
int fm_checkpoint_model(const fm_checkpoint *checkpoint, fm_model **out);
int fm_model_evaluate(const fm_model *model, const fm_images *images, int threads,
                      double *error_pct);
int fm_model_predict(const fm_model *model, const fm_images *images, int first, int count,
                     int threads, uint8_t *classes);

const char *fm_op_name(fm_op op);
const char *fm_phase_name(fm_phase phase);
int fm_ledger_create(fm_ledger **out);
void fm_ledger_free(fm_ledger *ledger);
int fm_ledger_layers(const fm_ledger *ledger);
const char *fm_ledger_layer_name(const fm_ledger *ledger, int layer);
const char *fm_ledger_layer_shape(const fm_ledger *ledger, int layer);
uint64_t fm_ledger_ops(const fm_ledger *ledger, int layer, int phase, fm_op op);
int fm_ledger_tensors(const fm_ledger *ledger);
const char *fm_ledger_tensor_name(const fm_ledger *ledger, int tensor);
uint64_t fm_ledger_tensor_bytes(const fm_ledger *ledger, int tensor);
uint64_t fm_ledger_bytes(const fm_ledger *ledger, int layer, int phase, int tensor, int written);
uint64_t fm_ledger_passes(const fm_ledger *ledger, int phase, uint64_t *examples);
typedef struct fm_energy_table fm_energy_table;
const char *fm_energy_table_builtin(int index);
int fm_energy_table_open(const char *name_or_path, fm_energy_table **out);
void fm_energy_table_free(fm_energy_table *table);
const char *fm_energy_table_name(const fm_energy_table *table);
const char *fm_energy_table_source(const fm_energy_table *table);
const char *fm_energy_table_unit(const fm_energy_table *table);
double fm_energy_table_joules_per_unit(const fm_energy_table *table);
double fm_energy_table_op_cost(const fm_energy_table *table, fm_op op);
int fm_energy_table_levels(const fm_energy_table *table);
const char *fm_energy_table_level_name(const fm_energy_table *table, int level);
uint64_t fm_energy_table_level_capacity(const fm_energy_table *table, int level);
double fm_energy_table_level_cost(const fm_energy_table *table, int level, int write);
int fm_energy_table_has_network(const fm_energy_table *table);
double fm_energy_table_network_cost(const fm_energy_table *table, int receive);
typedef struct fm_energy {
    double op_cost[10];
    double compute;
    double communication;
    uint64_t read_bytes[8], written_bytes[8];
    double level_cost[8];
    uint64_t network_sent, network_received;
    double network_cost;
    double landauer_bits;
} fm_energy;
int fm_ledger_tensor_level(const fm_ledger *ledger, const fm_energy_table *table, int tensor);
int fm_ledger_price(const fm_ledger *ledger, const fm_energy_table *table, int layer, int phase,
                    fm_energy *out);
int fm_model_measure(fm_model *model, int batch, fm_ledger *train_step, fm_ledger *inference);
int fm_model_paper_mults(const fm_model *model, int batch, uint64_t *standard, uint64_t *method);

typedef struct fm_deploy fm_deploy;
int fm_deploy_from_model(const fm_model *model, fm_export_weights how, int height, int width,
                         int channels, fm_deploy **out);
int fm_deploy_save(const fm_deploy *deploy, const char *path);
int fm_deploy_load(const char *path, fm_deploy **out);
int fm_deploy_load_memory(const void *data, size_t size, fm_deploy **out);
void fm_deploy_free(fm_deploy *deploy);
int fm_deploy_input_shape(const fm_deploy *deploy, int *height, int *width, int *channels);
int fm_deploy_classes(const fm_deploy *deploy);
const char *fm_deploy_describe(const fm_deploy *deploy);
uint64_t fm_deploy_file_bytes(const fm_deploy *deploy);
int fm_deploy_set_kernels(fm_deploy *deploy, const char *name);
const char *fm_deploy_kernels(const fm_deploy *deploy);
const char *fm_kernels_name(int index);
int fm_deploy_predict(const fm_deploy *deploy, const uint8_t *pixels, int count, int threads,
                      uint8_t *classes, float *scores);
int fm_deploy_predict_f32(const fm_deploy *deploy, const float *pixels, int count, int threads,
                          uint8_t *classes, float *scores);
typedef struct fm_export_onnx_info {
    uint64_t file_bytes;
    int64_t nodes;
    int64_t weights;
} fm_export_onnx_info;
int fm_onnx_available(void);
int fm_deploy_export_onnx(const fm_deploy *deploy, const char *path, fm_onnx_dialect dialect,
                          fm_export_onnx_info *info);
"""
)

FM_OP_KINDS = 10
FM_PHASES = 4
FM_ENERGY_UNBOUNDED = 2**64 - 1
FM_LEDGER_NETWORK = -2
FM_QB_UNBOUNDED = -1000
FM_LANDAUER_J_PER_BIT = 1.380649e-23 * 300.0 * 0.69314718055994531
PREPROC_CACHE_DEFAULT_MIB = 1024


def _candidates():
    """Where libfewmul.so is looked for, in order: $FEWMUL_LIBRARY, the copy
    placed in the package at install time, then the system's loader path."""
    env = os.environ.get("FEWMUL_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, name) for name in ("libfewmul.so", "libfewmul.so.0")]
    return [p for p in found if os.path.exists(p)] + ["libfewmul.so.0", "libfewmul.so"]


def _open():
    tried = []
    for path in _candidates():
        try:
            return ffi.dlopen(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError(
        "fewmul: cannot load libfewmul.so; set FEWMUL_LIBRARY to its path "
        "(a CMake build makes build/libfewmul.so). Tried: " + "; ".join(tried)
    )


# As the command does for itself (tools/main.c): OpenMP's threads sleep
# between parallel regions instead of spinning, unless the user chose; a
# spinning team loses badly on a shared machine and between the calls of a
# Python loop. Read by libgomp when the library loads it, so set first.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
lib, library_path = _open()
