/* startup.c — the least a Cortex-M4 program needs under QEMU's mps2-an386
 * (tests/cli_export_m4.sh): the vector table, a reset handler that copies
 * .data, clears .bss, turns the FPU on (hard-float builds) and calls main,
 * and semihosting calls (write a string, exit) instead of any C library. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
int main(void);
void reset_handler(void);
static void fault_handler(void);

/* initial stack pointer, reset, NMI, hard fault, and the faults after it */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)__stack_top, reset_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, fault_handler};

int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_exit(int ok)
{
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (QEMU exits 0), else
     * ADP_Stopped_RunTimeErrorUnknown (QEMU exits 1) */
    for (;;)
        semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026u : 0x20023u));
}

static void fault_handler(void)
{
    semihost(0x04, "fault\n");
    semihost_exit(0);
}

void reset_handler(void)
{
    for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;)
        *d++ = *s++;
    for (uint32_t *d = __bss_start; d < __bss_end;)
        *d++ = 0;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11, the FPU */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    semihost_exit(main() == 0);
}
