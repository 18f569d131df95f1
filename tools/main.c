/* main.c — the `fewmul` command's entry point: the top-level help, the table
 * of commands (train, eval, infer, info, bench, export, import, energy, report; each in its
 * cmd_*.c), `help` and `--version`, dispatch, and the check that standard output was
 * written, and the environment the OpenMP and OpenBLAS runtimes need, set
 * before they start. Exit statuses: cli.h, docs/cli.md, docs/errors.md. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const main_help[] = {
    "fewmul " FM_VERSION_STRING " - train neural networks with few multiplications",
    "",
    "Usage:",
    "  fewmul train [OPTIONS]              train a network, report its test error,",
    "                                      save it packed (--out) or in full (--state)",
    "  fewmul eval --model FILE [OPTIONS]  measure the error of a saved model",
    "  fewmul infer --model FILE [OPTIONS] predict a data set with a packed model:",
    "                                      error, images/s, latency",
    "  fewmul info FILE [--json]           describe a packed model, layer by layer",
    "  fewmul bench infer --model FILE     time every kernel variant of a packed",
    "                                      model against the fp32 yardstick",
    "  fewmul export --model FILE --c DIR  write a packed model as C for a",
    "                                      microcontroller: NAME.h and NAME.c",
    "  fewmul import --onnx FILE -o OUT    read an ONNX model into a packed model",
    "  fewmul energy [OPTIONS]             count and price the work of one training",
    "                                      step and one inference pass",
    "  fewmul report LOG.jsonl...          one HTML page comparing training runs",
    "                                      from their --log files: error, rate,",
    "                                      speed, energy",
    "  fewmul help [COMMAND]               show the help of a command",
    "  fewmul --version                    print the version and the libraries of the",
    "                                      float matrix products and the ONNX export",
    "",
    "Binary and ternary weights (BinaryConnect, TernaryConnect) turn the forward",
    "pass's multiplications into sign changes; quantized back-propagation (--qb)",
    "turns those of the weight gradient into shifts. After Lin, Courbariaux,",
    "Memisevic, Bengio, \"Neural Networks with Few Multiplications\", ICLR 2016.",
    "",
    "A packed model (--out) holds 1-bit binary, 2-bit ternary or 5- to 6-bit",
    "synapse weights with batch norm folded in, and runs on kernels that add,",
    "look up and count bits instead of multiplying.",
    "",
    "Environment:",
    "  FEWMUL_KERNELS=ref|avx2|avx512|neon",
    "       the kernel variant a packed model gets when it is loaded (default: the",
    "       best this CPU supports); a value that is not one of these, or a",
    "       variant this CPU lacks, makes loading fail (exit 1)",
    "  FEWMUL_GEMM=auto|openblas|dnnl",
    "       the library of every tile of a float matrix product (default auto:",
    "       oneDNN when the build has it, else OpenBLAS); another value, or a",
    "       library this build lacks (fewmul --version names them), is exit 1",
    "",
    "Exit status (docs/errors.md lists the cases):",
    "  0    success",
    "  1    a failure not listed below: FEWMUL_KERNELS or FEWMUL_GEMM",
    "       invalid, a kernel variant this CPU lacks",
    "  2    usage error: unknown command or option, bad value, options that",
    "       conflict",
    "  3    not found: a data, model, checkpoint or table file or folder",
    "  4    bad input: a malformed, truncated or unsupported file, or data",
    "       that do not fit the model or the checkpoint's run",
    "  5    I/O error: a file that cannot be read or written (permission, not",
    "       a regular file, disk full); nothing existing is damaged",
    "  6    out of memory",
    "  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: training stops",
    "       after the minibatch it is in, writes its checkpoint if it has one",
    "       (train --checkpoint), and exits",
    "",
    "Run 'fewmul help COMMAND' (train, eval, infer, info, bench, export,",
    "import, energy, report) or 'man fewmul' for details.",
    NULL};

/* ---- dispatch ------------------------------------------------------------ */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *const *help;
} command;

static const command commands[] = {
    {"train", cmd_train, train_help},
    {"eval", cmd_eval, eval_help},
    {"infer", cmd_infer, infer_help},
    {"info", cmd_info, info_help},
    {"bench", cmd_bench, bench_help},
    {"export", cmd_export, export_help},
    {"import", cmd_import, import_help},
    {"energy", cmd_energy, energy_help},
    {"report", cmd_report, report_help},
    {NULL, NULL, NULL}};

