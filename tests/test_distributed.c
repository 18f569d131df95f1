/* test_distributed.c — data-parallel training through fm_comm, with the ranks
 * as forked processes and the collectives in shared memory (sums in rank
 * order, so every rank gets the same bits, as fm_comm requires): a run on 2
 * or 3 ranks computes what one process computes with the same global
 * minibatch, up to float rounding (batch norm over the whole minibatch,
 * dropout and Q(x) drawn by global row, even and uneven shares); compressed
 * exchanges keep the ranks identical and train; the merged ledger has the
 * whole run's work and the bytes between ranks at its network level; a rank
 * that fails at the start, in the middle (its checkpoint cannot be written)
 * or with another configuration ends every rank with a message naming it,
 * within a time limit, never a hang. MPI itself is tested by tests/cli_mpi.sh.
 * Synthetic data: needs nothing from ../shared. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define SUPPORT_NAME "distributed"
#include "support.h"

#include "fewmul.h"
#include "net.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- synthetic data: 8x8 images whose bright quadrant is the class ------- */

static fm_images train_set, test_set;


/* ---- the shared-memory communicator ---------------------------------------- */

#define MAX_RANKS 3
#define SLOT_BYTES (1u << 20)
#define MAX_STATE 60000

/* What a rank reports back to the test (in shared memory). */
typedef struct rank_report {
    int rc;
    char message[512];
    fm_result result;
    long state_count;
    float state[MAX_STATE];
    uint64_t network_sent, network_received; /* over the whole ledger */
    uint64_t grad_sent;                      /* of the "net:*.grad" tensors */
    double compute, communication;
    uint64_t train_examples;
    uint64_t update_ops[FM_OP_KINDS];
    double forward_backward_compute;
    int done;
} rank_report;

typedef struct shared {
    pthread_barrier_t barrier;
    int size;
    unsigned char slot[MAX_RANKS][SLOT_BYTES];
    rank_report report[MAX_RANKS + 1]; /* the last: a one-process run */
} shared;

static shared *sh;

typedef struct rank_comm {
    int rank;
} rank_comm;

/* Every rank puts its block in its slot; after the barrier each reads all. */
static int sh_allgather(const void *send, void *recv, size_t bytes, void *user)
{
    const rank_comm *rc = user;
    if (bytes > SLOT_BYTES)
        return -1;
    memcpy(sh->slot[rc->rank], send, bytes);
    pthread_barrier_wait(&sh->barrier);
    for (int r = 0; r < sh->size; r++)
        memcpy((unsigned char *)recv + (size_t)r * bytes, sh->slot[r], bytes);
    pthread_barrier_wait(&sh->barrier);
    return 0;
}

/* The sum in rank order: the same bits on every rank. */
static int sh_allreduce(float *data, size_t count, void *user)
{
    const rank_comm *rc = user;
    const size_t chunk = SLOT_BYTES / sizeof(float);
    for (size_t at = 0; at < count; at += chunk) {
        size_t n = count - at < chunk ? count - at : chunk;
        memcpy(sh->slot[rc->rank], data + at, n * sizeof(float));
        pthread_barrier_wait(&sh->barrier);
        for (size_t i = 0; i < n; i++) {
            float s = 0.0f;
            for (int r = 0; r < sh->size; r++)
                s += ((const float *)sh->slot[r])[i];
            data[at + i] = s;
        }
        pthread_barrier_wait(&sh->barrier);
    }
    return 0;
}

/* ---- one rank's run ---------------------------------------------------------- */

typedef struct run_spec {
    fm_config config;
    int ranks;                /* 0: one process, no communicator */
    fm_compress compress;
    int ledger;
    const char *checkpoint;   /* rank 0 writes it */
    int bad_labels_on;        /* 1 + the rank whose test labels exceed the classes */
    int other_seed_on;        /* 1 + the rank that runs another seed */
} run_spec;

static void report_ledger(rank_report *out, const fm_ledger *l)
{
    fm_energy_table *table;
    if (fm_energy_table_open("horowitz45", &table) != FM_OK)
        return;
    fm_energy e;
    if (fm_ledger_price(l, table, -1, -1, &e) == FM_OK) {
        out->network_sent = e.network_sent;
        out->network_received = e.network_received;
        out->compute = e.compute;
        out->communication = e.communication;
    }
    for (int t = 0; t < fm_ledger_tensors(l); t++) {
        const char *name = fm_ledger_tensor_name(l, t);
        size_t n = strlen(name);
        if (strncmp(name, "net:", 4) == 0 && n > 5 && strcmp(name + n - 5, ".grad") == 0)
            out->grad_sent += fm_ledger_bytes(l, -1, -1, t, 1);
    }
    fm_ledger_passes(l, FM_PHASE_UPDATE, &out->train_examples);
    for (int op = 0; op < FM_OP_KINDS; op++)
        out->update_ops[op] = fm_ledger_ops(l, -1, FM_PHASE_UPDATE, (fm_op)op);
    for (int p = FM_PHASE_FORWARD; p <= FM_PHASE_BACKWARD; p++)
        if (fm_ledger_price(l, table, -1, p, &e) == FM_OK)
            out->forward_backward_compute += e.compute;
    fm_energy_table_free(table);
}

