/*
 * rundir.h — the private directory of one run under temp_dir, and the sweep
 * of run directories whose process is gone.
 *
 * Safety against other local users:
 *  - the base directory (temp_dir) is used only when it is a real directory
 *    (not a symbolic link) owned by us and writable by nobody else; when it
 *    is a shared sticky directory such as /tmp (writable by others, sticky
 *    bit set, owned by us or root) we use our own subdirectory
 *    "visionbatch-<uid>" inside it (created 0700, checked the same way);
 *    anything else is refused with VB_ERR_CONFIG;
 *  - a run directory gets an unpredictable name ("run-<id>-" + 12 random
 *    [A-Za-z0-9] from getrandom), is created 0700 and held open: every file
 *    of the run is opened relative to that descriptor with O_NOFOLLOW |
 *    O_CLOEXEC, so renaming the directory or planting symbolic links cannot
 *    redirect a write;
 *  - it is removed through the same descriptors, and its entry in the base
 *    only while that entry is still the same directory.
 *
 * Liveness: each run directory holds a lock file ".lock" that its process
 * keeps locked (flock, LOCK_EX) from creation to removal; the kernel drops
 * the lock when the process dies, however it dies. vb_rundir_sweep()
 * removes the run directories of the base whose lock is free — and only
 * those: entries named like ours, directories (not links) owned by our uid,
 * whose lock it can take itself. A directory without a complete lock file
 * (a creation in progress, or one cut short) is left alone until it has not
 * changed for VB_RUNDIR_GRACE_S.
 *
 * Ownership: a vb_rundir is owned by its creator and freed (directory
 * removed) with vb_rundir_remove(). Thread-safe: no shared state; locks are
 * per open file description, so a sweep never takes a lock held by another
 * thread of the same process.
 */
#ifndef VISIONBATCH_RUNDIR_H
#define VISIONBATCH_RUNDIR_H

#include <stddef.h>

#include "visionbatch/error.h"

#define VB_RUNDIR_DEFAULT_BASE "/tmp/batch_processor"
#define VB_RUNDIR_LOCK ".lock"
#define VB_RUNDIR_GRACE_S 600 /* a directory without a usable lock file is this old before it goes */
#define VB_RUNDIR_NAME_MAX 96

typedef struct vb_rundir {
    int fd;       /* the run directory */
    int lock_fd;  /* its lock file, locked while the run lives */
    int base_fd;  /* the checked base directory holding it */
    char name[VB_RUNDIR_NAME_MAX]; /* entry name in the base */
    char *path;   /* full path, for messages only (never reopened) */
} vb_rundir;

/* Opens the base directory for run directories: temp_dir (NULL or "" →
 * VB_RUNDIR_DEFAULT_BASE), created 0700 when missing if `create`, checked as
 * described above, or our "visionbatch-<uid>" subdirectory of a shared
 * sticky one. *fd is an O_DIRECTORY descriptor (caller closes); *path
 * (optional) a malloc'd path of the directory actually used (caller frees).
 * VB_ERR_CONFIG for a refused directory (the message says why), VB_ERR_IO
 * otherwise; VB_ERR_NOT_FOUND when it is missing and !create. */
vb_err vb_rundir_base_open(const char *temp_dir, int create, int *fd, char **path,
                           vb_error *err);

/* Creates a run directory for `run_id` (sanitised into the name; may be
 * NULL) under the base of temp_dir, with its lock file locked. On success
 * *out is owned by the caller (vb_rundir_remove). */
vb_err vb_rundir_create(const char *temp_dir, const char *run_id, vb_rundir **out,
                        vb_error *err);

/* openat(d->fd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600). `name` must be
 * a single path component (no '/', not "." or ".."; else EINVAL). Returns
 * the descriptor, or -1 with errno set. */
int vb_rundir_open(const vb_rundir *d, const char *name, int flags);

/* Size of the file `name` in the run directory (fstatat, no link
 * following), or -1. */
long long vb_rundir_file_size(const vb_rundir *d, const char *name);

/* Removes the run directory and everything in it, releases its lock and
 * frees d. Returns 0 when everything went. Accepts NULL. */
int vb_rundir_remove(vb_rundir *d);

/* True when `name` has the form of a run directory's name. */
int vb_rundir_name_ours(const char *name);

typedef struct vb_rundir_sweep_stats {
    size_t removed; /* directories of dead processes removed */
    size_t live;    /* directories whose lock is held (left alone) */
    size_t young;   /* without a usable lock, younger than the grace (left alone) */
    size_t failed;  /* could not be removed completely */
} vb_rundir_sweep_stats;

/* Removes, from the base of temp_dir, every run directory whose lock is
 * free (see above). A base that does not exist is not an error (nothing to
 * sweep). `st` may be NULL. Logs one line per directory removed. */
vb_err vb_rundir_sweep(const char *temp_dir, vb_rundir_sweep_stats *st, vb_error *err);

/* Removes the tree `name` in the directory parentfd (no symbolic link is
 * followed; a link is removed itself). Returns 0 on success. */
int vb_rundir_rmtree_at(int parentfd, const char *name);

#endif
