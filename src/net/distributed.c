/* distributed.c — the collectives of a data-parallel run (dist.h): shares of
 * a minibatch, agreements, the gradient exchange and its compression with
 * error feedback, the start and weight checks, the ledger merge. Byte counts
 * follow the usual algorithms: a ring allreduce sends and receives 2(N-1)/N of
 * its data per rank, an allgather (N-1) blocks. */
#include "bytes.h"
#include "dist.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A rank's error as the others learn it. */
#define FAILURE_TEXT 240
typedef struct rank_failure {
    int32_t code;
    char message[FAILURE_TEXT];
} rank_failure;

/* What identifies a rank's run at its start (compared with rank 0's). */
typedef struct rank_print {
    fm_config config; /* arch and threads cleared */
    char arch[256];
    fm_data_id data;
    int32_t n_train;
    uint32_t state_crc, mean_crc;
} rank_print;

enum { STEP_HEADER = 16 }; /* the compressed payload's loss, error count, padding */

/* One rank's block of the fixed-size gathers (failures, start checks, CRCs,
 * ledger sizes): fmi_dist_create allocates them for every rank at once, so
 * that no collective can be left half-done by one rank's failed allocation. */
#define GATHER_BLOCK                                                                         \
    (sizeof(rank_print) > sizeof(rank_failure) ? sizeof(rank_print) : sizeof(rank_failure))

const char *fm_compress_name(fm_compress compress)
{
    switch (compress) {
    case FM_COMPRESS_NONE:
        return "none";
    case FM_COMPRESS_POW2:
        return "pow2";
    case FM_COMPRESS_INT8:
        return "int8";
    }
    return "?";
}

int fm_parse_compress(const char *text, fm_compress *out)
{
    static const fm_compress all[] = {FM_COMPRESS_NONE, FM_COMPRESS_POW2, FM_COMPRESS_INT8};
    for (size_t i = 0; text && out && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(text, fm_compress_name(all[i])) == 0) {
            *out = all[i];
            return FM_OK;
        }
    return fmi_error(FM_EINVAL, "unknown gradient compression '%s' (expected none, pow2 or int8)",
                    text ? text : "(null)");
}

int fmi_dist_create(const fm_comm *comm, const fm_model *m, fm_ledger *ledger, fm_dist **out)
{
    *out = NULL;
    if (!comm || comm->size <= 1)
        return FM_OK;
    if (comm->rank < 0 || comm->rank >= comm->size || !comm->allreduce_sum || !comm->allgather)
        return fmi_error(FM_EINVAL, "fm_comm: rank %d of %d, or a collective missing", comm->rank,
                        comm->size);
    if ((unsigned)comm->compress > FM_COMPRESS_INT8)
        return fmi_error(FM_EINVAL, "fm_comm: unknown compression %d", (int)comm->compress);
    fm_dist *d = fmi_alloc(1, sizeof *d);
    if (!d)
        return FM_ENOMEM;
    d->comm = comm;
    d->rank = comm->rank;
    d->size = comm->size;
    d->ledger = ledger;
    d->control_layer = fmi_ledger_loss_index(m);
    int widest = 1;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == FM_LAYER_BN && m->layers[l].channels > widest)
            widest = m->layers[l].channels;
    d->scratch = fmi_alloc(2 * (size_t)widest, sizeof *d->scratch);
    d->gather = fmi_alloc((size_t)d->size, GATHER_BLOCK);
    int ok = d->scratch && d->gather;
    if (ok && comm->compress != FM_COMPRESS_NONE) {
        d->payload_bytes = STEP_HEADER;
        for (int g = 0; g < m->n_groups; g++)
            d->payload_bytes += 4 + m->groups[g].count;
        d->residual = fmi_alloc(m->state_count, sizeof *d->residual);
        d->payload = fmi_alloc((size_t)d->size + 1, d->payload_bytes);
        ok = d->residual && d->payload;
    }
    if (!ok) {
        fmi_dist_free(d);
        return FM_ENOMEM;
    }
    *out = d;
    return FM_OK;
}

