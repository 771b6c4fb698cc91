/* Unit tests of config.c: sources and precedence, the config file, required
 * and invalid settings, secrets, positional arguments, help, copy/free, and
 * the Kafka property pass-through (with kafka_conf.c's checks and probe).
 * Every test starts from an environment without visionbatch variables and a
 * default config path that does not exist, so /etc never matters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config_internal.h"
#include "kafka_internal.h"
#include "redis/redis.h"
#include "test_util.h"
#include "visionbatch/config.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"

static char dir[64];
static char logpath[128];
static char default_path[128];

static const char *const guide_env[] = {
    "EXTERNAL_API_GET_URL", "EXTERNAL_API_POST_URL", "EXTERNAL_API_KEY", "BACKEND_API_URL",
    "ORGANIZATION_ID",      "KAFKA_BROKERS",         "REDIS_URL",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof guide_env / sizeof guide_env[0]; i++)
        unsetenv(guide_env[i]);
    tu_unset_env_prefix("VISIONBATCH_");
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/vb_test_config_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
    snprintf(default_path, sizeof default_path, "%s/default.json", dir);
    vb__config_default_path = default_path;
    clear_env();
    vb_redact_clear_secrets();
    vb_log_set_stderr(0);
    vb_log_open(logpath, VB_LOG_TEXT, VB_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    vb_log_close();
    vb_log_set_stderr(1);
    clear_env();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes `content` to dir/name with `mode`; returns a static path. */
