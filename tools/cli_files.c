/* cli_files.c — what the command makes sure of before it writes a file
 * (docs/errors.md, "Files in a shared folder"): that two options do not name
 * one file by two spellings (./F, dir/../F, a link to F), compared by device
 * and inode rather than by the strings; that an output is something fewmul
 * may replace (fm_check_output); and that no other run holds a checkpoint,
 * through an advisory lock on FILE.lock for the run's duration. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- one file by two names ------------------------------------------------- */

/* Who a path is: the file's device and inode when it exists; when it does
 * not, its folder's device and inode and its base name, so that a file still
 * to be written is known by where it will be. `known` is 0 when neither can
 * be found (a missing folder: nothing can be there to collide with). */
typedef struct path_id {
    int known, exists;
    dev_t dev;
    ino_t ino;
    const char *base;
    size_t base_len;
} path_id;

static void path_id_of(const char *path, path_id *id)
{
    memset(id, 0, sizeof *id);
    struct stat st;
    if (stat(path, &st) == 0) {
        *id = (path_id){1, 1, st.st_dev, st.st_ino, NULL, 0};
        return;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    /* the folder: all before the last '/' ("/" itself for "/F", "." for "F") */
    size_t dir_len = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    char dir[4096] = ".";
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || dir_len >= sizeof dir)
        return;
    if (dir_len > 0) {
        memcpy(dir, path, dir_len);
        dir[dir_len] = '\0';
    }
    if (stat(dir, &st) == 0)
        *id = (path_id){1, 0, st.st_dev, st.st_ino, base, strlen(base)};
}

int same_file(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return 1;
    path_id x, y;
    path_id_of(a, &x);
    path_id_of(b, &y);
    return x.known && y.known && x.exists == y.exists && x.dev == y.dev && x.ino == y.ino &&
           (x.exists || (x.base_len == y.base_len && memcmp(x.base, y.base, x.base_len) == 0));
}

int refuse_same_file(const named_path *a, const named_path *b)
{
    if (!a->path || !b->path || !same_file(a->path, b->path))
        return 0;
    return usage_error("%s '%s' and %s '%s' name the same file", a->option, a->path, b->option,
                       b->path);
}

int refuse_same_files(const named_path *files, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int rc = refuse_same_file(&files[i], &files[j]);
            if (rc)
                return rc;
        }
    return 0;
}

int check_outputs(const named_path *outputs, int n)
{
    for (int i = 0; i < n; i++)
        if (outputs[i].path && fm_check_output(outputs[i].path) != FM_OK)
            return failure_as(FM_EIO, "%s: %s", outputs[i].option, fm_last_error());
    return 0;
}

/* ---- the checkpoint's lock ------------------------------------------------ */

/* Both runs would write the checkpoint in turn, each resuming its own
 * position from the other's file afterwards: the second run is refused at
 * its start. The lock is fcntl's on CHECKPOINT.lock, which the system drops
 * when the process ends however it ends, so a killed run leaves a lock file
 * that the next run simply takes. The file holds nothing (F_GETLK names the
 * holder), so a hard link planted at its name loses nothing either. */
int lock_checkpoint(const char *checkpoint, file_lock *lock)
{
    lock->fd = -1;
    size_t n = strlen(checkpoint);
    if (!(lock->path = malloc(n + sizeof ".lock")))
        return failure_as(FM_ENOMEM, "out of memory");
    memcpy(lock->path, checkpoint, n);
    memcpy(lock->path + n, ".lock", sizeof ".lock");
    const char *path = lock->path;
    /* a run ending removes its lock file while it still holds it: a file
     * locked here that is no longer at the name is let go, and the name tried
     * again */
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
        if (fd < 0 && errno == ELOOP)
            return failure_as(FM_EIO, "--checkpoint: the lock file '%s' is a symbolic link; "
                                      "fewmul locks only a regular file", path);
        if (fd < 0)
            return failure_as(FM_EIO, "--checkpoint: cannot create the lock file '%s': %s", path,
                              strerror(errno));
        struct stat st, now;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return failure_as(FM_EIO, "--checkpoint: the lock file '%s' is not a regular file",
                              path);
        }
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) != 0) {
            int err = errno;
            struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            int asked = fcntl(fd, F_GETLK, &who) == 0;
            close(fd);
            if (err != EACCES && err != EAGAIN)
                return failure_as(FM_EIO, "--checkpoint: cannot lock '%s': %s", path,
                                  strerror(err));
            if (asked && who.l_type == F_UNLCK)
                continue; /* let go since: try again */
            if (asked && who.l_pid > 0)
                return failure_as(FM_EIO, "another run (pid %ld) holds the checkpoint '%s' (its "
                                          "lock '%s'); one checkpoint serves one run at a time",
                                  (long)who.l_pid, checkpoint, path);
            return failure_as(FM_EIO, "another run holds the checkpoint '%s' (its lock '%s'); "
                                      "one checkpoint serves one run at a time", checkpoint, path);
        }
        if (lstat(path, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino) {
            lock->fd = fd;
            return 0;
        }
        close(fd);
    }
    return failure_as(FM_EIO, "--checkpoint: the lock file '%s' keeps being replaced", path);
}

/* The lock file goes while it is still locked, then the lock with the
 * descriptor; a run that took the file in between sees it gone and retries. */
void unlock_checkpoint(file_lock *lock)
{
    if (lock->path && lock->fd >= 0) {
        struct stat st, now;
        if (fstat(lock->fd, &st) == 0 && lstat(lock->path, &now) == 0 &&
            st.st_dev == now.st_dev && st.st_ino == now.st_ino)
            unlink(lock->path);
        close(lock->fd);
    }
    lock->fd = -1;
    free(lock->path);
    lock->path = NULL;
}
