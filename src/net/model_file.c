/* model_file.c — fewmul's training-side model file (docs/model-format.md):
 * the configuration that rebuilds the layer list, the input mean and the whole
 * state array, little-endian, closed by a CRC-32. Written through a temporary
 * file, synced and renamed (fmi_file_write_atomic), so a crash mid-write never
 * damages an existing file. */
#define _POSIX_C_SOURCE 200809L
#include "model_file.h"
#include "internal.h"
#include "net.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MODEL_MAGIC "FMULMODL"
/* Version 2 added the hidden activation kind, version 3 the input image
 * shape, the exponent range of convolutions and the ZCA matrix; older files
 * (ReLU; a flat input) still load. */
#define MODEL_VERSION 3u
#define MODEL_MAX_BYTES ((size_t)1 << 32)

static void put_config(fm_writer *w, const fm_model *m)
{
    const fm_config *c = &m->config;
    fmi_put_u32(w, (uint32_t)m->input_dim);
    fmi_put_u32(w, (uint32_t)m->classes);
    fmi_put_u32(w, (uint32_t)c->weights);
    fmi_put_u32(w, (uint32_t)c->synapse_levels);
    fmi_put_f64(w, c->synapse_range);
    fmi_put_u32(w, (uint32_t)c->scale);
    fmi_put_u32(w, (uint32_t)c->qb);
    fmi_put_u32(w, (uint32_t)c->qb_emin);
    fmi_put_u32(w, (uint32_t)c->qb_emax);
    fmi_put_u32(w, (uint32_t)c->qb_bn_jacobian);
    fmi_put_u32(w, (uint32_t)c->test_quantized);
    fmi_put_u32(w, (uint32_t)c->opt);
    fmi_put_u32(w, (uint32_t)c->loss);
    fmi_put_u32(w, (uint32_t)c->preproc);
    fmi_put_u32(w, (uint32_t)c->bn_stats);
    fmi_put_f64(w, c->bn_eps);
    fmi_put_f64(w, c->dropout);
    fmi_put_u64(w, c->seed);
    fmi_put_u32(w, (uint32_t)c->acts);
    fmi_put_u32(w, (uint32_t)m->in_h);
    fmi_put_u32(w, (uint32_t)m->in_w);
    fmi_put_u32(w, (uint32_t)m->in_c);
    fmi_put_u32(w, (uint32_t)c->qb_conv_emin);
    fmi_put_u32(w, (uint32_t)c->qb_conv_emax);
    size_t arch_len = strlen(m->arch);
    fmi_put_u32(w, (uint32_t)arch_len);
    fmi_put_bytes(w, m->arch, arch_len);
}

int fmi_model_serialize(const fm_model *m, fm_writer *w)
{
    const size_t start = w->len;
    fmi_put_bytes(w, MODEL_MAGIC, 8);
    fmi_put_u32(w, MODEL_VERSION);
    put_config(w, m);
    fmi_put_f32s(w, m->input_mean, (size_t)m->input_dim);
    if (m->zca)
        fmi_put_f32s(w, m->zca, (size_t)m->input_dim * (size_t)m->input_dim);
    fmi_put_u64(w, (uint64_t)m->state_count);
    fmi_put_f32s(w, m->state, m->state_count);
    if (!w->failed)
        fmi_put_u32(w, fmi_crc32(w->buf + start, w->len - start));
    return w->failed ? fmi_error(FM_ENOMEM, "out of memory serializing the model") : FM_OK;
}

int fm_model_save(const fm_model *m, const char *path)
{
    if (!m || !path)
        return fmi_error(FM_EINVAL, "fm_model_save: NULL argument");
    fm_writer w = {0};
    int rc = fmi_model_serialize(m, &w);
    if (rc == FM_OK)
        rc = fmi_file_write_atomic(path, w.buf, w.len);
    fmi_free(w.buf);
    return rc;
}

/* What a model file's header holds: the configuration (its arch pointing
 * into `arch`) and the input shape. */
typedef struct model_header {
    fm_config config;
    char arch[256];
    uint32_t shape[3], inputs, classes;
} model_header;

/* The room the state has in the r->left bytes after the header, once the
 * input mean, the whitening matrix and the state count are taken (FM_ETRUNC
 * when these do not fit). */
