/* data.c — the data specs ("fashion", "mnist:DIR", "idx:DIR", "cifar10:DIR",
 * "svhn:DIR"): finding each set's files and loading them through the IDX,
 * CIFAR-10 and SVHN readers, each data set's defaults (the paper's
 * preprocessing and validation size), and its validation split (the
 * class-balanced one SVHN uses). docs/data.md describes them all. */
#define _POSIX_C_SOURCE 200809L

#include "internal.h"
#include "readers.h"
#include "rng.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR10_SUBDIR "cifar-10-batches-bin"
#define CIFAR10_FILES "data_batch_1.bin .. data_batch_5.bin, test_batch.bin"
#define SVHN_FILES "train_32x32.mat, test_32x32.mat, optional extra_32x32.mat"

void fm_images_free(fm_images *images)
{
    if (!images)
        return;
    fmi_free(images->pixels);
    fmi_free(images->labels);
    memset(images, 0, sizeof *images);
}

int fmi_data_resize(uint8_t **buf, size_t bytes)
{
    uint8_t *p = *buf ? fmi_realloc(*buf, bytes) : fmi_alloc_raw(bytes);
    if (!p)
        return FM_ENOMEM;
    *buf = p;
    return FM_OK;
}

static int parse_spec(const char *spec, fm_data_kind *kind, const char **dir)
{
    static const struct {
        const char *prefix;
        fm_data_kind kind;
    } forms[] = {{"mnist:", FM_DATA_IDX},
                 {"idx:", FM_DATA_IDX},
                 {"cifar10:", FM_DATA_CIFAR10},
                 {"svhn:", FM_DATA_SVHN}};
    if (spec && strcmp(spec, "fashion") == 0) {
        *kind = FM_DATA_FASHION;
        *dir = FM_FASHION_DIR;
        return FM_OK;
    }
    for (size_t i = 0; spec && i < sizeof forms / sizeof *forms; i++) {
        size_t n = strlen(forms[i].prefix);
        if (strncmp(spec, forms[i].prefix, n) == 0 && spec[n]) {
            *kind = forms[i].kind;
            *dir = spec + n;
            return FM_OK;
        }
    }
    return fmi_error(FM_EINVAL,
                    "unknown data spec '%s' (expected fashion, mnist:DIR or idx:DIR for IDX files, "
                    "cifar10:DIR or svhn:DIR)",
                    spec ? spec : "(null)");
}

int fm_data_kind_of(const char *spec, fm_data_kind *kind)
{
    fm_data_kind k;
    const char *dir;
    int err = parse_spec(spec, &k, &dir);
    if (!err && kind)
        *kind = k;
    return err;
}

/* ---- each data set's defaults: the paper's setup ------------------------------ */

/* SVHN's validation set (pylearn2's "splitted_train"): per class, this many
 * images from train_32x32.mat and from extra_32x32.mat, or SVHN_VALID_ALONE
 * from train_32x32.mat when there is no extra set. */
#define SVHN_VALID_TRAIN 400
#define SVHN_VALID_EXTRA 200
#define SVHN_VALID_ALONE 600

int fm_data_defaults(fm_data_kind kind, fm_preproc *preproc, int *valid)
{
    fm_preproc p;
    int v;
    switch (kind) {
    case FM_DATA_FASHION:
    case FM_DATA_IDX:
        p = FM_PRE_CENTER;
        v = 10000; /* the last 10000 of the 60000 training images */
        break;
    case FM_DATA_CIFAR10:
        p = FM_PRE_GCN_ZCA;
        v = 5000; /* the second half of data_batch_5.bin */
        break;
    case FM_DATA_SVHN:
        p = FM_PRE_GCN_LCN;
        v = 6000; /* 10 classes x (400 from train_32x32 + 200 from extra_32x32) */
        break;
    default:
        return fmi_error(FM_EINVAL, "fm_data_defaults: unknown data set kind %d", (int)kind);
    }
    if (preproc)
        *preproc = p;
    if (valid)
        *valid = v;
    return FM_OK;
}