void fmi_dist_free(fm_dist *d)
{
    if (!d)
        return;
    fmi_free(d->scratch);
    fmi_free(d->gather);
    fmi_free(d->residual);
    fmi_free(d->payload);
    fmi_free(d);
}

void fmi_dist_share(const fm_dist *d, int total, int *first, int *count)
{
    if (!d) {
        *first = 0;
        *count = total;
        return;
    }
    long lo = (long)total * d->rank / d->size, hi = (long)total * (d->rank + 1) / d->size;
    *first = (int)lo;
    *count = (int)(hi - lo);
}

static int comm_failed(const fm_dist *d, const char *what, size_t bytes)
{
    return fmi_error(FM_EPEER, "rank %d of %d: the %s of %zu bytes between the ranks failed "
                              "(another rank has died or left the run)",
                    d->rank, d->size, what, bytes);
}

/* name NULL: not recorded (the ledgers' own merge is bookkeeping, not training) */
static void record(const fm_dist *d, const fm_cost *cost, const char *name, uint64_t sent,
                   uint64_t received)
{
    if (d->ledger && cost && name)
        fmi_cost_network(cost, name, sent, received);
}

/* Bytes per rank of a ring allreduce of `bytes`: 2(N-1)/N of them, each way. */
static uint64_t ring_bytes(const fm_dist *d, uint64_t bytes)
{
    return 2 * (uint64_t)(d->size - 1) * bytes / (uint64_t)d->size;
}

int fmi_dist_allreduce(fm_dist *d, const fm_cost *cost, const char *name, float *x, size_t n)
{
    if (d->comm->allreduce_sum(x, n, d->comm->user) < 0)
        return comm_failed(d, "allreduce", n * sizeof *x);
    uint64_t b = ring_bytes(d, (uint64_t)n * sizeof *x);
    record(d, cost, name, b, b);
    return FM_OK;
}

static int allgather(fm_dist *d, const char *name, const void *send, void *recv, size_t bytes)
{
    if (d->comm->allgather(send, recv, bytes, d->comm->user) < 0)
        return comm_failed(d, "allgather", bytes);
    const fm_cost cost = {d->ledger, d->control_layer, FM_PHASE_UPDATE};
    uint64_t b = (uint64_t)(d->size - 1) * bytes;
    record(d, &cost, name, b, b);
    return FM_OK;
}

/* fmi_dist_agree, recorded as `name` (NULL: not recorded). The header holds
 * the failure flag, whether a rank lacks room for the messages (then none
 * are gathered, by every rank alike), and the values. */
static int agree_as(fm_dist *d, const char *name, int rc, double values[FM_DIST_VALUES])
{
    /* the own message first: the collectives below must not lose it */
    rank_failure mine = {rc, ""};
    if (rc < 0)
        fm_fit_text(mine.message, sizeof mine.message, fm_last_error()); /* its reason kept */
    /* a communicator made for one agreement (start_failed) has no gather buffer */
    rank_failure *all = d->gather ? d->gather : fmi_alloc((size_t)d->size, sizeof *all);
    float header[2 + FM_DIST_VALUES] = {rc < 0 ? 1.0f : 0.0f, all ? 0.0f : 1.0f};
    for (int i = 0; values && i < FM_DIST_VALUES; i++)
        header[2 + i] = (float)values[i];
    const fm_cost cost = {d->ledger, d->control_layer, FM_PHASE_UPDATE};
    int crc = fmi_dist_allreduce(d, &cost, name, header, 2 + FM_DIST_VALUES);
    for (int i = 0; crc == FM_OK && values && i < FM_DIST_VALUES; i++)
        values[i] = header[2 + i];
    if (crc == FM_OK && header[0] != 0.0f) {
        int first = -1;
        if (header[1] == 0.0f && (crc = allgather(d, name, &mine, all, sizeof mine)) == FM_OK)
            for (int r = 0; r < d->size && first < 0; r++)
                if (all[r].code < 0)
                    first = r;
        if (crc == FM_OK && rc < 0)
            crc = fmi_error(rc, "%s", mine.message);
        else if (crc == FM_OK && first >= 0)
            crc = fmi_error(FM_EPEER, "rank %d of %d failed: %.*s", first, d->size,
                           FAILURE_TEXT - 1, all[first].message);
        else if (crc == FM_OK)
            crc = fmi_error(FM_EPEER, "a rank failed (its message was lost: out of memory)");
    }
    if (all != d->gather)
        fmi_free(all);
    return crc;
}

