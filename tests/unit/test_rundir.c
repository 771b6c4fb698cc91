/* Unit tests of rundir.c: private base directories, unpredictable run
 * directories whose files never escape them, and the sweep that removes the
 * directories of dead processes and nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/documents.h"
#include "visionbatch/report.h"
#include "visionbatch/rundir.h"

#define OTHER_UID 65534 /* nobody */

/* A fresh scratch directory (0700) per test; removed at teardown. */
static int setup(void **state)
{
    char *tmpl = strdup("/tmp/vb-rundir-test-XXXXXX");
    if (!tmpl || !mkdtemp(tmpl))
        return -1;
    *state = tmpl;
    return 0;
}

static int teardown(void **state)
{
    vb_rmtree(*state);
    free(*state);
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static vb_err base_check(const char *dir)
{
    int fd = -1;
    vb_error err;
    vb_error_clear(&err);
    vb_err rc = vb_rundir_base_open(dir, 1, &fd, NULL, &err);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- names and creation ---- */

static void run_dirs_get_unpredictable_private_names(void **state)
{
    char *base = join(*state, "base");
    vb_rundir *a = NULL, *b = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_create(base, "RUN/../1", &a, &err), VB_OK);
    assert_int_equal(vb_rundir_create(base, "RUN/../1", &b, &err), VB_OK);
    assert_string_not_equal(a->name, b->name);
    assert_true(vb_rundir_name_ours(a->name));
    assert_null(strchr(a->name, '/'));
    assert_int_equal(strncmp(a->name, "run-RUN_.._1-", 13), 0);
    struct stat st;
    assert_int_equal(stat(base, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700); /* created private */
    assert_int_equal(stat(a->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char *lock = join(a->path, VB_RUNDIR_LOCK);
    assert_true(exists(lock));
    free(lock);
    char *path = strdup(a->path);
    assert_int_equal(vb_rundir_remove(a), 0);
    assert_false(exists(path));
    free(path);
    assert_int_equal(vb_rundir_remove(b), 0);
    assert_int_equal(count_entries(base), 0);
    free(base);
}

static void run_dir_names_are_recognised_strictly(void **state)
{
    assert_true(vb_rundir_name_ours("run-abc-0123456789ab"));
    assert_true(vb_rundir_name_ours("run-a-b-c-ABCDEFGHIJKL"));
    assert_false(vb_rundir_name_ours("run-abc-0123456789a"));   /* 11 random chars */
    assert_false(vb_rundir_name_ours("run-abc-012345"));        /* old mkdtemp names */
    assert_false(vb_rundir_name_ours("run--0123456789ab"));     /* no id */
    assert_false(vb_rundir_name_ours("job-abc-0123456789ab"));
    assert_false(vb_rundir_name_ours("run-abc-0123456789a_"));
    assert_false(vb_rundir_name_ours("visionbatch-0"));
}

/* ---- nothing escapes the run directory ---- */

static void writes_stay_inside_when_the_run_dir_is_swapped_for_a_symlink(void **state)
{
    char *base = join(*state, "base");
    char *target = join(*state, "target"); /* where an attacker wants our files */
    assert_int_equal(mkdir(target, 0755), 0);
    vb_rundir *d = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_create(base, "r1", &d, &err), VB_OK);

    /* Mid-run, the directory is moved away and a link to target put in its place. */
    char *moved = join(*state, "moved");
    assert_int_equal(rename(d->path, moved), 0);
    assert_int_equal(symlink(target, d->path), 0);

    int fd = vb_rundir_open(d, "part-1.html", O_WRONLY | O_CREAT | O_EXCL);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "<p>one</p>", 10), 10);
    close(fd);
    fd = vb_rundir_open(d, "part-2.html", O_WRONLY | O_CREAT | O_EXCL);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "<p>two</p>", 10), 10);
    close(fd);
    vb_run run = {.id = "r1", .run_code = "C"};
    const char *names[] = {"a.jpg"};
    vb_report_part parts[2] = {
        {.batch_id = "b1", .html_path = "part-1.html", .image_names = names, .nimages = 1},
        {.batch_id = "b2", .html_path = "part-2.html", .image_names = names, .nimages = 1},
    };
    assert_int_equal(vb_report_combine_at(&run, parts, 2, d->fd, "report.html", &err), VB_OK);

    assert_int_equal(count_entries(target), 0); /* nothing written through the link */
    char *report = join(moved, "report.html");
    assert_true(exists(report));               /* everything went to the real directory */
    free(report);

    /* Removal neither follows the link nor removes what it points to. */
    vb_rundir_remove(d);
    assert_true(exists(target));
    assert_int_equal(count_entries(target), 0);
    assert_int_equal(count_entries(moved), 0); /* emptied through its descriptor */
    free(moved);
    free(target);
    free(base);
}

