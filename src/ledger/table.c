/* table.c — energy pricing tables: the parser of the text format (version 1,
 * docs/energy-tables.md), loading a table by built-in name or from a file, the
 * accessors, and the op-kind names that are the format's keys. The tables
 * themselves are data, in builtin_tables.c, read by this same parser. */
#define _POSIX_C_SOURCE 200809L

#include "bytes.h"
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Limits that no honest table comes near: a few dozen short lines. They keep a
 * wrong or hostile file from costing memory or time. */
#define TABLE_MAX_BYTES ((size_t)1 << 20)
#define TABLE_MAX_LINE 4096
#define TABLE_MAX_TOKENS 8
#define TABLE_MAX_BITS 4096
#define TABLE_MAGIC "fewmul-energy-table"
#define TABLE_VERSION 1

/* Defined in builtin_tables.c (no header: these are this file's only users). */
extern const int fmi_energy_builtin_count;
extern const char *const fmi_energy_builtin_names[];
extern const char *const fmi_energy_builtin_texts[];

typedef struct table_level {
    char *name;
    uint64_t capacity; /* bytes; FM_ENERGY_UNBOUNDED for the last */
    double read, write; /* table units per access of `bits` bits */
    int bits;
    int line;
} table_level;

struct fm_energy_table {
    char *name, *source, *unit;
    double joules_per_unit;
    double op_cost[FM_OP_KINDS];
    int levels;
    table_level level[FM_ENERGY_MAX_LEVELS];
    /* the link between ranks of a data-parallel run: the optional network line */
    int network_line;            /* 0: the table prices no network */
    double network_send, network_receive; /* table units per `network_bits` bits */
    int network_bits;
};

static const char *const op_names[FM_OP_KINDS] = {
    [FM_OP_FMUL] = "fmul",
    [FM_OP_FADD] = "fadd",
    [FM_OP_FMA] = "fma",
    [FM_OP_FSPECIAL] = "fspecial",
    [FM_OP_IADD] = "iadd",
    [FM_OP_SHIFT] = "shift",
    [FM_OP_SIGN] = "sign",
    [FM_OP_XNOR_POPCOUNT] = "xnor_popcount",
    [FM_OP_CMP] = "cmp",
    [FM_OP_RAND] = "rand",
};

const char *fm_op_name(fm_op op)
{
    return (int)op >= 0 && (int)op < FM_OP_KINDS ? op_names[op] : "?";
}

/* ---- the built-in tables ------------------------------------------------- */

const char *fm_energy_table_builtin(int index)
{
    return index >= 0 && index < fmi_energy_builtin_count ? fmi_energy_builtin_names[index] : NULL;
}

const char *fm_energy_table_builtin_text(int index)
{
    return index >= 0 && index < fmi_energy_builtin_count ? fmi_energy_builtin_texts[index] : NULL;
}

/* ---- freeing and reading ------------------------------------------------- */

void fm_energy_table_free(fm_energy_table *table)
{
    if (!table)
        return;
    fmi_free(table->name);
    fmi_free(table->source);
    fmi_free(table->unit);
    for (int i = 0; i < FM_ENERGY_MAX_LEVELS; i++)
        fmi_free(table->level[i].name);
    fmi_free(table);
}

const char *fm_energy_table_name(const fm_energy_table *table) { return table ? table->name : NULL; }
const char *fm_energy_table_source(const fm_energy_table *table) { return table ? table->source : NULL; }
const char *fm_energy_table_unit(const fm_energy_table *table) { return table ? table->unit : NULL; }

double fm_energy_table_joules_per_unit(const fm_energy_table *table)
{
    return table ? table->joules_per_unit : 0.0;
}

double fm_energy_table_op_cost(const fm_energy_table *table, fm_op op)
{
    if (!table || (int)op < 0 || (int)op >= FM_OP_KINDS)
        return 0.0;
    return table->op_cost[op];
}

int fm_energy_table_levels(const fm_energy_table *table) { return table ? table->levels : 0; }

