/* ledger.c — the energy ledger: integer counts of operations and bytes per
 * layer and phase, the tensors those bytes belong to, and their pricing with an
 * energy table (each tensor sits in the smallest memory level that holds it).
 * Also the operation tally of counting builds. docs/ledger.md explains the model. */
#include "bytes.h"
#include "internal.h"
#include "ledger.h"

#include <stdio.h>
#include <string.h>

#define NAME_MAX_LEN 48

typedef struct ledger_layer {
    char name[NAME_MAX_LEN], shape[NAME_MAX_LEN];
    uint64_t ops[FM_PHASES][FM_OP_KINDS];
} ledger_layer;

typedef struct ledger_tensor {
    char name[NAME_MAX_LEN];
    uint64_t bytes; /* footprint: the largest recorded */
} ledger_tensor;

/* Bytes moved for one tensor by one layer in one phase. */
typedef struct ledger_traffic {
    int layer, tensor;
    fm_phase phase;
    uint64_t read, written;
} ledger_traffic;

struct fm_ledger {
    int n_layers, cap_layers;
    ledger_layer *layers;
    int n_tensors, cap_tensors;
    ledger_tensor *tensors;
    int n_traffic, cap_traffic;
    ledger_traffic *traffic;
    uint64_t passes[FM_PHASES], examples[FM_PHASES];
    int out_of_memory;
};

static const char *const phase_names[FM_PHASES] = {"forward", "backward", "update", "eval"};

const char *fm_phase_name(fm_phase phase)
{
    return (unsigned)phase < FM_PHASES ? phase_names[phase] : "?";
}

int fm_ledger_create(fm_ledger **out)
{
    if (!out)
        return fmi_error(FM_EINVAL, "fm_ledger_create: NULL argument");
    *out = fmi_alloc(1, sizeof **out);
    return *out ? FM_OK : FM_ENOMEM;
}

void fm_ledger_free(fm_ledger *l)
{
    if (!l)
        return;
    fmi_free(l->layers);
    fmi_free(l->tensors);
    fmi_free(l->traffic);
    fmi_free(l);
}

void fm_ledger_clear(fm_ledger *l)
{
    if (!l)
        return;
    l->n_layers = l->n_tensors = l->n_traffic = 0;
    memset(l->passes, 0, sizeof l->passes);
    memset(l->examples, 0, sizeof l->examples);
    l->out_of_memory = 0;
}

int fmi_ledger_status(const fm_ledger *l)
{
    if (l && l->out_of_memory)
        return fmi_error(FM_ENOMEM, "out of memory while recording the energy ledger");
    return FM_OK;
}

/* Grows an array of `size`-byte items to hold `need`; 0 on failure. */
static int reserve(void **items, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return 1;
    int cap2 = *cap ? *cap * 2 : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *p = fmi_realloc(*items, (size_t)cap2 * size);
    if (!p)
        return 0;
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(cap2 - *cap) * size);
    *items = p;
    *cap = cap2;
    return 1;
}

/* Makes layers 0..index exist; 0 on failure. */
static int ensure_layer(fm_ledger *l, int index)
{
    if (index < 0)
        return 0;
    if (!reserve((void **)&l->layers, &l->cap_layers, index + 1, sizeof *l->layers)) {
        l->out_of_memory = 1;
        return 0;
    }
    /* a layer past the end starts empty: after fm_ledger_clear the slots
     * still hold the counts of the layers before */
    for (; l->n_layers <= index; l->n_layers++)
        memset(&l->layers[l->n_layers], 0, sizeof *l->layers);
    return 1;
}

static void copy_name(char *dst, const char *src)
{
    snprintf(dst, NAME_MAX_LEN, "%s", src ? src : "");
}

int fmi_ledger_layer(fm_ledger *l, int index, const char *name, const char *shape)
{
    if (!l)
        return FM_OK;
    if (!ensure_layer(l, index))
        return index < 0 ? fmi_error(FM_EINVAL, "negative ledger layer") : FM_ENOMEM;
    copy_name(l->layers[index].name, name);
    copy_name(l->layers[index].shape, shape);
    return FM_OK;
}

