/* model_file.c — fewmul's training-side model file (docs/model-format.md):
 * the configuration that rebuilds the layer list, the input mean and the whole
 * state array, little-endian, closed by a CRC-32. Written to PATH.tmp, synced
 * and renamed, so a crash mid-write never damages an existing file. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MODEL_MAGIC "FMULMODL"
#define MODEL_VERSION 1u
#define MODEL_MAX_BYTES ((size_t)1 << 32)

typedef struct writer {
    uint8_t *buf;
    size_t len, cap;
    int failed;
} writer;

static void put_bytes(writer *w, const void *src, size_t n)
{
    if (w->failed)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *grown = fm_realloc(w->buf, cap);
        if (!grown) {
            w->failed = 1;
            return;
        }
        w->buf = grown;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, src, n);
    w->len += n;
}

static void put_u32(writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_bytes(w, b, 4);
}

static void put_u64(writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_f64(writer *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(w, v);
}

static void put_f32s(writer *w, const float *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &f[i], 4);
        put_u32(w, v);
    }
}

typedef struct reader {
    const uint8_t *p;
    size_t left;
    const char *path;
} reader;

static int get_bytes(reader *r, void *dst, size_t n, const char *what)
{
    if (r->left < n)
        return fm_error(FM_ETRUNC, "%s: truncated model file (reading %s)", r->path, what);
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return FM_OK;
}

static int get_u32(reader *r, uint32_t *v, const char *what)
{
    uint8_t b[4] = {0};
    int rc = get_bytes(r, b, 4, what);
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return rc;
}

static int get_u64(reader *r, uint64_t *v, const char *what)
{
    uint32_t lo = 0, hi = 0;
    int rc = get_u32(r, &lo, what);
    if (rc == FM_OK)
        rc = get_u32(r, &hi, what);
    *v = (uint64_t)hi << 32 | lo;
    return rc;
}

static int get_f64(reader *r, double *d, const char *what)
{
    uint64_t v = 0;
    int rc = get_u64(r, &v, what);
    memcpy(d, &v, 8);
    return rc;
}

static int get_f32s(reader *r, float *f, size_t n, const char *what)
{
    if (r->left / 4 < n)
        return fm_error(FM_ETRUNC, "%s: truncated model file (reading %s)", r->path, what);
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        get_u32(r, &v, what);
        memcpy(&f[i], &v, 4);
    }
    return FM_OK;
}

static void put_config(writer *w, const fm_model *m)
{
    const fm_config *c = &m->config;
    put_u32(w, (uint32_t)m->input_dim);
    put_u32(w, (uint32_t)m->classes);
    put_u32(w, (uint32_t)c->weights);
    put_u32(w, (uint32_t)c->synapse_levels);
    put_f64(w, c->synapse_range);
    put_u32(w, (uint32_t)c->scale);
    put_u32(w, (uint32_t)c->qb);
    put_u32(w, (uint32_t)c->qb_emin);
    put_u32(w, (uint32_t)c->qb_emax);
    put_u32(w, (uint32_t)c->qb_bn_jacobian);
    put_u32(w, (uint32_t)c->test_quantized);
    put_u32(w, (uint32_t)c->opt);
    put_u32(w, (uint32_t)c->loss);
    put_u32(w, (uint32_t)c->preproc);
    put_u32(w, (uint32_t)c->bn_stats);
    put_f64(w, c->bn_eps);
    put_f64(w, c->dropout);
    put_u64(w, c->seed);
    size_t arch_len = strlen(m->arch);
    put_u32(w, (uint32_t)arch_len);
    put_bytes(w, m->arch, arch_len);
}

static int write_file_atomic(const char *path, const uint8_t *data, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = fm_alloc_raw(plen + 5);
    if (!tmp)
        return FM_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = fm_error(FM_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        fm_free(tmp);
        return rc;
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    int err = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        remove(tmp);
        int rc = fm_error(FM_EIO, "%s: write failed: %s", tmp, strerror(err ? err : errno));
        fm_free(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int rc = fm_error(FM_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
        remove(tmp);
        fm_free(tmp);
        return rc;
    }
    fm_free(tmp);
    return FM_OK;
}

int fm_model_save(const fm_model *m, const char *path)
{
    if (!m || !path)
        return fm_error(FM_EINVAL, "fm_model_save: NULL argument");
    writer w = {0};
    put_bytes(&w, MODEL_MAGIC, 8);
    put_u32(&w, MODEL_VERSION);
    put_config(&w, m);
    put_f32s(&w, m->input_mean, (size_t)m->input_dim);
    put_u64(&w, (uint64_t)m->state_count);
    put_f32s(&w, m->state, m->state_count);
    if (!w.failed)
        put_u32(&w, (uint32_t)crc32(0L, w.buf, (uInt)w.len));
    if (w.failed) {
        fm_free(w.buf);
        return fm_error(FM_ENOMEM, "out of memory serializing the model");
    }
    int rc = write_file_atomic(path, w.buf, w.len);
    fm_free(w.buf);
    return rc;
}

static int read_whole_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fm_error(errno == ENOENT ? FM_ENOENT : FM_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fm_error(FM_EIO, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > MODEL_MAX_BYTES) {
        fclose(f);
        return fm_error(FM_EFORMAT, "%s: %lld bytes is larger than any model file", path,
                        (long long)st.st_size);
    }
    *len = (size_t)st.st_size;
    *data = fm_alloc_raw(*len);
    if (!*data) {
        fclose(f);
        return FM_ENOMEM;
    }
    size_t got = fread(*data, 1, *len, f);
    fclose(f);
    if (got != *len) {
        fm_free(*data);
        return fm_error(FM_EIO, "%s: read failed", path);
    }
    return FM_OK;
}

static int parse_model(reader *r, fm_model **out)
{
    char magic[8];
    uint32_t version, u[15];
    int rc = get_bytes(r, magic, 8, "magic");
    if (rc < 0)
        return rc;
    if (memcmp(magic, MODEL_MAGIC, 8) != 0)
        return fm_error(FM_EFORMAT, "%s: not a fewmul model file (bad magic)", r->path);
    if ((rc = get_u32(r, &version, "version")) < 0)
        return rc;
    if (version != MODEL_VERSION)
        return fm_error(FM_EUNSUPPORTED, "%s: model file version %u, this fewmul reads %u",
                        r->path, version, MODEL_VERSION);
    fm_config c;
    fm_config_default(&c);
    double synapse_range, bn_eps, dropout;
    uint64_t seed;
    const char *names[] = {"input size", "classes", "weights", "levels"};
    for (int i = 0; i < 4; i++)
        if ((rc = get_u32(r, &u[i], names[i])) < 0)
            return rc;
    if ((rc = get_f64(r, &synapse_range, "synapse range")) < 0)
        return rc;
    for (int i = 4; i < 14; i++)
        if ((rc = get_u32(r, &u[i], "configuration")) < 0)
            return rc;
    if ((rc = get_f64(r, &bn_eps, "epsilon")) < 0 || (rc = get_f64(r, &dropout, "dropout")) < 0 ||
        (rc = get_u64(r, &seed, "seed")) < 0 || (rc = get_u32(r, &u[14], "architecture length")) < 0)
        return rc;
    char arch[256];
    if (u[14] >= sizeof arch)
        return fm_error(FM_EFORMAT, "%s: architecture string of %u bytes is too long", r->path, u[14]);
    if ((rc = get_bytes(r, arch, u[14], "architecture")) < 0)
        return rc;
    arch[u[14]] = '\0';
    if (u[0] < 1 || u[0] > (1u << 24) || u[1] < 2 || u[1] > 256)
        return fm_error(FM_EFORMAT, "%s: bad shape %u inputs, %u classes", r->path, u[0], u[1]);
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
    if ((rc = fm_config_check(&c)) < 0)
        return fm_error(FM_EFORMAT, "%s: bad configuration: %s", r->path, fm_last_error());
    fm_model *m;
    if ((rc = fm_model_build(&c, (int)u[0], (int)u[1], &m)) < 0)
        return rc;
    uint64_t count;
    if ((rc = get_f32s(r, m->input_mean, (size_t)m->input_dim, "input mean")) < 0 ||
        (rc = get_u64(r, &count, "state size")) < 0) {
        fm_model_free(m);
        return rc;
    }
    if (count != m->state_count) {
        fm_model_free(m);
        return fm_error(FM_EFORMAT, "%s: state holds %llu values, the architecture needs %zu",
                        r->path, (unsigned long long)count, m->state_count);
    }
    if ((rc = get_f32s(r, m->state, m->state_count, "parameters")) < 0) {
        fm_model_free(m);
        return rc;
    }
    *out = m;
    return FM_OK;
}

int fm_model_load(const char *path, fm_model **out)
{
    if (!path || !out)
        return fm_error(FM_EINVAL, "fm_model_load: NULL argument");
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = read_whole_file(path, &data, &len);
    if (rc < 0)
        return rc;
    if (len < 16) {
        fm_free(data);
        return fm_error(FM_ETRUNC, "%s: %zu bytes is too short for a model file", path, len);
    }
    uint32_t stored = (uint32_t)data[len - 4] | (uint32_t)data[len - 3] << 8 |
                      (uint32_t)data[len - 2] << 16 | (uint32_t)data[len - 1] << 24;
    reader r = {data, len - 4, path};
    if (memcmp(data, MODEL_MAGIC, 8) == 0 && (uint32_t)crc32(0L, data, (uInt)(len - 4)) != stored) {
        fm_free(data);
        return fm_error(FM_EFORMAT, "%s: checksum mismatch (file damaged or truncated)", path);
    }
    rc = parse_model(&r, out);
    if (rc == FM_OK && r.left != 0) {
        fm_model_free(*out);
        *out = NULL;
        rc = fm_error(FM_EFORMAT, "%s: %zu unexpected bytes after the parameters", path, r.left);
    }
    fm_free(data);
    return rc;
}