static const table_level *level_at(const fm_energy_table *table, int level)
{
    return table && level >= 0 && level < table->levels ? &table->level[level] : NULL;
}

const char *fm_energy_table_level_name(const fm_energy_table *table, int level)
{
    const table_level *l = level_at(table, level);
    return l ? l->name : NULL;
}

uint64_t fm_energy_table_level_capacity(const fm_energy_table *table, int level)
{
    const table_level *l = level_at(table, level);
    return l ? l->capacity : 0;
}

double fm_energy_table_level_cost(const fm_energy_table *table, int level, int write)
{
    const table_level *l = level_at(table, level);
    if (!l)
        return 0.0;
    return (write ? l->write : l->read) / ((double)l->bits / 8.0);
}

int fm_energy_table_has_network(const fm_energy_table *table)
{
    return table && table->network_line > 0;
}

double fm_energy_table_network_cost(const fm_energy_table *table, int receive)
{
    if (!fm_energy_table_has_network(table))
        return 0.0;
    return (receive ? table->network_receive : table->network_send) /
           ((double)table->network_bits / 8.0);
}

/* ---- the parser ---------------------------------------------------------- */

typedef struct parser {
    const char *origin;
    int line;
    fm_energy_table *table;
    int have_name, have_source, have_unit;
    int have_op[FM_OP_KINDS];
} parser;

/* A number of the format: decimal digits with an optional fraction and
 * exponent ("3.7", "1e-12", ".5", "2."), no sign but an optional leading '-'
 * (reported as negative), no hex, inf or nan. Converted without the C
 * library's locale (whose decimal point may be ','): the digits are rewritten
 * as an integer mantissa and a power of ten, which strtod reads correctly
 * rounded in any locale. Returns 0 and sets *out, or -1 (malformed), -2
 * (negative), -3 (out of range). */
static int parse_number(const char *s, double *out)
{
    int negative = 0;
    if (*s == '-' || *s == '+') {
        negative = *s == '-';
        s++;
    }
    char digits[TABLE_MAX_LINE + 32];
    size_t nd = 0;
    long exp10 = 0;
    int seen_digit = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        digits[nd++] = *s;
        seen_digit = 1;
    }
    if (*s == '.') {
        s++;
        for (; *s >= '0' && *s <= '9'; s++) {
            digits[nd++] = *s;
            exp10--;
            seen_digit = 1;
        }
    }
    if (!seen_digit)
        return -1;
    if (*s == 'e' || *s == 'E') {
        s++;
        int eneg = 0;
        if (*s == '-' || *s == '+')
            eneg = *s++ == '-';
        if (!(*s >= '0' && *s <= '9'))
            return -1;
        long e = 0;
        for (; *s >= '0' && *s <= '9'; s++)
            if (e < 100000)
                e = e * 10 + (*s - '0');
        exp10 += eneg ? -e : e;
    }
    if (*s)
        return -1;
    snprintf(digits + nd, sizeof digits - nd, "e%ld", exp10);
    double v = strtod(digits, NULL);
    if (!isfinite(v))
        return -3;
    if (negative && v != 0.0)
        return -2;
    *out = v == 0.0 ? 0.0 : v; /* never -0 */
    return 0;
}

/* A cost or scale: finite and >= 0, with a message naming `what`. */
static int number_field(parser *p, const char *token, const char *what, double *out)
{
    int r = parse_number(token, out);
    if (r == -2)
        return fmi_error(FM_EFORMAT, "%s:%d: %s %s is negative (must be >= 0)", p->origin,
                        p->line, what, token);
    if (r == -3)
        return fmi_error(FM_EFORMAT, "%s:%d: %s %s is out of range", p->origin, p->line, what,
                        token);
    if (r)
        return fmi_error(FM_EFORMAT,
                        "%s:%d: bad %s '%s' (expected a finite decimal number >= 0, e.g. 3.7 or 1e-12)",
                        p->origin, p->line, what, token);
    return FM_OK;
}