int fmi_dist_agree(fm_dist *d, int rc, double values[FM_DIST_VALUES])
{
    return agree_as(d, "control", rc, values);
}

/* ---- the gradient exchange ---- */

/* A double as two floats whose sum keeps about 48 bits: the loss sums. */
static void split_double(double v, float *hi, float *lo)
{
    *hi = (float)v;
    *lo = (float)(v - (double)*hi);
}

/* Compresses v = g + residual of one group into codes, keeping in the
 * residual what the codes lose; returns the group's scale. int8: codes
 * round(v * 127 / max|v|), decoded as code * max|v| / 127. pow2: v rounded
 * to the nearest power of two (up when the mantissa is >= 1.5), coded as
 * sign and the distance k - 1 of its exponent below the group's largest
 * (k = 1..127; 0 is zero, also for what lies more than 126 octaves below). */
static float encode_group(fm_compress how, const float *g, float *res, size_t n, int8_t *codes)
{
    float top = 0.0f; /* int8: max |v|; pow2: its rounded power of two */
    uint32_t top_field = 0;
    for (size_t i = 0; i < n; i++) {
        res[i] += g[i];
        float a = fabsf(res[i]);
        top = a > top ? a : top;
    }
    if (how == FM_COMPRESS_INT8) {
        const float to_code = top > 0.0f ? 127.0f / top : 0.0f, scale = top / 127.0f;
        for (size_t i = 0; i < n; i++) {
            float v = res[i], q = v * to_code;
            float r = q + (q >= 0.0f ? 0.5f : -0.5f);
            int c = (int)r;
            c = c > 127 ? 127 : c < -127 ? -127 : c;
            codes[i] = (int8_t)c;
            res[i] = v - (float)c * scale;
        }
        return scale;
    }
    uint32_t tb;
    memcpy(&tb, &top, sizeof tb);
    top_field = ((tb >> 23) & 0xff) + ((tb & 0x7fffff) >= 0x400000);
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &res[i], sizeof b);
        uint32_t field = ((b >> 23) & 0xff) + ((b & 0x7fffff) >= 0x400000);
        uint32_t k = top_field - field + 1;
        int zero = ((b >> 23) & 0xff) == 0 || k > 127;
        uint8_t code = zero ? 0 : (uint8_t)((b >> 31) << 7 | k);
        codes[i] = (int8_t)code;
        uint32_t dec = zero ? 0 : (b & 0x80000000u) | (top_field - k + 1) << 23;
        float df;
        memcpy(&df, &dec, sizeof df);
        res[i] -= df;
    }
    float scale;
    uint32_t sb = top_field << 23;
    memcpy(&scale, &sb, sizeof scale);
    return scale;
}