static void planted_symlinks_are_never_followed(void **state)
{
    char *base = join(*state, "base");
    char *victim = join(*state, "victim.txt");
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    vb_rundir *d = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_create(base, "r2", &d, &err), VB_OK);
    const char *names[] = {"report.html", "part-1.html", "a.jpg"};
    for (size_t i = 0; i < 3; i++) {
        char *link = join(d->path, names[i]);
        assert_int_equal(symlink(victim, link), 0);
        free(link);
    }
    /* Creating, truncating or reading through any of them fails. */
    errno = 0;
    assert_int_equal(vb_rundir_open(d, "report.html", O_WRONLY | O_CREAT | O_TRUNC), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(vb_rundir_open(d, "part-1.html", O_WRONLY | O_CREAT | O_EXCL), -1);
    assert_int_equal(vb_rundir_open(d, "a.jpg", O_RDONLY), -1);
    assert_int_equal(vb_rundir_open(d, "../victim.txt", O_RDONLY), -1);
    assert_null(vb_image_sniff_at(d->fd, "a.jpg"));
    vb_run run = {.id = "r2"};
    vb_report_part p = {.batch_id = "b", .html_path = "part-1.html"};
    assert_int_not_equal(vb_report_combine_at(&run, &p, 1, d->fd, "out.html", &err), VB_OK);
    vb_rundir_remove(d);
    char *text = NULL;
    f = fopen(victim, "r");
    assert_non_null(f);
    char buf[32] = "";
    text = fgets(buf, sizeof buf, f);
    fclose(f);
    assert_non_null(text);
    assert_string_equal(buf, "precious");
    free(victim);
    free(base);
}

/* ---- the base directory ---- */

static void base_writable_by_others_without_sticky_bit_is_refused(void **state)
{
    char *open_dir = join(*state, "open");
    assert_int_equal(mkdir(open_dir, 0700), 0);
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_int_equal(base_check(open_dir), VB_ERR_CONFIG);
    assert_int_equal(chmod(open_dir, 0770), 0); /* group-writable */
    assert_int_equal(base_check(open_dir), VB_ERR_CONFIG);
    assert_int_equal(chmod(open_dir, 0755), 0); /* ours, only we write: fine */
    assert_int_equal(base_check(open_dir), VB_OK);
    vb_rundir *d = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_int_equal(vb_rundir_create(open_dir, "r", &d, &err), VB_ERR_CONFIG);
    assert_null(d);
    assert_non_null(strstr(err.msg, "sticky"));
    assert_int_equal(count_entries(open_dir), 0);
    free(open_dir);
}

static void base_that_is_a_symlink_is_refused(void **state)
{
    char *real = join(*state, "real");
    char *link = join(*state, "link");
    assert_int_equal(mkdir(real, 0700), 0);
    assert_int_equal(symlink(real, link), 0);
    assert_int_equal(base_check(link), VB_ERR_CONFIG);
    free(real);
    free(link);
}

static void base_owned_by_another_user_is_refused(void **state)
{
    if (geteuid() != 0)
        skip(); /* needs chown */
    char *theirs = join(*state, "theirs");
    assert_int_equal(mkdir(theirs, 0700), 0);
    assert_int_equal(chown(theirs, OTHER_UID, OTHER_UID), 0);
    assert_int_equal(base_check(theirs), VB_ERR_CONFIG);
    /* Sticky and world-writable but owned by someone else, who could rename
     * our entries: refused too. */
    assert_int_equal(chmod(theirs, 01777), 0);
    assert_int_equal(base_check(theirs), VB_ERR_CONFIG);
    free(theirs);
}

