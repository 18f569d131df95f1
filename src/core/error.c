/* error.c — error codes to text, and the per-thread detail message and code
 * that fm_last_error() and fm_last_error_code() return. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_message[512];
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

int fmi_error(int err, const char *fmt, ...)
{
    last_code = err;
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, args);
    va_end(args);
    return err;
}
