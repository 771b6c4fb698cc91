/*
 * Tests of kafka_producer.c against a live Kafka broker.
 *
 * Brokers: $KAFKA_BROKERS, else 127.0.0.1:9092. The tests create their own
 * topic ($VB_TEST_KAFKA_TOPIC, default visionbatch.test.producer, 3
 * partitions) with the admin API, record the end offsets, produce, then read
 * the new messages back with a plain librdkafka consumer (assigned partitions,
 * no group commits) and check key, value and headers. Messages carry a key
 * unique to the test process, so concurrent runs do not confuse each other.
 * When the broker is unreachable the live tests fail, unless
 * VB_ALLOW_NO_KAFKA=1 (then they are skipped). The offline tests need no
 * broker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "visionbatch/kafka.h"

#define TEST_PARTITIONS 3
#define MAX_PARTITIONS 64

static int kafka_available;
static char uniq[64]; /* key prefix unique to this process */

static const char *brokers(void)
{
    const char *b = getenv("KAFKA_BROKERS");
    return b && *b ? b : "127.0.0.1:9092";
}

static const char *topic(void)
{
    const char *t = getenv("VB_TEST_KAFKA_TOPIC");
    return t && *t ? t : "visionbatch.test.producer";
}

/* ---- test-side Kafka helpers (plain librdkafka) ---- */

static rd_kafka_t *raw_client(rd_kafka_type_t type)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[96];
    snprintf(group, sizeof group, "vb-test-producer-%s", uniq);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers(), errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) ||
        (type == RD_KAFKA_CONSUMER &&
         (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
          rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr)))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Number of partitions of `t` (0 when unknown). */
static int partition_count(rd_kafka_t *rk, const char *t)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = 0;
    if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return n;
}

/* Creates topic `t` with `partitions` unless it exists; returns its
 * partition count. */
static int ensure_topic_named(const char *t, int partitions)
{
    rd_kafka_t *rk = raw_client(RD_KAFKA_PRODUCER);
    if (!rk)
        return 0;
    int n = partition_count(rk, t);
    if (n == 0) {
        char errstr[256];
        rd_kafka_NewTopic_t *nt =
            rd_kafka_NewTopic_new(t, partitions, 1, errstr, sizeof errstr);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
        if (ev)
            rd_kafka_event_destroy(ev); /* "already exists" is fine: checked below */
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
        for (int i = 0; i < 50 && (n = partition_count(rk, t)) == 0; i++)
            usleep(200 * 1000);
    }
    rd_kafka_destroy(rk);
    return n;
}

static int ensure_topic(void)
{
    return ensure_topic_named(topic(), TEST_PARTITIONS);
}

typedef struct offsets {
    int n;
    int64_t high[MAX_PARTITIONS];
} offsets;

static void end_offsets_of(const char *t, offsets *o)
{
    rd_kafka_t *rk = raw_client(RD_KAFKA_PRODUCER);
    assert_non_null(rk);
    o->n = partition_count(rk, t);
    assert_true(o->n > 0 && o->n <= MAX_PARTITIONS);
    for (int i = 0; i < o->n; i++) {
        int64_t lo = 0, hi = 0;
        /* A topic created a moment ago may not have a leader yet. */
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_UNKNOWN;
        for (int tries = 0; tries < 75; tries++) {
            e = rd_kafka_query_watermark_offsets(rk, t, i, &lo, &hi, 5000);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            usleep(200 * 1000);
        }
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
        o->high[i] = hi;
    }
    rd_kafka_destroy(rk);
}

static void end_offsets(offsets *o)
{
    end_offsets_of(topic(), o);
}

/* What the reader saw for one key. */
typedef struct seen {
    int count;
    char value[256];
    char schema[32];
    char trace[64];
    int null_header_seen;
} seen;

/* Reads every message after `from` until `want` messages whose key starts
 * with `prefix` arrived (or 20 s passed); fills *first with the first one. */