static const char *write_file(const char *name, const char *content, mode_t mode)
{
    static char path[4][160];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 160, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static char *read_log(void)
{
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    static char data[65536];
    size_t n = fread(data, 1, sizeof data - 1, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

#define MAXARGS 32
/* Loads with a NULL-terminated argument list (argv[0] is added). */
static vb_err load_args(vb_config *cfg, unsigned prog, vb_error *err, const char *const *args)
{
    static char *argv[MAXARGS];
    int argc = 0;
    argv[argc++] = (char *)"visionbatch";
    for (; args && *args && argc < MAXARGS - 1; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    char **rest;
    int nrest;
    vb_error_clear(err);
    return vb_config_load(cfg, prog, argc, argv, &rest, &nrest, err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *full_platform_json =
    "{\"external_api_get_url\":\"https://file.example/get\","
    "\"external_api_post_url\":\"https://file.example/post\","
    "\"external_api_key\":\"file-key-123456\",\"organization_id\":\"org-file\"}";

static void defaults_apply_when_nothing_is_set(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_OK);
    assert_null(cfg.config_path);
    assert_string_equal(cfg.backend_api_url, "http://localhost:8000");
    assert_string_equal(cfg.log_file, "/var/log/batch_processor.log");
    assert_int_equal(cfg.log_format, VB_LOG_TEXT);
    assert_int_equal(cfg.log_level, VB_LOG_INFO);
    assert_string_equal(cfg.temp_dir, "/tmp/batch_processor");
    assert_int_equal(cfg.page_size, 50);
    assert_int_equal(cfg.max_pages, 1000);
    assert_int_equal(cfg.max_document_bytes, 100LL * 1024 * 1024);
    assert_int_equal(cfg.max_response_bytes, 16LL * 1024 * 1024);
    assert_int_equal(cfg.max_report_bytes, 256LL * 1024 * 1024);
    assert_int_equal(cfg.batch_timeout_s, 3600);
    assert_int_equal(cfg.max_images_per_batch, 20);
    assert_int_equal(cfg.retries, 3);
    assert_int_equal(cfg.allow_partial, 0);
    assert_string_equal(cfg.chat_id, "cron_batch_job");
    assert_string_equal(cfg.kafka_brokers, "127.0.0.1:9092");
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(cfg.listen, "127.0.0.1:8000");
    assert_string_equal(cfg.metrics_listen, "127.0.0.1:9101");
    assert_int_equal(cfg.concurrency, 4);
    assert_string_equal(cfg.topic, "visionbatch.runs");
    assert_string_equal(cfg.dlq_topic, "visionbatch.runs.dlq");
    assert_string_equal(cfg.group_id, "visionbatch-workers");
    assert_int_equal(cfg.lease_ms, 30000);
    assert_int_equal(cfg.max_attempts, 5);
    assert_int_equal(cfg.poll_interval_s, 300);
    assert_null(cfg.external_api_key);
    assert_null(cfg.api_token);
    /* hostname:pid */
    char suffix[32];
    snprintf(suffix, sizeof suffix, ":%ld", (long)getpid());
    assert_non_null(cfg.worker_id);
    assert_true(strlen(cfg.worker_id) > strlen(suffix));
    assert_string_equal(cfg.worker_id + strlen(cfg.worker_id) - strlen(suffix), suffix);
    vb_config_free(&cfg);
    assert_null(cfg.backend_api_url);
}

static void precedence_is_flag_then_env_then_file_then_default(void **state)
{
    const char *file = write_file("c.json",
                                  "{\"external_api_get_url\":\"https://file.example/get\","
                                  "\"external_api_post_url\":\"https://file.example/post\","
                                  "\"external_api_key\":\"file-key-123456\","
                                  "\"backend_api_url\":\"http://file-backend:8000\","
                                  "\"organization_id\":\"org-file\",\"page_size\":10,"
                                  "\"retries\":7,\"log_level\":\"debug\"}",
                                  0600);
    setenv("EXTERNAL_API_POST_URL", "https://env.example/post", 1);
    setenv("EXTERNAL_API_KEY", "env-key-123456", 1);
    setenv("ORGANIZATION_ID", "org-env", 1);
    setenv("VISIONBATCH_PAGE_SIZE", "20", 1);
    setenv("VISIONBATCH_RETRIES", "5", 1);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err,
                               ARGS("--config", file, "--external-api-key", "flag-key-123456",
                                    "--page-size=30")),
                     VB_OK);
    assert_string_equal(cfg.config_path, file);
    assert_string_equal(cfg.external_api_get_url, "https://file.example/get"); /* file */
    assert_string_equal(cfg.external_api_post_url, "https://env.example/post"); /* env */
    assert_string_equal(cfg.external_api_key, "flag-key-123456");              /* flag */
    assert_string_equal(cfg.backend_api_url, "http://file-backend:8000");      /* file */
    assert_string_equal(cfg.organization_id, "org-env");                       /* env */
    assert_int_equal(cfg.page_size, 30);                                       /* flag */
    assert_int_equal(cfg.retries, 5);                                          /* env */
    assert_int_equal(cfg.log_level, VB_LOG_DEBUG);                             /* file */
    assert_int_equal(cfg.request_timeout_s, 60);                               /* default */
    vb_config_free(&cfg);
}

static void guide_environment_variables_configure_run_once(void **state)
{
    setenv("EXTERNAL_API_GET_URL", "https://api.example.com/api/v1/documents/vision_analysis", 1);
    setenv("EXTERNAL_API_POST_URL",
           "https://api.example.com/api/v1/documents/vision_analysis/upload", 1);
    setenv("EXTERNAL_API_KEY", "your_jwt_token", 1);
    setenv("BACKEND_API_URL", "http://localhost:8000", 1);
    setenv("ORGANIZATION_ID", "your_org_id", 1);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, NULL), VB_OK);
    assert_string_equal(cfg.external_api_key, "your_jwt_token");
    assert_string_equal(cfg.organization_id, "your_org_id");
    vb_config_free(&cfg);
}

static void guide_example_config_json_loads_without_warning(void **state)
{
    const char *file = write_file(
        "config.json",
        "{\n"
        "  \"external_api_get_url\": \"https://your-api.com/api/v1/documents/vision_analysis\",\n"
        "  \"external_api_post_url\": "
        "\"https://your-api.com/api/v1/documents/vision_analysis/upload\",\n"
        "  \"external_api_key\": \"your_jwt_token_here\",\n"
        "  \"backend_api_url\": \"http://localhost:8000\",\n"
        "  \"organization_id\": \"your_organization_id\"\n"
        "}\n",
        0600);
    setenv("VISIONBATCH_CONFIG", file, 1);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, NULL), VB_OK);
    assert_string_equal(cfg.external_api_get_url,
                        "https://your-api.com/api/v1/documents/vision_analysis");
    assert_string_equal(cfg.external_api_post_url,
                        "https://your-api.com/api/v1/documents/vision_analysis/upload");
    assert_string_equal(cfg.external_api_key, "your_jwt_token_here");
    assert_string_equal(cfg.backend_api_url, "http://localhost:8000");
    assert_string_equal(cfg.organization_id, "your_organization_id");
    vb_config_free(&cfg);
    assert_null(strstr(read_log(), "chmod"));
}

static void guide_command_line_configures_run_once(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(
        load_args(&cfg, VB_PROG_RUN_ONCE, &err,
                  ARGS("--external-api-get-url",
                       "https://api.example.com/api/v1/documents/vision_analysis",
                       "--external-api-post-url",
                       "https://api.example.com/api/v1/documents/vision_analysis/upload",
                       "--external-api-key", "your_jwt_token", "--backend-api-url",
                       "http://localhost:8000", "--organization-id", "your_org_id")),
        VB_OK);
    assert_string_equal(cfg.organization_id, "your_org_id");
    vb_config_free(&cfg);
}

static void default_config_file_is_read_when_present(void **state)
{
    write_file("default.json", "{\"page_size\": 5}", 0600);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_OK);
    assert_string_equal(cfg.config_path, default_path);
    assert_int_equal(cfg.page_size, 5);
    vb_config_free(&cfg);
}

static void explicit_config_that_does_not_exist_fails(void **state)
{
    vb_config cfg;
    vb_error err;
    char missing[200];
    snprintf(missing, sizeof missing, "%s/nope.json", dir);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", missing)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, missing));
    assert_null(cfg.backend_api_url); /* freed on failure */

    setenv("VISIONBATCH_CONFIG", missing, 1);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, missing));
}