/* A capacity: "inf", or a whole number with one of the suffixes below. */
static int parse_capacity(parser *p, const char *token, uint64_t *out)
{
    if (!strcmp(token, "inf")) {
        *out = FM_ENERGY_UNBOUNDED;
        return FM_OK;
    }
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {{"B", 0}, {"K", 10}, {"KiB", 10}, {"M", 20}, {"MiB", 20}, {"G", 30}, {"GiB", 30}};
    const char *s = token;
    uint64_t n = 0;
    int overflow = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > (UINT64_MAX - 9) / 10)
            overflow = 1;
        else
            n = n * 10 + (uint64_t)(*s - '0');
    }
    int shift = -1;
    if (s != token)
        for (size_t i = 0; i < sizeof units / sizeof *units; i++)
            if (!strcmp(s, units[i].suffix))
                shift = (int)units[i].shift;
    if (shift < 0)
        return fmi_error(FM_EFORMAT,
                        "%s:%d: bad capacity '%s' (expected a whole number with a suffix B, K, "
                        "KiB, M, MiB, G or GiB, e.g. 8KiB, or inf for the last level)",
                        p->origin, p->line, token);
    if (n == 0)
        return fmi_error(FM_EFORMAT, "%s:%d: capacity %s is zero", p->origin, p->line, token);
    /* UINT64_MAX itself means unbounded, so the largest finite capacity is one less. */
    if (overflow || n > (UINT64_MAX - 1) >> shift)
        return fmi_error(FM_EFORMAT, "%s:%d: capacity %s is too large (write inf for unbounded)",
                        p->origin, p->line, token);
    *out = n << shift;
    return FM_OK;
}

static int parse_bits(parser *p, const char *token, int *out)
{
    long v = 0;
    const char *s = token;
    for (; *s >= '0' && *s <= '9'; s++)
        if (v <= TABLE_MAX_BITS)
            v = v * 10 + (*s - '0');
    if (s == token || *s || v < 1 || v > TABLE_MAX_BITS)
        return fmi_error(FM_EFORMAT, "%s:%d: bad access width '%s' (expected a whole number of bits, 1..%d)",
                        p->origin, p->line, token, TABLE_MAX_BITS);
    *out = (int)v;
    return FM_OK;
}

static void format_capacity(uint64_t bytes, char *buf, size_t size)
{
    if (bytes == FM_ENERGY_UNBOUNDED)
        snprintf(buf, size, "inf");
    else if (bytes % (1u << 30) == 0)
        snprintf(buf, size, "%lluGiB", (unsigned long long)(bytes >> 30));
    else if (bytes % (1u << 20) == 0)
        snprintf(buf, size, "%lluMiB", (unsigned long long)(bytes >> 20));
    else if (bytes % (1u << 10) == 0)
        snprintf(buf, size, "%lluKiB", (unsigned long long)(bytes >> 10));
    else
        snprintf(buf, size, "%lluB", (unsigned long long)bytes);
}

/* One token count check, with the expected form in the message. */
static int want_tokens(parser *p, int ntok, int want, const char *form)
{
    if (ntok == want)
        return FM_OK;
    return fmi_error(FM_EFORMAT, "%s:%d: %s tokens (expected '%s')", p->origin, p->line,
                    ntok < want ? "missing" : "extra", form);
}

static int key_op(parser *p, char **tok, int ntok)
{
    int err = want_tokens(p, ntok, 3, "op KEY COST");
    if (err)
        return err;
    int op = -1;
    for (int i = 0; i < FM_OP_KINDS; i++)
        if (!strcmp(tok[1], op_names[i]))
            op = i;
    if (op < 0)
        return fmi_error(FM_EFORMAT,
                        "%s:%d: unknown op '%s' (expected fmul, fadd, fma, fspecial, iadd, shift, "
                        "sign, xnor_popcount, cmp or rand)",
                        p->origin, p->line, tok[1]);
    if (p->have_op[op])
        return fmi_error(FM_EFORMAT, "%s:%d: duplicate op '%s' (first on line %d)", p->origin,
                        p->line, tok[1], p->have_op[op]);
    char what[64];
    snprintf(what, sizeof what, "cost of op %s", op_names[op]);
    err = number_field(p, tok[2], what, &p->table->op_cost[op]);
    if (err)
        return err;
    p->have_op[op] = p->line;
    return FM_OK;
}

