/* json_read.c — the strict JSON reader of json_read.h: a recursive descent
 * parser with a depth bound, an arena for the tree (one free for a whole
 * value), a scratch stack for the members of arrays and objects being read,
 * exact RFC 8259 number and string syntax, UTF-8 validated, \u escapes
 * decoded (surrogate pairs joined, a lone surrogate becomes U+FFFD). */
#include "json_read.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the arena ----------------------------------------------------------- */

struct json_arena_chunk {
    json_arena_chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
};

enum { ARENA_CHUNK = 64 * 1024 };

static void *arena_alloc(json_doc *doc, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    json_arena_chunk *c = doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = doc->chunks;
        doc->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void json_doc_free(json_doc *doc)
{
    json_arena_chunk *c = doc->chunks;
    while (c) {
        json_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    doc->chunks = NULL;
    doc->root = NULL;
}

/* ---- the parser ---------------------------------------------------------- */

typedef struct parser {
    const char *start, *p, *end;
    json_doc *doc;
    int depth;
    /* members of the arrays and objects open now: values (and keys) pushed
     * as they are read, moved into the arena when their container closes */
    jv **stack;
    const char **keys;
    size_t top, cap;
    json_read_status status;
    char *msg;
    size_t msg_cap;
    size_t where;
} parser;

static int fail_at(parser *ps, const char *at, json_read_status st, const char *fmt, ...)
{
    if (ps->status != JSON_READ_OK)
        return -1;
    ps->status = st;
    ps->where = (size_t)(at - ps->start);
    va_list args;
    va_start(args, fmt);
    vsnprintf(ps->msg, ps->msg_cap, fmt, args);
    va_end(args);
    return -1;
}

static int no_memory(parser *ps)
{
    return fail_at(ps, ps->p, JSON_READ_NOMEM, "out of memory");
}

/* "'x'", "byte 0x07", "the end": what stands at p, for messages. */
static const char *describe_at(const parser *ps, const char *p, char *buf, size_t cap)
{
    if (p >= ps->end)
        snprintf(buf, cap, "the end of the text");
    else if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
        snprintf(buf, cap, "byte 0x%02x", (unsigned char)*p);
    else
        snprintf(buf, cap, "'%c'", *p);
    return buf;
}

static int unexpected(parser *ps, const char *wanted)
{
    char what[32];
    if (ps->p >= ps->end)
        return fail_at(ps, ps->p, JSON_READ_TRUNCATED, "the text ends where %s should be", wanted);
    return fail_at(ps, ps->p, JSON_READ_SYNTAX, "expected %s, found %s", wanted,
                   describe_at(ps, ps->p, what, sizeof what));
}

static void skip_space(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static jv *new_value(parser *ps, jv_type type)
{
    jv *v = arena_alloc(ps->doc, sizeof *v);
    if (!v) {
        no_memory(ps);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static int push(parser *ps, const char *key, jv *value)
{
    if (ps->top == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 64;
        jv **stack = realloc(ps->stack, cap * sizeof *stack);
        if (!stack)
            return no_memory(ps);
        ps->stack = stack;
        const char **keys = realloc(ps->keys, cap * sizeof *keys);
        if (!keys)
            return no_memory(ps);
        ps->keys = keys;
        ps->cap = cap;
    }
    ps->stack[ps->top] = value;
    ps->keys[ps->top] = key;
    ps->top++;
    return 0;
}

static int parse_value(parser *ps, jv **out);

static int literal(parser *ps, const char *word, jv_type type, int boolean, jv **out)
{
    size_t n = strlen(word);
    size_t left = (size_t)(ps->end - ps->p);
    if (left < n && memcmp(ps->p, word, left) == 0)
        return fail_at(ps, ps->end, JSON_READ_TRUNCATED, "the text ends inside '%s'", word);
    if (left < n || memcmp(ps->p, word, n) != 0) {
        char what[32];
        return fail_at(ps, ps->p, JSON_READ_SYNTAX, "expected a value, found %s",
                       describe_at(ps, ps->p, what, sizeof what));
    }
    ps->p += n;
    if (!(*out = new_value(ps, type)))
        return -1;
    (*out)->u.boolean = boolean;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, converted by strtod from a
 * copy of exactly those characters (strtod alone would take "0x1p3", "inf",
 * or a locale's decimal comma). */
static int parse_number(parser *ps, jv **out)
{
    const char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-')
        q++;
    if (q >= ps->end)
        return fail_at(ps, q, JSON_READ_TRUNCATED, "the text ends inside a number");
    if (*q == '0')
        q++;
    else if (is_digit(*q))
        while (q < ps->end && is_digit(*q))
            q++;
    else
        return fail_at(ps, q, JSON_READ_SYNTAX, "a number needs a digit after '-'");
    if (q < ps->end && is_digit(*q))
        return fail_at(ps, q, JSON_READ_SYNTAX, "a number may not have a leading zero");
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end)
            return fail_at(ps, q, JSON_READ_TRUNCATED, "the text ends inside a number");
        if (!is_digit(*q))
            return fail_at(ps, q, JSON_READ_SYNTAX, "a number needs a digit after '.'");
        while (q < ps->end && is_digit(*q))
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end)
            return fail_at(ps, q, JSON_READ_TRUNCATED, "the text ends inside a number");
        if (!is_digit(*q))
            return fail_at(ps, q, JSON_READ_SYNTAX, "a number needs a digit in its exponent");
        while (q < ps->end && is_digit(*q))
            q++;
    }
    char buf[512];
    size_t n = (size_t)(q - s);
    if (n >= sizeof buf)
        return fail_at(ps, s, JSON_READ_SYNTAX, "a number of %zu characters is too long", n);
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v))
        return fail_at(ps, s, JSON_READ_SYNTAX, "the number %.40s is out of range", buf);
    ps->p = q;
    if (!(*out = new_value(ps, JV_NUMBER)))
        return -1;
    (*out)->u.number = v;
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if it is not one, -1 if
 * the text ends inside it. */
static int utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    int n;
    unsigned lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    for (int i = 1; i < n; i++) {
        if (p + i >= end)
            return -1;
        unsigned b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

/* A string at ps->p (the opening quote); its decoded bytes into the arena. */
static int parse_string_raw(parser *ps, const char **out, size_t *out_len)
{
    const char *s = ps->p + 1, *q = s;
    /* the decoded text is never longer than the source */
    while (q < ps->end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= ps->end)
        return fail_at(ps, ps->end, JSON_READ_TRUNCATED, "the text ends inside a string");
    char *o = arena_alloc(ps->doc, (size_t)(q - s) + 1);
    if (!o)
        return no_memory(ps);
    size_t n = 0;
    const char *p = s;
    while (p < q) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return fail_at(ps, p, JSON_READ_SYNTAX,
                           "control character 0x%02x in a string (write it as \\u%04x)", c, c);
        if (c == '\\') {
            char e = p[1];
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *k = e ? strchr(from, e) : NULL;
            if (k) {
                o[n++] = to[k - from];
                p += 2;
                continue;
            }
            if (e != 'u')
                return fail_at(ps, p, JSON_READ_SYNTAX, "bad escape '\\%c' in a string",
                               (unsigned char)e >= 0x20 && (unsigned char)e < 0x7f ? e : '?');
            unsigned cp;
            if (ps->end - p < 6 || hex4(p + 2, &cp) != 0)
                return fail_at(ps, p, JSON_READ_SYNTAX, "\\u needs four hexadecimal digits");
            p += 6;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (ps->end - p >= 6 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) == 0 &&
                    lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                } else
                    cp = 0xfffd;
            } else if (cp >= 0xdc00 && cp <= 0xdfff)
                cp = 0xfffd;
            n += put_utf8(o + n, cp);
            continue;
        }
        int len = utf8_sequence((const unsigned char *)p, (const unsigned char *)q);
        if (len <= 0)
            return fail_at(ps, p, JSON_READ_SYNTAX, "invalid UTF-8 (byte 0x%02x) in a string", c);
        memcpy(o + n, p, (size_t)len);
        n += (size_t)len;
        p += len;
    }
    o[n] = '\0';
    ps->p = q + 1;
    *out = o;
    *out_len = n;
    return 0;
}

static int parse_string(parser *ps, jv **out)
{
    const char *s;
    size_t n;
    if (parse_string_raw(ps, &s, &n) != 0)
        return -1;
    if (!(*out = new_value(ps, JV_STRING)))
        return -1;
    (*out)->u.string.s = s;
    (*out)->u.string.len = n;
    return 0;
}

/* Moves the members pushed since `base` into the arena as v's. */
static int collect(parser *ps, size_t base, jv *v)
{
    size_t count = ps->top - base;
    jv **items = NULL;
    const char **keys = NULL;
    if (count) {
        items = arena_alloc(ps->doc, count * sizeof *items);
        if (!items)
            return no_memory(ps);
        memcpy(items, ps->stack + base, count * sizeof *items);
        if (v->type == JV_OBJECT) {
            keys = arena_alloc(ps->doc, count * sizeof *keys);
            if (!keys)
                return no_memory(ps);
            memcpy(keys, ps->keys + base, count * sizeof *keys);
        }
    }
    ps->top = base;
    if (v->type == JV_OBJECT) {
        v->u.object.keys = keys;
        v->u.object.values = items;
        v->u.object.count = count;
    } else {
        v->u.array.items = items;
        v->u.array.count = count;
    }
    return 0;
}

static int parse_container(parser *ps, jv **out)
{
    char open = *ps->p, close = open == '{' ? '}' : ']';
    if (ps->depth >= JSON_READ_MAX_DEPTH)
        return fail_at(ps, ps->p, JSON_READ_DEPTH, "nested deeper than %d levels",
                       JSON_READ_MAX_DEPTH);
    ps->depth++;
    ps->p++;
    jv *v = new_value(ps, open == '{' ? JV_OBJECT : JV_ARRAY);
    if (!v)
        return -1;
    size_t base = ps->top;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            const char *key = NULL;
            size_t key_len;
            skip_space(ps);
            if (open == '{') {
                if (ps->p >= ps->end || *ps->p != '"')
                    return unexpected(ps, "a key (a string in double quotes)");
                if (parse_string_raw(ps, &key, &key_len) != 0)
                    return -1;
                skip_space(ps);
                if (ps->p >= ps->end || *ps->p != ':')
                    return unexpected(ps, "':' after a key");
                ps->p++;
                skip_space(ps);
            }
            jv *item;
            if (parse_value(ps, &item) != 0 || push(ps, key, item) != 0)
                return -1;
            skip_space(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                skip_space(ps);
                if (ps->p < ps->end && *ps->p == close)
                    return fail_at(ps, ps->p, JSON_READ_SYNTAX, "a trailing ',' before '%c'",
                                   close);
                continue;
            }
            if (ps->p < ps->end && *ps->p == close) {
                ps->p++;
                break;
            }
            return unexpected(ps, open == '{' ? "',' or '}'" : "',' or ']'");
        }
    }
    if (collect(ps, base, v) != 0)
        return -1;
    ps->depth--;
    *out = v;
    return 0;
}