static void run_rank(const run_spec *spec, int rank, rank_report *out)
{
    alarm(120); /* a hang ends the child, and the test sees a signal */
    fm_config c = spec->config;
    if (spec->other_seed_on == rank + 1)
        c.seed += 1;
    fm_images test = test_set;
    uint8_t *labels = NULL;
    if (spec->bad_labels_on == rank + 1) {
        labels = malloc((size_t)test.count);
        memcpy(labels, test.labels, (size_t)test.count);
        labels[3] = 9;
        test.labels = labels;
    }
    fm_model *m = NULL;
    fm_ledger *ledger = NULL;
    rank_comm user = {rank};
    fm_comm comm = {.rank = rank, .size = spec->ranks, .allreduce_sum = sh_allreduce,
                    .allgather = sh_allgather, .user = &user, .compress = spec->compress};
    out->rc = fm_model_create_image(&c, 8, 8, 1, 4, &m);
    if (out->rc == FM_OK && spec->ledger)
        out->rc = fm_ledger_create(&ledger);
    if (out->rc == FM_OK) {
        fm_callbacks cb = {.ledger = ledger, .comm = spec->ranks ? &comm : NULL,
                           .checkpoint = spec->checkpoint, .data_spec = "synthetic"};
        out->rc = fm_train(m, &train_set, &test, &c, &cb, &out->result);
    }
    snprintf(out->message, sizeof out->message, "%s", out->rc ? fm_last_error() : "");
    if (out->rc == FM_OK && m->state_count <= MAX_STATE) {
        out->state_count = (long)m->state_count;
        memcpy(out->state, m->state, m->state_count * sizeof(float));
    }
    if (out->rc == FM_OK && ledger)
        report_ledger(out, ledger);
    out->done = 1;
    fm_ledger_free(ledger);
    fm_model_free(m);
    free(labels);
}