static int key_level(parser *p, char **tok, int ntok)
{
    int err = want_tokens(p, ntok, 6, "level NAME CAPACITY READ_COST WRITE_COST BITS");
    if (err)
        return err;
    fm_energy_table *t = p->table;
    for (int i = 0; i < t->levels; i++)
        if (!strcmp(t->level[i].name, tok[1]))
            return fmi_error(FM_EFORMAT, "%s:%d: duplicate level '%s' (first on line %d)",
                            p->origin, p->line, tok[1], t->level[i].line);
    if (t->levels == FM_ENERGY_MAX_LEVELS)
        return fmi_error(FM_EFORMAT, "%s:%d: too many levels (at most %d)", p->origin, p->line,
                        FM_ENERGY_MAX_LEVELS);
    table_level l = {0};
    l.line = p->line;
    err = parse_capacity(p, tok[2], &l.capacity);
    if (!err)
        err = number_field(p, tok[3], "read cost", &l.read);
    if (!err)
        err = number_field(p, tok[4], "write cost", &l.write);
    if (!err)
        err = parse_bits(p, tok[5], &l.bits);
    if (err)
        return err;
    if (t->levels > 0) {
        const table_level *prev = &t->level[t->levels - 1];
        if (prev->capacity == FM_ENERGY_UNBOUNDED)
            return fmi_error(FM_EFORMAT,
                            "%s:%d: level '%s' follows the unbounded level '%s' (line %d); the "
                            "level of capacity inf must be the last",
                            p->origin, p->line, tok[1], prev->name, prev->line);
        if (l.capacity <= prev->capacity) {
            char a[32], b[32];
            format_capacity(l.capacity, a, sizeof a);
            format_capacity(prev->capacity, b, sizeof b);
            return fmi_error(FM_EFORMAT,
                            "%s:%d: level '%s' (%s) is not larger than the level before it, '%s' "
                            "(%s); list levels smallest first",
                            p->origin, p->line, tok[1], a, prev->name, b);
        }
    }
    l.name = fmi_strdup(tok[1]);
    if (!l.name)
        return FM_ENOMEM;
    t->level[t->levels++] = l;
    return FM_OK;
}

static int key_network(parser *p, char **tok, int ntok)
{
    int err = want_tokens(p, ntok, 4, "network SEND_COST RECEIVE_COST BITS");
    if (err)
        return err;
    fm_energy_table *t = p->table;
    if (t->network_line)
        return fmi_error(FM_EFORMAT, "%s:%d: duplicate key 'network' (first on line %d)",
                        p->origin, p->line, t->network_line);
    err = number_field(p, tok[1], "send cost", &t->network_send);
    if (!err)
        err = number_field(p, tok[2], "receive cost", &t->network_receive);
    if (!err)
        err = parse_bits(p, tok[3], &t->network_bits);
    if (err)
        return err;
    t->network_line = p->line;
    return FM_OK;
}

/* Splits a line (NUL-terminated, comment already cut) into tokens in place. */
static int tokenize(char *line, char **tok)
{
    int n = 0;
    char *s = line;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            return n;
        if (n == TABLE_MAX_TOKENS)
            return n + 1; /* too many: callers only need to know it is more */
        tok[n++] = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        if (*s)
            *s++ = '\0';
    }
}

/* One line after the header. `raw` is the line with its comment cut, before
 * tokenizing (for the rest-of-line text of `source`). */