static int state_room(const fm_reader *r, const model_header *h, size_t *max_state)
{
    const uint64_t mean_bytes = 4ull * h->inputs;
    const uint64_t zca_bytes =
        h->config.preproc == FM_PRE_GCN_ZCA ? 4ull * h->inputs * h->inputs : 0;
    if (mean_bytes + 8 > r->left)
        return fmi_error(FM_ETRUNC, "%s: an input mean of %u values needs more than the %zu bytes left",
                        r->path, h->inputs, r->left);
    if (zca_bytes > r->left - mean_bytes - 8)
        return fmi_error(FM_ETRUNC, "%s: a %u x %u whitening matrix needs more than the %zu bytes left",
                        r->path, h->inputs, h->inputs, r->left);
    *max_state = (size_t)((r->left - mean_bytes - 8 - zca_bytes) / 4);
    return FM_OK;
}

/* A failure of fmi_model_build on what the file declares: a state larger than
 * the file holds is a truncation, one that does not fit its input a damaged
 * file, not a caller's mistake. */
static int bad_architecture(const fm_reader *r, int rc)
{
    if (rc == FM_ENOMEM)
        return rc;
    char why[FMI_MESSAGE_CAP]; /* fmi_error formats into the buffer fm_last_error() returns */
    snprintf(why, sizeof why, "%s", fm_last_error());
    if (rc == FM_ETRUNC)
        return fmi_error(FM_ETRUNC, "%s: truncated model file: %s", r->path, why);
    return fmi_error(FM_EFORMAT, "%s: bad model file: %s", r->path, why);
}

/* The model the header describes, built within the bytes the file has left,
 * and its input statistics and state read from it. */
static int read_state(fm_reader *r, const model_header *h, fm_model **out)
{
    /* Nothing is allocated for more than the file holds: the input mean, the
     * whitening matrix (input_dim^2 floats) and the state count must fit in
     * the bytes left, and the state the architecture implies in the rest. */
    size_t max_state = 0;
    int rc = state_room(r, h, &max_state);
    if (rc < 0)
        return rc;
    fm_model *m;
    rc = fmi_model_build(&h->config, (int)h->shape[0], (int)h->shape[1], (int)h->shape[2],
                         (int)h->classes, max_state, &m);
    if (rc < 0)
        return bad_architecture(r, rc);
    uint64_t count;
    if ((rc = fmi_get_f32s(r, m->input_mean, (size_t)m->input_dim, "input mean")) < 0 ||
        (m->zca && (rc = fmi_get_f32s(r, m->zca, (size_t)m->input_dim * (size_t)m->input_dim,
                                     "whitening matrix")) < 0) ||
        (rc = fmi_get_u64(r, &count, "state size")) < 0) {
        fm_model_free(m);
        return rc;
    }
    /* the preprocessing fitted finite statistics; a NaN would turn every
     * prediction into noise without a word */
    const size_t n_mean = (size_t)m->input_dim, n_zca = m->zca ? n_mean * n_mean : 0;
    for (size_t i = 0; i < n_mean + n_zca; i++) {
        const float v = i < n_mean ? m->input_mean[i] : m->zca[i - n_mean];
        if (!isfinite(v)) {
            fm_model_free(m);
            return fmi_error(FM_EFORMAT, "%s: %s value %zu is %g, not a finite number", r->path,
                            i < n_mean ? "input mean" : "whitening matrix",
                            i < n_mean ? i : i - n_mean, (double)v);
        }
    }
    if (count != m->state_count) {
        const size_t need = m->state_count;
        fm_model_free(m);
        return fmi_error(FM_EFORMAT, "%s: state holds %llu values, the architecture needs %zu",
                        r->path, (unsigned long long)count, need);
    }
    if ((rc = fmi_get_f32s(r, m->state, m->state_count, "parameters")) < 0) {
        fm_model_free(m);
        return rc;
    }
    *out = m;
    return FM_OK;
}

/* The header: magic, version, configuration, input shape and architecture,
 * each checked (docs/model-format.md). */