static void missing_required_settings_are_listed_in_one_message(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, NULL), VB_ERR_CONFIG);
    static const char *const want[] = {
        "--external-api-get-url",  "EXTERNAL_API_GET_URL",  "\"external_api_get_url\"",
        "--external-api-post-url", "EXTERNAL_API_POST_URL", "\"external_api_post_url\"",
        "--external-api-key",      "EXTERNAL_API_KEY",      "\"external_api_key\"",
        "--organization-id",       "ORGANIZATION_ID",       "\"organization_id\"",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_non_null(strstr(err.msg, want[i]));
    assert_null(strstr(err.msg, "BACKEND_API_URL"));
    /* One line per missing setting. */
    size_t lines = 0;
    for (const char *p = err.msg; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 4);
}

static void producer_and_worker_do_not_require_platform_settings(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_PRODUCER, &err, NULL), VB_OK);
    assert_int_equal(vb_config_require_platform(&cfg, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "--organization-id"));
    assert_non_null(strstr(err.msg, "EXTERNAL_API_KEY"));
    vb_config_free(&cfg);

    const char *file = write_file("p.json", full_platform_json, 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)), VB_OK);
    vb_error_clear(&err);
    assert_int_equal(vb_config_require_platform(&cfg, &err), VB_OK);
    vb_config_free(&cfg);
}

static void bad_numbers_name_setting_and_source(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--page-size", "abc")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "page_size"));
    assert_non_null(strstr(err.msg, "--page-size"));
    assert_non_null(strstr(err.msg, "integer"));

    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--page-size=0")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "between 1 and 1000"));

    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--retries", "12x")),
                     VB_ERR_CONFIG);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err,
                               ARGS("--max-document-bytes", "99999999999999999999999")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "max_document_bytes"));

    setenv("VISIONBATCH_CONCURRENCY", "9999", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "VISIONBATCH_CONCURRENCY"));
    unsetenv("VISIONBATCH_CONCURRENCY");

    const char *file = write_file("n.json", "{\"page_size\": 2.5, \"retries\": -1}", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)),
                     VB_ERR_CONFIG);
    /* Both problems, each naming the file. */
    assert_non_null(strstr(err.msg, "page_size"));
    assert_non_null(strstr(err.msg, "retries"));
    assert_non_null(strstr(err.msg, file));
}

static void bad_urls_and_empty_values_fail(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(
        load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--backend-api-url", "ftp://host/x")),
        VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "backend_api_url"));
    assert_non_null(strstr(err.msg, "http"));
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--backend-api-url=https://")),
                     VB_ERR_CONFIG);
    setenv("EXTERNAL_API_GET_URL", "localhost:8000/x", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "EXTERNAL_API_GET_URL"));
    unsetenv("EXTERNAL_API_GET_URL");
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--organization-id=")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "empty"));
    /* An empty environment variable is unset (an env file's only way to say so). */
    setenv("EXTERNAL_API_KEY", "", 1);
    setenv("ORGANIZATION_ID", "", 1);
    setenv("EXTERNAL_API_GET_URL", "", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_OK);
    assert_null(cfg.external_api_key);
    assert_null(cfg.organization_id);
    assert_null(cfg.external_api_get_url);
    vb_config_free(&cfg);
    unsetenv("EXTERNAL_API_KEY");
    unsetenv("ORGANIZATION_ID");
    unsetenv("EXTERNAL_API_GET_URL");
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--metrics-listen", "nowhere")),
                     VB_ERR_CONFIG);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--redis-url", "http://x")),
                     VB_ERR_CONFIG);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--log-level", "loud")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "debug|info|warn|error"));
    assert_int_equal(
        load_args(&cfg, VB_PROG_WORKER, &err,
                  ARGS("--retry-base-ms", "5000", "--retry-max-ms", "1000")),
        VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "retry_max_ms"));
    /* An empty log file means stderr only. */
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--log-file=")), VB_OK);
    assert_string_equal(cfg.log_file, "");
    vb_config_free(&cfg);
}

static void unknown_and_foreign_options_fail(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--bogus=1", "-x")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "unknown option --bogus"));
    assert_non_null(strstr(err.msg, "unknown option -x"));
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--listen", "0.0.0.0:1")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "--listen"));
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--page-size")), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "needs a value"));
}

static void unknown_json_key_only_warns(void **state)
{
    const char *file = write_file("u.json", "{\"page_size\": 9, \"pagesize\": 1}", 0600);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)), VB_OK);
    assert_int_equal(cfg.page_size, 9);
    vb_config_free(&cfg);
    const char *log = read_log();
    assert_non_null(strstr(log, "WARNING"));
    assert_non_null(strstr(log, "\"pagesize\""));
}

static void wrong_json_types_fail(void **state)
{
    vb_config cfg;
    vb_error err;
    const char *file = write_file("t.json", "{\"page_size\": \"50\"}", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "page_size"));
    file = write_file("t2.json", "{\"external_api_key\": 12345}", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "external_api_key"));
    file = write_file("t3.json", "[1, 2]", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "object"));
    file = write_file("t4.json", "{\"page_size\": ", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "JSON"));
}