static const command *find_command(const char *name)
{
    for (const command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* "fewmul help [COMMAND]". */
static int cmd_help(int argc, char **argv)
{
    if (argc <= 2) {
        print_lines(stdout, main_help);
        return CLI_OK;
    }
    if (argc > 3)
        return usage_error("'help' takes one command name, got '%s' too", argv[3]);
    const command *c = find_command(argv[2]);
    if (!c)
        return usage_error("no help for unknown command '%s'", argv[2]);
    print_lines(stdout, c->help);
    return CLI_OK;
}

/* A write error on stdout (a full disk, a closed pipe) must not pass for success. */
static int finish_stdout(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno;
        fprintf(cli_err_file(), "fewmul: error: writing standard output: %s\n",
                strerror(err ? err : EIO));
        return rc ? rc : CLI_IO;
    }
    return rc;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2)
        return usage_error(
            "no command given; expected train, eval, infer, info, bench, export, import, energy, report "
            "or help");
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return cmd_help(argc, argv);
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 ||
        strcmp(name, "version") == 0) {
        printf("fewmul %s\nfloat matrix products: %s\nONNX export: %s\n", FM_VERSION_STRING,
               fm_gemm_libraries(), fm_onnx_available() ? "protobuf-c" : "none (built without protobuf-c)");
        return CLI_OK;
    }
    const command *c = find_command(name);
    if (!c) {
        if (name[0] == '-')
            return usage_error("unknown option '%s' before the command", name);
        return usage_error("unknown command '%s'", name);
    }
    g_command = c->name;
    /* before any product reads it: a library this build lacks or a misspelt
     * name would otherwise pass for auto (fm_gemm_check) */
    if (fm_gemm_check() != FM_OK)
        return failure("%s", fm_last_error());
    return c->run(argc, argv);
}

/* ---- before the runtimes start --------------------------------------------
 *
 * Two runtimes read their settings from the environment once, when they load,
 * before main: so the command re-executes itself, once, with what it needs
 * added, and does so from .preinit_array, which runs before any library's
 * initialiser, so that neither has started anything (no thread, no MPI) and
 * the process keeps its pid (mpirun's ranks stay its children).
 *
 * OMP_WAIT_POLICY=PASSIVE, unless the user chose a policy: OpenMP threads that
 * spin between parallel regions take the cores from each other whenever
 * anything else runs on the machine (measured on 2 cores with a second
 * process busy: 2-5x slower training).
 *
 * OPENBLAS_NUM_THREADS=1 under a finite memory limit (RLIMIT_AS, RLIMIT_DATA)
 * or a process limit that may be near (RLIMIT_NPROC): OpenBLAS starts its
 * threads in its initialiser, and each maps a 128 MiB buffer; when the map
 * fails the thread retries forever, spinning, and exit waits for it (a hang,
 * Debian's 0.3.21), and when a thread cannot be created OpenBLAS raises SIGINT
 * (exit 130). fewmul runs OpenBLAS on the calling thread anyway (threads.c),
 * so one thread changes no result; under a memory limit the library calls no
 * OpenBLAS routine at all (gemm.c). */

static const char *env_value(char *const *envp, const char *name)
{
    const size_t len = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

static int limited(int resource)
{
    struct rlimit r;
    return getrlimit(resource, &r) == 0 && r.rlim_cur != RLIM_INFINITY;
}

/* Whether RLIMIT_NPROC (the user's processes and threads together) may stop
 * OpenBLAS's threads: when it is under the threads the whole system runs now
 * (a bound on the user's share, from /proc/loadavg) plus two per core (ours
 * and OpenBLAS's) and a margin. Root's processes count too, though the
 * kernel does not hold root to the limit: one OpenBLAS thread is harmless. */
static int nproc_tight(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NPROC, &r) != 0 || r.rlim_cur == RLIM_INFINITY)
        return 0;
    long running = -1;
    char buf[128];
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            const char *slash = strchr(buf, '/');
            if (slash)
                running = strtol(slash + 1, NULL, 10);
        }
    }
    if (running < 0)
        return 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return (double)r.rlim_cur < (double)running + 2.0 * (cores > 0 ? cores : 1) + 64.0;
}

static void prepare_runtimes(int argc, char **argv, char **envp)
{
    (void)argc;
    const int passive = !env_value(envp, "OMP_WAIT_POLICY") && !env_value(envp, "GOMP_SPINCOUNT");
    const char *blas = env_value(envp, "OPENBLAS_NUM_THREADS");
    const int one_blas = (limited(RLIMIT_AS) || limited(RLIMIT_DATA) || nproc_tight()) &&
                         !(blas && strcmp(blas, "1") == 0);
    if (!passive && !one_blas)
        return;
    size_t n = 0;
    while (envp && envp[n])
        n++;
    char **env = malloc(sizeof *env * (n + 3));
    if (!env)
        return; /* carry on as we are */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!(one_blas && strncmp(envp[i], "OPENBLAS_NUM_THREADS=", 21) == 0))
            env[k++] = envp[i];
    static char wait_policy[] = "OMP_WAIT_POLICY=PASSIVE", one_thread[] = "OPENBLAS_NUM_THREADS=1";
    if (passive)
        env[k++] = wait_policy;
    if (one_blas)
        env[k++] = one_thread;
    env[k] = NULL;
    execve("/proc/self/exe", argv, env); /* returns only on failure: carry on as we are */
    free(env);
}

#ifdef __ELF__
__attribute__((section(".preinit_array"), used)) static void (*const preinit)(int, char **,
                                                                            char **) = prepare_runtimes;
#endif

int main(int argc, char **argv)
{
#ifndef __ELF__
    extern char **environ;
    prepare_runtimes(argc, argv, environ);
#endif
    return finish_stdout(dispatch(argc, argv));
}
