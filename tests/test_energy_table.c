/* test_energy_table.c — tests of the energy pricing tables: every built-in
 * table parses and horowitz45 holds exactly its documented values; a user's
 * table loads from a file (comments, blank lines, CRLF); each malformed table
 * fails with its code and a message naming origin and line; and no path leaks,
 * even when each allocation fails in turn. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fewmul.h"

#define SUPPORT_NAME "energy"
#include "support.h"


/* Writes `n` bytes to a new file made by mkstemp in tmpdir; returns its path
 * (a ring of buffers keeps a test's paths valid together). */
static const char *write_temp(const void *data, size_t n)
{
    static char paths[16][512];
    static int next;
    char *path = paths[next++ % 16];
    snprintf(path, 512, "%s/table-XXXXXX", tmpdir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void assert_message_has(const char *part)
{
    const char *msg = fm_last_error();
    if (!strstr(msg, part))
        fail_msg("message \"%s\" lacks \"%s\"", msg, part);
}

static fm_energy_table *parse_ok(const char *text, size_t n)
{
    fm_energy_table *t = NULL;
    int err = fm_energy_table_parse(text, n, "test", &t);
    if (err)
        fail_msg("%s: %s", fm_strerror(err), fm_last_error());
    assert_non_null(t);
    return t;
}

/* A valid table whose lines are numbered: header 1, meta 2-4, ops 5-14,
 * levels 15-16; a line appended after LEVELS is line 17. */
#define HDR "fewmul-energy-table 1\n"
#define NAME "name t\n"
#define SOURCE "source s\n"
#define UNIT "unit pJ 1e-12\n"
#define META NAME SOURCE UNIT
#define OPS_NO_FMUL                                                                         \
    "op fadd 1\nop fma 1\nop fspecial 1\nop iadd 1\nop shift 1\nop sign 1\n"                 \
    "op xnor_popcount 1\nop cmp 1\nop rand 1\n"
#define OPS "op fmul 1\n" OPS_NO_FMUL
#define LEVELS "level a 8KiB 1 1 64\nlevel b inf 2 2 64\n"
#define HEAD HDR META OPS

/* ---- op names ------------------------------------------------------------ */

static void test_op_names(void **state)
{
    (void)state;
    const char *want[FM_OP_KINDS] = {"fmul", "fadd", "fma", "fspecial", "iadd",
                                     "shift", "sign", "xnor_popcount", "cmp", "rand"};
    for (int i = 0; i < FM_OP_KINDS; i++)
        assert_string_equal(fm_op_name((fm_op)i), want[i]);
    assert_string_equal(fm_op_name(FM_OP_KINDS), "?");
    assert_string_equal(fm_op_name((fm_op)-1), "?");
    assert_string_equal(fm_op_name((fm_op)1000), "?");
}

/* ---- built-in tables ----------------------------------------------------- */

static void test_builtins_parse(void **state)
{
    (void)state;
    assert_string_equal(fm_energy_table_builtin(0), "horowitz45");
    int count = 0;
    while (fm_energy_table_builtin(count))
        count++;
    assert_true(count >= 2);
    assert_null(fm_energy_table_builtin(-1));
    assert_null(fm_energy_table_builtin_text(-1));
    assert_null(fm_energy_table_builtin_text(count));
    assert_null(fm_energy_table_builtin(count + 100));
    for (int i = 0; i < count; i++) {
        const char *name = fm_energy_table_builtin(i), *text = fm_energy_table_builtin_text(i);
        assert_non_null(text);
        /* The text parses to a table of the same name, and open() by name
         * gives the same table. */
        fm_energy_table *a = parse_ok(text, strlen(text));
        assert_string_equal(fm_energy_table_name(a), name);
        fm_energy_table *b = NULL;
        assert_int_equal(fm_energy_table_open(name, &b), FM_OK);
        assert_string_equal(fm_energy_table_name(b), name);
        assert_true(strlen(fm_energy_table_source(a)) > 20);
        assert_string_equal(fm_energy_table_source(a), fm_energy_table_source(b));
        assert_string_equal(fm_energy_table_unit(a), fm_energy_table_unit(b));
        for (int op = 0; op < FM_OP_KINDS; op++) {
            double c = fm_energy_table_op_cost(a, (fm_op)op);
            assert_true(c > 0 && isfinite(c));
            assert_true(c == fm_energy_table_op_cost(b, (fm_op)op));
        }
        int levels = fm_energy_table_levels(a);
        assert_true(levels >= 1 && levels <= FM_ENERGY_MAX_LEVELS);
        assert_int_equal(levels, fm_energy_table_levels(b));
        for (int l = 0; l < levels; l++) {
            assert_non_null(fm_energy_table_level_name(a, l));
            if (l)
                assert_true(fm_energy_table_level_capacity(a, l) >
                            fm_energy_table_level_capacity(a, l - 1));
            /* Farther memory costs more, in every built-in table. */
            if (l)
                assert_true(fm_energy_table_level_cost(a, l, 0) >
                            fm_energy_table_level_cost(a, l - 1, 0));
        }
        assert_true(fm_energy_table_level_capacity(a, levels - 1) == FM_ENERGY_UNBOUNDED);
        /* The text a user copies is marked as such: sources and assumptions. */
        assert_non_null(strstr(text, "ASSUMPTION"));
        fm_energy_table_free(a);
        fm_energy_table_free(b);
    }
}

static void test_horowitz45_values(void **state)
{
    (void)state;
    fm_energy_table *t = NULL;
    assert_int_equal(fm_energy_table_open("horowitz45", &t), FM_OK);
    assert_string_equal(fm_energy_table_name(t), "horowitz45");
    assert_string_equal(fm_energy_table_unit(t), "pJ");
    assert_true(fm_energy_table_joules_per_unit(t) == 1e-12);
    assert_non_null(strstr(fm_energy_table_source(t), "Horowitz"));
    assert_non_null(strstr(fm_energy_table_source(t), "ISSCC 2014"));
    const double want[FM_OP_KINDS] = {
        [FM_OP_FMUL] = 3.7, [FM_OP_FADD] = 0.9,   [FM_OP_FMA] = 4.6,
        [FM_OP_FSPECIAL] = 14.8, [FM_OP_IADD] = 0.1, [FM_OP_SHIFT] = 0.03,
        [FM_OP_SIGN] = 0.03, [FM_OP_XNOR_POPCOUNT] = 0.004, [FM_OP_CMP] = 0.1,
        [FM_OP_RAND] = 0.6,
    };
    for (int op = 0; op < FM_OP_KINDS; op++)
        if (fm_energy_table_op_cost(t, (fm_op)op) != want[op])
            fail_msg("op %s: %.17g, want %.17g", fm_op_name((fm_op)op),
                     fm_energy_table_op_cost(t, (fm_op)op), want[op]);
    assert_int_equal(fm_energy_table_levels(t), 4);
    const char *names[4] = {"sram8k", "sram32k", "sram1m", "dram"};
    const uint64_t caps[4] = {8192, 32768, 1048576, UINT64_MAX};
    const double per_byte[4] = {10.0 / 8, 20.0 / 8, 100.0 / 8, 1300.0 / 8};
    for (int l = 0; l < 4; l++) {
        assert_string_equal(fm_energy_table_level_name(t, l), names[l]);
        assert_true(fm_energy_table_level_capacity(t, l) == caps[l]);
        assert_true(fm_energy_table_level_cost(t, l, 0) == per_byte[l]);
        assert_true(fm_energy_table_level_cost(t, l, 1) == per_byte[l]);
    }
    assert_true(fm_energy_table_level_cost(t, 0, 0) == 1.25);
    assert_true(fm_energy_table_level_cost(t, 3, 1) == 162.5);
    /* the link between ranks: 1.9 pJ/bit sent, receiving included */
    assert_true(fm_energy_table_has_network(t));
    assert_true(fm_energy_table_network_cost(t, 0) == 15.2);
    assert_true(fm_energy_table_network_cost(t, 1) == 0.0);
    fm_energy_table_free(t);
}

static void test_eyeriss16_values(void **state)
{
    (void)state;
    fm_energy_table *t = NULL, *h = NULL;
    assert_int_equal(fm_energy_table_open("eyeriss16", &t), FM_OK);
    assert_int_equal(fm_energy_table_open("horowitz45", &h), FM_OK);
    assert_string_equal(fm_energy_table_unit(t), "MAC");
    assert_true(fm_energy_table_joules_per_unit(t) == 0.0);
    assert_non_null(strstr(fm_energy_table_source(t), "Eyeriss"));
    assert_true(fm_energy_table_op_cost(t, FM_OP_FMA) == 1.0);
    /* Every other op keeps its ratio to the fp32 multiply-add of horowitz45,
     * to the 4 significant digits the table is written with. */
    double fma = fm_energy_table_op_cost(h, FM_OP_FMA);
    for (int op = 0; op < FM_OP_KINDS; op++) {
        double ratio = fm_energy_table_op_cost(h, (fm_op)op) / fma;
        double got = fm_energy_table_op_cost(t, (fm_op)op);
        if (fabs(got - ratio) > 5e-4 * ratio)
            fail_msg("op %s: %.10g, want %.10g", fm_op_name((fm_op)op), got, ratio);
    }
    assert_int_equal(fm_energy_table_levels(t), 3);
    const char *names[3] = {"rf", "buffer", "dram"};
    const uint64_t caps[3] = {1024, 512 * 1024, FM_ENERGY_UNBOUNDED};
    const double per_word[3] = {1, 6, 200};
    for (int l = 0; l < 3; l++) {
        assert_string_equal(fm_energy_table_level_name(t, l), names[l]);
        assert_true(fm_energy_table_level_capacity(t, l) == caps[l]);
        assert_true(fm_energy_table_level_cost(t, l, 0) == per_word[l] / 2); /* 16-bit words */
        assert_true(fm_energy_table_level_cost(t, l, 1) == per_word[l] / 2);
    }
    assert_false(fm_energy_table_has_network(t)); /* Eyeriss prices no link between chips */
    assert_true(fm_energy_table_network_cost(t, 0) == 0.0);
    fm_energy_table_free(t);
    fm_energy_table_free(h);
}

/* The optional network line: costs per BITS-bit word, per byte as read back. */
static void test_network_line(void **state)
{
    (void)state;
    static const char text[] = HEAD LEVELS "network 8 4 16   # a 16-bit link\n";
    fm_energy_table *t = NULL;
    assert_int_equal(fm_energy_table_parse(text, strlen(text), "net.table", &t), FM_OK);
    assert_true(fm_energy_table_has_network(t));
    assert_true(fm_energy_table_network_cost(t, 0) == 4.0);
    assert_true(fm_energy_table_network_cost(t, 1) == 2.0);
    fm_energy_table_free(t);
}

static void test_accessors_out_of_range(void **state)
{
    (void)state;
    fm_energy_table *t = NULL;
    assert_int_equal(fm_energy_table_open("horowitz45", &t), FM_OK);
    assert_null(fm_energy_table_level_name(t, -1));
    assert_null(fm_energy_table_level_name(t, 4));
    assert_true(fm_energy_table_level_capacity(t, 4) == 0);
    assert_true(fm_energy_table_level_cost(t, 4, 0) == 0.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_KINDS) == 0.0);
    assert_true(fm_energy_table_op_cost(t, (fm_op)-1) == 0.0);
    fm_energy_table_free(t);
    assert_null(fm_energy_table_name(NULL));
    assert_null(fm_energy_table_source(NULL));
    assert_null(fm_energy_table_unit(NULL));
    assert_int_equal(fm_energy_table_levels(NULL), 0);
    assert_true(fm_energy_table_joules_per_unit(NULL) == 0.0);
    assert_true(fm_energy_table_op_cost(NULL, FM_OP_FMUL) == 0.0);
    fm_energy_table_free(NULL);
}

static void test_null_arguments(void **state)
{
    (void)state;
    fm_energy_table *t = (fm_energy_table *)&t;
    assert_int_equal(fm_energy_table_open(NULL, &t), FM_EINVAL);
    assert_null(t);
    assert_int_equal(fm_energy_table_open("horowitz45", NULL), FM_EINVAL);
    t = (fm_energy_table *)&t;
    assert_int_equal(fm_energy_table_parse(NULL, 5, "x", &t), FM_EINVAL);
    assert_null(t);
    assert_int_equal(fm_energy_table_parse("x", 1, "x", NULL), FM_EINVAL);
    /* No origin: messages still name something. */
    assert_int_equal(fm_energy_table_parse("junk\n", 5, NULL, &t), FM_EFORMAT);
    assert_message_has(":1:");
}

/* ---- a user's table ------------------------------------------------------- */

static void test_user_table_file(void **state)
{
    (void)state;
    /* CRLF line ends, comments everywhere, blank and space-only lines, tabs,
     * a byte-order mark, every capacity suffix and a source with inner spaces. */
    static const char text[] =
        "\xef\xbb\xbf# my table\r\n"
        "\r\n"
        "   # indented comment\r\n"
        "fewmul-energy-table 1   # the header may carry a comment\r\n"
        "\t \r\n"
        "name\tmine\r\n"
        "source  My  lab's   measurements,\t2024   # not part of the source\r\n"
        "unit fJ 1e-15\r\n"
        "op fmul 2.5e1\r\n"
        "op fadd .5\r\n"
        "op fma 3.\r\n"
        "op fspecial 100\r\n"
        "op iadd 1E0\r\n"
        "op shift 0\r\n"
        "op sign +0.25\r\n"
        "op xnor_popcount 0.0625\r\n"
        "op cmp 1e+0\r\n"
        "op rand 7\r\n"
        "level r 512B 1 2 8\r\n"
        "level s 2K 4 4 32\r\n"
        "level m 3MiB 8 16 128\r\n"
        "level n 4M 1 1 1\r\n"
        "level g 1GiB 64 64 64\r\n"
        "level g2 2G 64 64 64\r\n"
        "level d inf 6400 12800 4096\r\n"
        "# the end, no newline after this comment";
    const char *path = write_temp(text, sizeof text - 1);
    fm_energy_table *t = NULL;
    int err = fm_energy_table_open(path, &t);
    if (err)
        fail_msg("%s", fm_last_error());
    assert_string_equal(fm_energy_table_name(t), "mine");
    assert_string_equal(fm_energy_table_source(t), "My  lab's   measurements,\t2024");
    assert_string_equal(fm_energy_table_unit(t), "fJ");
    assert_true(fm_energy_table_joules_per_unit(t) == 1e-15);
    assert_true(fm_energy_table_op_cost(t, FM_OP_FMUL) == 25.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_FADD) == 0.5);
    assert_true(fm_energy_table_op_cost(t, FM_OP_FMA) == 3.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_FSPECIAL) == 100.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_IADD) == 1.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_SHIFT) == 0.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_SIGN) == 0.25);
    assert_true(fm_energy_table_op_cost(t, FM_OP_XNOR_POPCOUNT) == 0.0625);
    assert_true(fm_energy_table_op_cost(t, FM_OP_CMP) == 1.0);
    assert_true(fm_energy_table_op_cost(t, FM_OP_RAND) == 7.0);
    assert_int_equal(fm_energy_table_levels(t), 7);
    const uint64_t caps[7] = {512, 2048, 3 << 20, 4 << 20, 1 << 30, (uint64_t)2 << 30,
                              FM_ENERGY_UNBOUNDED};
    /* cost per byte = cost / (bits / 8) */
    const double read[7] = {1, 1, 0.5, 8, 8, 8, 12.5}, write[7] = {2, 1, 1, 8, 8, 8, 25};
    for (int l = 0; l < 7; l++) {
        assert_true(fm_energy_table_level_capacity(t, l) == caps[l]);
        if (fm_energy_table_level_cost(t, l, 0) != read[l] ||
            fm_energy_table_level_cost(t, l, 1) != write[l])
            fail_msg("level %d: %g %g", l, fm_energy_table_level_cost(t, l, 0),
                     fm_energy_table_level_cost(t, l, 1));
    }
    assert_string_equal(fm_energy_table_level_name(t, 6), "d");
    fm_energy_table_free(t);

    /* The same table with LF line ends and no BOM gives the same values. */
    char lf[sizeof text];
    size_t n = 0;
    for (size_t i = 3; i < sizeof text - 1; i++)
        if (text[i] != '\r')
            lf[n++] = text[i];
    t = parse_ok(lf, n);
    assert_true(fm_energy_table_level_cost(t, 6, 1) == 25.0);
    assert_string_equal(fm_energy_table_source(t), "My  lab's   measurements,\t2024");
    fm_energy_table_free(t);

    /* The text need not be NUL-terminated: only `length` bytes are read. */
    const char *h = fm_energy_table_builtin_text(0);
    size_t hn = strlen(h);
    char *copy = malloc(hn);
    assert_non_null(copy);
    memcpy(copy, h, hn);
    t = parse_ok(copy, hn);
    free(copy);
    assert_string_equal(fm_energy_table_name(t), "horowitz45");
    fm_energy_table_free(t);
}