static int read_back(const offsets *from, const char *prefix, int want, seen *first)
{
    rd_kafka_t *rk = raw_client(RD_KAFKA_CONSUMER);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(from->n);
    for (int i = 0; i < from->n; i++)
        rd_kafka_topic_partition_list_add(parts, topic(), i)->offset = from->high[i];
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);

    memset(first, 0, sizeof *first);
    int got = 0;
    long long deadline = vb__mono_ms() + 20000;
    size_t plen = strlen(prefix);
    while (got < want && vb__mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err && m->key_len >= plen && memcmp(m->key, prefix, plen) == 0) {
            if (got == 0) {
                size_t n = m->len < sizeof first->value - 1 ? m->len : sizeof first->value - 1;
                memcpy(first->value, m->payload, n);
                rd_kafka_headers_t *h = NULL;
                if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    const void *v;
                    size_t vlen;
                    if (rd_kafka_header_get_last(h, "vb-schema", &v, &vlen) == 0 &&
                        vlen < sizeof first->schema)
                        memcpy(first->schema, v, vlen);
                    if (rd_kafka_header_get_last(h, "vb-trace-id", &v, &vlen) == 0 &&
                        vlen < sizeof first->trace)
                        memcpy(first->trace, v, vlen);
                    if (rd_kafka_header_get_last(h, "vb-empty", &v, &vlen) == 0 && !v)
                        first->null_header_seen = 1;
                }
            }
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    first->count = got;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    snprintf(uniq, sizeof uniq, "%ld-%lld", (long)getpid(), vb__mono_ms());
    if (ensure_topic() > 0) {
        kafka_available = 1;
        return 0;
    }
    const char *allow = getenv("VB_ALLOW_NO_KAFKA");
    if (allow && strcmp(allow, "1") == 0) {
        fprintf(stderr, "Kafka unreachable: Kafka tests skipped (VB_ALLOW_NO_KAFKA=1)\n");
        return 0;
    }
    fprintf(stderr, "Kafka unreachable at %s (or topic %s cannot be created); start it "
                    "(deploy/local/services.sh start) or set VB_ALLOW_NO_KAFKA=1\n",
            brokers(), topic());
    return -1;
}

static int setup(void **state)
{
    if (!kafka_available)
        skip();
    vb_kafka_producer *p = NULL;
    vb_error err = {0};
    assert_int_equal(vb_kafka_producer_new(brokers(), NULL, "vb-test", &p, &err), VB_OK);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    vb_kafka_producer_free(*state, 5000);
    return 0;
}

/* ---- live tests ---- */

static void producer_delivers_key_value_and_headers(void **state)
{
    vb_kafka_producer *p = *state;
    offsets from;
    end_offsets(&from);
    char key[128];
    snprintf(key, sizeof key, "single-%s", uniq);
    const char *value = "{\"schema\":1,\"run_id\":\"X\"}";
    vb_kafka_header h[] = {{"vb-schema", "1"}, {"vb-trace-id", "abc123"}, {"vb-empty", NULL}};
    vb_error err = {0};
    assert_int_equal(vb_kafka_produce_sync(p, topic(), key, value, strlen(value), h, 3, 10000,
                                           &err),
                     VB_OK);
    seen s;
    assert_int_equal(read_back(&from, key, 1, &s), 1);
    assert_string_equal(s.value, value);
    assert_string_equal(s.schema, "1");
    assert_string_equal(s.trace, "abc123");
    assert_true(s.null_header_seen);
}

static void producer_is_reachable_on_a_live_broker(void **state)
{
    assert_true(vb_kafka_producer_reachable(*state, 5000));
}

#define THREADS 4
#define PER_THREAD 25

typedef struct worker_arg {
    vb_kafka_producer *p;
    int index;
    int ok;
} worker_arg;

static void *produce_many(void *a)
{
    worker_arg *w = a;
    for (int i = 0; i < PER_THREAD; i++) {
        char key[128], value[64];
        snprintf(key, sizeof key, "many-%s-%d-%d", uniq, w->index, i);
        snprintf(value, sizeof value, "%d/%d", w->index, i);
        vb_error err = {0};
        if (vb_kafka_produce_sync(w->p, topic(), key, value, strlen(value), NULL, 0, 10000,
                                  &err) == VB_OK)
            w->ok++;
    }
    return NULL;
}

static void producer_is_safe_from_several_threads(void **state)
{
    offsets from;
    end_offsets(&from);
    pthread_t t[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){*state, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, produce_many, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        ok += args[i].ok;
    }
    assert_int_equal(ok, THREADS * PER_THREAD);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "many-%s-", uniq);
    seen s;
    assert_int_equal(read_back(&from, prefix, THREADS * PER_THREAD, &s), THREADS * PER_THREAD);
}