static void oversized_config_file_is_rejected(void **state)
{
    char *big = malloc(1100 * 1024);
    assert_non_null(big);
    memset(big, ' ', 1100 * 1024 - 1);
    big[0] = '{';
    big[1100 * 1024 - 2] = '}';
    big[1100 * 1024 - 1] = '\0';
    const char *file = write_file("big.json", big, 0600);
    free(big);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "larger than"));
}

static void world_readable_file_with_key_warns(void **state)
{
    const char *file = write_file("perm.json", full_platform_json, 0644);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, ARGS("--config", file)), VB_OK);
    vb_config_free(&cfg);
    const char *log = read_log();
    assert_non_null(strstr(log, "chmod 600"));
    assert_non_null(strstr(log, file));
}

static void private_file_with_key_does_not_warn(void **state)
{
    const char *file = write_file("perm.json", full_platform_json, 0600);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, ARGS("--config", file)), VB_OK);
    vb_config_free(&cfg);
    assert_null(strstr(read_log(), "chmod"));
}

static void secrets_never_appear_in_error_messages(void **state)
{
    vb_config cfg;
    vb_error err;
    /* A mistyped option pushes the key into a positional slot. */
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err,
                               ARGS("--external-api-kye", "SuperSecretKey1",
                                    "--external-api-key", "SuperSecretKey2",
                                    "--backend-api-url", "SuperSecretKey2-not-a-url",
                                    "--external-api-get-url",
                                    "ftp://user:pw123@h/x?sig=SIGVALUE")),
                     VB_ERR_CONFIG);
    assert_null(strstr(err.msg, "SuperSecretKey"));
    assert_null(strstr(err.msg, "SIGVALUE"));
    assert_null(strstr(err.msg, "pw123"));
    assert_non_null(strstr(err.msg, "unknown option --external-api-kye"));
    assert_non_null(strstr(err.msg, "backend_api_url"));
    /* A secret's own problems never quote it. */
    setenv("EXTERNAL_API_KEY", "", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, NULL), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "EXTERNAL_API_KEY"));
}

static void secrets_are_registered_for_redaction(void **state)
{
    const char *file = write_file("s.json", full_platform_json, 0600);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, ARGS("--config", file)), VB_OK);
    char line[] = "using file-key-123456 now";
    vb_redact_text(line);
    assert_string_equal(line, "using *** now");
    vb_config_free(&cfg);
}

static void positional_arguments_are_returned_in_order(void **state)
{
    char *argv[] = {"visionbatch", "show", "--topic", "t1", "RUN-1",
                    "--",          "--raw", NULL};
    char **rest = NULL;
    int nrest = -1;
    vb_config cfg;
    vb_error err = {0};
    assert_int_equal(vb_config_load(&cfg, VB_PROG_ADMIN, 7, argv, &rest, &nrest, &err), VB_OK);
    assert_int_equal(nrest, 3);
    assert_string_equal(cfg.topic, "t1");
    assert_string_equal(rest[0], "show");
    assert_string_equal(rest[1], "RUN-1");
    assert_string_equal(rest[2], "--raw");
    vb_config_free(&cfg);

    char *argv2[] = {"visionbatch", "extra", NULL};
    assert_int_equal(vb_config_load(&cfg, VB_PROG_ADMIN, 2, argv2, NULL, NULL, &err),
                     VB_ERR_CONFIG);
}

static void passthrough_options_stay_for_the_program(void **state)
{
    char *argv[] = {"visionbatch-producer", "--once", "--interval", "60",
                    "--interval=5",         "--listen=127.0.0.1:9000", NULL};
    static const char *const pass[] = {"once", "interval", NULL};
    char **rest;
    int nrest;
    vb_config cfg;
    vb_error err = {0};
    assert_int_equal(
        vb_config_load_ex(&cfg, VB_PROG_PRODUCER, 6, argv, pass, &rest, &nrest, &err), VB_OK);
    assert_int_equal(nrest, 4);
    assert_string_equal(rest[0], "--once");
    assert_string_equal(rest[1], "--interval");
    assert_string_equal(rest[2], "60");
    assert_string_equal(rest[3], "--interval=5");
    assert_string_equal(cfg.listen, "127.0.0.1:9000");
    vb_config_free(&cfg);
}

static void allow_partial_is_a_bool_flag(void **state)
{
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--allow-partial")), VB_OK);
    assert_int_equal(cfg.allow_partial, 1);
    vb_config_free(&cfg);
    setenv("VISIONBATCH_ALLOW_PARTIAL", "yes", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--allow-partial=false")),
                     VB_OK);
    assert_int_equal(cfg.allow_partial, 0);
    vb_config_free(&cfg);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_OK);
    assert_int_equal(cfg.allow_partial, 1);
    vb_config_free(&cfg);
    setenv("VISIONBATCH_ALLOW_PARTIAL", "maybe", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, NULL), VB_ERR_CONFIG);
    unsetenv("VISIONBATCH_ALLOW_PARTIAL");
    const char *file = write_file("b.json", "{\"allow_partial\": true}", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--config", file)), VB_OK);
    assert_int_equal(cfg.allow_partial, 1);
    vb_config_free(&cfg);
}

