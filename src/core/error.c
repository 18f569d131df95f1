/* error.c — error codes to text, the per-thread detail message and code that
 * fm_last_error() and fm_last_error_code() return, and the fitting of a long
 * message into its buffer (fm_fit_text) so that its reason survives a long
 * path or architecture echoed in it. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FMI_MESSAGE_WHOLE 32768 /* bytes of a message formatted on the stack */

static _Thread_local char last_message[FMI_MESSAGE_CAP];
static _Thread_local int last_code;

const char *fm_strerror(int err)
{
    switch (err) {
#define FM_TEXT_ITEM(name, value, text) \
    case value:                         \
        return text;
        FM_ERROR_LIST(FM_TEXT_ITEM)
#undef FM_TEXT_ITEM
    default:
        return "unknown error";
    }
}

const char *fm_last_error(void)
{
    return last_message[0] ? last_message : "no error recorded";
}

int fm_last_error_code(void) { return last_code; }

/* What fm_fit_text keeps of a long word: its first and last KEEP bytes. */
enum { KEEP = 60, ELIDED = 2 * KEEP + 3 };

static int continuation(char c) { return ((unsigned char)c & 0xc0) == 0x80; }

/* Appends s[0..n) to buf at *len, within cap - 1 bytes. */
static void put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + n > cap - 1)
        n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
}

/* The head of s[0..n) and its tail, n > 2 * keep: cut where no UTF-8
 * character is split, with "..." between. */
static void put_elided(char *buf, size_t cap, size_t *len, const char *s, size_t n, size_t keep)
{
    size_t head = keep, tail = n - keep;
    while (head > 0 && continuation(s[head]))
        head--;
    while (tail < n && continuation(s[tail]))
        tail++;
    put(buf, cap, len, s, head);
    put(buf, cap, len, "...", 3);
    put(buf, cap, len, s + tail, n - tail);
}

size_t fm_fit_text(char *buf, size_t cap, const char *text)
{
    if (!buf || cap == 0)
        return 0;
    if (!text)
        text = "";
    size_t n = strlen(text), len = 0;
    if (n < cap) {
        memcpy(buf, text, n + 1);
        return n;
    }
    /* the length once every word (a run without spaces) longer than
     * ELIDED keeps only its ends */
    size_t fitted = 0;
    for (const char *w = text; *w;) {
        size_t word = strcspn(w, " ");
        fitted += (word > ELIDED ? ELIDED : word) + strspn(w + word, " ");
        w += word + strspn(w + word, " ");
    }
    if (fitted < cap) {
        for (const char *w = text; *w;) {
            size_t word = strcspn(w, " "), spaces = strspn(w + word, " ");
            if (word > ELIDED)
                put_elided(buf, cap, &len, w, word, KEEP);
            else
                put(buf, cap, &len, w, word);
            put(buf, cap, &len, w + word, spaces);
            w += word + spaces;
        }
    } else if (cap > 3) { /* the beginning and the end of the whole text */
        put_elided(buf, cap, &len, text, n, (cap - 1 - 3) / 2);
    } else {
        put(buf, cap, &len, text, n);
    }
    buf[len] = '\0';
    return len;
}

int fmi_error(int err, const char *fmt, ...)
{
    /* formatted apart from last_message, which may be one of the arguments;
     * on the stack up to FMI_MESSAGE_WHOLE bytes, so that an error path takes
     * no allocation (whose failure would otherwise turn the reported error
     * into a shortened message, and whose count the allocation-failure
     * fuzzing follows); only longer messages are formatted on the heap */
    char text[FMI_MESSAGE_WHOLE];
    va_list args, again;
    va_start(args, fmt);
    va_copy(again, args);
    int n = vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    char *whole = n >= (int)sizeof text ? fmi_alloc_raw((size_t)n + 1) : NULL;
    if (n >= 0 && n < (int)sizeof text) {
        fm_fit_text(last_message, sizeof last_message, text);
    } else if (whole) {
        vsnprintf(whole, (size_t)n + 1, fmt, again);
        fm_fit_text(last_message, sizeof last_message, whole);
        fmi_free(whole);
    } else {
        /* out of memory for a long message: its first part */
        const char *first = n >= 0 ? text : fmt;
        size_t k = 0;
        while (k < sizeof last_message - 1 && first[k])
            k++;
        memcpy(last_message, first, k);
        last_message[k] = '\0';
    }
    va_end(again);
    last_code = err; /* after fmi_alloc_raw, which records its own failure */
    return err;
}
