/* fuzz_cli_json.c — libFuzzer target for the strict JSON reader of `fewmul
 * report` (tools/report/json_read.c), which reads every line of a `train --log`
 * file: any input gives a tree or one of the failure statuses with a message
 * and an offset inside the input, never a crash, a leak or a read past the
 * end (the input is copied to a buffer of exactly its size). A tree written
 * back compactly must read again as the same tree. Built with the command's
 * sources and the report module's (tests/fuzz/run.sh: targets named
 * fuzz_cli*); seeds corpus/cli_json.
 * FUZZ_OPTIONS: -max_len=65536
 */
#include "report/json_read.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct out {
    char *s;
    size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->s, cap);
        if (!p)
            abort();
        o->s = p;
        o->cap = cap;
    }
    memcpy(o->s + o->len, s, n);
    o->len += n;
}

static void put_string(out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\' || c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(o, esc, 6);
        } else
            put(o, s + i, 1);
    }
    put(o, "\"", 1);
}

static void write_value(out *o, const jv *v)
{
    char buf[64];
    switch (v->type) {
    case JV_NULL:
        put(o, "null", 4);
        break;
    case JV_BOOL:
        put(o, v->u.boolean ? "true" : "false", v->u.boolean ? 4 : 5);
        break;
    case JV_NUMBER:
        if (!isfinite(v->u.number))
            abort(); /* the reader refuses what overflows */
        put(o, buf, (size_t)snprintf(buf, sizeof buf, "%.17g", v->u.number));
        break;
    case JV_STRING:
        if (strlen(v->u.string.s) > v->u.string.len)
            abort();
        put_string(o, v->u.string.s, v->u.string.len);
        break;
    case JV_ARRAY:
        put(o, "[", 1);
        for (size_t i = 0; i < v->u.array.count; i++) {
            if (i)
                put(o, ",", 1);
            write_value(o, v->u.array.items[i]);
        }
        put(o, "]", 1);
        break;
    case JV_OBJECT:
        put(o, "{", 1);
        for (size_t i = 0; i < v->u.object.count; i++) {
            if (i)
                put(o, ",", 1);
            put_string(o, v->u.object.keys[i], strlen(v->u.object.keys[i]));
            put(o, ":", 1);
            write_value(o, v->u.object.values[i]);
        }
        put(o, "}", 1);
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    json_doc doc;
    char msg[256];
    size_t where = (size_t)-1;
    json_read_status st = json_read(text, size, &doc, msg, sizeof msg, &where);
    if (st != JSON_READ_OK) {
        if (st != JSON_READ_SYNTAX && st != JSON_READ_TRUNCATED && st != JSON_READ_DEPTH &&
            st != JSON_READ_NOMEM)
            abort();
        if (!msg[0] || where > size || doc.root || doc.chunks)
            abort();
        free(text);
        return 0;
    }
    if (!doc.root)
        abort();
    /* written back and read again: the same text once more */
    out a = {0}, b = {0};
    write_value(&a, doc.root);
    json_doc again;
    if (json_read(a.s, a.len, &again, msg, sizeof msg, &where) != JSON_READ_OK)
        abort();
    write_value(&b, again.root);
    if (a.len != b.len || memcmp(a.s, b.s, a.len) != 0)
        abort();
    json_doc_free(&again);
    json_doc_free(&doc);
    free(a.s);
    free(b.s);
    free(text);
    return 0;
}