void fmi_cost_ops(const fm_cost *c, fm_op op, uint64_t n)
{
    if (!c || !c->ledger || n == 0 || (unsigned)op >= FM_OP_KINDS || (unsigned)c->phase >= FM_PHASES)
        return;
    if (ensure_layer(c->ledger, c->layer))
        c->ledger->layers[c->layer].ops[c->phase][op] += n;
}

static int find_tensor(fm_ledger *l, const char *name, uint64_t footprint)
{
    char key[NAME_MAX_LEN];
    copy_name(key, name);
    for (int t = 0; t < l->n_tensors; t++)
        if (strcmp(l->tensors[t].name, key) == 0) {
            if (footprint > l->tensors[t].bytes)
                l->tensors[t].bytes = footprint;
            return t;
        }
    if (!reserve((void **)&l->tensors, &l->cap_tensors, l->n_tensors + 1, sizeof *l->tensors)) {
        l->out_of_memory = 1;
        return -1;
    }
    ledger_tensor *t = &l->tensors[l->n_tensors];
    memcpy(t->name, key, sizeof key);
    t->bytes = footprint;
    return l->n_tensors++;
}

void fmi_cost_bytes(const fm_cost *c, const char *name, uint64_t footprint, uint64_t read,
                   uint64_t written)
{
    if (!c || !c->ledger || (read == 0 && written == 0) || (unsigned)c->phase >= FM_PHASES)
        return;
    fm_ledger *l = c->ledger;
    if (!ensure_layer(l, c->layer))
        return;
    int t = find_tensor(l, name, footprint);
    if (t < 0)
        return;
    /* recent records first: a step touches the same few dozen entries each time */
    for (int i = l->n_traffic - 1; i >= 0; i--) {
        ledger_traffic *r = &l->traffic[i];
        if (r->layer == c->layer && r->phase == c->phase && r->tensor == t) {
            r->read += read;
            r->written += written;
            return;
        }
    }
    if (!reserve((void **)&l->traffic, &l->cap_traffic, l->n_traffic + 1, sizeof *l->traffic)) {
        l->out_of_memory = 1;
        return;
    }
    l->traffic[l->n_traffic++] = (ledger_traffic){c->layer, t, c->phase, read, written};
}

#define NETWORK_PREFIX "net:"

static int is_network_tensor(const ledger_tensor *t)
{
    return strncmp(t->name, NETWORK_PREFIX, sizeof NETWORK_PREFIX - 1) == 0;
}

void fmi_cost_network(const fm_cost *c, const char *name, uint64_t sent, uint64_t received)
{
    char key[NAME_MAX_LEN];
    snprintf(key, sizeof key, NETWORK_PREFIX "%s", name);
    /* what a rank receives it reads off the link, what it sends it writes */
    fmi_cost_bytes(c, key, 0, received, sent);
}

int fmi_ledger_add(fm_ledger *dst, const fm_ledger *src)
{
    if (!dst || !src)
        return fmi_error(FM_EINVAL, "fmi_ledger_add: NULL argument");
    for (int i = 0; i < src->n_layers; i++) {
        const ledger_layer *from = &src->layers[i];
        if (!ensure_layer(dst, i))
            return FM_ENOMEM;
        ledger_layer *to = &dst->layers[i];
        if (!to->name[0]) {
            memcpy(to->name, from->name, sizeof to->name);
            memcpy(to->shape, from->shape, sizeof to->shape);
        }
        for (int p = 0; p < FM_PHASES; p++)
            for (int op = 0; op < FM_OP_KINDS; op++)
                to->ops[p][op] += from->ops[p][op];
    }
    for (int i = 0; i < src->n_traffic; i++) {
        const ledger_traffic *r = &src->traffic[i];
        const ledger_tensor *t = &src->tensors[r->tensor];
        const fm_cost at = {dst, r->layer, r->phase};
        fmi_cost_bytes(&at, t->name, t->bytes, r->read, r->written);
    }
    for (int t = 0; t < src->n_tensors; t++) /* footprints of tensors without traffic too */
        if (find_tensor(dst, src->tensors[t].name, src->tensors[t].bytes) < 0)
            break;
    for (int p = 0; p < FM_PHASES; p++) {
        dst->passes[p] += src->passes[p];
        dst->examples[p] += src->examples[p];
    }
    return dst->out_of_memory ? FM_ENOMEM : FM_OK;
}