static void token_and_key_come_from_files_or_environment(void **state)
{
    const char *tok = write_file("token", "  tok-from-file-1234  \nsecond line\n", 0600);
    const char *key = write_file("key", "a2V5LWZyb20tZmlsZQ==\n", 0600);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_PRODUCER, &err,
                               ARGS("--api-token-file", tok, "--secret-key-file", key)),
                     VB_OK);
    assert_string_equal(cfg.api_token, "tok-from-file-1234");
    assert_string_equal(cfg.secret_key, "a2V5LWZyb20tZmlsZQ==");
    char line[] = "tok-from-file-1234";
    vb_redact_text(line);
    assert_string_equal(line, "***");
    vb_config_free(&cfg);

    setenv("VISIONBATCH_API_TOKEN", "tok-from-env-5678", 1);
    assert_int_equal(load_args(&cfg, VB_PROG_PRODUCER, &err, NULL), VB_OK);
    assert_string_equal(cfg.api_token, "tok-from-env-5678");
    vb_config_free(&cfg);
    /* The file named on the command line outranks the environment's token. */
    assert_int_equal(load_args(&cfg, VB_PROG_PRODUCER, &err, ARGS("--api-token-file", tok)),
                     VB_OK);
    assert_string_equal(cfg.api_token, "tok-from-file-1234");
    vb_config_free(&cfg);

    const char *empty = write_file("empty", "\n", 0600);
    assert_int_equal(load_args(&cfg, VB_PROG_PRODUCER, &err, ARGS("--api-token-file", empty)),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "api_token_file"));
}

static void help_lists_the_program_settings(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    vb_config_print_help(f, VB_PROG_WORKER);
    fclose(f);
    assert_non_null(strstr(text, "--config PATH"));
    assert_non_null(strstr(text, "--concurrency N"));
    assert_non_null(strstr(text, "VISIONBATCH_METRICS_LISTEN"));
    assert_non_null(strstr(text, "127.0.0.1:9101"));
    assert_null(strstr(text, "--listen "));
    free(text);

    f = open_memstream(&text, &len);
    vb_config_print_help(f, VB_PROG_RUN_ONCE);
    fclose(f);
    assert_non_null(strstr(text, "--external-api-key VALUE"));
    assert_non_null(strstr(text, "required"));
    assert_null(strstr(text, "KAFKA_BROKERS"));
    free(text);
}

static void copy_is_deep_and_free_clears(void **state)
{
    const char *file = write_file("c.json", full_platform_json, 0600);
    vb_config cfg, dup;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, ARGS("--config", file)), VB_OK);
    assert_int_equal(vb_config_copy(&dup, &cfg), VB_OK);
    assert_ptr_not_equal(dup.external_api_key, cfg.external_api_key);
    assert_ptr_not_equal(dup.config_path, cfg.config_path);
    vb_config_free(&cfg);
    assert_string_equal(dup.external_api_key, "file-key-123456");
    assert_string_equal(dup.config_path, file);
    assert_int_equal(dup.page_size, 50);
    vb_config_free(&dup);
    assert_null(dup.external_api_key);
    vb_config_free(NULL);
}

static void wants_help_detects_help_flags(void **state)
{
    char *a[] = {"p", "--page-size", "3", "--help", NULL};
    char *b[] = {"p", "--", "--help", NULL};
    char *c[] = {"p", "-h", NULL};
    assert_true(vb_config_wants_help(4, a));
    assert_false(vb_config_wants_help(3, b));
    assert_true(vb_config_wants_help(2, c));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* redis_url is checked with the connection's own grammar: what config accepts
 * connects, what it refuses is refused with the parser's reason, never with
 * the URL itself (it may hold a password), and a valid URL's password is
 * registered for redaction. */
static void redis_url_is_checked_with_the_connection_grammar(void **state)
{
    vb_config cfg;
    vb_error err = {0};
    static const char *const good[] = {"REDIS://cache.internal:6380/2", "redis://pw-only-9@h",
                                       "unix:///run/redis.sock?db=3"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--redis-url", good[i])),
                         VB_OK);
        assert_string_equal(cfg.redis_url, good[i]);
        vb_config_free(&cfg);
    }
    /* rediss:// is refused by a build without TLS (test_redis_tls.c has the rest). */
    vb_err tls_rc =
        load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--redis-url", "rediss://:tls-pw-77@h:6380"));
    if (vb__redis_tls_available()) {
        assert_int_equal(tls_rc, VB_OK);
        vb_config_free(&cfg);
    } else {
        assert_int_equal(tls_rc, VB_ERR_CONFIG);
        assert_non_null(strstr(err.msg, "rediss:// (Redis over TLS) is not supported by this build"));
        assert_null(strstr(err.msg, "tls-pw-77"));
    }
    /* A long password before a bad port: nothing of the URL is quoted. */
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err,
                               ARGS("--redis-url", "redis://:Xq7-long-long-long-long-long-long-"
                                                   "long-long-long-long-long-long-pw@h:99999")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "port must be 1-65535"));
    assert_null(strstr(err.msg, "Xq7"));
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--redis-url", "unix:/x.sock")),
                     VB_ERR_CONFIG);
    /* The password of an accepted URL is masked in any later log text. */
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err,
                               ARGS("--redis-url", "redis://app:Zr9-redis-secret@h/1")),
                     VB_OK);
    vb_config_free(&cfg);
    char line[] = "AUTH failed for Zr9-redis-secret";
    vb_redact_text(line);
    assert_null(strstr(line, "Zr9-redis-secret"));
}

