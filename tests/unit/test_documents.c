/* Unit tests of documents.c: name sanitising, image sniffing, descriptions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "visionbatch/documents.h"

static void sanitised(const char *in, const char *want)
{
    char out[VB_NAME_MAX + 1];
    vb_name_sanitise(in, out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("sanitise(\"%s\") = \"%s\", want \"%s\"", in ? in : "(null)", out, want);
}

static void name_keeps_ordinary_names(void **state)
{
    sanitised("oceanix_01.jpg", "oceanix_01.jpg");
    sanitised("Report (final) v2.png", "Report (final) v2.png");
}

static void name_strips_directories_and_dotdot(void **state)
{
    sanitised("../../etc/passwd", "passwd");
    sanitised("..", "_.");
    sanitised(".", "_");
    sanitised("a/b\\c.jpg", "c.jpg");
    sanitised("/", "document");
    sanitised("dir/", "document");
    sanitised(".hidden.jpg", "_hidden.jpg");
}

static void name_replaces_control_and_special_bytes(void **state)
{
    sanitised("evil\nname\t.jpg", "evil_name_.jpg");
    sanitised("a;rm -rf *.jpg", "a_rm -rf _.jpg");
    sanitised("caf\xc3\xa9.jpg", "caf__.jpg");
    sanitised("\x7f\x01", "__");
    sanitised("   ", "document");
    sanitised("", "document");
    sanitised(NULL, "document");
}

static void name_long_keeps_extension(void **state)
{
    char in[600];
    memset(in, 'x', sizeof in);
    memcpy(in + sizeof in - 6, ".jpeg", 6);
    char out[VB_NAME_MAX + 1];
    vb_name_sanitise(in, out, sizeof out);
    assert_int_equal(strlen(out), VB_NAME_MAX);
    assert_string_equal(out + VB_NAME_MAX - 5, ".jpeg");
}

static void name_unique_within_run(void **state)
{
    char a[VB_NAME_MAX + 1] = "img.jpg", b[VB_NAME_MAX + 1] = "IMG.jpg",
         c[VB_NAME_MAX + 1] = "img.jpg";
    char *taken[2] = {a, NULL};
    vb_name_make_unique(b, sizeof b, taken, 1);
    assert_string_equal(b, "IMG-2.jpg"); /* case-insensitive file systems exist */
    taken[1] = b;
    vb_name_make_unique(c, sizeof c, taken, 2);
    assert_string_equal(c, "img-3.jpg");
    char d[VB_NAME_MAX + 1] = "noext";
    char *t2[1] = {"noext"};
    vb_name_make_unique(d, sizeof d, t2, 1);
    assert_string_equal(d, "noext-2");
}

static void sniff_recognises_each_format(void **state)
{
    assert_string_equal(vb_image_sniff((const unsigned char *)"\xff\xd8\xff\xe0", 4), "image/jpeg");
    assert_string_equal(vb_image_sniff((const unsigned char *)"\x89PNG\r\n\x1a\n", 8), "image/png");
    assert_string_equal(vb_image_sniff((const unsigned char *)"GIF89a", 6), "image/gif");
    assert_string_equal(vb_image_sniff((const unsigned char *)"RIFF\0\0\0\0WEBP", 12),
                        "image/webp");
    assert_string_equal(vb_image_sniff((const unsigned char *)"BM\0\0", 4), "image/bmp");
    assert_string_equal(vb_image_sniff((const unsigned char *)"II*\0", 4), "image/tiff");
    assert_string_equal(vb_image_sniff((const unsigned char *)"MM\0*", 4), "image/tiff");
}

static void sniff_rejects_non_images(void **state)
{
    assert_null(vb_image_sniff((const unsigned char *)"<html>", 6));
    assert_null(vb_image_sniff((const unsigned char *)"{\"a\":1}", 7));
    assert_null(vb_image_sniff((const unsigned char *)"\xff\xd8", 2)); /* truncated */
    assert_null(vb_image_sniff((const unsigned char *)"RIFF\0\0\0\0WAVE", 12));
    assert_null(vb_image_sniff(NULL, 0));
}

typedef struct seen {
    char names[8][VB_NAME_MAX + 1];
    char descs[8][64];
    int n;
} seen;