static int parse_header(fm_reader *r, model_header *h)
{
    char magic[8];
    uint32_t version, u[15];
    int rc = fmi_get_bytes(r, magic, 8, "magic");
    if (rc < 0)
        return rc;
    if (memcmp(magic, MODEL_MAGIC, 8) != 0)
        return fmi_error(FM_EFORMAT, "%s: not a fewmul model file (bad magic)", r->path);
    if ((rc = fmi_get_u32(r, &version, "version")) < 0)
        return rc;
    if (version < 1 || version > MODEL_VERSION)
        return fmi_error(FM_EUNSUPPORTED, "%s: model file version %u, this fewmul reads %u",
                        r->path, version, MODEL_VERSION);
    fm_config c;
    fm_config_default(&c);
    double synapse_range, bn_eps, dropout;
    uint64_t seed;
    uint32_t acts = FM_ACTS_RELU, conv_range[2] = {(uint32_t)-4, 3};
    uint32_t *shape = h->shape;
    shape[0] = 0;
    shape[1] = shape[2] = 1;
    const char *names[] = {"input size", "classes", "weights", "levels"};
    for (int i = 0; i < 4; i++)
        if ((rc = fmi_get_u32(r, &u[i], names[i])) < 0)
            return rc;
    if ((rc = fmi_get_f64(r, &synapse_range, "synapse range")) < 0)
        return rc;
    for (int i = 4; i < 14; i++)
        if ((rc = fmi_get_u32(r, &u[i], "configuration")) < 0)
            return rc;
    if ((rc = fmi_get_f64(r, &bn_eps, "epsilon")) < 0 ||
        (rc = fmi_get_f64(r, &dropout, "dropout")) < 0 || (rc = fmi_get_u64(r, &seed, "seed")) < 0 ||
        (version >= 2 && (rc = fmi_get_u32(r, &acts, "activations")) < 0) ||
        (version >= 3 && ((rc = fmi_get_u32(r, &shape[0], "input height")) < 0 ||
                          (rc = fmi_get_u32(r, &shape[1], "input width")) < 0 ||
                          (rc = fmi_get_u32(r, &shape[2], "input channels")) < 0 ||
                          (rc = fmi_get_u32(r, &conv_range[0], "conv exponent range")) < 0 ||
                          (rc = fmi_get_u32(r, &conv_range[1], "conv exponent range")) < 0)) ||
        (rc = fmi_get_u32(r, &u[14], "architecture length")) < 0)
        return rc;
    if (u[14] >= sizeof h->arch)
        return fmi_error(FM_EFORMAT, "%s: architecture string of %u bytes is too long", r->path, u[14]);
    if ((rc = fmi_get_bytes(r, h->arch, u[14], "architecture")) < 0)
        return rc;
    h->arch[u[14]] = '\0';
    if (u[0] < 1 || u[0] > (1u << 24) || u[1] < 2 || u[1] > 256)
        return fmi_error(FM_EFORMAT, "%s: bad shape %u inputs, %u classes", r->path, u[0], u[1]);
    static const struct {
        int at;
        const char *name;
    } flags[] = {{5, "quantized back-prop"}, {8, "qb batch-norm Jacobian"}, {9, "test-quantized"}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (u[flags[i].at] > 1)
            return fmi_error(FM_EFORMAT, "%s: bad configuration: the %s flag is %u (0 or 1)", r->path,
                            flags[i].name, u[flags[i].at]);
    if (version < 3)
        shape[0] = u[0];
    if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 ||
        (uint64_t)shape[0] * shape[1] * shape[2] != u[0])
        return fmi_error(FM_EFORMAT, "%s: input shape %ux%ux%u does not hold %u values", r->path,
                        shape[0], shape[1], shape[2], u[0]);
    h->inputs = u[0];
    h->classes = u[1];
    c.arch = h->arch;
    c.weights = (fm_weight_mode)u[2];
    c.synapse_levels = (int)u[3];
    c.synapse_range = synapse_range;
    c.scale = (fm_scale)u[4];
    c.qb = (int)u[5];
    c.qb_emin = (int32_t)u[6];
    c.qb_emax = (int32_t)u[7];
    c.qb_bn_jacobian = (int)u[8];
    c.test_quantized = (int)u[9];
    c.opt = (fm_optimizer)u[10];
    c.loss = (fm_loss)u[11];
    c.preproc = (fm_preproc)u[12];
    c.bn_stats = (fm_bn_stats)u[13];
    c.bn_eps = bn_eps;
    c.dropout = dropout;
    c.seed = seed;
    c.acts = (fm_acts)acts;
    c.qb_conv_emin = (int32_t)conv_range[0];
    c.qb_conv_emax = (int32_t)conv_range[1];
    if ((rc = fm_config_check(&c)) < 0) {
        char why[FMI_MESSAGE_CAP]; /* fmi_error formats into the buffer fm_last_error() returns */
        snprintf(why, sizeof why, "%s", fm_last_error());
        return fmi_error(FM_EFORMAT, "%s: bad configuration: %s", r->path, why);
    }
    h->config = c;
    return FM_OK;
}