void fmi_ledger_pass(fm_ledger *l, fm_phase phase, uint64_t examples)
{
    if (!l || (unsigned)phase >= FM_PHASES)
        return;
    l->passes[phase]++;
    l->examples[phase] += examples;
}

/* ---- saving with a checkpoint ---- */

static void put_name(fm_writer *w, const char *name)
{
    size_t n = strlen(name);
    fmi_put_u32(w, (uint32_t)n);
    fmi_put_bytes(w, name, n);
}

void fmi_ledger_serialize(const fm_ledger *l, fm_writer *w)
{
    fmi_put_u32(w, (uint32_t)l->n_layers);
    for (int i = 0; i < l->n_layers; i++) {
        put_name(w, l->layers[i].name);
        put_name(w, l->layers[i].shape);
        for (int p = 0; p < FM_PHASES; p++)
            for (int op = 0; op < FM_OP_KINDS; op++)
                fmi_put_u64(w, l->layers[i].ops[p][op]);
    }
    fmi_put_u32(w, (uint32_t)l->n_tensors);
    for (int t = 0; t < l->n_tensors; t++) {
        put_name(w, l->tensors[t].name);
        fmi_put_u64(w, l->tensors[t].bytes);
    }
    fmi_put_u32(w, (uint32_t)l->n_traffic);
    for (int i = 0; i < l->n_traffic; i++) {
        const ledger_traffic *r = &l->traffic[i];
        fmi_put_u32(w, (uint32_t)r->layer);
        fmi_put_u32(w, (uint32_t)r->tensor);
        fmi_put_u32(w, (uint32_t)r->phase);
        fmi_put_u64(w, r->read);
        fmi_put_u64(w, r->written);
    }
    for (int p = 0; p < FM_PHASES; p++) {
        fmi_put_u64(w, l->passes[p]);
        fmi_put_u64(w, l->examples[p]);
    }
}

static int get_name(fm_reader *r, char *dst, const char *what)
{
    uint32_t n;
    int rc = fmi_get_u32(r, &n, what);
    if (rc < 0)
        return rc;
    if (n >= NAME_MAX_LEN)
        return fmi_error(FM_EFORMAT, "%s: ledger %s of %u bytes is too long", r->path, what, n);
    if ((rc = fmi_get_bytes(r, dst, n, what)) < 0)
        return rc;
    dst[n] = '\0';
    return FM_OK;
}

/* A count of items of at least `item_bytes` bytes each, checked against the
 * bytes left before anything is allocated for them. */
static int get_count(fm_reader *r, uint32_t *n, size_t item_bytes, const char *what)
{
    int rc = fmi_get_u32(r, n, what);
    if (rc < 0)
        return rc;
    if (*n > INT32_MAX || (uint64_t)*n * item_bytes > r->left)
        return fmi_error(FM_ETRUNC, "%s: %u ledger %s need more than the %zu bytes left", r->path,
                        *n, what, r->left);
    return FM_OK;
}

