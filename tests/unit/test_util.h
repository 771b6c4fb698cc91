/* Helpers shared by the unit tests: reading files from tests/data,
 * building large strings, counting lines of a log. Header-only; each test includes it once. */
#ifndef VB_TEST_UTIL_H
#define VB_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads $VB_TEST_DATA/name (or tests/data/name) into a malloc'd,
 * NUL-terminated string; aborts the test program when it cannot. */
static inline char *tu_read_data(const char *name, size_t *len)
{
    const char *dir = getenv("VB_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n)
        abort();
    s[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return s;
}

/* Writes `text` to a new temporary file and returns its malloc'd path. */
static inline char *tu_write_temp(const char *text)
{
    char tmpl[] = "/tmp/vbtest.XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        abort();
    FILE *f = fdopen(fd, "wb");
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text) || fclose(f) != 0)
        abort();
    return strdup(tmpl);
}

/* Reads a whole file into a malloc'd string (NULL if it cannot be opened). */
static inline char *tu_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n)
        abort();
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Unsets every environment variable whose name starts with `prefix`
 * (unsetting changes environ: the scan restarts after each removal). */
static inline void tu_unset_env_prefix(const char *prefix)
{
    extern char **environ;
    size_t plen = strlen(prefix);
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, prefix, plen) == 0) {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
}

/* The lines of file `path` that contain `what`; -1 when it cannot be read. */
static inline int tu_lines_with(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, what) != NULL;
    fclose(f);
    return n;
}

#endif