int fm_data_default_valid(const char *spec)
{
    fm_data_kind kind;
    int valid = 0;
    int err = fm_data_kind_of(spec, &kind);
    if (!err)
        err = fm_data_defaults(kind, NULL, &valid);
    return err ? err : valid;
}

int fm_data_split_validation(fm_data_kind kind, fm_images *train, int32_t train_part, int valid,
                             int classes, uint64_t seed)
{
    int default_valid = 0;
    int err = fm_data_defaults(kind, NULL, &default_valid);
    if (err)
        return err;
    if (!train)
        return fmi_error(FM_EINVAL, "fm_data_split_validation: NULL training set");
    if (train_part < 0 || train_part > train->count)
        return fmi_error(FM_EINVAL, "fm_data_split_validation: train_part %d outside 0..%d", train_part,
                        train->count);
    if (valid < 0)
        return fmi_error(FM_EINVAL, "fm_data_split_validation: %d validation images", valid);
    /* Only SVHN at its own validation size picks its images; every other
     * split is the last `valid` images as loaded. */
    if (kind != FM_DATA_SVHN || valid != default_valid)
        return FM_OK;
    const int extra = train_part < train->count;
    return fm_images_split_balanced(train, train_part, extra ? SVHN_VALID_TRAIN : SVHN_VALID_ALONE,
                                    extra ? SVHN_VALID_EXTRA : 0, classes, seed);
}

/* DIR/NAME into path; a trailing '/' on DIR is not doubled. */
static int join(char *path, size_t size, const char *dir, const char *name)
{
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    int n = snprintf(path, size, "%s%s%s", dir, sep, name);
    if (n < 0 || (size_t)n >= size)
        return fmi_error(FM_EINVAL, "%s: data directory path too long", dir);
    return FM_OK;
}

/* 1 when path is missing (it, or a folder on its way), 0 when it is there;
 * FM_EIO naming it when it cannot be looked at (a folder that may not be
 * searched, a loop of symbolic links): that is no missing file. */
static int look_up(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    if (errno == ENOENT || errno == ENOTDIR)
        return 1;
    return fmi_error(FM_EIO, "%s: %s", path, strerror(errno));
}

/* ---- IDX: "fashion", "mnist:DIR", "idx:DIR" ------------------------------ */

/* Finds DIR/BASE, DIR/BASE.gz, then the variants with '.' for the '-' before
 * "idx" (e.g. train-images.idx3-ubyte, as some MNIST copies are named). */
static int find_file(const char *dir, const char *base, int fashion, char *path, size_t size)
{
    char variant[64];
    snprintf(variant, sizeof variant, "%s", base);
    char *idx = strstr(variant, "-idx");
    if (idx)
        *idx = '.';
    const char *names[2] = {base, variant};
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    for (int v = 0; v < 2; v++) {
        for (int gz = 0; gz < 2; gz++) {
            int n = snprintf(path, size, "%s%s%s%s", dir, sep, names[v], gz ? ".gz" : "");
            if (n < 0 || (size_t)n >= size)
                return fmi_error(FM_EINVAL, "%s: data directory path too long", dir);
            int absent = look_up(path);
            if (absent <= 0)
                return absent;
        }
    }
    return fmi_error(FM_ENOENT, "%s: missing %s[.gz] (also looked for %s[.gz])%s", dir, base,
                    variant, fashion ? "; install Debian's dataset-fashion-mnist" : "");
}

static int load_idx_set(const char *dir, const char *images, const char *labels, int fashion,
                        fm_images *out)
{
    char ipath[4096], lpath[4096];
    int err = find_file(dir, images, fashion, ipath, sizeof ipath);
    if (!err)
        err = find_file(dir, labels, fashion, lpath, sizeof lpath);
    if (!err)
        err = fm_idx_read(ipath, lpath, out);
    return err;
}