static void producer_rejects_bad_arguments(void **state)
{
    vb_error err = {0};
    assert_int_equal(vb_kafka_produce_sync(*state, "", "k", "v", 1, NULL, 0, 1000, &err),
                     VB_ERR_INVALID);
    vb_kafka_header bad[] = {{"", "x"}};
    assert_int_equal(vb_kafka_produce_sync(*state, topic(), "k", "v", 1, bad, 1, 1000, &err),
                     VB_ERR_INVALID);
    assert_int_equal(vb_kafka_produce_sync(*state, topic(), "k", NULL, 1, NULL, 0, 1000, &err),
                     VB_ERR_INVALID);
}

/* ---- partition spread ---- */

#define SPREAD_TOPIC "visionbatch.test.spread"
#define SPREAD_PARTITIONS 8
#define SPREAD_RUNS 400

/* Counts, per partition of SPREAD_TOPIC after `from`, the messages whose
 * vb-test header is `tag`, until `want` arrived (or 20 s passed); *elsewhere
 * counts those not on the partition Java clients choose for their key
 * (murmur2). */
static int count_by_partition(const offsets *from, const char *tag, int want, int *counts,
                              int *elsewhere)
{
    rd_kafka_t *rk = raw_client(RD_KAFKA_CONSUMER);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(from->n);
    for (int i = 0; i < from->n; i++)
        rd_kafka_topic_partition_list_add(parts, SPREAD_TOPIC, i)->offset = from->high[i];
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    int got = 0;
    long long deadline = vb__mono_ms() + 20000;
    while (got < want && vb__mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vlen;
        if (!m->err && m->partition >= 0 && m->partition < SPREAD_PARTITIONS &&
            rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, "vb-test", &v, &vlen) == 0 && vlen == strlen(tag) &&
            memcmp(v, tag, vlen) == 0) {
            counts[m->partition]++;
            got++;
            if (rd_kafka_msg_partitioner_murmur2(NULL, m->key, m->key_len, SPREAD_PARTITIONS,
                                                 NULL, NULL) != m->partition)
                (*elsewhere)++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

/* Produces SPREAD_RUNS run ids (sequential-looking or pseudo-random UUIDs,
 * the same on every run of the test, so the result is reproducible) as keys
 * through `p` and counts them per partition. *elsewhere counts those not on
 * the partition a Java client would choose for their key (murmur2). */
static void produce_spread(vb_kafka_producer *p, int sequential, int *counts, int *elsewhere)
{
    assert_int_equal(ensure_topic_named(SPREAD_TOPIC, SPREAD_PARTITIONS), SPREAD_PARTITIONS);
    offsets from;
    end_offsets_of(SPREAD_TOPIC, &from);
    char tag[96];
    snprintf(tag, sizeof tag, "%s-%d-%p", uniq, sequential, (void *)p);
    vb_kafka_header h[] = {{"vb-test", tag}};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < SPREAD_RUNS; i++) {
        char key[64];
        if (sequential) {
            snprintf(key, sizeof key, "6f1c2e34-0000-4000-8000-%012d", i + 1);
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64, fixed seed */
            uint64_t y = x * 0x2545f4914f6cdd1dULL;
            snprintf(key, sizeof key, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)(x >> 32),
                     (unsigned)(x >> 16) & 0xffff, (unsigned)x & 0xfff,
                     (unsigned)(y >> 52), (unsigned long long)(y & 0xffffffffffffULL));
        }
        vb_error err = {0};
        assert_int_equal(vb_kafka_produce_sync(p, SPREAD_TOPIC, key, "{}", 2, h, 1, 10000, &err),
                         VB_OK);
    }
    assert_int_equal(count_by_partition(&from, tag, SPREAD_RUNS, counts, elsewhere),
                     SPREAD_RUNS);
    fprintf(stderr, "%s ids over %d partitions:", sequential ? "sequential" : "random",
            SPREAD_PARTITIONS);
    for (int i = 0; i < SPREAD_PARTITIONS; i++)
        fprintf(stderr, " %d", counts[i]);
    fprintf(stderr, " (%d not where murmur2 puts them)\n", *elsewhere);
}