static int parse_line(parser *p, char *line)
{
    fm_energy_table *t = p->table;
    /* `source` keeps the rest of its line, inner spacing included. */
    const char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!strncmp(s, "source", 6) && (s[6] == ' ' || s[6] == '\t' || s[6] == '\0')) {
        if (p->have_source)
            return fmi_error(FM_EFORMAT, "%s:%d: duplicate key 'source' (first on line %d)",
                            p->origin, p->line, p->have_source);
        s += 6;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (!n)
            return fmi_error(FM_EFORMAT, "%s:%d: missing tokens (expected 'source TEXT...')",
                            p->origin, p->line);
        char *copy = fmi_alloc_raw(n + 1);
        if (!copy)
            return FM_ENOMEM;
        memcpy(copy, s, n);
        copy[n] = '\0';
        t->source = copy;
        p->have_source = p->line;
        return FM_OK;
    }

    char *tok[TABLE_MAX_TOKENS];
    int ntok = tokenize(line, tok);
    if (ntok == 0)
        return FM_OK;
    if (ntok > TABLE_MAX_TOKENS)
        ntok = TABLE_MAX_TOKENS + 1;
    if (!strcmp(tok[0], "name")) {
        if (p->have_name)
            return fmi_error(FM_EFORMAT, "%s:%d: duplicate key 'name' (first on line %d)",
                            p->origin, p->line, p->have_name);
        int err = want_tokens(p, ntok, 2, "name NAME");
        if (err)
            return err;
        if (!(t->name = fmi_strdup(tok[1])))
            return FM_ENOMEM;
        p->have_name = p->line;
        return FM_OK;
    }
    if (!strcmp(tok[0], "unit")) {
        if (p->have_unit)
            return fmi_error(FM_EFORMAT, "%s:%d: duplicate key 'unit' (first on line %d)",
                            p->origin, p->line, p->have_unit);
        int err = want_tokens(p, ntok, 3, "unit UNIT JOULES_PER_UNIT");
        if (!err)
            err = number_field(p, tok[2], "joules per unit", &t->joules_per_unit);
        if (err)
            return err;
        if (!(t->unit = fmi_strdup(tok[1])))
            return FM_ENOMEM;
        p->have_unit = p->line;
        return FM_OK;
    }
    if (!strcmp(tok[0], "op"))
        return key_op(p, tok, ntok);
    if (!strcmp(tok[0], "level"))
        return key_level(p, tok, ntok);
    if (!strcmp(tok[0], "network"))
        return key_network(p, tok, ntok);
    if (!strcmp(tok[0], TABLE_MAGIC))
        return fmi_error(FM_EFORMAT, "%s:%d: a second '%s' line (only the first line has it)",
                        p->origin, p->line, TABLE_MAGIC);
    return fmi_error(FM_EFORMAT,
                    "%s:%d: unknown key '%s' (expected name, source, unit, op, level or network)",
                    p->origin, p->line, tok[0]);
}

/* The first non-comment line: "fewmul-energy-table 1". */
static int parse_header(parser *p, char *line)
{
    char *tok[TABLE_MAX_TOKENS];
    int ntok = tokenize(line, tok);
    if (ntok < 1 || strcmp(tok[0], TABLE_MAGIC))
        return fmi_error(FM_EFORMAT,
                        "%s:%d: not an energy table: the first line must be '%s %d'",
                        p->origin, p->line, TABLE_MAGIC, TABLE_VERSION);
    if (ntok != 2)
        return fmi_error(FM_EFORMAT, "%s:%d: %s tokens (expected '%s %d')", p->origin, p->line,
                        ntok < 2 ? "missing" : "extra", TABLE_MAGIC, TABLE_VERSION);
    const char *v = tok[1];
    long version = 0;
    const char *s = v;
    for (; *s >= '0' && *s <= '9'; s++)
        if (version < 1000000)
            version = version * 10 + (*s - '0');
    if (s == v || *s)
        return fmi_error(FM_EFORMAT, "%s:%d: bad format version '%s' (expected '%s %d')",
                        p->origin, p->line, v, TABLE_MAGIC, TABLE_VERSION);
    if (version != TABLE_VERSION)
        return fmi_error(FM_EUNSUPPORTED,
                        "%s:%d: energy table format version %s is not supported (this fewmul "
                        "reads version %d)",
                        p->origin, p->line, v, TABLE_VERSION);
    return FM_OK;
}