static int parse_value(parser *ps, jv **out)
{
    skip_space(ps);
    if (ps->p >= ps->end)
        return unexpected(ps, "a value");
    switch (*ps->p) {
    case '{':
    case '[':
        return parse_container(ps, out);
    case '"':
        return parse_string(ps, out);
    case 't':
        return literal(ps, "true", JV_BOOL, 1, out);
    case 'f':
        return literal(ps, "false", JV_BOOL, 0, out);
    case 'n':
        return literal(ps, "null", JV_NULL, 0, out);
    default:
        if (*ps->p == '-' || is_digit(*ps->p))
            return parse_number(ps, out);
        return unexpected(ps, "a value");
    }
}

json_read_status json_read(const char *text, size_t len, json_doc *doc, char *msg, size_t cap,
                           size_t *where)
{
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.start = ps.p = text;
    ps.end = text + len;
    ps.doc = doc;
    ps.msg = msg;
    ps.msg_cap = cap;
    doc->root = NULL;
    doc->chunks = NULL;
    if (cap)
        msg[0] = '\0';
    jv *root = NULL;
    if (parse_value(&ps, &root) == 0) {
        skip_space(&ps);
        if (ps.p < ps.end) {
            char what[32];
            fail_at(&ps, ps.p, JSON_READ_SYNTAX, "%s after the value",
                    describe_at(&ps, ps.p, what, sizeof what));
        }
    }
    free(ps.stack);
    free(ps.keys);
    if (ps.status != JSON_READ_OK) {
        json_doc_free(doc);
        if (where)
            *where = ps.where;
        return ps.status;
    }
    doc->root = root;
    return JSON_READ_OK;
}

/* ---- access -------------------------------------------------------------- */

const jv *jv_get(const jv *v, const char *key)
{
    if (!v || v->type != JV_OBJECT)
        return NULL;
    for (size_t i = v->u.object.count; i-- > 0;)
        if (strcmp(v->u.object.keys[i], key) == 0)
            return v->u.object.values[i];
    return NULL;
}

const char *jv_type_name(const jv *v)
{
    if (!v)
        return "missing";
    switch (v->type) {
    case JV_NULL:
        return "null";
    case JV_BOOL:
        return "a boolean";
    case JV_NUMBER:
        return "a number";
    case JV_STRING:
        return "a string";
    case JV_ARRAY:
        return "an array";
    case JV_OBJECT:
        return "an object";
    }
    return "?";
}
