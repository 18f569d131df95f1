/* fuzz_energy_table.c — libFuzzer target for the energy-table text parser,
 * fm_energy_table_parse (docs/energy-tables.md), and fm_energy_table_open,
 * which reads a table file and hands it to the parser.
 *
 * The input is the text. A refusal is a negative code, no table and a message
 * that starts with the origin ("fuzz", or the file's path); a parsed
 * table must be what the format promises: a name, source and unit, ten op
 * costs and 1..8 levels, all finite and >= 0, capacities strictly increasing
 * up to the unbounded last level, access widths 1..4096. The same bytes
 * written to a file and opened by path must give the same code. Nothing may
 * crash, leak or hang, and each parse is repeated with one allocation failing,
 * which must be FM_ENOMEM (fuzz_support.h). Built and run by
 * tests/fuzz/run.sh. */
#include "fuzz_support.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct job {
    const uint8_t *data;
    size_t size;
    const char *path;
    int from_file;
} job;

static void check_table(const fm_energy_table *t)
{
    if (!fm_energy_table_name(t) || !fm_energy_table_source(t) || !fm_energy_table_unit(t))
        abort();
    double j = fm_energy_table_joules_per_unit(t);
    if (!isfinite(j) || j < 0)
        abort();
    for (int op = 0; op < FM_OP_KINDS; op++) {
        double c = fm_energy_table_op_cost(t, (fm_op)op);
        if (!isfinite(c) || c < 0)
            abort();
    }
    int levels = fm_energy_table_levels(t);
    if (levels < 1 || levels > FM_ENERGY_MAX_LEVELS)
        abort();
    for (int l = 0; l < levels; l++) {
        uint64_t cap = fm_energy_table_level_capacity(t, l);
        if (!fm_energy_table_level_name(t, l) || cap == 0 ||
            (l + 1 < levels) != (cap != FM_ENERGY_UNBOUNDED) ||
            (l > 0 && cap <= fm_energy_table_level_capacity(t, l - 1)))
            abort();
        for (int w = 0; w < 2; w++) {
            double c = fm_energy_table_level_cost(t, l, w);
            if (!isfinite(c) || c < 0)
                abort();
        }
    }
}

static int read_once(void *ctx)
{
    const job *j = ctx;
    fm_energy_table *t = (fm_energy_table *)(uintptr_t)1;
    int rc = j->from_file ? fm_energy_table_open(j->path, &t)
                          : fm_energy_table_parse((const char *)j->data, j->size, "fuzz", &t);
    if (rc != FM_OK) {
        if (rc >= 0 || t != NULL)
            abort();
        fz_check_message(rc, j->from_file ? j->path : "fuzz:", 0); /* ORIGIN: or ORIGIN:LINE: */
        return rc;
    }
    if (!t)
        abort();
    check_table(t);
    fm_energy_table_free(t);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    job j = {data, size, fz_path("table.txt"), 0};
    int rc = fz_run_twice(data, size, read_once, &j);
    fz_write(j.path, data, size);
    j.from_file = 1;
    int frc = fz_run_twice(data, size, read_once, &j);
    if (rc != frc) {
        fprintf(stderr, "fuzz_energy_table: parsing gives %d, opening the file %d\n", rc, frc);
        abort();
    }
    return 0;
}