static int parse_model(fm_reader *r, fm_model **out)
{
    model_header h;
    int rc = parse_header(r, &h);
    if (rc < 0)
        return rc;
    return read_state(r, &h, out);
}

/* The longest header: 128 fixed bytes and an architecture of 255. */
#define MODEL_HEAD_MAX 383u

int fmi_model_file_head(const fmi_file_head *f, uint64_t at, uint64_t room, fmi_model_head *out)
{
    if (room < 16)
        return fmi_error(FM_ETRUNC, "%s: %llu bytes is too short for a model file", f->path,
                        (unsigned long long)room);
    uint8_t head[MODEL_HEAD_MAX];
    size_t n = (size_t)FM_MIN(room - 4, (uint64_t)MODEL_HEAD_MAX);
    int rc = fmi_head_read(f, at, head, n, "model header");
    if (rc < 0)
        return rc;
    fm_reader r = {head, n, f->path, "model file"};
    model_header h;
    if ((rc = parse_header(&r, &h)) < 0)
        return rc;
    /* what follows the header, the CRC aside, holds the mean, matrix and state */
    const uint64_t header_bytes = n - r.left;
    fm_reader rest = {NULL, (size_t)FM_MIN(room - 4 - header_bytes, (uint64_t)SIZE_MAX), f->path,
                      "model file"};
    size_t max_state = 0, count = 0;
    if ((rc = state_room(&rest, &h, &max_state)) < 0)
        return rc;
    rc = fmi_model_state_count(&h.config, (int)h.shape[0], (int)h.shape[1], (int)h.shape[2],
                               (int)h.classes, max_state, &count);
    if (rc < 0)
        return bad_architecture(&rest, rc);
    const uint64_t zca = h.config.preproc == FM_PRE_GCN_ZCA ? 4ull * h.inputs * h.inputs : 0;
    out->bytes = header_bytes + 4ull * h.inputs + zca + 8 + 4ull * count + 4;
    out->state_count = count;
    out->opt = h.config.opt;
    return FM_OK;
}

/* A large model file's head against its size, before it is read whole. */
static int check_model_head(const fmi_file_head *f, void *user)
{
    (void)user;
    fmi_model_head h;
    int rc = fmi_model_file_head(f, 0, f->size, &h);
    if (rc == FM_OK && h.bytes != f->size)
        rc = fmi_error(FM_EFORMAT, "%s: %llu unexpected bytes after the parameters (the header "
                      "declares %llu bytes in all)", f->path,
                      (unsigned long long)(f->size - h.bytes), (unsigned long long)h.bytes);
    return rc;
}

int fmi_model_parse(const uint8_t *data, size_t len, const char *path, fm_model **out)
{
    *out = NULL;
    if (len < 16)
        return fmi_error(FM_ETRUNC, "%s: %zu bytes is too short for a model file", path, len);
    uint32_t stored = fmi_load_le32(data + len - 4);
    fm_reader r = {data, len - 4, path, "model file"};
    if (memcmp(data, MODEL_MAGIC, 8) == 0 && fmi_crc32(data, len - 4) != stored)
        return fmi_error(FM_EFORMAT, "%s: checksum mismatch (file damaged or truncated)", path);
    int rc = parse_model(&r, out);
    if (rc == FM_OK && r.left != 0) {
        fm_model_free(*out);
        *out = NULL;
        rc = fmi_error(FM_EFORMAT, "%s: %zu unexpected bytes after the parameters", path, r.left);
    }
    return rc;
}

int fm_model_load(const char *path, fm_model **out)
{
    if (!path || !out)
        return fmi_error(FM_EINVAL, "fm_model_load: NULL argument");
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = fmi_file_read_checked(path, MODEL_MAX_BYTES, "model file", check_model_head, NULL,
                                   &data, &len);
    if (rc < 0)
        return rc;
    rc = fmi_model_parse(data, len, path, out);
    fmi_free(data);
    return rc;
}