/* Forks the ranks (or the one process) and waits; asserts each exited 0. */
static void run_all(const run_spec *spec)
{
    const int n = spec->ranks ? spec->ranks : 1;
    rank_report *first = spec->ranks ? &sh->report[0] : &sh->report[MAX_RANKS];
    memset(first, 0, (size_t)n * sizeof *first);
    sh->size = n;
    pthread_barrierattr_t attr;
    pthread_barrierattr_init(&attr);
    pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    assert_int_equal(pthread_barrier_init(&sh->barrier, &attr, (unsigned)n), 0);
    pid_t pid[MAX_RANKS];
    for (int r = 0; r < n; r++) {
        pid[r] = fork();
        assert_true(pid[r] >= 0);
        if (pid[r] == 0) {
            run_rank(spec, r, &first[r]);
            _exit(0);
        }
    }
    for (int r = 0; r < n; r++) {
        int status;
        assert_int_equal(waitpid(pid[r], &status, 0), pid[r]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("rank %d did not finish (%s %d): a hang or a crash", r,
                     WIFSIGNALED(status) ? "signal" : "status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        assert_true(first[r].done);
    }
    pthread_barrier_destroy(&sh->barrier);
}

/* ---- the tests -------------------------------------------------------------- */

/* 400 training images in batches of 40, 100 validation, 2 epochs. */
static void base_config(fm_config *c, const char *arch, const char *weights)
{
    fm_config_default(c);
    c->arch = arch;
    assert_int_equal(fm_parse_weights(weights, c), FM_OK);
    c->epochs = 2;
    c->batch = 40;
    c->valid = 100;
    c->threads = 1;
}

/* The largest difference of two runs' weights, relative to the weight (or to
 * 1, for small ones). */
static double max_rel_diff(const rank_report *a, const rank_report *b)
{
    assert_int_equal(a->state_count, b->state_count);
    double d = 0.0;
    for (long i = 0; i < a->state_count; i++)
        d = fmax(d, fabs((double)a->state[i] - (double)b->state[i]) /
                        fmax(1.0, fabs((double)b->state[i])));
    return d;
}

static void assert_ranks_identical(int ranks)
{
    for (int r = 1; r < ranks; r++) {
        assert_int_equal(sh->report[r].state_count, sh->report[0].state_count);
        assert_memory_equal(sh->report[r].state, sh->report[0].state,
                            (size_t)sh->report[0].state_count * sizeof(float));
        assert_true(sh->report[r].result.test_error_pct == sh->report[0].result.test_error_pct);
        assert_true(sh->report[r].result.final_train_loss == sh->report[0].result.final_train_loss);
    }
}

/* ranks against one process: weights within `tolerance`, losses and errors close */
static void equivalent(run_spec *spec, int ranks, double tolerance)
{
    spec->ranks = 0;
    run_all(spec);
    const rank_report *one = &sh->report[MAX_RANKS];
    assert_int_equal(one->rc, FM_OK);
    spec->ranks = ranks;
    run_all(spec);
    for (int r = 0; r < ranks; r++)
        if (sh->report[r].rc != FM_OK)
            fail_msg("rank %d: %s", r, sh->report[r].message);
    assert_ranks_identical(ranks);
    double d = max_rel_diff(&sh->report[0], one);
    print_message("# %d ranks vs one process: max relative weight difference %.3g, loss %.9g vs %.9g, "
                  "test error %.2f%% vs %.2f%%\n",
                  ranks, d, sh->report[0].result.final_train_loss, one->result.final_train_loss,
                  sh->report[0].result.test_error_pct, one->result.test_error_pct);
    assert_true(d <= tolerance);
    assert_true(fabs(sh->report[0].result.final_train_loss - one->result.final_train_loss) <=
                1e-4 * fmax(1.0, fabs(one->result.final_train_loss)));
    assert_true(fabs(sh->report[0].result.test_error_pct - one->result.test_error_pct) <= 1.0);
}

static void test_fp32_bn_momentum_two_ranks(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:64,32", "fp32");
    spec.config.momentum = 0.9;
    equivalent(&spec, 2, 1e-4);
}

/* dropout masks and Q(x) are drawn by the row's place in the global minibatch */
static void test_dropout_qb_running_bn_three_uneven_ranks(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:64,32", "fp32");
    spec.config.qb = 1;
    spec.config.dropout = 0.2;
    spec.config.bn_stats = FM_BN_RUNNING;
    spec.config.batch = 37; /* shares of 12, 12 and 13; the last minibatch of 30 */
    spec.config.opt = FM_OPT_ADAM;
    equivalent(&spec, 3, 1e-4);
}

static void test_conv_xent_two_ranks(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "conv:8k3,pool2,fc16", "fp32");
    spec.config.loss = FM_LOSS_XENT;
    equivalent(&spec, 2, 1e-4);
}

/* Stochastic binarization: a weight at its sampling threshold can flip with
 * float rounding, so the check is the result, with identical ranks. */
static void test_bc_qb_two_ranks(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:64", "bc");
    spec.config.qb = 1;
    equivalent(&spec, 2, 0.05);
}

static void test_ledger_counts_the_whole_run_and_the_network(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:64,32", "tc");
    spec.config.qb = 1;
    spec.ledger = 1;
    spec.ranks = 0;
    run_all(&spec);
    const rank_report one = sh->report[MAX_RANKS];
    assert_int_equal(one.rc, FM_OK);
    assert_int_equal(one.network_sent, 0);
    spec.ranks = 2;
    run_all(&spec);
    assert_int_equal(sh->report[0].rc, FM_OK);
    assert_int_equal(sh->report[1].rc, FM_OK);
    /* the merged ledger: identical on both ranks, the training images of both */
    assert_int_equal(sh->report[0].network_sent, sh->report[1].network_sent);
    assert_int_equal(sh->report[0].train_examples, one.train_examples);
    /* the gradients: 20 steps, each rank sending 2(N-1)/N of 4 bytes per parameter, twice
     * over (two ranks) */
    uint64_t params = 0;
    {
        fm_model *m;
        assert_int_equal(fm_model_create_image(&spec.config, 8, 8, 1, 4, &m), FM_OK);
        params = fm_model_param_count(m);
        fm_model_free(m);
    }
    assert_int_equal(sh->report[0].grad_sent, 2 * 20 * 4 * params);
    assert_true(sh->report[0].network_sent > sh->report[0].grad_sent); /* batch norm, control */
    assert_int_equal(sh->report[0].network_sent, sh->report[0].network_received);
    /* every rank updates every weight; the products are shared, the weight
     * sampling and the per-feature work of batch norm are repeated */
    for (int op = 0; op < FM_OP_KINDS; op++)
        assert_int_equal(sh->report[0].update_ops[op], 2 * one.update_ops[op]);
    assert_true(sh->report[0].forward_backward_compute > one.forward_backward_compute);
    assert_true(sh->report[0].forward_backward_compute < 2 * one.forward_backward_compute);
    assert_true(sh->report[0].communication > one.communication);
}

static void compressed(fm_compress how)
{
    run_spec spec = {0};
    base_config(&spec.config, "mlp:64,32", "bc");
    spec.config.qb = 1;
    spec.config.epochs = 3;
    spec.ledger = 1;
    spec.ranks = 2;
    run_all(&spec);
    const rank_report plain = sh->report[0];
    assert_int_equal(plain.rc, FM_OK);
    spec.compress = how;
    run_all(&spec);
    for (int r = 0; r < 2; r++)
        if (sh->report[r].rc != FM_OK)
            fail_msg("rank %d: %s", r, sh->report[r].message);
    assert_ranks_identical(2);
    print_message("# %s: gradient bytes sent %llu against %llu; test error %.2f%% against %.2f%%\n",
                  fm_compress_name(how), (unsigned long long)sh->report[0].grad_sent,
                  (unsigned long long)plain.grad_sent, sh->report[0].result.test_error_pct,
                  plain.result.test_error_pct);
    /* one byte a value plus a scale per group, against four bytes a value */
    assert_true(sh->report[0].grad_sent * 39 < plain.grad_sent * 10);
    assert_true(sh->report[0].grad_sent * 4 > plain.grad_sent);
    /* with error feedback it still learns the four quadrants */
    assert_true(sh->report[0].result.test_error_pct < 20.0);
}

static void test_compress_int8(void **state)
{
    (void)state;
    compressed(FM_COMPRESS_INT8);
}

static void test_compress_pow2(void **state)
{
    (void)state;
    compressed(FM_COMPRESS_POW2);
}

static void assert_failed_with(int rank, int code, const char *needle)
{
    const rank_report *r = &sh->report[rank];
    if (r->rc != code || !strstr(r->message, needle))
        fail_msg("rank %d: code %d (expected %d), message '%s' (expected to contain '%s')", rank,
                 r->rc, code, r->message, needle);
}

static void test_a_rank_failing_at_the_start_ends_all(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:16", "fp32");
    spec.ranks = 2;
    spec.bad_labels_on = 1 + 1;
    run_all(&spec);
    assert_failed_with(1, FM_EMISMATCH, "exceeds");
    assert_failed_with(0, FM_EPEER, "rank 1 of 2 failed");
    assert_failed_with(0, FM_EPEER, "exceeds");
}

static void test_a_checkpoint_failing_on_rank_0_ends_all(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:16", "fp32");
    spec.ranks = 2;
    spec.checkpoint = tpath("no/such/folder/run.fmc");
    run_all(&spec);
    assert_int_equal(sh->report[0].rc, FM_EIO);
    assert_failed_with(1, FM_EPEER, "rank 0 of 2 failed");
}

static void test_ranks_with_other_configurations_refused(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:16", "fp32");
    spec.ranks = 3;
    spec.other_seed_on = 1 + 2;
    run_all(&spec);
    for (int r = 0; r < 3; r++)
        assert_failed_with(r, FM_EMISMATCH, "rank 2's configuration differs from rank 0's: seed");
}

static void test_a_minibatch_too_small_to_share_refused(void **state)
{
    (void)state;
    run_spec spec = {0};
    base_config(&spec.config, "mlp:16", "fp32");
    spec.config.batch = 399; /* the last minibatch of each epoch: 1 image */
    spec.ranks = 2;
    run_all(&spec);
    for (int r = 0; r < 2; r++)
        assert_failed_with(r, FM_EINVAL, "cannot be shared by 2 ranks");
}

static void test_compress_names(void **state)
{
    (void)state;
    fm_compress c;
    assert_int_equal(fm_parse_compress("int8", &c), FM_OK);
    assert_int_equal(c, FM_COMPRESS_INT8);
    assert_int_equal(fm_parse_compress("pow2", &c), FM_OK);
    assert_string_equal(fm_compress_name(c), "pow2");
    assert_int_equal(fm_parse_compress("fp16", &c), FM_EINVAL);
    assert_non_null(strstr(fm_last_error(), "fp16"));
}

static int setup(void **state)
{
    make_quadrant_set(&train_set, 500, 1);
    make_quadrant_set(&test_set, 120, 2);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    return group_setup(state);
}

static int teardown(void **state)
{
    munmap(sh, sizeof *sh);
    free(train_set.pixels);
    free(train_set.labels);
    free(test_set.pixels);
    free(test_set.labels);
    return group_teardown(state);
}

int main(void)
{
    /* the ranks are forked: no OpenMP thread may exist before (threads = 1) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compress_names),
        cmocka_unit_test_setup_teardown(test_fp32_bn_momentum_two_ranks, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_dropout_qb_running_bn_three_uneven_ranks, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_conv_xent_two_ranks, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bc_qb_two_ranks, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_counts_the_whole_run_and_the_network, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_compress_int8, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_compress_pow2, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_a_rank_failing_at_the_start_ends_all, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_a_checkpoint_failing_on_rank_0_ends_all, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_ranks_with_other_configurations_refused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_a_minibatch_too_small_to_share_refused, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