/* After the last line: every required key present, the levels complete. */
static int check_complete(parser *p)
{
    char missing[400] = "";
    size_t len = 0;
    const char *keys[3] = {"name", "source", "unit"};
    const int have[3] = {p->have_name, p->have_source, p->have_unit};
    for (int i = 0; i < 3; i++)
        if (!have[i])
            len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "",
                                    keys[i]);
    for (int i = 0; i < FM_OP_KINDS; i++)
        if (!p->have_op[i])
            len += (size_t)snprintf(missing + len, sizeof missing - len, "%sop %s",
                                    len ? ", " : "", op_names[i]);
    if (!p->table->levels)
        len += (size_t)snprintf(missing + len, sizeof missing - len, "%slevel", len ? ", " : "");
    if (len)
        return fmi_error(FM_EFORMAT, "%s: missing %s (a table needs name, source, unit, one op "
                        "line for each of the %d kinds and 1..%d levels)",
                        p->origin, missing, FM_OP_KINDS, FM_ENERGY_MAX_LEVELS);
    const table_level *last = &p->table->level[p->table->levels - 1];
    if (last->capacity != FM_ENERGY_UNBOUNDED)
        return fmi_error(FM_EFORMAT,
                        "%s:%d: the last level '%s' must have capacity inf (the memory that "
                        "holds everything, e.g. DRAM)",
                        p->origin, last->line, last->name);
    return FM_OK;
}

int fm_energy_table_parse(const char *text, size_t length, const char *origin,
                          fm_energy_table **out)
{
    if (out)
        *out = NULL;
    if (!origin)
        origin = "energy table";
    if (!out || (!text && length))
        return fmi_error(FM_EINVAL, "fm_energy_table_parse: NULL argument");
    if (length > TABLE_MAX_BYTES)
        return fmi_error(FM_EFORMAT, "%s: too large (%zu bytes; an energy table is at most %zu)",
                        origin, length, TABLE_MAX_BYTES);

    parser p = {0};
    p.origin = origin;
    p.table = fmi_alloc(1, sizeof *p.table);
    if (!p.table)
        return FM_ENOMEM;

    char line[TABLE_MAX_LINE + 1];
    int err = FM_OK, header_seen = 0;
    size_t pos = 0;
    /* A UTF-8 byte-order mark, as some editors write, is not part of the text. */
    if (length >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
        pos = 3;
    while (!err && pos < length) {
        p.line++;
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', length - pos);
        size_t n = nl ? (size_t)(nl - start) : length - pos;
        pos += n + (nl ? 1 : 0);
        if (n && start[n - 1] == '\r')
            n--; /* CRLF */
        if (n > TABLE_MAX_LINE) {
            err = fmi_error(FM_EFORMAT, "%s:%d: line too long (%zu bytes; at most %d)", origin,
                           p.line, n, TABLE_MAX_LINE);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)start[i];
            if (c == '\0') {
                err = fmi_error(FM_EFORMAT, "%s:%d: NUL byte at column %zu (not a text file?)",
                               origin, p.line, i + 1);
                break;
            }
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                err = fmi_error(FM_EFORMAT, "%s:%d: control character 0x%02x at column %zu",
                               origin, p.line, c, i + 1);
                break;
            }
        }
        if (err)
            break;
        memcpy(line, start, n);
        line[n] = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        const char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            continue; /* blank or comment */
        if (!header_seen) {
            err = parse_header(&p, line);
            header_seen = 1;
        } else {
            err = parse_line(&p, line);
        }
    }
    if (!err && !header_seen)
        err = fmi_error(FM_EFORMAT, "%s: empty (no '%s %d' line)", origin, TABLE_MAGIC,
                       TABLE_VERSION);
    if (!err)
        err = check_complete(&p);
    if (err) {
        fm_energy_table_free(p.table);
        return err;
    }
    *out = p.table;
    return FM_OK;
}