/* Adds the decoded codes of one rank to sum (first: sets it). */
static void decode_group(fm_compress how, float scale, const int8_t *codes, size_t n, float *sum,
                         int first)
{
    if (how == FM_COMPRESS_INT8) {
        for (size_t i = 0; i < n; i++) {
            float v = (float)codes[i] * scale;
            sum[i] = first ? v : sum[i] + v;
        }
        return;
    }
    uint32_t sb;
    memcpy(&sb, &scale, sizeof sb);
    const uint32_t top_field = sb >> 23;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)codes[i];
        uint32_t k = c & 0x7f;
        uint32_t dec = k ? (uint32_t)(c >> 7) << 31 | (top_field - k + 1) << 23 : 0;
        float v;
        memcpy(&v, &dec, sizeof v);
        sum[i] = first ? v : sum[i] + v;
    }
}

/* What encode_group and decode_group execute per value, as the ledger counts:
 * int8: the add of the residual, |v| and the max (sign, cmp, sign), the scale
 * (fmul), the rounding (cmp, sign, fadd), the clip (2 cmp, 2 sign), the
 * residual (fmul, fadd); pow2: the add, the max, the mantissa test and its
 * exponent add (cmp, iadd) twice (the max and the value), the distance
 * (iadd), zero and range tests (2 cmp, sign), the decoded exponent (iadd),
 * the residual (fadd). Decoding one rank's value: int8 fmul, pow2 iadd and
 * sign; each rank after the first adds (fadd). */
static void compress_cost(const fm_cost *c, fm_compress how, int ranks, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_FADD, 2 * n + (uint64_t)(ranks - 1) * n);
    fmi_cost_ops(c, FM_OP_SIGN, 2 * n);
    fmi_cost_ops(c, FM_OP_CMP, n);
    if (how == FM_COMPRESS_INT8) {
        fmi_cost_ops(c, FM_OP_FMUL, 2 * n + (uint64_t)ranks * n);
        fmi_cost_ops(c, FM_OP_CMP, 3 * n);
        fmi_cost_ops(c, FM_OP_SIGN, 3 * n);
        fmi_cost_ops(c, FM_OP_FADD, n);
    } else {
        fmi_cost_ops(c, FM_OP_CMP, 4 * n);
        fmi_cost_ops(c, FM_OP_IADD, 4 * n + (uint64_t)ranks * n);
        fmi_cost_ops(c, FM_OP_SIGN, n + (uint64_t)ranks * n);
    }
}

static int exchange_compressed(fm_dist *d, const fm_model *m, fm_workspace *ws, double loss,
                               int errors, double *loss_sum, int *errors_sum)
{
    const fm_compress how = d->comm->compress;
    uint8_t *mine = d->payload, *all = d->payload + d->payload_bytes;
    float head[4] = {0};
    split_double(loss, &head[0], &head[1]);
    head[2] = (float)errors;
    memcpy(mine, head, sizeof head);
    size_t at = STEP_HEADER;
    for (int g = 0; g < m->n_groups; g++) {
        const fm_param_group *G = &m->groups[g];
        float scale = encode_group(how, ws->grad_state + G->offset, d->residual + G->offset,
                                   G->count, (int8_t *)(mine + at + 4));
        memcpy(mine + at, &scale, 4);
        at += 4 + G->count;
    }
    if (d->comm->allgather(mine, all, d->payload_bytes, d->comm->user) < 0)
        return comm_failed(d, "allgather", d->payload_bytes);
    double loss_total = 0.0, errors_total = 0.0;
    for (int r = 0; r < d->size; r++) {
        const uint8_t *p = all + (size_t)r * d->payload_bytes;
        memcpy(head, p, sizeof head);
        loss_total += (double)head[0] + (double)head[1];
        errors_total += head[2];
        at = STEP_HEADER;
        for (int g = 0; g < m->n_groups; g++) {
            const fm_param_group *G = &m->groups[g];
            float scale;
            memcpy(&scale, p + at, 4);
            decode_group(how, scale, (const int8_t *)(p + at + 4), G->count,
                         ws->grad_state + G->offset, r == 0);
            at += 4 + G->count;
        }
    }
    *loss_sum = loss_total;
    *errors_sum = (int)errors_total;
    const uint64_t other = (uint64_t)(d->size - 1);
    for (int g = 0; d->ledger && g < m->n_groups; g++) {
        const fm_param_group *G = &m->groups[g];
        const fm_cost cost = {d->ledger, G->layer + 1, FM_PHASE_UPDATE};
        const char *layer = fm_ledger_layer_name(d->ledger, G->layer + 1);
        char name[64];
        const uint64_t n = G->count, block = 4 + n;
        compress_cost(&cost, how, d->size, n);
        snprintf(name, sizeof name, "%s.residual", layer);
        fmi_cost_bytes(&cost, name, 4 * n, 4 * n, 4 * n);
        snprintf(name, sizeof name, "%s.codes", layer);
        fmi_cost_bytes(&cost, name, (uint64_t)d->size * block, (uint64_t)d->size * block, block);
        snprintf(name, sizeof name, "%s.grad", layer);
        fmi_cost_network(&cost, name, other * block, other * block);
    }
    const fm_cost control = {d->ledger, d->control_layer, FM_PHASE_UPDATE};
    record(d, &control, "stats", other * STEP_HEADER, other * STEP_HEADER);
    return FM_OK;
}

