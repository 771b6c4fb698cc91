/*
 * rundir.c — run directories under temp_dir: safe creation, descriptor-
 * relative access, lock files and the sweep of dead processes' directories
 * (rundir.h states the rules).
 *
 * Every step that names a file does it relative to a descriptor already
 * checked (openat/mkdirat/unlinkat/fstatat with O_NOFOLLOW or
 * AT_SYMLINK_NOFOLLOW), so the only path ever resolved is temp_dir itself,
 * once per call. Locks are flock() locks: they belong to the open file
 * description, vanish with the process, and conflict between two
 * descriptors of the same process — which the sweep relies on, since it
 * runs beside the process's own live runs. Stateless; thread-safe.
 */
#include "visionbatch/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/log.h"

#define RANDOM_CHARS 12
#define ID_CHARS 64

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static int is_alnum(char c)
{
    return c && strchr(alnum, c) != NULL;
}

/* ---- removal ---- */

/* Removes every entry of the open directory dfd (not dfd itself). */
static int clear_dir(int dfd)
{
    int copy = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return -1;
    DIR *d = fdopendir(copy);
    if (!d) {
        close(copy);
        return -1;
    }
    rewinddir(d); /* the copy shares dfd's position, which may not be at the start */
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (vb_rundir_rmtree_at(dfd, e->d_name) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int vb_rundir_rmtree_at(int parentfd, const char *name)
{
    int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) /* a file, a link, or gone */
        return unlinkat(parentfd, name, 0) == 0 || errno == ENOENT ? 0 : -1;
    int rc = clear_dir(fd);
    close(fd);
    if (unlinkat(parentfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

/* Removes the entry `name` of base when it is still the directory open on
 * dfd, after emptying it through dfd. */
static int remove_dir(int base_fd, const char *name, int dfd)
{
    int rc = clear_dir(dfd);
    struct stat a, b;
    if (fstat(dfd, &a) != 0 || fstatat(base_fd, name, &b, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return -1; /* the name now points elsewhere: not ours to remove */
    if (unlinkat(base_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

/* ---- the base directory ---- */

/* Why a directory may not hold our files, or NULL when it may. */
static const char *private_problem(const struct stat *st, uid_t uid)
{
    if (!S_ISDIR(st->st_mode))
        return "is not a directory";
    if (st->st_uid != uid)
        return "is not owned by this user";
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return "is writable by group or others";
    return NULL;
}

static vb_err refuse(vb_error *err, const char *path, const char *why)
{
    return vb_error_set(err, VB_ERR_CONFIG,
                        "temp_dir %s %s: refusing to keep run files there (use a directory "
                        "owned by this user with mode 0700, or a sticky one such as /tmp)",
                        path, why);
}

vb_err vb_rundir_base_open(const char *temp_dir, int create, int *fd_out, char **path_out,
                           vb_error *err)
{
    const char *base = temp_dir && *temp_dir ? temp_dir : VB_RUNDIR_DEFAULT_BASE;
    uid_t uid = geteuid();
    char sub[64];
    char *path = NULL;
    int fd = -1, subfd = -1;
    vb_err rc = VB_OK;
    struct stat st;

    *fd_out = -1;
    if (path_out)
        *path_out = NULL;
    if (create && mkdir(base, 0700) != 0 && errno != EEXIST)
        return vb_error_set(err, VB_ERR_IO, "cannot create temp dir %s: %s", base,
                            strerror(errno));
    fd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !create)
            return vb_error_set(err, VB_ERR_NOT_FOUND, "temp dir %s does not exist", base);
        if (errno == ELOOP)
            return refuse(err, base, "is a symbolic link");
        if (errno == ENOTDIR)
            return refuse(err, base, "is not a directory");
        return vb_error_set(err, VB_ERR_IO, "cannot open temp dir %s: %s", base,
                            strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot stat temp dir %s: %s", base, strerror(errno));
        goto fail;
    }
    const char *why = private_problem(&st, uid);
    if (!why) {
        if (path_out && !(path = strdup(base)))
            goto nomem;
        *fd_out = fd;
        if (path_out)
            *path_out = path;
        return VB_OK;
    }
    /* A shared sticky directory (like /tmp): nobody but its owner can rename
     * or remove our entries, so our own subdirectory in it is private. */
    int shared_sticky = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) &&
                        (st.st_mode & (S_IWGRP | S_IWOTH)) && (st.st_uid == uid || st.st_uid == 0);
    if (!shared_sticky) {
        if (S_ISDIR(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH)) && st.st_uid == uid)
            why = "is writable by group or others without the sticky bit";
        rc = refuse(err, base, why);
        goto fail;
    }
    snprintf(sub, sizeof sub, "visionbatch-%lu", (unsigned long)uid);
    if (mkdirat(fd, sub, 0700) != 0 && errno != EEXIST) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot create %s/%s: %s", base, sub, strerror(errno));
        goto fail;
    }
    subfd = openat(fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (subfd < 0) {
        rc = errno == ELOOP || errno == ENOTDIR
                 ? vb_error_set(err, VB_ERR_CONFIG,
                                "temp_dir %s/%s is not a directory: refusing it", base, sub)
                 : vb_error_set(err, VB_ERR_IO, "cannot open %s/%s: %s", base, sub,
                                strerror(errno));
        goto fail;
    }
    if (fstat(subfd, &st) != 0) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot stat %s/%s: %s", base, sub, strerror(errno));
        goto fail;
    }
    /* Ours but too open (an old umask): close it up; anyone else's: refuse. */
    if (S_ISDIR(st.st_mode) && st.st_uid == uid && (st.st_mode & 077) &&
        fchmod(subfd, 0700) == 0)
        st.st_mode &= ~(mode_t)077;
    if ((why = private_problem(&st, uid)) != NULL) {
        rc = vb_error_set(err, VB_ERR_CONFIG,
                          "temp_dir %s/%s %s: refusing to keep run files there", base, sub, why);
        goto fail;
    }
    if (path_out) {
        size_t n = strlen(base) + strlen(sub) + 2;
        if (!(path = malloc(n)))
            goto nomem;
        snprintf(path, n, "%s/%s", base, sub);
        *path_out = path;
    }
    close(fd);
    *fd_out = subfd;
    return VB_OK;
nomem:
    rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
fail:
    if (subfd >= 0)
        close(subfd);
    close(fd);
    free(path);
    return rc;
}

/* ---- names ---- */

static void sanitise_id(const char *id, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = id ? id : ""; *p && n < ID_CHARS && n + 1 < outlen; p++)
        out[n++] = is_alnum(*p) || *p == '.' || *p == '_' || *p == '-' ? *p : '_';
    if (n == 0 && outlen > 1)
        out[n++] = 'x';
    out[n] = '\0';
}

static int random_suffix(char *out)
{
    unsigned char r[RANDOM_CHARS];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -1;
    for (size_t i = 0; i < RANDOM_CHARS; i++)
        out[i] = alnum[r[i] % (sizeof alnum - 1)];
    out[RANDOM_CHARS] = '\0';
    return 0;
}

int vb_rundir_name_ours(const char *name)
{
    size_t n = strlen(name);
    if (n < 4 + 1 + 1 + RANDOM_CHARS || n >= VB_RUNDIR_NAME_MAX || strncmp(name, "run-", 4) != 0)
        return 0;
    if (name[n - RANDOM_CHARS - 1] != '-')
        return 0;
    for (size_t i = n - RANDOM_CHARS; i < n; i++)
        if (!is_alnum(name[i]))
            return 0;
    return 1;
}

/* ---- creation and use ---- */

vb_err vb_rundir_create(const char *temp_dir, const char *run_id, vb_rundir **out, vb_error *err)
{
    char *base_path = NULL;
    vb_err rc;
    *out = NULL;
    vb_rundir *d = calloc(1, sizeof *d);
    if (!d)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    d->fd = d->lock_fd = d->base_fd = -1;
    if ((rc = vb_rundir_base_open(temp_dir, 1, &d->base_fd, &base_path, err)) != VB_OK)
        goto fail;

    char id[ID_CHARS + 1], rnd[RANDOM_CHARS + 1];
    sanitise_id(run_id, id, sizeof id);
    int made = 0;
    for (int attempt = 0; attempt < 100 && !made; attempt++) {
        if (random_suffix(rnd) != 0) {
            rc = vb_error_set(err, VB_ERR_IO, "getrandom: %s", strerror(errno));
            goto fail;
        }
        snprintf(d->name, sizeof d->name, "run-%s-%s", id, rnd);
        if (mkdirat(d->base_fd, d->name, 0700) == 0)
            made = 1;
        else if (errno != EEXIST) {
            rc = vb_error_set(err, VB_ERR_IO, "cannot create a run dir under %s: %s", base_path,
                              strerror(errno));
            goto fail;
        }
    }
    if (!made) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot find a free run dir name under %s", base_path);
        goto fail;
    }
    size_t plen = strlen(base_path) + strlen(d->name) + 2;
    if (!(d->path = malloc(plen))) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(d->path, plen, "%s/%s", base_path, d->name);
    d->fd = openat(d->base_fd, d->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d->fd >= 0)
        d->lock_fd = openat(d->fd, VB_RUNDIR_LOCK,
                            O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    /* Blocking: a sweep that opened the fresh, empty lock file first lets go
     * at once (an empty lock file means "being created"). */
    if (d->lock_fd < 0 || flock(d->lock_fd, LOCK_EX) != 0) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot set up run dir %s: %s", d->path,
                          strerror(errno));
        goto fail;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (write(d->lock_fd, pid, (size_t)n) != n) {
        rc = vb_error_set(err, VB_ERR_IO, "cannot write the lock of run dir %s", d->path);
        goto fail;
    }
    free(base_path);
    *out = d;
    return VB_OK;
fail:
    if (d->fd >= 0)
        remove_dir(d->base_fd, d->name, d->fd);
    else if (d->name[0] && d->base_fd >= 0)
        unlinkat(d->base_fd, d->name, AT_REMOVEDIR);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    if (d->fd >= 0)
        close(d->fd);
    if (d->base_fd >= 0)
        close(d->base_fd);
    free(d->path);
    free(d);
    free(base_path);
    return rc;
}

static int single_component(const char *name)
{
    return name && *name && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

int vb_rundir_open(const vb_rundir *d, const char *name, int flags)
{
    if (!d || !single_component(name)) {
        errno = EINVAL;
        return -1;
    }
    return openat(d->fd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
}

long long vb_rundir_file_size(const vb_rundir *d, const char *name)
{
    struct stat st;
    if (!d || !single_component(name) || fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    return (long long)st.st_size;
}

int vb_rundir_remove(vb_rundir *d)
{
    if (!d)
        return 0;
    /* Everything goes while the lock is still held, so no sweep races us. */
    int rc = remove_dir(d->base_fd, d->name, d->fd);
    if (rc != 0)
        VB_WARN("could not remove run dir %s completely", d->path);
    close(d->fd);
    close(d->lock_fd);
    close(d->base_fd);
    free(d->path);
    free(d);
    return rc;
}

/* ---- the sweep ---- */

typedef enum verdict { KEEP_LIVE, KEEP_YOUNG, REMOVE } verdict;

/* Decides about one run directory open on dfd; *lock_fd is the lock taken
 * (kept until the directory is gone) or -1. */
static verdict judge(int dfd, const struct stat *dir_st, time_t now, int *lock_fd)
{
    struct stat st;
    *lock_fd = openat(dfd, VB_RUNDIR_LOCK, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (*lock_fd < 0) /* no lock file: being created, or cut short */
        return now - dir_st->st_mtime >= VB_RUNDIR_GRACE_S ? REMOVE : KEEP_YOUNG;
    if (flock(*lock_fd, LOCK_EX | LOCK_NB) != 0) {
        close(*lock_fd);
        *lock_fd = -1;
        return KEEP_LIVE;
    }
    /* Lock taken: its holder is gone, unless the file is still empty
     * (created, not yet locked by its owner). */
    if (fstat(*lock_fd, &st) == 0 && st.st_size == 0 && now - st.st_mtime < VB_RUNDIR_GRACE_S) {
        close(*lock_fd);
        *lock_fd = -1;
        return KEEP_YOUNG;
    }
    return REMOVE;
}

vb_err vb_rundir_sweep(const char *temp_dir, vb_rundir_sweep_stats *stats, vb_error *err)
{
    vb_rundir_sweep_stats local;
    vb_rundir_sweep_stats *s = stats ? stats : &local;
    memset(s, 0, sizeof *s);
    int base_fd = -1;
    char *base_path = NULL;
    vb_err rc = vb_rundir_base_open(temp_dir, 0, &base_fd, &base_path, err);
    if (rc == VB_ERR_NOT_FOUND) {
        vb_error_clear(err);
        return VB_OK;
    }
    if (rc != VB_OK)
        return rc;
    int listfd = fcntl(base_fd, F_DUPFD_CLOEXEC, 0);
    DIR *dir = listfd >= 0 ? fdopendir(listfd) : NULL;
    if (!dir) {
        if (listfd >= 0)
            close(listfd);
        rc = vb_error_set(err, VB_ERR_IO, "cannot list %s: %s", base_path, strerror(errno));
        goto done;
    }
    uid_t uid = geteuid();
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        struct stat st, st2;
        if (!vb_rundir_name_ours(e->d_name))
            continue;
        if (fstatat(base_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
            st.st_uid != uid)
            continue;
        int dfd = openat(base_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            continue;
        if (fstat(dfd, &st2) != 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
            close(dfd);
            continue;
        }
        int lock_fd = -1;
        verdict v = judge(dfd, &st2, now, &lock_fd);
        if (v == REMOVE) {
            if (remove_dir(base_fd, e->d_name, dfd) == 0) {
                s->removed++;
                VB_INFO("temp sweep: removed %s/%s (no live process holds it)", base_path,
                        e->d_name);
            } else {
                s->failed++;
                VB_WARN("temp sweep: could not remove %s/%s completely", base_path, e->d_name);
            }
        } else if (v == KEEP_LIVE) {
            s->live++;
        } else {
            s->young++;
        }
        if (lock_fd >= 0)
            close(lock_fd);
        close(dfd);
    }
    closedir(dir);
done:
    close(base_fd);
    free(base_path);
    return rc;
}