static void collect(void *ctx, const char *name, const char *desc)
{
    seen *s = ctx;
    if (s->n < 8) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
        snprintf(s->descs[s->n], sizeof s->descs[0], "%s", desc);
        s->n++;
    }
}

static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/vb-test-desc-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static void descriptions_guide_example_parses(void **state)
{
    char *p = write_temp("{\n  \"oceanix_01.jpg\": \"Port side hull section near waterline\",\n"
                         "  \"oceanix_02.jpg\": \"Starboard deck area with recent repairs\"\n}");
    seen s = {0};
    size_t count = 0;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_descriptions_load(p, 1 << 20, collect, &s, &count, &err), VB_OK);
    assert_int_equal(count, 2);
    assert_string_equal(s.names[0], "oceanix_01.jpg");
    assert_string_equal(s.descs[0], "Port side hull section near waterline");
    assert_string_equal(s.names[1], "oceanix_02.jpg");
    unlink(p);
    free(p);
}

static void descriptions_rejects_malformed_and_oversized(void **state)
{
    const char *bad[] = {"[1,2]", "{\"a\":", "", "null", "\"x\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *p = write_temp(bad[i]);
        seen s = {0};
        vb_error err;
        vb_error_clear(&err);
        assert_int_equal(vb_descriptions_load(p, 1 << 20, collect, &s, NULL, &err),
                         VB_ERR_PARSE);
        assert_int_equal(s.n, 0);
        unlink(p);
        free(p);
    }
    char *p = write_temp("{\"a.jpg\":\"0123456789012345678901234567890123456789\"}");
    vb_error err;
    vb_error_clear(&err);
    seen s = {0};
    assert_int_equal(vb_descriptions_load(p, 16, collect, &s, NULL, &err), VB_ERR_TOO_LARGE);
    unlink(p);
    free(p);
}

static void descriptions_skips_non_strings_and_sanitises_keys(void **state)
{
    char *p = write_temp("{\"../x.jpg\":\"up\",\"n.jpg\":5,\"ok.jpg\":\"fine\"}");
    seen s = {0};
    size_t count = 0;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_descriptions_load(p, 1 << 20, collect, &s, &count, &err), VB_OK);
    assert_int_equal(count, 2);
    assert_string_equal(s.names[0], "x.jpg");
    assert_string_equal(s.names[1], "ok.jpg");
    unlink(p);
    free(p);
}

static void descriptions_are_repaired_to_valid_utf8(void **state)
{
    char *p = write_temp("{\"a.jpg\":\"hull \xff sect\xc3\xa9on \xe2\x82\"}");
    seen s = {0};
    size_t count = 0;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_descriptions_load(p, 1 << 20, collect, &s, &count, &err), VB_OK);
    assert_int_equal(count, 1);
    assert_string_equal(s.descs[0], "hull \xef\xbf\xbd sect\xc3\xa9on "
                                    "\xef\xbf\xbd\xef\xbf\xbd");
    unlink(p);
    free(p);
}

static void rmtree_removes_nested_tree(void **state)
{
    char dir[] = "/tmp/vb-test-rm-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof p, "%s/sub", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/f", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(p, sizeof p, "%s/link", dir);
    assert_int_equal(symlink("/etc", p), 0); /* must be unlinked, not followed */
    assert_int_equal(vb_rmtree(dir), 0);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
    assert_int_equal(stat("/etc/hostname", &st) == 0 || stat("/etc", &st) == 0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_keeps_ordinary_names),
        cmocka_unit_test(name_strips_directories_and_dotdot),
        cmocka_unit_test(name_replaces_control_and_special_bytes),
        cmocka_unit_test(name_long_keeps_extension),
        cmocka_unit_test(name_unique_within_run),
        cmocka_unit_test(sniff_recognises_each_format),
        cmocka_unit_test(sniff_rejects_non_images),
        cmocka_unit_test(descriptions_guide_example_parses),
        cmocka_unit_test(descriptions_are_repaired_to_valid_utf8),
        cmocka_unit_test(descriptions_rejects_malformed_and_oversized),
        cmocka_unit_test(descriptions_skips_non_strings_and_sanitises_keys),
        cmocka_unit_test(rmtree_removes_nested_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