int fmi_dist_exchange(fm_dist *d, const fm_model *m, fm_workspace *ws, double *loss, int *errors)
{
    if (d->comm->compress != FM_COMPRESS_NONE)
        return exchange_compressed(d, m, ws, *loss, *errors, loss, errors);
    float *extra = ws->grad_state + m->state_count;
    split_double(*loss, &extra[0], &extra[1]);
    extra[2] = (float)*errors;
    const size_t n = m->state_count + 3;
    if (d->comm->allreduce_sum(ws->grad_state, n, d->comm->user) < 0)
        return comm_failed(d, "allreduce", n * sizeof(float));
    *loss = (double)extra[0] + (double)extra[1];
    *errors = (int)extra[2];
    if (!d->ledger)
        return FM_OK;
    /* the bytes by the layer whose gradient they carry; the rest (batch-norm
     * statistics' slots, the step's loss and errors) as the loss layer's */
    uint64_t grouped = 0;
    for (int g = 0; g < m->n_groups; g++) {
        const fm_param_group *G = &m->groups[g];
        const fm_cost cost = {d->ledger, G->layer + 1, FM_PHASE_UPDATE};
        char name[64];
        snprintf(name, sizeof name, "%s.grad", fm_ledger_layer_name(d->ledger, G->layer + 1));
        uint64_t b = ring_bytes(d, 4 * (uint64_t)G->count);
        fmi_cost_network(&cost, name, b, b);
        grouped += G->count;
    }
    const fm_cost control = {d->ledger, d->control_layer, FM_PHASE_UPDATE};
    uint64_t rest = ring_bytes(d, 4 * ((uint64_t)n - grouped));
    record(d, &control, "stats", rest, rest);
    return FM_OK;
}

/* ---- checks ---- */

static uint32_t floats_crc(const float *x, size_t n) { return x ? fmi_crc32(x, n * sizeof *x) : 0; }