static void test_builtin_text_as_file(void **state)
{
    (void)state;
    /* A user starts from a built-in text: saved to a file it loads unchanged. */
    const char *text = fm_energy_table_builtin_text(1);
    const char *path = write_temp(text, strlen(text));
    fm_energy_table *t = NULL, *b = NULL;
    assert_int_equal(fm_energy_table_open(path, &t), FM_OK);
    assert_int_equal(fm_energy_table_open(fm_energy_table_builtin(1), &b), FM_OK);
    assert_string_equal(fm_energy_table_name(t), fm_energy_table_name(b));
    for (int op = 0; op < FM_OP_KINDS; op++)
        assert_true(fm_energy_table_op_cost(t, (fm_op)op) == fm_energy_table_op_cost(b, (fm_op)op));
    fm_energy_table_free(t);
    fm_energy_table_free(b);
}

/* A comma-decimal locale must not change how "0.9" reads. */
static void test_locale_independent(void **state)
{
    (void)state;
    const char *candidates[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8",
                                "de_DE", "fr_FR", "ru_RU.UTF-8", "nl_NL.UTF-8"};
    const char *found = NULL;
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates && !found; i++)
        if (setlocale(LC_NUMERIC, candidates[i]) && localeconv()->decimal_point[0] == ',')
            found = candidates[i];
    if (!found) {
        setlocale(LC_NUMERIC, "C");
        printf("skipped: no comma-decimal locale installed\n");
        skip();
    }
    fm_energy_table *t = NULL;
    int err = fm_energy_table_open("horowitz45", &t);
    setlocale(LC_NUMERIC, "C");
    assert_int_equal(err, FM_OK);
    assert_true(fm_energy_table_op_cost(t, FM_OP_FADD) == 0.9);
    assert_true(fm_energy_table_joules_per_unit(t) == 1e-12);
    fm_energy_table_free(t);
}

