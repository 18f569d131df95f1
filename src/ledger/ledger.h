/* ledger.h — how the library records work into a ledger (fewmul.h has the
 * reading side), and the operation tally of counting builds. Layers declare
 * their costs through fm_cost_* with the shapes of the pass they run; kernels
 * of a counting build (-DFEWMUL_COUNT_OPS=ON) also tally what they execute, so
 * a test can hold the two against each other. */
#ifndef FEWMUL_LEDGER_H
#define FEWMUL_LEDGER_H

#include "fewmul.h"

#include <stdint.h>

/* Where recorded work goes: a ledger (may be NULL: record nothing), the layer
 * index in the ledger and the phase. */
typedef struct fm_cost {
    fm_ledger *ledger;
    int layer;
    fm_phase phase;
} fm_cost;

/* Declares layer `index` (model layers first, then the loss) with its name and
 * shape; returns FM_OK or FM_ENOMEM. Names repeat harmlessly. */
int fmi_ledger_layer(fm_ledger *ledger, int index, const char *name, const char *shape);
/* Adds n operations of one kind. */
void fmi_cost_ops(const fm_cost *cost, fm_op op, uint64_t n);
/* Records bytes read and written of the tensor `name` whose footprint is
 * `footprint` bytes (the largest footprint recorded wins). */
void fmi_cost_bytes(const fm_cost *cost, const char *name, uint64_t footprint, uint64_t read,
                   uint64_t written);
/* Records bytes a rank sent to and received from the other ranks of a
 * data-parallel run, as the tensor "net:<name>" (the network level). */
void fmi_cost_network(const fm_cost *cost, const char *name, uint64_t sent, uint64_t received);
/* Adds every count of src into dst (layers by index, tensors and traffic by
 * name; a footprint takes the larger): the ledgers of the ranks of one run. */
int fmi_ledger_add(fm_ledger *dst, const fm_ledger *src);
/* Counts one pass of `examples` examples in a phase. */
void fmi_ledger_pass(fm_ledger *ledger, fm_phase phase, uint64_t examples);
/* Allocation failure inside recording is remembered, not reported at once;
 * this returns FM_ENOMEM (with a message) if any happened, else FM_OK. */
int fmi_ledger_status(const fm_ledger *ledger);

/* A ledger saved with a training checkpoint and read back (into a ledger
 * whose contents it replaces), and a copy through the same two. */
struct fm_writer;
struct fm_reader;
void fmi_ledger_serialize(const fm_ledger *ledger, struct fm_writer *w);
int fmi_ledger_parse(struct fm_reader *r, fm_ledger *ledger);
int fmi_ledger_copy(fm_ledger *dst, const fm_ledger *src);

/* Bytes of `count` values of `bits` bits each, packed. */
static inline uint64_t fmi_packed_bytes(uint64_t count, unsigned bits)
{
    return (count * bits + 7) / 8;
}

/* ---- tally of executed operations (counting builds only) ---- */
#ifdef FM_COUNTING
void fm_tally_add(fm_op op, uint64_t n);
#define FM_TALLY(op, n) fm_tally_add((op), (uint64_t)(n))
#else
#define FM_TALLY(op, n) ((void)0)
#endif
/* Reads and clears the tally (all zero outside counting builds). */
void fmi_tally_take(uint64_t counts[FM_OP_KINDS]);
/* 1 in a counting build. */
int fmi_tally_enabled(void);

#endif