/* ---- Kafka properties: the three sources merged per property, the
 * environment convention, librdkafka's verdict, reserved names, secrets, and
 * the start-up probe where no broker is needed. ---- */

/* The value of property `name` in cfg, or NULL. */
static const char *prop(const vb_config *cfg, const char *name)
{
    for (size_t i = 0; cfg->kafka_properties && cfg->kafka_properties[i]; i += 2)
        if (strcmp(cfg->kafka_properties[i], name) == 0)
            return cfg->kafka_properties[i + 1];
    return NULL;
}

static void env_names_map_one_to_one(void **state)
{
    char code[256], name[128];
    assert_int_equal(vb__config_kafka_env_encode("sasl.password", code, sizeof code), 0);
    assert_string_equal(code, "SASL_PASSWORD");
    assert_int_equal(vb__config_kafka_env_encode("log_level", code, sizeof code), 0);
    assert_string_equal(code, "LOG__LEVEL");
    assert_int_equal(vb__config_kafka_env_encode("a-b.c", code, sizeof code), 0);
    assert_string_equal(code, "A___B_C");
    assert_int_equal(vb__config_kafka_env_decode("SSL_CA_LOCATION", name, sizeof name), 0);
    assert_string_equal(name, "ssl.ca.location");
    assert_int_equal(vb__config_kafka_env_encode("Bad", code, sizeof code), -1);
    assert_int_equal(vb__config_kafka_env_decode("SASL____X", name, sizeof name), -1);
    assert_int_equal(vb__config_kafka_env_decode("sasl_password", name, sizeof name), -1);
    assert_int_equal(vb__config_kafka_env_decode("", name, sizeof name), -1);

    /* Every property of the linked librdkafka (global and topic level)
     * survives the round trip, so every one can be set from the environment. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_conf_t *tconf = rd_kafka_topic_conf_new();
    size_t n = 0, tn = 0;
    const char **dump = rd_kafka_conf_dump(conf, &n);
    const char **tdump = rd_kafka_topic_conf_dump(tconf, &tn);
    assert_true(n > 40 && tn > 5);
    size_t checked = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char **d = pass ? tdump : dump;
        size_t cnt = pass ? tn : n;
        for (size_t i = 0; i < cnt; i += 2) {
            assert_int_equal(vb__config_kafka_env_encode(d[i], code, sizeof code), 0);
            assert_int_equal(vb__config_kafka_env_decode(code, name, sizeof name), 0);
            assert_string_equal(name, d[i]);
            checked++;
        }
    }
    assert_true(checked > 50);
    rd_kafka_conf_dump_free(dump, n);
    rd_kafka_conf_dump_free(tdump, tn);
    rd_kafka_conf_destroy(conf);
    rd_kafka_topic_conf_destroy(tconf);
}

static void sources_merge_per_property_with_precedence(void **state)
{
    const char *file =
        write_file("k.json",
                   "{\"kafka\": {\"linger.ms\": 10, \"client.id\": \"from-file\","
                   " \"sasl.username\": \"u-file\","
                   " \"enable.ssl.certificate.verification\": false}}",
                   0600);
    setenv("VISIONBATCH_KAFKA_PROPERTY_CLIENT_ID", "from-env", 1);
    setenv("VISIONBATCH_KAFKA_PROPERTY_SASL_USERNAME", "u-env", 1);
    setenv("VISIONBATCH_KAFKA_PROPERTY_LOG__LEVEL", "6", 1);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err,
                          ARGS("--config", file, "--kafka-property", "client.id=first",
                               "--kafka-property=client.id=from-flag",
                               "--kafka-property", "sasl.mechanisms=SCRAM-SHA-512")),
                     VB_OK);
    assert_string_equal(prop(&cfg, "client.id"), "from-flag");
    assert_string_equal(prop(&cfg, "sasl.username"), "u-env");
    assert_string_equal(prop(&cfg, "linger.ms"), "10");
    assert_string_equal(prop(&cfg, "enable.ssl.certificate.verification"), "false");
    assert_string_equal(prop(&cfg, "log_level"), "6");
    assert_string_equal(prop(&cfg, "sasl.mechanisms"), "SCRAM-SHA-512");
    size_t n = 0;
    while (cfg.kafka_properties[n])
        n++;
    assert_int_equal(n, 2 * 6);

    vb_config dup;
    assert_int_equal(vb_config_copy(&dup, &cfg), VB_OK);
    assert_ptr_not_equal(dup.kafka_properties, cfg.kafka_properties);
    vb_config_free(&cfg);
    assert_string_equal(prop(&dup, "client.id"), "from-flag");
    vb_config_free(&dup);
    assert_null(dup.kafka_properties);

    /* No property anywhere: NULL. */
    clear_env();
    assert_int_equal(load_args(&cfg, VB_PROG_ADMIN, &err, NULL), VB_OK);
    assert_null(cfg.kafka_properties);
    vb_config_free(&cfg);
}

