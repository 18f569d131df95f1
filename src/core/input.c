/* input.c — how the library opens what it reads: fm_open_input (fewmul.h),
 * which never blocks in open() and refuses a file of the wrong type before
 * reading it, and fmi_file_read_checked (bytes.h), which reads a whole file of
 * a binary format only after the head of a large one has been checked against
 * the file's size. A FIFO without a writer cannot hang a reader, and a sparse
 * or padded file cannot make one allocate what its header does not declare. */
#define _POSIX_C_SOURCE 200809L
#include "bytes.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t fmi_read_whole_max = (size_t)16 << 20;

static const char *type_name(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a file";
}

int fmi_open_input(const char *path, int streams, uint64_t *size)
{
    if (size)
        *size = 0;
    if (!path)
        return fmi_error(FM_EINVAL, "fm_open_input: NULL path");
    /* O_NONBLOCK: opening a FIFO for reading waits for a writer otherwise,
     * and a device may wait for its line; the type is checked first. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return fmi_error(e == ENOENT || e == ENOTDIR ? FM_ENOENT : FM_EIO, "%s: %s", path,
                        strerror(e));
    }
    struct stat st;
    int rc = FM_OK;
    if (fstat(fd, &st) != 0)
        rc = fmi_error(FM_EIO, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rc = fmi_error(FM_EIO, "%s: %s", path, strerror(EISDIR));
    else if (!S_ISREG(st.st_mode) && !(streams && S_ISFIFO(st.st_mode)))
        rc = fmi_error(FM_EIO, "%s: not a regular file (%s)", path, type_name(st.st_mode));
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = fmi_error(FM_EIO, "%s: %s", path, strerror(errno)); /* a pipe then waits for data */
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (size)
        *size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : UINT64_MAX;
    return fd;
}

int fm_open_input(const char *path, int streams) { return fmi_open_input(path, streams, NULL); }

int fmi_head_read(const fmi_file_head *h, uint64_t at, void *dst, size_t n, const char *what)
{
    if (at > h->size || n > h->size - at)
        return fmi_error(FM_ETRUNC, "%s: truncated %s (reading %s at offset %llu of %llu bytes)",
                        h->path, h->kind, what, (unsigned long long)at,
                        (unsigned long long)h->size);
    uint8_t *p = dst;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(h->fd, p + done, n - done, (off_t)(at + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fmi_error(FM_EIO, "%s: %s", h->path, strerror(errno));
        if (r == 0)
            return fmi_error(FM_ETRUNC, "%s: truncated %s (it shrank while being read)", h->path,
                            h->kind);
        done += (size_t)r;
    }
    return FM_OK;
}

int fmi_file_read_checked(const char *path, size_t max_bytes, const char *kind,
                          int (*check_head)(const fmi_file_head *head, void *user), void *user,
                          uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    uint64_t size;
    int fd = fmi_open_input(path, 0, &size);
    if (fd < 0)
        return fd;
    int rc = FM_OK;
    if (size > (uint64_t)max_bytes)
        rc = fmi_error(FM_EFORMAT, "%s: %llu bytes is larger than any %s", path,
                      (unsigned long long)size, kind);
    /* A small file is read whole before anything else, so that its CRC is the
     * first check and a damaged file reads as damaged; a larger one is read
     * only once its head agrees with its size. */
    if (!rc && check_head && size > (uint64_t)fmi_read_whole_max) {
        fmi_file_head head = {fd, size, path, kind};
        rc = check_head(&head, user);
    }
    uint8_t *buf = NULL;
    if (!rc && !(buf = fmi_alloc_raw((size_t)size)))
        rc = FM_ENOMEM;
    size_t got = 0;
    while (!rc && got < size) {
        ssize_t r = read(fd, buf + got, FM_MIN((size_t)size - got, (size_t)1 << 30));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = fmi_error(FM_EIO, "%s: read failed: %s", path, r < 0 ? strerror(errno)
                                                                      : "the file shrank");
        else
            got += (size_t)r;
    }
    close(fd);
    if (rc < 0) {
        fmi_free(buf);
        return rc;
    }
    *data = buf;
    *len = (size_t)size;
    return FM_OK;
}