/* By default the partitions take turns: every one of the 8 gets exactly its
 * share of 400 runs, whatever the ids hash to (the keys stay the run ids). */
static void spread_runs(vb_kafka_producer *p, int sequential)
{
    int counts[SPREAD_PARTITIONS] = {0}, elsewhere = 0;
    produce_spread(p, sequential, counts, &elsewhere);
    for (int i = 0; i < SPREAD_PARTITIONS; i++)
        assert_int_equal(counts[i], SPREAD_RUNS / SPREAD_PARTITIONS);
    assert_true(elsewhere > 0); /* not placed by key */
}

static void sequential_run_ids_spread_evenly_over_partitions(void **state)
{
    spread_runs(*state, 1);
}

static void random_run_ids_spread_evenly_over_partitions(void **state)
{
    spread_runs(*state, 0);
}

/* The `partitioner` property replaces the turns with librdkafka's own
 * partitioner: with murmur2_random every run id goes where a Java client
 * puts it, and the 8 partitions get between half and 1.5 times their share. */
static void partitioner_property_places_runs_by_key(void **state)
{
    (void)state;
    const char *props[] = {"partitioner", "murmur2_random", NULL};
    vb_kafka_producer *p = NULL;
    vb_error err = {0};
    assert_int_equal(vb_kafka_producer_new(brokers(), props, "vb-test-murmur2", &p, &err), VB_OK);
    for (int sequential = 0; sequential <= 1; sequential++) {
        int counts[SPREAD_PARTITIONS] = {0}, elsewhere = 0;
        produce_spread(p, sequential, counts, &elsewhere);
        assert_int_equal(elsewhere, 0);
        const int fair = SPREAD_RUNS / SPREAD_PARTITIONS;
        for (int i = 0; i < SPREAD_PARTITIONS; i++) {
            assert_true(counts[i] >= fair / 2);
            assert_true(counts[i] <= fair + fair / 2);
        }
    }
    vb_kafka_producer_free(p, 5000);
}

/* ---- offline tests ---- */

static void producer_new_requires_brokers(void **state)
{
    vb_kafka_producer *p = (vb_kafka_producer *)&p; /* must be reset to NULL */
    vb_error err = {0};
    assert_int_equal(vb_kafka_producer_new("", NULL, "x", &p, &err), VB_ERR_INVALID);
    assert_null(p);
    vb_kafka_producer_free(NULL, 0);
}

/* Nothing listens on port 1: the call gives up at its own deadline with
 * VB_ERR_TIMEOUT, and freeing the producer purges the message, releasing the
 * pending delivery record (the sanitizer build checks that nothing leaks). */
static void producer_times_out_when_no_broker_answers(void **state)
{
    vb_kafka_producer *p = NULL;
    vb_error err = {0};
    assert_int_equal(vb_kafka_producer_new("127.0.0.1:1", NULL, "vb-test-offline", &p, &err), VB_OK);
    assert_false(vb_kafka_producer_reachable(p, 300));
    long long t0 = vb__mono_ms();
    assert_int_equal(vb_kafka_produce_sync(p, "visionbatch.nowhere", "k", "v", 1, NULL, 0, 400,
                                           &err),
                     VB_ERR_TIMEOUT);
    long long took = vb__mono_ms() - t0;
    assert_true(took >= 350 && took < 5000);
    assert_non_null(strstr(err.msg, "visionbatch.nowhere"));
    vb_kafka_producer_free(p, 0);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(producer_new_requires_brokers),
        cmocka_unit_test(producer_times_out_when_no_broker_answers),
    };
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest live[] = {
        T(producer_delivers_key_value_and_headers),
        T(producer_is_reachable_on_a_live_broker),
        T(producer_is_safe_from_several_threads),
        T(producer_rejects_bad_arguments),
        T(sequential_run_ids_spread_evenly_over_partitions),
        T(random_run_ids_spread_evenly_over_partitions),
        T(partitioner_property_places_runs_by_key),
    };
    int failures = cmocka_run_group_tests_name("kafka_offline", offline, NULL, NULL);
    failures += cmocka_run_group_tests_name("kafka_live", live, group_setup, NULL);
    return failures;
}