/* ---- malformed tables ----------------------------------------------------- */

typedef struct bad_case {
    const char *what;
    const char *text;
    size_t length; /* 0: strlen(text) */
    int code;
    int line;      /* > 0: the message must name "bad.table:LINE:" */
    const char *has, *has2;
} bad_case;

#define NINE_LEVELS                                                                          \
    "level l1 1K 1 1 8\nlevel l2 2K 1 1 8\nlevel l3 3K 1 1 8\nlevel l4 4K 1 1 8\n"          \
    "level l5 5K 1 1 8\nlevel l6 6K 1 1 8\nlevel l7 7K 1 1 8\nlevel l8 8K 1 1 8\n"          \
    "level l9 inf 1 1 8\n"

static const bad_case bad_cases[] = {
    {"wrong magic", "fewmul-energy 1\n" META OPS LEVELS, 0, FM_EFORMAT, 1,
     "not an energy table", "fewmul-energy-table 1"},
    {"magic not first", META HDR OPS LEVELS, 0, FM_EFORMAT, 1, "first line must be", NULL},
    {"unsupported version", "fewmul-energy-table 2\n" META OPS LEVELS, 0, FM_EUNSUPPORTED, 1,
     "version 2 is not supported", NULL},
    {"bad version", "fewmul-energy-table one\n" META OPS LEVELS, 0, FM_EFORMAT, 1,
     "bad format version 'one'", NULL},
    {"version missing", "fewmul-energy-table\n" META OPS LEVELS, 0, FM_EFORMAT, 1,
     "missing tokens", NULL},
    {"second header", HEAD LEVELS HDR, 0, FM_EFORMAT, 17, "second", NULL},
    {"missing name", HDR SOURCE UNIT OPS LEVELS, 0, FM_EFORMAT, 0, "missing name", NULL},
    {"missing source", HDR NAME UNIT OPS LEVELS, 0, FM_EFORMAT, 0, "missing source", NULL},
    {"missing unit", HDR NAME SOURCE OPS LEVELS, 0, FM_EFORMAT, 0, "missing unit", NULL},
    {"missing all meta", HDR OPS LEVELS, 0, FM_EFORMAT, 0, "missing name, source, unit", NULL},
    {"missing ops",
     HDR META "op fmul 1\nop fadd 1\nop fma 1\nop iadd 1\nop shift 1\nop sign 1\n"
              "op xnor_popcount 1\nop cmp 1\n" LEVELS,
     0, FM_EFORMAT, 0, "op fspecial", "op rand"},
    {"no levels", HEAD, 0, FM_EFORMAT, 0, "missing level", NULL},
    {"unknown key", HEAD LEVELS "colour blue\n", 0, FM_EFORMAT, 17, "unknown key 'colour'", NULL},
    {"unknown op", HEAD LEVELS "op fdiv 1\n", 0, FM_EFORMAT, 17, "unknown op 'fdiv'", NULL},
    {"duplicate op", HEAD LEVELS "op fmul 2\n", 0, FM_EFORMAT, 17, "duplicate op 'fmul'",
     "line 5"},
    {"duplicate name", HEAD LEVELS "name u\n", 0, FM_EFORMAT, 17, "duplicate key 'name'",
     "line 2"},
    {"duplicate source", HEAD LEVELS "source again\n", 0, FM_EFORMAT, 17,
     "duplicate key 'source'", NULL},
    {"duplicate unit", HEAD LEVELS "unit J 1\n", 0, FM_EFORMAT, 17, "duplicate key 'unit'",
     NULL},
    {"duplicate network", HEAD LEVELS "network 1 1 8\nnetwork 2 2 8\n", 0, FM_EFORMAT, 18,
     "duplicate key 'network'", "line 17"},
    {"network without bits", HEAD LEVELS "network 1 1\n", 0, FM_EFORMAT, 17, "missing tokens",
     "network SEND_COST RECEIVE_COST BITS"},
    {"negative network cost", HEAD LEVELS "network 1 -1 8\n", 0, FM_EFORMAT, 17, "negative",
     "receive cost"},
    {"negative cost", HDR META "op fmul -1\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "negative",
     "fmul"},
    {"nan cost", HDR META "op fmul nan\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "'nan'", NULL},
    {"inf cost", HDR META "op fmul inf\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "'inf'", NULL},
    {"trailing junk", HDR META "op fmul 1.0x\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "'1.0x'",
     NULL},
    {"hex number", HDR META "op fmul 0x10\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "'0x10'", NULL},
    {"empty exponent", HDR META "op fmul 1e\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "'1e'", NULL},
    {"lone point", HDR META "op fmul .\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5, "'.'", NULL},
    {"overflowing cost", HDR META "op fmul 1e999\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5,
     "out of range", NULL},
    {"bad joules", HDR NAME SOURCE "unit pJ -1e-12\n" OPS LEVELS, 0, FM_EFORMAT, 4, "negative",
     NULL},
    {"unit missing joules", HDR NAME SOURCE "unit pJ\n" OPS LEVELS, 0, FM_EFORMAT, 4,
     "missing tokens", "unit UNIT JOULES_PER_UNIT"},
    {"op missing cost", HEAD LEVELS "op fmul\n", 0, FM_EFORMAT, 17, "missing tokens", NULL},
    {"op extra token", HDR META "op fmul 1 2\n" OPS_NO_FMUL LEVELS, 0, FM_EFORMAT, 5,
     "extra tokens", NULL},
    {"name extra token", HDR "name a b\n" SOURCE UNIT OPS LEVELS, 0, FM_EFORMAT, 2,
     "extra tokens", NULL},
    {"empty source", HDR NAME "source   # only a comment\n" UNIT OPS LEVELS, 0, FM_EFORMAT, 3,
     "missing tokens", NULL},
    {"level missing tokens", HEAD "level a 8KiB 1 1\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "missing tokens", NULL},
    {"level extra tokens", HEAD "level a 8KiB 1 1 64 9\nlevel b inf 2 2 64\n", 0, FM_EFORMAT,
     15, "extra tokens", NULL},
    {"levels out of order", HEAD "level a 32KiB 1 1 64\nlevel b 8KiB 2 2 64\nlevel c inf 3 3 64\n",
     0, FM_EFORMAT, 16, "not larger", "smallest first"},
    {"equal capacities", HEAD "level a 8KiB 1 1 64\nlevel b 8192B 2 2 64\nlevel c inf 3 3 64\n",
     0, FM_EFORMAT, 16, "not larger", NULL},
    {"last level not inf", HEAD "level a 8KiB 1 1 64\nlevel b 1MiB 2 2 64\n", 0, FM_EFORMAT, 16,
     "must have capacity inf", "'b'"},
    {"inf in middle", HEAD "level a inf 1 1 64\nlevel b 8KiB 2 2 64\n", 0, FM_EFORMAT, 16,
     "follows the unbounded level 'a'", NULL},
    {"too many levels", HEAD NINE_LEVELS, 0, FM_EFORMAT, 23, "too many levels", NULL},
    {"duplicate level", HEAD "level a 8KiB 1 1 64\nlevel a 16KiB 1 1 64\nlevel b inf 2 2 64\n",
     0, FM_EFORMAT, 16, "duplicate level 'a'", NULL},
    {"bits zero", HEAD "level a 8KiB 1 1 0\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "access width '0'", NULL},
    {"bits too many", HEAD "level a 8KiB 1 1 4097\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "access width '4097'", NULL},
    {"bits not whole", HEAD "level a 8KiB 1 1 64.0\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "access width", NULL},
    {"capacity without suffix", HEAD "level a 8192 1 1 64\nlevel b inf 2 2 64\n", 0,
     FM_EFORMAT, 15, "bad capacity '8192'", NULL},
    {"capacity bad suffix", HEAD "level a 8KB 1 1 64\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "bad capacity '8KB'", NULL},
    {"capacity fraction", HEAD "level a 1.5MiB 1 1 64\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "bad capacity", NULL},
    {"capacity zero", HEAD "level a 0KiB 1 1 64\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "zero", NULL},
    {"capacity overflow", HEAD "level a 99999999999999GiB 1 1 64\nlevel b inf 2 2 64\n", 0,
     FM_EFORMAT, 15, "too large", NULL},
    {"capacity huge digits", HEAD "level a 999999999999999999999999B 1 1 64\nlevel b inf 2 2 64\n",
     0, FM_EFORMAT, 15, "too large", NULL},
    {"level negative read", HEAD "level a 8KiB -1 1 64\nlevel b inf 2 2 64\n", 0, FM_EFORMAT,
     15, "read cost -1 is negative", NULL},
    {"level nan write", HEAD "level a 8KiB 1 nan 64\nlevel b inf 2 2 64\n", 0, FM_EFORMAT, 15,
     "write cost", NULL},
    {"NUL byte", HDR "na\0me t\n" SOURCE UNIT OPS LEVELS, sizeof(HDR "na\0me t\n" SOURCE UNIT OPS LEVELS) - 1,
     FM_EFORMAT, 2, "NUL byte", NULL},
    {"control character", HDR "name t\f\n" SOURCE UNIT OPS LEVELS, 0, FM_EFORMAT, 2,
     "control character 0x0c", NULL},
    {"lone CR", HDR "name t\rsource s\n" UNIT OPS LEVELS, 0, FM_EFORMAT, 2, "control character",
     NULL},
    {"empty", "", 0, FM_EFORMAT, 0, "empty", NULL},
    {"only comments", "# nothing\n\n   \n# here\n", 0, FM_EFORMAT, 0, "empty", NULL},
};

static void check_bad(const bad_case *c, const char *text, size_t length)
{
    fm_energy_table *t = (fm_energy_table *)&t;
    int err = fm_energy_table_parse(text, length, "bad.table", &t);
    if (err != c->code)
        fail_msg("%s: got %s (%s), want %s", c->what, fm_strerror(err), fm_last_error(),
                 fm_strerror(c->code));
    assert_null(t);
    char where[64];
    if (c->line > 0)
        snprintf(where, sizeof where, "bad.table:%d: ", c->line);
    else
        snprintf(where, sizeof where, "bad.table: ");
    const char *msg = fm_last_error();
    if (strncmp(msg, where, strlen(where)) || !strstr(msg, c->has) ||
        (c->has2 && !strstr(msg, c->has2)))
        fail_msg("%s: message \"%s\" lacks \"%s\", \"%s\" or \"%s\"", c->what, msg, where,
                 c->has, c->has2 ? c->has2 : "");
}

static void test_malformed(void **state)
{
    (void)state;
    size_t n = sizeof bad_cases / sizeof *bad_cases;
    assert_true(n >= 15);
    for (size_t i = 0; i < n; i++) {
        const bad_case *c = &bad_cases[i];
        check_bad(c, c->text, c->length ? c->length : strlen(c->text));
        assert_int_equal(track.live, 0);
    }
}

static void test_malformed_files(void **state)
{
    (void)state;
    /* The same errors through fm_energy_table_open name the file. */
    static const char text[] = HEAD LEVELS "op fmul 2\n";
    const char *path = write_temp(text, sizeof text - 1);
    fm_energy_table *t = NULL;
    assert_int_equal(fm_energy_table_open(path, &t), FM_EFORMAT);
    assert_null(t);
    char where[600];
    snprintf(where, sizeof where, "%s:17: duplicate op 'fmul'", path);
    assert_message_has(where);
    /* An empty file. */
    path = write_temp("", 0);
    assert_int_equal(fm_energy_table_open(path, &t), FM_EFORMAT);
    assert_message_has(path);
    assert_message_has("empty");
}

static void test_overlong_line(void **state)
{
    (void)state;
    /* A 5000-byte comment on line 2: too long, though only a comment. */
    size_t n = strlen(HDR) + 5001 + strlen(META OPS LEVELS);
    char *text = malloc(n + 1);
    assert_non_null(text);
    strcpy(text, HDR);
    memset(text + strlen(HDR), '#', 5000);
    text[strlen(HDR) + 5000] = '\n';
    strcpy(text + strlen(HDR) + 5001, META OPS LEVELS);
    bad_case c = {"overlong line", NULL, 0, FM_EFORMAT, 2, "line too long", NULL};
    check_bad(&c, text, n);
    /* 4096 bytes exactly is allowed (and a CR does not count). */
    memmove(text + strlen(HDR) + 4097, text + strlen(HDR) + 5000, n + 1 - strlen(HDR) - 5000);
    text[strlen(HDR) + 4096] = '\r';
    fm_energy_table *t = parse_ok(text, strlen(text));
    fm_energy_table_free(t);
    free(text);
}

static void test_too_large(void **state)
{
    (void)state;
    /* Text over 1 MiB is refused before it is looked at; a file that size is
     * refused from its size, before anything is allocated for it. */
    size_t n = ((size_t)1 << 20) + 1;
    char *text = malloc(n);
    assert_non_null(text);
    memset(text, '#', n);
    memcpy(text, HEAD LEVELS, strlen(HEAD LEVELS));
    text[strlen(HEAD LEVELS)] = '\n';
    for (size_t i = 4000; i < n; i += 4000)
        text[i] = '\n';
    bad_case c = {"too large", NULL, 0, FM_EFORMAT, 0, "too large", NULL};
    check_bad(&c, text, n);
    /* One byte less is fine: comments all the way. */
    fm_energy_table *t = parse_ok(text, n - 1);
    fm_energy_table_free(t);
    const char *path = write_temp(text, n);
    free(text);
    memset(&track, 0, sizeof track);
    assert_int_equal(fm_energy_table_open(path, &t), FM_EFORMAT);
    assert_null(t);
    assert_message_has(path);
    assert_message_has("too large");
    assert_true(track.largest == 0);
}

static void test_missing_and_unreadable(void **state)
{
    (void)state;
    char path[600];
    fm_energy_table *t = (fm_energy_table *)&t;
    snprintf(path, sizeof path, "%s/no-such-table", tmpdir);
    assert_int_equal(fm_energy_table_open(path, &t), FM_ENOENT);
    assert_null(t);
    assert_message_has(path);
    assert_message_has("No such file");
    assert_message_has("horowitz45"); /* a mistyped built-in name gets the list */
    assert_int_equal(fm_energy_table_open("horowitz", &t), FM_ENOENT);
    assert_message_has("not a built-in energy table: horowitz45, eyeriss16");
    assert_int_equal(fm_energy_table_open("", &t), FM_ENOENT);
    /* A path through a file, not a directory. */
    const char *file = write_temp("x", 1);
    snprintf(path, sizeof path, "%s/below", file);
    assert_int_equal(fm_energy_table_open(path, &t), FM_ENOENT);
    /* A directory: an error, not a crash. */
    assert_int_equal(fm_energy_table_open(tmpdir, &t), FM_EIO);
    assert_null(t);
    assert_message_has(tmpdir);
    assert_message_has("Is a directory");
    /* A file without read permission (root reads it anyway: skip that part). */
    if (geteuid() != 0) {
        const char *locked = write_temp(HEAD LEVELS, strlen(HEAD LEVELS));
        assert_int_equal(chmod(locked, 0), 0);
        assert_int_equal(fm_energy_table_open(locked, &t), FM_EIO);
        assert_message_has(locked);
        assert_message_has("Permission denied");
    }
}

/* ---- allocation failure ------------------------------------------------------- */

/* Fails each allocation of `run` in turn: every failure is FM_ENOMEM with
 * nothing leaked and no table, until the run succeeds. */
static void fail_each_allocation(int (*run)(fm_energy_table **), const char *what)
{
    for (long k = 1;; k++) {
        memset(&track, 0, sizeof track);
        track.fail_at = k;
        fm_energy_table *t = (fm_energy_table *)&t;
        int err = run(&t);
        if (err == FM_OK) {
            assert_true(k > 5);
            assert_non_null(fm_energy_table_name(t));
            fm_energy_table_free(t);
            assert_int_equal(track.live, 0);
            break;
        }
        if (err != FM_ENOMEM)
            fail_msg("%s, allocation %ld: %s: %s", what, k, fm_strerror(err), fm_last_error());
        assert_null(t);
        assert_int_equal(track.live, 0);
    }
    track.fail_at = 0;
}

static int run_parse_builtin(fm_energy_table **t)
{
    const char *text = fm_energy_table_builtin_text(0);
    return fm_energy_table_parse(text, strlen(text), "oom", t);
}

static int run_open_builtin(fm_energy_table **t) { return fm_energy_table_open("eyeriss16", t); }

static const char *oom_path;
static int run_open_file(fm_energy_table **t) { return fm_energy_table_open(oom_path, t); }

static void test_out_of_memory(void **state)
{
    (void)state;
    fail_each_allocation(run_parse_builtin, "parse");
    fail_each_allocation(run_open_builtin, "open built-in");
    const char *text = fm_energy_table_builtin_text(0);
    oom_path = write_temp(text, strlen(text));
    fail_each_allocation(run_open_file, "open file");
    /* A failure partway through a malformed table frees what was built. */
    memset(&track, 0, sizeof track);
    fm_energy_table *t = NULL;
    static const char bad[] = HEAD "level a 8KiB 1 1 64\nlevel b 1MiB 2 2 64\n";
    assert_int_equal(fm_energy_table_parse(bad, strlen(bad), "x", &t), FM_EFORMAT);
    assert_int_equal(track.live, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_op_names),
        T(test_builtins_parse),
        T(test_horowitz45_values),
        T(test_network_line),
        T(test_eyeriss16_values),
        T(test_accessors_out_of_range),
        T(test_null_arguments),
        T(test_user_table_file),
        T(test_builtin_text_as_file),
        T(test_locale_independent),
        T(test_malformed),
        T(test_malformed_files),
        T(test_overlong_line),
        T(test_too_large),
        T(test_missing_and_unreadable),
        T(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