/* ---- opening by name or path --------------------------------------------- */

/* Reads a whole file of at most TABLE_MAX_BYTES; *text is NUL-terminated. */
static int read_table_file(const char *path, char **text, size_t *length)
{
    *text = NULL;
    *length = 0;
    struct stat st; /* stat() waits for nothing: a folder is named for what it is */
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return fmi_error(FM_EIO, "%s: %s (expected an energy table file or a built-in table name)",
                        path, strerror(EISDIR));
    uint64_t size;
    int fd = fmi_open_input(path, 1, &size);
    if (fd < 0)
        return fd;
    const int stream = size == UINT64_MAX;
    if (!stream && size > TABLE_MAX_BYTES) {
        close(fd);
        return fmi_error(FM_EFORMAT, "%s: too large (%llu bytes; an energy table is at most %zu)",
                        path, (unsigned long long)size, TABLE_MAX_BYTES);
    }
    /* A regular file is read in one buffer of its size; a pipe grows its
     * buffer with what arrives, up to one byte past the limit. */
    size_t cap = stream ? 4096 : (size_t)size + 1;
    size_t len = 0;
    char *buf = fmi_alloc_raw(cap + 1);
    if (!buf) {
        close(fd);
        return FM_ENOMEM;
    }
    int err = FM_OK;
    for (;;) {
        if (len == cap) {
            if (cap > TABLE_MAX_BYTES)
                break;
            size_t next = FM_MIN(cap * 2, TABLE_MAX_BYTES + 1);
            char *grown = fmi_realloc(buf, next + 1);
            if (!grown) {
                err = FM_ENOMEM;
                break;
            }
            buf = grown;
            cap = next;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = fmi_error(FM_EIO, "%s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (!err && len > TABLE_MAX_BYTES)
        err = fmi_error(FM_EFORMAT, "%s: too large (more than %zu bytes; an energy table is at "
                       "most %zu)", path, TABLE_MAX_BYTES, TABLE_MAX_BYTES);
    if (err) {
        fmi_free(buf);
        return err;
    }
    buf[len] = '\0';
    *text = buf;
    *length = len;
    return FM_OK;
}

int fm_energy_table_open(const char *name_or_path, fm_energy_table **out)
{
    if (out)
        *out = NULL;
    if (!name_or_path || !out)
        return fmi_error(FM_EINVAL, "fm_energy_table_open: NULL argument");
    for (int i = 0; i < fmi_energy_builtin_count; i++)
        if (!strcmp(name_or_path, fmi_energy_builtin_names[i]))
            return fm_energy_table_parse(fmi_energy_builtin_texts[i],
                                         strlen(fmi_energy_builtin_texts[i]),
                                         fmi_energy_builtin_names[i], out);
    if (!*name_or_path)
        return fmi_error(FM_ENOENT, "empty energy table name (built-in tables: %s, ...)",
                        fmi_energy_builtin_names[0]);
    char *text;
    size_t length;
    int err = read_table_file(name_or_path, &text, &length);
    if (err == FM_ENOENT) {
        /* A mistyped built-in name reads as a missing file: say both. */
        char names[256] = "";
        size_t len = 0;
        for (int i = 0; i < fmi_energy_builtin_count && len < sizeof names; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                    fmi_energy_builtin_names[i]);
        return fmi_error(FM_ENOENT, "%s: %s (and not a built-in energy table: %s)", name_or_path,
                        strerror(ENOENT), names);
    }
    if (err)
        return err;
    err = fm_energy_table_parse(text, length, name_or_path, out);
    fmi_free(text);
    return err;
}