int fmi_dist_check_start(fm_dist *d, const fm_model *m, const fm_data_id *data, int n_train)
{
    rank_print mine;
    memset(&mine, 0, sizeof mine);
    mine.config = m->config;
    mine.config.arch = NULL;
    mine.config.threads = 0;
    snprintf(mine.arch, sizeof mine.arch, "%s", m->arch);
    mine.data = *data;
    mine.n_train = n_train;
    mine.state_crc = floats_crc(m->state, m->state_count);
    mine.mean_crc = floats_crc(m->input_mean, (size_t)m->input_dim);
    rank_print *all = d->gather;
    int rc = allgather(d, "control", &mine, all, sizeof mine);
    for (int r = 1; rc == FM_OK && r < d->size; r++) {
        const rank_print *a = &all[0], *b = &all[r];
        fm_config ca = a->config, cb = b->config;
        ca.arch = a->arch;
        cb.arch = b->arch;
        const char *field = fmi_config_differs(&ca, &cb);
        if (field)
            rc = fmi_error(FM_EMISMATCH, "rank %d's configuration differs from rank 0's: %s "
                                        "(every rank must run the same command)", r, field);
        else if (memcmp(&a->data, &b->data, sizeof a->data) != 0 || a->n_train != b->n_train)
            rc = fmi_error(FM_EMISMATCH, "rank %d's data differs from rank 0's (%d training "
                                        "images, CRC %08x, against %d, CRC %08x): every rank "
                                        "must read the same data set",
                          r, (int)b->data.train_count, (unsigned)b->data.train_crc,
                          (int)a->data.train_count, (unsigned)a->data.train_crc);
        else if (a->state_crc != b->state_crc || a->mean_crc != b->mean_crc)
            rc = fmi_error(FM_EMISMATCH, "rank %d starts from other weights than rank 0 (a resumed "
                                        "rank must read the same checkpoint)", r);
    }
    return rc;
}

int fmi_dist_check_weights(fm_dist *d, const fm_model *m, uint64_t step)
{
    uint32_t mine = floats_crc(m->state, m->state_count);
    uint32_t *all = d->gather;
    int rc = allgather(d, "control", &mine, all, sizeof mine);
    for (int r = 1; rc == FM_OK && r < d->size; r++)
        if (all[r] != all[0])
            rc = fmi_error(FM_EMISMATCH, "after step %llu rank %d's weights (CRC %08x) differ from "
                                        "rank 0's (%08x): the communicator's sums are not the "
                                        "same on every rank",
                          (unsigned long long)step, r, (unsigned)all[r], (unsigned)all[0]);
    return rc;
}

int fmi_dist_merge_ledger(fm_dist *d, const fm_ledger *own, fm_ledger *merged)
{
    /* every rank takes part in every collective below, whatever fails on it:
     * a failure is its block size (UINT64_MAX), then the agreement */
    fm_writer w = {0};
    fmi_ledger_serialize(own, &w);
    uint64_t len = w.failed ? UINT64_MAX : w.len, *sizes = d->gather, block = 0;
    int rc = allgather(d, NULL, &len, sizes, sizeof len);
    int lost = -1;
    for (int r = 0; rc == FM_OK && r < d->size; r++) {
        if (sizes[r] == UINT64_MAX && lost < 0)
            lost = r;
        else if (sizes[r] != UINT64_MAX && sizes[r] > block)
            block = sizes[r];
    }
    if (rc < 0) {
        fmi_free(w.buf);
        return rc;
    }
    /* every rank's block, then this rank's own to send */
    uint8_t *all = NULL;
    if (lost >= 0)
        rc = fmi_error(FM_ENOMEM, "rank %d ran out of memory writing its ledger", lost);
    else {
        all = fmi_alloc((size_t)d->size + 1, (size_t)block);
        rc = agree_as(d, NULL, all ? FM_OK : FM_ENOMEM, NULL);
    }
    if (rc == FM_OK) {
        uint8_t *send = all + (size_t)d->size * block;
        memcpy(send, w.buf, w.len);
        rc = allgather(d, NULL, send, all, (size_t)block);
    }
    fmi_free(w.buf);
    fm_ledger_clear(merged);
    fm_ledger *one = NULL;
    if (rc == FM_OK)
        rc = fm_ledger_create(&one);
    for (int r = 0; rc == FM_OK && r < d->size; r++) {
        fm_reader reader = {all + (size_t)r * block, (size_t)sizes[r], "rank ledger", "ledger"};
        if ((rc = fmi_ledger_parse(&reader, one)) == FM_OK)
            rc = fmi_ledger_add(merged, one);
    }
    fm_ledger_free(one);
    fmi_free(all);
    return rc;
}
