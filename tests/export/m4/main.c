/* main.c — the Cortex-M4 test program of tests/cli_export_m4.sh: predicts the
 * images embedded in images.c (made by the test from MNIST's test set) with
 * the network exported by `fewmul export --c` (MODEL_H its header, MODEL its
 * name, MODEL_UPPER its macros' prefix) and prints, through semihosting, one
 * line "CLASS" per image, then "stack BYTES": the most stack a prediction
 * used, found by painting the stack below main's frame before the first
 * prediction and looking for the lowest word changed after the last. */
#include <stdint.h>

#include MODEL_H
#include "semihost.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PREDICT CAT(MODEL, _predict)
#define INPUTS CAT(MODEL_UPPER, _INPUTS)
#define SCRATCH_WORDS CAT(MODEL_UPPER, _SCRATCH_WORDS)

extern const uint8_t test_images[][INPUTS];
extern const int test_count;
extern uint32_t __stack_limit[];

static uint32_t scratch[SCRATCH_WORDS];

#define PAINT 0x5a17c0deu

static char *put_uint(char *p, unsigned long v)
{
    char digits[12];
    int n = 0;
    do
        digits[n++] = (char)('0' + v % 10u);
    while ((v /= 10u) != 0);
    while (n)
        *p++ = digits[--n];
    return p;
}

/* Paints the stack from its limit to 64 bytes below this function's frame. */
static __attribute__((noinline)) void paint(void)
{
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = __stack_limit; p < sp - 16;)
        *p++ = PAINT;
}

int main(void)
{
    static char line[64 * 16 + 1];
    char *at = line;
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    paint();
    for (int i = 0; i < test_count; i++) {
        at = put_uint(at, (unsigned long)PREDICT(test_images[i], 0, scratch));
        *at++ = '\n';
        if (i % 64 == 63 || i + 1 == test_count) { /* a semihosting call per 64 lines */
            *at = '\0';
            semihost(0x04, line);
            at = line;
        }
    }
    const uint32_t *low = __stack_limit;
    while (low < sp && *low == PAINT)
        low++;
    at = line;
    for (const char *s = "stack "; *s;)
        *at++ = *s++;
    at = put_uint(at, (unsigned long)((uintptr_t)sp - (uintptr_t)low));
    *at++ = '\n';
    *at = '\0';
    semihost(0x04, line);
    return 0;
}