static void librdkafka_judges_names_and_values(void **state)
{
    setenv("VISIONBATCH_KAFKA_PROPERTY_SECURITY_PROTOCOL", "carrier-pigeon", 1);
    setenv("VISIONBATCH_KAFKA_PROPERTY_sasl_x", "1", 1);
    const char *file = write_file("k.json", "{\"kafka\": {\"socket.timeout.ms\": \"soon\","
                                  " \"debug\": [\"all\"]}}", 0600);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_PRODUCER, &err,
                          ARGS("--config", file, "--kafka-property", "sasl.pasword=x",
                               "--kafka-property", "no-equals-sign")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "No such configuration property: \"sasl.pasword\" (option "
                                    "--kafka-property)"));
    assert_non_null(strstr(err.msg, "kafka property security.protocol: Invalid value "
                                    "\"carrier-pigeon\""));
    assert_non_null(
        strstr(err.msg, "environment variable VISIONBATCH_KAFKA_PROPERTY_SECURITY_PROTOCOL"));
    assert_non_null(strstr(err.msg, "environment variable VISIONBATCH_KAFKA_PROPERTY_sasl_x: not "
                                    "a Kafka property name"));
    assert_non_null(strstr(err.msg, "kafka property socket.timeout.ms: Invalid value"));
    assert_non_null(strstr(err.msg, "\"kafka\" property debug: must be a string, a number or a "
                                    "boolean"));
    assert_non_null(strstr(err.msg, "option --kafka-property needs NAME=VALUE"));
    assert_null(strstr(err.msg, "no-equals-sign"));

    /* Programs without Kafka refuse the option and ignore the file's object. */
    clear_env();
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, ARGS("--kafka-property", "a=b")),
                     VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "option --kafka-property is not used by this program"));
    file = write_file("k.json",
                      "{\"external_api_get_url\":\"https://h/g\",\"external_api_post_url\":"
                      "\"https://h/p\",\"external_api_key\":\"k-123456\",\"organization_id\":"
                      "\"o\",\"kafka\":{\"no.such\":1}}",
                      0600);
    assert_int_equal(load_args(&cfg, VB_PROG_RUN_ONCE, &err, ARGS("--config", file)), VB_OK);
    vb_config_free(&cfg);
    assert_null(strstr(read_log(), "unknown key"));
}

static void reserved_properties_are_refused_under_every_name(void **state)
{
    static const char *const refused[] = {"enable.idempotence=false",
                                          "acks=1",
                                          "request.required.acks=1",
                                          "topic.acks=0",
                                          "delivery.timeout.ms=1000",
                                          "message.timeout.ms=1000",
                                          "enable.auto.commit=true",
                                          "auto.commit.enable=true",
                                          "enable.auto.offset.store=true",
                                          "auto.offset.reset=latest",
                                          "partition.assignment.strategy=range",
                                          "enable.partition.eof=false",
                                          "bootstrap.servers=h:1",
                                          "metadata.broker.list=h:1",
                                          "group.id=g",
                                          "transactional.id=t"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        vb_config cfg;
        vb_error err;
        assert_int_equal(
            load_args(&cfg, VB_PROG_WORKER, &err, ARGS("--kafka-property", refused[i])),
            VB_ERR_CONFIG);
        assert_non_null(strstr(err.msg, "is set by visionbatch itself and cannot be overridden"));
    }
    /* Tunables the programs set are the operator's to change. */
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_WORKER, &err,
                          ARGS("--kafka-property", "session.timeout.ms=45000", "--kafka-property",
                               "linger.ms=20", "--kafka-property", "client.id=me")),
                     VB_OK);
    vb_config_free(&cfg);
    assert_null(vb_kafka_property_reserved("sasl.password"));
    assert_non_null(vb_kafka_property_reserved("topic.auto.offset.reset"));
}

