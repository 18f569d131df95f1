/* model_file.c — fewmul's training-side model file (docs/model-format.md):
 * the configuration that rebuilds the layer list, the input mean and the whole
 * state array, little-endian, closed by a CRC-32. Written to PATH.tmp, synced
 * and renamed, so a crash mid-write never damages an existing file. */
#define _POSIX_C_SOURCE 200809L
#include "model_file.h"
#include "internal.h"
#include "net.h"

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

/* The model of configuration c, built within the bytes the file has left,
 * and its input statistics and state read from it. */
static int read_state(fm_reader *r, const fm_config *cfg, const uint32_t shape[3], uint32_t inputs,
                      uint32_t classes, fm_model **out)
{
    int rc;
    /* Nothing is allocated for more than the file holds: the input mean, the
     * whitening matrix (input_dim^2 floats) and the state count must fit in
     * the bytes left, and the state the architecture implies in the rest. */
    const uint64_t mean_bytes = 4ull * inputs;
    const uint64_t zca_bytes = cfg->preproc == FM_PRE_GCN_ZCA ? 4ull * inputs * inputs : 0;
    if (mean_bytes + 8 > r->left)
        return fmi_error(FM_ETRUNC, "%s: an input mean of %u values needs more than the %zu bytes left",
                        r->path, inputs, r->left);
    if (zca_bytes > r->left - mean_bytes - 8)
        return fmi_error(FM_ETRUNC, "%s: a %u x %u whitening matrix needs more than the %zu bytes left",
                        r->path, inputs, inputs, r->left);
    const size_t max_state = (size_t)((r->left - mean_bytes - 8 - zca_bytes) / 4);
    fm_model *m;
    rc = fmi_model_build(cfg, (int)shape[0], (int)shape[1], (int)shape[2], (int)classes, max_state, &m);
    if (rc < 0 && rc != FM_ENOMEM) {
        /* the architecture and shape come from the file: a state larger than
         * the file holds is a truncation, one that does not fit its input a
         * damaged file, not a caller's mistake */
        char why[FMI_MESSAGE_CAP]; /* fmi_error formats into the buffer fm_last_error() returns */
        snprintf(why, sizeof why, "%s", fm_last_error());
        if (rc == FM_ETRUNC)
            return fmi_error(FM_ETRUNC, "%s: truncated model file: %s", r->path, why);
        return fmi_error(FM_EFORMAT, "%s: bad model file: %s", r->path, why);
    }
    if (rc < 0)
        return rc;
    uint64_t count;
    if ((rc = fmi_get_f32s(r, m->input_mean, (size_t)m->input_dim, "input mean")) < 0 ||
        (m->zca && (rc = fmi_get_f32s(r, m->zca, (size_t)m->input_dim * (size_t)m->input_dim,
                                     "whitening matrix")) < 0) ||
        (rc = fmi_get_u64(r, &count, "state size")) < 0) {
        fm_model_free(m);
        return rc;
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


static int parse_model(fm_reader *r, fm_model **out)
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
    uint32_t acts = FM_ACTS_RELU, shape[3] = {0, 1, 1}, conv_range[2] = {(uint32_t)-4, 3};
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
    char arch[256];
    if (u[14] >= sizeof arch)
        return fmi_error(FM_EFORMAT, "%s: architecture string of %u bytes is too long", r->path, u[14]);
    if ((rc = fmi_get_bytes(r, arch, u[14], "architecture")) < 0)
        return rc;
    arch[u[14]] = '\0';
    if (u[0] < 1 || u[0] > (1u << 24) || u[1] < 2 || u[1] > 256)
        return fmi_error(FM_EFORMAT, "%s: bad shape %u inputs, %u classes", r->path, u[0], u[1]);
    if (version < 3)
        shape[0] = u[0];
    if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 ||
        (uint64_t)shape[0] * shape[1] * shape[2] != u[0])
        return fmi_error(FM_EFORMAT, "%s: input shape %ux%ux%u does not hold %u values", r->path,
                        shape[0], shape[1], shape[2], u[0]);
    c.arch = arch;
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
    return read_state(r, &c, shape, u[0], u[1], out);
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
    int rc = fmi_file_read_all(path, MODEL_MAX_BYTES, "model file", &data, &len);
    if (rc < 0)
        return rc;
    rc = fmi_model_parse(data, len, path, out);
    fmi_free(data);
    return rc;
}