static int load_idx(const char *dir, int fashion, fm_images *train, fm_images *test)
{
    int err = FM_OK;
    if (train)
        err = load_idx_set(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", fashion, train);
    if (!err && test)
        err = load_idx_set(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", fashion, test);
    if (!err && train && test &&
        (train->height != test->height || train->width != test->width ||
         train->channels != test->channels))
        err = fmi_error(FM_EMISMATCH, "%s: train images are %dx%d but test images are %dx%d", dir,
                       train->height, train->width, test->height, test->width);
    return err;
}

/* ---- "cifar10:DIR" --------------------------------------------------------- */

static int load_cifar10(const char *dir, fm_images *train, fm_images *test)
{
    static const char *const batches[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                          "data_batch_4.bin", "data_batch_5.bin"};
    char base[4096], path[4096], first[4096], last[4096];
    snprintf(base, sizeof base, "%s", dir);
    /* The archive unpacks into cifar-10-batches-bin/, so DIR may name its parent. */
    int err = join(first, sizeof first, dir, batches[0]);
    if (!err)
        err = join(last, sizeof last, dir, "test_batch.bin");
    if (!err)
        err = join(path, sizeof path, dir, CIFAR10_SUBDIR);
    struct stat st;
    if (!err && look_up(first) == 1 && look_up(last) == 1 && stat(path, &st) == 0 &&
        S_ISDIR(st.st_mode))
        snprintf(base, sizeof base, "%s", path);
    /* Every file is looked for before any is read, so a missing test set does
     * not cost reading 150 MB first. */
    for (int i = 0; !err && i < 6; i++) {
        if ((i < 5 && !train) || (i == 5 && !test))
            continue;
        const char *name = i < 5 ? batches[i] : "test_batch.bin";
        err = join(path, sizeof path, base, name);
        if (!err && (err = look_up(path)) == 1)
            err = fmi_error(FM_ENOENT, "%s: missing %s (the CIFAR-10 binary version: %s)", base, name,
                           CIFAR10_FILES);
    }
    for (int i = 0; !err && train && i < 5; i++) {
        err = join(path, sizeof path, base, batches[i]);
        if (!err)
            err = fmi_cifar10_read_append(path, train);
    }
    if (!err && test) {
        err = join(path, sizeof path, base, "test_batch.bin");
        if (!err)
            err = fmi_cifar10_read_append(path, test);
    }
    return err;
}

/* ---- "svhn:DIR" ------------------------------------------------------------ */

static int load_svhn(const char *dir, fm_images *train, fm_images *test, int32_t *part)
{
    char path[4096];
    int err = FM_OK;
    const char *needed[2] = {train ? "train_32x32.mat" : NULL, test ? "test_32x32.mat" : NULL};
    for (int i = 0; !err && i < 2; i++) {
        if (!needed[i])
            continue;
        err = join(path, sizeof path, dir, needed[i]);
        if (!err && (err = look_up(path)) == 1)
            err = fmi_error(FM_ENOENT, "%s: missing %s (SVHN cropped digits: %s)", dir, needed[i],
                           SVHN_FILES);
    }
    if (!err && train) {
        err = join(path, sizeof path, dir, "train_32x32.mat");
        if (!err)
            err = fmi_svhn_read_append(path, train);
        if (!err)
            *part = train->count;
        if (!err)
            err = join(path, sizeof path, dir, "extra_32x32.mat");
        int absent = err ? 1 : look_up(path);
        if (absent < 0)
            err = absent;
        else if (!absent)
            err = fmi_svhn_read_append(path, train);
    }
    if (!err && test) {
        err = join(path, sizeof path, dir, "test_32x32.mat");
        if (!err)
            err = fmi_svhn_read_append(path, test);
    }
    return err;
}

/* ---- the specs ------------------------------------------------------------ */

int fm_data_load_parts(const char *spec, fm_images *train, fm_images *test, int32_t *train_part)
{
    if (train)
        memset(train, 0, sizeof *train);
    if (test)
        memset(test, 0, sizeof *test);
    if (train_part)
        *train_part = 0;

    fm_data_kind kind;
    const char *dir;
    int err = parse_spec(spec, &kind, &dir);
    if (err)
        return err;
    int fashion = kind == FM_DATA_FASHION;
    struct stat st;
    if (stat(dir, &st) != 0)
        return fmi_error(errno == ENOENT || errno == ENOTDIR ? FM_ENOENT : FM_EIO,
                        "data directory %s: %s%s", dir, strerror(errno),
                        fashion ? "; install Debian's dataset-fashion-mnist" : "");
    if (!S_ISDIR(st.st_mode))
        return fmi_error(FM_EINVAL, "data directory %s: %s", dir, strerror(ENOTDIR));

    int32_t part = 0;
    switch (kind) {
    case FM_DATA_CIFAR10:
        err = load_cifar10(dir, train, test);
        break;
    case FM_DATA_SVHN:
        err = load_svhn(dir, train, test, &part);
        break;
    default:
        err = load_idx(dir, fashion, train, test);
        break;
    }
    if (err) {
        fm_images_free(train);
        fm_images_free(test);
        return err;
    }
    if (train_part)
        *train_part = kind == FM_DATA_SVHN ? part : train ? train->count : 0;
    return FM_OK;
}

int fm_data_load(const char *spec, fm_images *train, fm_images *test)
{
    return fm_data_load_parts(spec, train, test, NULL);
}

/* ---- the files a spec reads ----------------------------------------------- */

/* Every name a loader above may read, in DIR (and, for CIFAR-10, in its
 * CIFAR10_SUBDIR): a command checks its outputs against them. */
static const char *const idx_names[] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte", "train-images.idx3-ubyte", "train-labels.idx1-ubyte",
    "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte", NULL};
static const char *const cifar10_names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
                                            NULL};