static void secret_values_are_redacted_and_never_quoted(void **state)
{
    assert_true(vb_kafka_property_is_secret("sasl.password"));
    assert_true(vb_kafka_property_is_secret("ssl.key.password"));
    assert_true(vb_kafka_property_is_secret("ssl.keystore.password"));
    assert_true(vb_kafka_property_is_secret("sasl.oauthbearer.client.secret"));
    assert_true(vb_kafka_property_is_secret("ssl.key.pem"));
    assert_false(vb_kafka_property_is_secret("sasl.username"));
    assert_false(vb_kafka_property_is_secret("ssl.certificate.pem"));

    /* A world-readable file with a Kafka password warns like one with the key. */
    const char *file =
        write_file("k.json", "{\"kafka\": {\"sasl.password\": \"Kf-file-pw-4455\"}}", 0644);
    setenv("VISIONBATCH_KAFKA_PROPERTY_SSL_KEY_PASSWORD", "Kf-env-pw-6677", 1);
    vb_config cfg;
    vb_error err;
    assert_int_equal(load_args(&cfg, VB_PROG_ADMIN, &err,
                          ARGS("--config", file, "--kafka-property",
                               "ssl.keystore.password=Kf-flag-secret-8899",
                               "--kafka-property", "security.protocol=Kf-flag-secret-8899")),
                     VB_ERR_CONFIG);
    /* librdkafka quotes a refused value: a secret one is masked even so. */
    assert_non_null(strstr(err.msg, "Invalid value \"***\" for configuration property "
                                    "\"security.protocol\""));
    assert_null(strstr(err.msg, "Kf-flag-secret-8899"));
    char line[] = "pw Kf-file-pw-4455 / Kf-env-pw-6677 / Kf-flag-secret-8899";
    vb_redact_text(line);
    assert_string_equal(line, "pw *** / *** / ***");
    const char *log = read_log();
    assert_non_null(strstr(log, "chmod 600"));
    assert_null(strstr(log, "Kf-"));
}

static void help_lists_the_pass_through_for_kafka_programs_only(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    vb_config_print_help(f, VB_PROG_WORKER);
    fclose(f);
    assert_non_null(strstr(text, "--kafka-property NAME=VALUE"));
    assert_non_null(strstr(text, "VISIONBATCH_KAFKA_PROPERTY_<NAME>"));
    assert_non_null(strstr(text, "VISIONBATCH_KAFKA_PROPERTY_SASL_PASSWORD"));
    free(text);
    f = open_memstream(&text, &len);
    vb_config_print_help(f, VB_PROG_RUN_ONCE);
    fclose(f);
    assert_null(strstr(text, "--kafka-property"));
    free(text);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The probe stops a refused login; an unreachable cluster is not its
 * business (the clients ride it out), nor does it wait the whole time. */
static void probe_lets_unreachable_pass_and_reports_bad_files(void **state)
{
    vb_error err = {0};
    long long t0 = now_ms();
    assert_int_equal(vb__kafka_probe("127.0.0.1:1", NULL, 8000, &err), VB_OK);
    assert_true(now_ms() - t0 < 5000);

    const char *const missing_ca[] = {"security.protocol", "SSL", "ssl.ca.location",
                                      "/nonexistent/ca.pem", NULL};
    assert_int_equal(vb__kafka_probe("127.0.0.1:1", missing_ca, 8000, &err), VB_ERR_KAFKA);
    assert_non_null(strstr(err.msg, "ssl.ca.location"));

    const char *const reserved[] = {"acks", "1", NULL};
    assert_int_equal(vb__kafka_probe("127.0.0.1:1", reserved, 8000, &err), VB_ERR_CONFIG);
    vb_kafka_producer *p = NULL;
    assert_int_equal(vb_kafka_producer_new("127.0.0.1:1", reserved, "t", &p, &err),
                     VB_ERR_CONFIG);
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(defaults_apply_when_nothing_is_set),
        T(precedence_is_flag_then_env_then_file_then_default),
        T(guide_environment_variables_configure_run_once),
        T(guide_example_config_json_loads_without_warning),
        T(guide_command_line_configures_run_once),
        T(default_config_file_is_read_when_present),
        T(explicit_config_that_does_not_exist_fails),
        T(missing_required_settings_are_listed_in_one_message),
        T(producer_and_worker_do_not_require_platform_settings),
        T(bad_numbers_name_setting_and_source),
        T(bad_urls_and_empty_values_fail),
        T(redis_url_is_checked_with_the_connection_grammar),
        T(unknown_and_foreign_options_fail),
        T(unknown_json_key_only_warns),
        T(wrong_json_types_fail),
        T(oversized_config_file_is_rejected),
        T(world_readable_file_with_key_warns),
        T(private_file_with_key_does_not_warn),
        T(secrets_never_appear_in_error_messages),
        T(secrets_are_registered_for_redaction),
        T(positional_arguments_are_returned_in_order),
        T(passthrough_options_stay_for_the_program),
        T(allow_partial_is_a_bool_flag),
        T(token_and_key_come_from_files_or_environment),
        T(help_lists_the_program_settings),
        T(copy_is_deep_and_free_clears),
        T(wants_help_detects_help_flags),
        T(env_names_map_one_to_one),
        T(sources_merge_per_property_with_precedence),
        T(librdkafka_judges_names_and_values),
        T(reserved_properties_are_refused_under_every_name),
        T(secret_values_are_redacted_and_never_quoted),
        T(help_lists_the_pass_through_for_kafka_programs_only),
        T(probe_lets_unreachable_pass_and_reports_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