static void sticky_shared_base_gets_our_own_private_subdirectory(void **state)
{
    char *shared = join(*state, "shared");
    assert_int_equal(mkdir(shared, 0700), 0);
    assert_int_equal(chmod(shared, 01777), 0); /* like /tmp */
    int fd = -1;
    char *used = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_base_open(shared, 1, &fd, &used, &err), VB_OK);
    char sub[64];
    snprintf(sub, sizeof sub, "visionbatch-%lu", (unsigned long)geteuid());
    char *want = join(shared, sub);
    assert_string_equal(used, want);
    struct stat st;
    assert_int_equal(lstat(want, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(st.st_uid, geteuid());
    close(fd);
    free(used);

    vb_rundir *d = NULL;
    assert_int_equal(vb_rundir_create(shared, "r", &d, &err), VB_OK);
    assert_int_equal(strncmp(d->path, want, strlen(want)), 0);
    vb_rundir_remove(d);

    /* A subdirectory name planted by someone else is refused: as a link… */
    assert_int_equal(rmdir(want), 0);
    char *elsewhere = join(*state, "elsewhere");
    assert_int_equal(mkdir(elsewhere, 0700), 0);
    assert_int_equal(symlink(elsewhere, want), 0);
    assert_int_equal(base_check(shared), VB_ERR_CONFIG);
    assert_int_equal(unlink(want), 0);
    /* …or as a directory of another user (root only can plant that here). */
    if (geteuid() == 0) {
        assert_int_equal(mkdir(want, 0700), 0);
        assert_int_equal(chown(want, OTHER_UID, OTHER_UID), 0);
        assert_int_equal(base_check(shared), VB_ERR_CONFIG);
    }
    free(elsewhere);
    free(want);
    free(shared);
}

/* ---- the sweep ---- */

/* Forks a child that creates a run directory under base, reports its path
 * through a pipe, then either dies at once (without cleaning up, as after
 * kill -9) or waits to be killed. Returns the child's pid; *path is malloc'd. */
static pid_t child_with_run_dir(const char *base, int die, char **path)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        vb_rundir *d = NULL;
        if (vb_rundir_create(base, die ? "dead" : "live", &d, NULL) != VB_OK)
            _exit(1);
        int fd = vb_rundir_open(d, "image.jpg", O_WRONLY | O_CREAT | O_EXCL);
        if (fd < 0 || write(fd, "\xff\xd8\xff", 3) != 3)
            _exit(1);
        size_t n = strlen(d->path) + 1;
        if (write(p[1], d->path, n) != (ssize_t)n)
            _exit(1);
        close(p[1]);
        if (die)
            raise(SIGKILL);
        for (;;)
            pause();
    }
    close(p[1]);
    char buf[4096];
    size_t got = 0;
    ssize_t n;
    while ((n = read(p[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    close(p[0]);
    buf[got] = '\0';
    assert_true(got > 0);
    *path = strdup(buf);
    return pid;
}

static void sweep_removes_dead_processes_dirs_and_keeps_live_ones(void **state)
{
    char *base = join(*state, "base");
    vb_rundir *mine = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_create(base, "mine", &mine, &err), VB_OK);
    char *dead_path = NULL, *live_path = NULL;
    pid_t dead = child_with_run_dir(base, 1, &dead_path);
    int status = 0;
    assert_int_equal(waitpid(dead, &status, 0), dead);
    assert_true(WIFSIGNALED(status));
    pid_t live = child_with_run_dir(base, 0, &live_path);
    assert_true(exists(dead_path));

    vb_rundir_sweep_stats st;
    assert_int_equal(vb_rundir_sweep(base, &st, &err), VB_OK);
    assert_int_equal(st.removed, 1);
    assert_int_equal(st.live, 2); /* this process's own, and the live child's */
    assert_false(exists(dead_path));
    assert_true(exists(live_path));
    assert_true(exists(mine->path));

    /* Once the other process is killed its directory goes at the next sweep. */
    assert_int_equal(kill(live, SIGKILL), 0);
    assert_int_equal(waitpid(live, &status, 0), live);
    assert_int_equal(vb_rundir_sweep(base, &st, &err), VB_OK);
    assert_int_equal(st.removed, 1);
    assert_int_equal(st.live, 1);
    assert_false(exists(live_path));
    assert_true(exists(mine->path));
    assert_int_equal(vb_rundir_remove(mine), 0);
    free(dead_path);
    free(live_path);
    free(base);
}

static void sweep_leaves_what_is_not_ours_alone(void **state)
{
    char *base = join(*state, "base");
    int fd = -1;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_base_open(base, 1, &fd, NULL, &err), VB_OK);
    close(fd);
    time_t old = time(NULL) - 2 * VB_RUNDIR_GRACE_S;
    struct timespec times[2] = {{.tv_sec = old}, {.tv_sec = old}};

    /* Named otherwise: kept whatever its age. */
    char *other = join(base, "keep-me");
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(utimensat(AT_FDCWD, other, times, 0), 0);
    /* A link named like ours, to a directory: neither it nor its target go. */
    char *target = join(*state, "target");
    assert_int_equal(mkdir(target, 0700), 0);
    char *link = join(base, "run-link-ABCDEFGHIJKL");
    assert_int_equal(symlink(target, link), 0);
    /* Named like ours, no lock file, recent: could be a creation in progress. */
    char *young = join(base, "run-young-ABCDEFGHIJKL");
    assert_int_equal(mkdir(young, 0700), 0);
    /* Named like ours, no lock file, unchanged for longer than the grace: goes. */
    char *stale = join(base, "run-stale-ABCDEFGHIJKL");
    assert_int_equal(mkdir(stale, 0700), 0);
    assert_int_equal(utimensat(AT_FDCWD, stale, times, 0), 0);
    /* Named like ours but another user's: kept. */
    char *theirs = join(base, "run-theirs-ABCDEFGHIJKL");
    if (geteuid() == 0) {
        assert_int_equal(mkdir(theirs, 0700), 0);
        assert_int_equal(utimensat(AT_FDCWD, theirs, times, 0), 0);
        assert_int_equal(chown(theirs, OTHER_UID, OTHER_UID), 0);
    }

    vb_rundir_sweep_stats st;
    assert_int_equal(vb_rundir_sweep(base, &st, &err), VB_OK);
    assert_int_equal(st.removed, 1);
    assert_int_equal(st.young, 1);
    assert_true(exists(other));
    assert_true(exists(link));
    assert_true(exists(target));
    assert_true(exists(young));
    assert_false(exists(stale));
    if (geteuid() == 0)
        assert_true(exists(theirs));
    free(other);
    free(target);
    free(link);
    free(young);
    free(stale);
    free(theirs);
    free(base);
}

static void sweep_of_a_missing_base_is_a_no_op(void **state)
{
    char *base = join(*state, "never-created");
    vb_rundir_sweep_stats st;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_rundir_sweep(base, &st, &err), VB_OK);
    assert_int_equal(st.removed + st.live + st.young + st.failed, 0);
    assert_false(exists(base));
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(run_dirs_get_unpredictable_private_names, setup,
                                        teardown),
        cmocka_unit_test(run_dir_names_are_recognised_strictly),
        cmocka_unit_test_setup_teardown(
            writes_stay_inside_when_the_run_dir_is_swapped_for_a_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(planted_symlinks_are_never_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(base_writable_by_others_without_sticky_bit_is_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(base_that_is_a_symlink_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(base_owned_by_another_user_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(sticky_shared_base_gets_our_own_private_subdirectory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_removes_dead_processes_dirs_and_keeps_live_ones,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_leaves_what_is_not_ours_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_of_a_missing_base_is_a_no_op, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