static const char *const svhn_names[] = {"train_32x32.mat", "test_32x32.mat", "extra_32x32.mat", NULL};

/* Calls each with DIR/NAME[SUFFIX] for each name that exists; its first
 * nonzero return. */
static int each_present(const char *dir, const char *const *names, const char *suffix,
                        int (*each)(const char *path, void *user), void *user)
{
    char path[4096];
    struct stat st;
    for (; *names; names++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s", *names, suffix);
        if (join(path, sizeof path, dir, name) != FM_OK)
            return FM_OK; /* a name too long for the loaders too: nothing read */
        int rc = stat(path, &st) == 0 ? each(path, user) : 0;
        if (rc)
            return rc;
    }
    return FM_OK;
}

int fm_data_files(const char *spec, int (*each)(const char *path, void *user), void *user)
{
    fm_data_kind kind;
    const char *dir;
    int rc = parse_spec(spec, &kind, &dir);
    if (rc || !each)
        return rc ? rc : fmi_error(FM_EINVAL, "fm_data_files: no function");
    if (kind == FM_DATA_CIFAR10) {
        char sub[4096];
        rc = each_present(dir, cifar10_names, "", each, user);
        if (!rc && join(sub, sizeof sub, dir, CIFAR10_SUBDIR) == FM_OK)
            rc = each_present(sub, cifar10_names, "", each, user);
        return rc;
    }
    if (kind == FM_DATA_SVHN)
        return each_present(dir, svhn_names, "", each, user);
    rc = each_present(dir, idx_names, "", each, user);
    return rc ? rc : each_present(dir, idx_names, ".gz", each, user);
}

/* ---- the class-balanced validation split ------------------------------------ */

#define SPLIT_MAX_CLASSES 256

