/* semihost.h — semihosting calls of the Cortex-M test program (startup.c). */
#ifndef FEWMUL_TEST_SEMIHOST_H
#define FEWMUL_TEST_SEMIHOST_H

/* operation op (0x04 SYS_WRITE0: a string to the host's standard output) */
int semihost(int op, const void *arg);
/* ends the emulation, with exit status 0 when ok, else 1 */
void semihost_exit(int ok) __attribute__((noreturn));

#endif