int fmi_ledger_parse(fm_reader *r, fm_ledger *l)
{
    fm_ledger_clear(l);
    uint32_t n;
    int rc = get_count(r, &n, 8 + 8 * FM_PHASES * FM_OP_KINDS, "layers");
    if (rc < 0)
        return rc;
    if (n && !ensure_layer(l, (int)n - 1))
        return FM_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        ledger_layer *L = &l->layers[i];
        if ((rc = get_name(r, L->name, "layer name")) < 0 ||
            (rc = get_name(r, L->shape, "layer shape")) < 0)
            return rc;
        for (int p = 0; p < FM_PHASES; p++)
            for (int op = 0; op < FM_OP_KINDS; op++)
                if ((rc = fmi_get_u64(r, &L->ops[p][op], "operation counts")) < 0)
                    return rc;
    }
    if ((rc = get_count(r, &n, 12, "tensors")) < 0)
        return rc;
    if (!reserve((void **)&l->tensors, &l->cap_tensors, (int)n, sizeof *l->tensors))
        return FM_ENOMEM;
    for (; l->n_tensors < (int)n; l->n_tensors++) {
        ledger_tensor *t = &l->tensors[l->n_tensors];
        if ((rc = get_name(r, t->name, "tensor name")) < 0 ||
            (rc = fmi_get_u64(r, &t->bytes, "tensor size")) < 0)
            return rc;
    }
    if ((rc = get_count(r, &n, 28, "traffic records")) < 0)
        return rc;
    if (!reserve((void **)&l->traffic, &l->cap_traffic, (int)n, sizeof *l->traffic))
        return FM_ENOMEM;
    for (; l->n_traffic < (int)n; l->n_traffic++) {
        ledger_traffic *t = &l->traffic[l->n_traffic];
        uint32_t layer, tensor, phase;
        if ((rc = fmi_get_u32(r, &layer, "traffic layer")) < 0 ||
            (rc = fmi_get_u32(r, &tensor, "traffic tensor")) < 0 ||
            (rc = fmi_get_u32(r, &phase, "traffic phase")) < 0 ||
            (rc = fmi_get_u64(r, &t->read, "bytes read")) < 0 ||
            (rc = fmi_get_u64(r, &t->written, "bytes written")) < 0)
            return rc;
        if (layer >= (uint32_t)l->n_layers || tensor >= (uint32_t)l->n_tensors || phase >= FM_PHASES)
            return fmi_error(FM_EFORMAT, "%s: ledger traffic record %d names layer %u, tensor %u, "
                            "phase %u, outside the ledger", r->path, l->n_traffic, layer, tensor, phase);
        t->layer = (int)layer;
        t->tensor = (int)tensor;
        t->phase = (fm_phase)phase;
    }
    for (int p = 0; p < FM_PHASES; p++)
        if ((rc = fmi_get_u64(r, &l->passes[p], "pass counts")) < 0 ||
            (rc = fmi_get_u64(r, &l->examples[p], "pass counts")) < 0)
            return rc;
    return FM_OK;
}

int fmi_ledger_copy(fm_ledger *dst, const fm_ledger *src)
{
    fm_writer w = {0};
    fmi_ledger_serialize(src, &w);
    if (w.failed) {
        fmi_free(w.buf);
        return fmi_error(FM_ENOMEM, "out of memory copying the energy ledger");
    }
    fm_reader r = {w.buf, w.len, "ledger copy", "ledger"};
    int rc = fmi_ledger_parse(&r, dst);
    fmi_free(w.buf);
    return rc;
}

/* ---- reading ---- */

int fm_ledger_layers(const fm_ledger *l) { return l ? l->n_layers : 0; }

const char *fm_ledger_layer_name(const fm_ledger *l, int layer)
{
    return l && layer >= 0 && layer < l->n_layers ? l->layers[layer].name : NULL;
}

const char *fm_ledger_layer_shape(const fm_ledger *l, int layer)
{
    return l && layer >= 0 && layer < l->n_layers ? l->layers[layer].shape : NULL;
}

static int selected(int want, int have) { return want < 0 || want == have; }

uint64_t fm_ledger_ops(const fm_ledger *l, int layer, int phase, fm_op op)
{
    if (!l || (unsigned)op >= FM_OP_KINDS)
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < l->n_layers; i++)
        for (int p = 0; p < FM_PHASES; p++)
            if (selected(layer, i) && selected(phase, p))
                n += l->layers[i].ops[p][op];
    return n;
}

int fm_ledger_tensors(const fm_ledger *l) { return l ? l->n_tensors : 0; }

const char *fm_ledger_tensor_name(const fm_ledger *l, int tensor)
{
    return l && tensor >= 0 && tensor < l->n_tensors ? l->tensors[tensor].name : NULL;
}

uint64_t fm_ledger_tensor_bytes(const fm_ledger *l, int tensor)
{
    return l && tensor >= 0 && tensor < l->n_tensors ? l->tensors[tensor].bytes : 0;
}