int fm_images_split_balanced(fm_images *set, int32_t boundary, int per_class_head,
                             int per_class_tail, int classes, uint64_t seed)
{
    if (!set)
        return fmi_error(FM_EINVAL, "fm_images_split_balanced: NULL set");
    int32_t n = set->count;
    if (n < 0 || (n > 0 && (!set->pixels || !set->labels || set->height <= 0 || set->width <= 0 ||
                            set->channels <= 0)))
        return fmi_error(FM_EINVAL, "fm_images_split_balanced: a set of %d images of %dx%dx%d without buffers",
                        n, set->height, set->width, set->channels);
    if (boundary < 0 || boundary > n)
        return fmi_error(FM_EINVAL, "fm_images_split_balanced: boundary %d outside 0..%d", boundary, n);
    if (per_class_head < 0 || per_class_tail < 0)
        return fmi_error(FM_EINVAL, "fm_images_split_balanced: negative count per class (%d, %d)",
                        per_class_head, per_class_tail);
    if (classes < 1 || classes > SPLIT_MAX_CLASSES)
        return fmi_error(FM_EINVAL, "fm_images_split_balanced: %d classes (expected 1..%d)", classes,
                        SPLIT_MAX_CLASSES);

    int32_t have[2][SPLIT_MAX_CLASSES] = {{0}};
    for (int32_t i = 0; i < n; i++) {
        if (set->labels[i] >= classes)
            return fmi_error(FM_EINVAL, "fm_images_split_balanced: label %u at index %d is not below %d classes",
                            (unsigned)set->labels[i], i, classes);
        have[i >= boundary][set->labels[i]]++;
    }
    const int want[2] = {per_class_head, per_class_tail};
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < classes; k++)
            if (have[r][k] < want[r])
                return fmi_error(FM_EINVAL,
                                "fm_images_split_balanced: class %d has %d images in [%d, %d), fewer than "
                                "the %d per class to hold out",
                                k, have[r][k], r ? boundary : 0, r ? n : boundary, want[r]);
    if (per_class_head == 0 && per_class_tail == 0)
        return FM_OK;

    size_t image = (size_t)set->height * (size_t)set->width * (size_t)set->channels;
    int32_t *order = fmi_alloc((size_t)n, sizeof *order);
    uint8_t *picked = fmi_alloc((size_t)n, 1);
    uint8_t *tmp = fmi_alloc_raw(image);
    if (!order || !picked || !tmp) {
        fmi_free(order);
        fmi_free(picked);
        fmi_free(tmp);
        return FM_ENOMEM;
    }

    /* Indices grouped by (part, class), each group in index order; then a
     * partial Fisher-Yates shuffle of each group picks its first want[r]. */
    int32_t start[2][SPLIT_MAX_CLASSES], fill[2][SPLIT_MAX_CLASSES];
    int32_t at = 0;
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < classes; k++) {
            start[r][k] = fill[r][k] = at;
            at += have[r][k];
        }
    for (int32_t i = 0; i < n; i++)
        order[fill[i >= boundary][set->labels[i]]++] = i;
    fm_rng rng;
    fmi_rng_seed(&rng, seed);
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < classes; k++) {
            int32_t *g = order + start[r][k], m = have[r][k];
            for (int32_t j = 0; j < want[r]; j++) {
                int32_t s = j + (int32_t)fmi_rng_below(&rng, (uint32_t)(m - j));
                int32_t t = g[j];
                g[j] = g[s];
                g[s] = t;
                picked[g[j]] = 1;
            }
        }

    /* order becomes the permutation: position p receives image order[p]. */
    int32_t p = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int32_t i = 0; i < n; i++)
            if (picked[i] == pass)
                order[p++] = i;
    /* Applied in place by following its cycles, so no second copy of the
     * pixels is needed (SVHN with extra is 1.9 GB); picked marks done slots. */
    memset(picked, 0, (size_t)n);
    for (int32_t s = 0; s < n; s++) {
        if (picked[s] || order[s] == s) {
            picked[s] = 1;
            continue;
        }
        memcpy(tmp, set->pixels + (size_t)s * image, image);
        uint8_t tmp_label = set->labels[s];
        int32_t j = s;
        for (;;) {
            int32_t src = order[j];
            picked[j] = 1;
            if (src == s) {
                memcpy(set->pixels + (size_t)j * image, tmp, image);
                set->labels[j] = tmp_label;
                break;
            }
            memcpy(set->pixels + (size_t)j * image, set->pixels + (size_t)src * image, image);
            set->labels[j] = set->labels[src];
            j = src;
        }
    }
    fmi_free(order);
    fmi_free(picked);
    fmi_free(tmp);
    return FM_OK;
}
