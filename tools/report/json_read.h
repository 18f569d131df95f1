/* json_read.h — a small strict JSON reader for the report module (report.c
 * reads the JSON Lines logs of `train --log`): one value per call, parsed into
 * a tree that lives in an arena freed at once. RFC 8259 exactly: no comments,
 * no trailing commas, no leading zeros or '+', no NaN or Infinity, no control
 * characters in strings, valid UTF-8 only; nesting at most JSON_READ_MAX_DEPTH
 * deep. A number's value is a double (integers up to 2^53 are exact); a key
 * repeated in an object is kept twice and jv_get finds the last one. */
#ifndef FEWMUL_JSON_READ_H
#define FEWMUL_JSON_READ_H

#include <stddef.h>

enum { JSON_READ_MAX_DEPTH = 64 };

typedef enum { JV_NULL, JV_BOOL, JV_NUMBER, JV_STRING, JV_ARRAY, JV_OBJECT } jv_type;

typedef struct jv jv;
struct jv {
    jv_type type;
    union {
        int boolean;
        double number;
        struct {
            const char *s; /* NUL-terminated, UTF-8; may hold NUL (\u0000): see len */
            size_t len;
        } string;
        struct {
            jv **items;
            size_t count;
        } array;
        struct {
            const char **keys;
            jv **values;
            size_t count;
        } object;
    } u;
};

typedef struct json_arena_chunk json_arena_chunk;

/* A parsed value and the memory it lives in. */
typedef struct json_doc {
    jv *root;
    json_arena_chunk *chunks;
} json_doc;

typedef enum {
    JSON_READ_OK = 0,
    JSON_READ_SYNTAX,    /* not JSON */
    JSON_READ_TRUNCATED, /* the text ends inside a value */
    JSON_READ_DEPTH,     /* nested deeper than JSON_READ_MAX_DEPTH */
    JSON_READ_NOMEM
} json_read_status;

/* Parses text[0..len) (white space around the value allowed, nothing else)
 * into doc. On failure doc holds nothing to free, msg (capacity cap) says
 * what is wrong and *where is the byte offset of the problem. */
json_read_status json_read(const char *text, size_t len, json_doc *doc, char *msg, size_t cap,
                           size_t *where);
void json_doc_free(json_doc *doc);

/* The value of key in an object (the last one when repeated), NULL when the
 * object has none or v is not an object. */
const jv *jv_get(const jv *v, const char *key);
/* "a number", "a string", ...: for messages. */
const char *jv_type_name(const jv *v);

#endif