uint64_t fm_ledger_bytes(const fm_ledger *l, int layer, int phase, int tensor, int written)
{
    if (!l)
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < l->n_traffic; i++) {
        const ledger_traffic *r = &l->traffic[i];
        if (selected(layer, r->layer) && selected(phase, (int)r->phase) && selected(tensor, r->tensor))
            n += written ? r->written : r->read;
    }
    return n;
}

uint64_t fm_ledger_passes(const fm_ledger *l, int phase, uint64_t *examples)
{
    if (examples)
        *examples = 0;
    if (!l || phase < 0 || phase >= FM_PHASES)
        return 0;
    if (examples)
        *examples = l->examples[phase];
    return l->passes[phase];
}

/* ---- pricing ---- */

int fm_ledger_tensor_level(const fm_ledger *l, const fm_energy_table *table, int tensor)
{
    int levels = fm_energy_table_levels(table);
    if (!l || tensor < 0 || tensor >= l->n_tensors || levels < 1)
        return -1;
    if (is_network_tensor(&l->tensors[tensor]))
        return FM_LEDGER_NETWORK;
    for (int k = 0; k < levels; k++)
        if (fm_energy_table_level_capacity(table, k) >= l->tensors[tensor].bytes)
            return k;
    return levels - 1;
}

/* Bits an operation leaves behind: a 32-bit word, or one bit for a compare
 * and for one xnor of a bit pair. */
static double result_bits(fm_op op)
{
    return op == FM_OP_CMP || op == FM_OP_XNOR_POPCOUNT ? 1.0 : 32.0;
}

int fm_ledger_price(const fm_ledger *l, const fm_energy_table *table, int layer, int phase,
                    fm_energy *out)
{
    if (!l || !table || !out)
        return fmi_error(FM_EINVAL, "fm_ledger_price: NULL argument");
    memset(out, 0, sizeof *out);
    for (int op = 0; op < FM_OP_KINDS; op++) {
        uint64_t n = fm_ledger_ops(l, layer, phase, (fm_op)op);
        out->op_cost[op] = (double)n * fm_energy_table_op_cost(table, (fm_op)op);
        out->compute += out->op_cost[op];
        out->landauer_bits += (double)n * result_bits((fm_op)op);
    }
    for (int i = 0; i < l->n_traffic; i++) {
        const ledger_traffic *r = &l->traffic[i];
        if (!selected(layer, r->layer) || !selected(phase, (int)r->phase))
            continue;
        int k = fm_ledger_tensor_level(l, table, r->tensor);
        if (k == FM_LEDGER_NETWORK) {
            double cost = (double)r->written * fm_energy_table_network_cost(table, 0) +
                          (double)r->read * fm_energy_table_network_cost(table, 1);
            out->network_sent += r->written;
            out->network_received += r->read;
            out->network_cost += cost;
            out->communication += cost;
            out->landauer_bits += 8.0 * (double)r->written;
            continue;
        }
        if (k < 0 || k >= FM_ENERGY_MAX_LEVELS)
            continue;
        double cost = (double)r->read * fm_energy_table_level_cost(table, k, 0) +
                      (double)r->written * fm_energy_table_level_cost(table, k, 1);
        out->read_bytes[k] += r->read;
        out->written_bytes[k] += r->written;
        out->level_cost[k] += cost;
        out->communication += cost;
        out->landauer_bits += 8.0 * (double)r->written;
    }
    return FM_OK;
}

/* ---- tally of executed operations ---- */

#ifdef FM_COUNTING
static uint64_t tally[FM_OP_KINDS];

void fm_tally_add(fm_op op, uint64_t n)
{
#pragma omp atomic
    tally[op] += n;
}

void fmi_tally_take(uint64_t counts[FM_OP_KINDS])
{
    for (int op = 0; op < FM_OP_KINDS; op++) {
        uint64_t v;
#pragma omp atomic capture
        {
            v = tally[op];
            tally[op] = 0;
        }
        counts[op] = v;
    }
}

int fmi_tally_enabled(void) { return 1; }
#else
void fmi_tally_take(uint64_t counts[FM_OP_KINDS])
{
    memset(counts, 0, FM_OP_KINDS * sizeof counts[0]);
}

int fmi_tally_enabled(void) { return 0; }
#endif
