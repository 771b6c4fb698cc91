/*
 * vb-test-topics: creates and deletes Kafka topics for the system tests.
 *
 *   vb-test-topics -b BROKERS create NAME:PARTITIONS...
 *   vb-test-topics -b BROKERS delete NAME...
 *   vb-test-topics -b BROKERS truncate NAME:PARTITIONS
 *
 * Each system test publishes to topics of its own so that tests run side by
 * side without reading each other's messages. The broker has topic
 * auto-creation off, and Kafka's own TopicCommand starts a JVM per call
 * (seconds of CPU each on a small machine), so the tests use this program:
 * one librdkafka admin request for every topic named, then a wait until
 * each created topic has a leader for every partition (a producer sending
 * at once would otherwise see "unknown topic"). "Already exists" on create
 * and "unknown topic" on delete count as success. truncate deletes every
 * record of the topic's partitions 0..PARTITIONS-1 up to their current end
 * (DeleteRecords): a consumer can fetch none of them any more — what a
 * consumer already holds in memory is all it still has of them. Exit status 0 when every
 * topic is in the asked state, 1 otherwise (with a message on stderr), 2 on
 * bad usage. A test tool only: it is not installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define MAX_TOPICS 64
#define TIMEOUT_MS 30000

static void usage(void)
{
    fprintf(stderr, "usage: vb-test-topics -b BROKERS create NAME:PARTITIONS...\n"
                    "       vb-test-topics -b BROKERS delete NAME...\n"
                    "       vb-test-topics -b BROKERS truncate NAME:PARTITIONS\n");
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* 1 when `name` exists and every partition has a leader. */
static int topic_ready(rd_kafka_t *rk, const char *name)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int ready = 0;
    if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topics[0].partition_cnt > 0) {
        ready = 1;
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            if (md->topics[0].partitions[i].leader < 0)
                ready = 0;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return ready;
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op)
{
    char errstr[256];
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, op);
    rd_kafka_AdminOptions_set_request_timeout(opt, TIMEOUT_MS, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_operation_timeout(opt, TIMEOUT_MS, errstr, sizeof errstr);
    return opt;
}

/* The answer to the admin request sent to q, or NULL (reported on stderr)
 * when none came or the request failed as a whole. */
static rd_kafka_event_t *admin_answer(rd_kafka_queue_t *q)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
    if (!ev) {
        fprintf(stderr, "vb-test-topics: no answer from the broker\n");
    } else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "vb-test-topics: %s\n", rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        ev = NULL;
    }
    return ev;
}

/* Sends one CreateTopics or DeleteTopics request; returns the failures. */
static int admin(rd_kafka_t *rk, int create, char **names, int n)
{
    rd_kafka_NewTopic_t *nt[MAX_TOPICS] = {0};
    rd_kafka_DeleteTopic_t *dt[MAX_TOPICS] = {0};
    char errstr[256];
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (create) {
            char *colon = strrchr(names[i], ':');
            char *end = NULL;
            long parts = colon ? strtol(colon + 1, &end, 10) : 0;
            if (!colon || *end || parts < 1 || parts > 64) {
                fprintf(stderr, "vb-test-topics: '%s' is not NAME:PARTITIONS\n", names[i]);
                failed = n;
                goto out;
            }
            *colon = '\0';
            nt[i] = rd_kafka_NewTopic_new(names[i], (int)parts, 1, errstr, sizeof errstr);
            if (!nt[i]) {
                fprintf(stderr, "vb-test-topics: %s: %s\n", names[i], errstr);
                failed = n;
                goto out;
            }
        } else {
            dt[i] = rd_kafka_DeleteTopic_new(names[i]);
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = admin_options(
        rk, create ? RD_KAFKA_ADMIN_OP_CREATETOPICS : RD_KAFKA_ADMIN_OP_DELETETOPICS);
    if (create)
        rd_kafka_CreateTopics(rk, nt, (size_t)n, opt, q);
    else
        rd_kafka_DeleteTopics(rk, dt, (size_t)n, opt, q);
    rd_kafka_event_t *ev = admin_answer(q);
    const rd_kafka_topic_result_t **res = NULL;
    size_t cnt = 0;
    if (!ev) {
        failed = n;
    } else {
        res = create ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev),
                                                           &cnt)
                     : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev),
                                                           &cnt);
    }
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR ||
            (create && e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) ||
            (!create && e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
            continue;
        fprintf(stderr, "vb-test-topics: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                rd_kafka_err2str(e));
        failed++;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
out:
    for (int i = 0; i < n; i++) {
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
        if (dt[i])
            rd_kafka_DeleteTopic_destroy(dt[i]);
    }
    return failed;
}

/* Deletes the records of partitions 0..n-1 of `topic` up to their end. */
static int truncate_topic(rd_kafka_t *rk, const char *topic, int n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = admin_options(rk, RD_KAFKA_ADMIN_OP_DELETERECORDS);
    rd_kafka_DeleteRecords(rk, &dr, 1, opt, q);
    rd_kafka_event_t *ev = admin_answer(q);
    int failed = 0;
    if (!ev) {
        failed = n;
    } else {
        const rd_kafka_topic_partition_list_t *res =
            rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
        for (int i = 0; res && i < res->cnt; i++) {
            if (res->elems[i].err) {
                fprintf(stderr, "vb-test-topics: %s[%d]: %s\n", topic,
                        (int)res->elems[i].partition, rd_kafka_err2str(res->elems[i].err));
                failed++;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteRecords_destroy(dr);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[1], "-b") != 0 || argc - 4 > MAX_TOPICS ||
        (strcmp(argv[3], "create") != 0 && strcmp(argv[3], "delete") != 0 &&
         strcmp(argv[3], "truncate") != 0)) {
        usage();
        return 2;
    }
    int create = strcmp(argv[3], "create") == 0;
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[2], errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "vb-test-topics: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "vb-test-topics: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    int n = argc - 4;
    if (strcmp(argv[3], "truncate") == 0) {
        char *colon = strrchr(argv[4], ':');
        char *end = NULL;
        long parts = colon ? strtol(colon + 1, &end, 10) : 0;
        int failed = 1;
        if (n != 1 || !colon || *end || parts < 1 || parts > 64) {
            usage();
        } else {
            *colon = '\0';
            failed = truncate_topic(rk, argv[4], (int)parts);
        }
        rd_kafka_destroy(rk);
        return failed ? 1 : 0;
    }
    int failed = admin(rk, create, argv + 4, n);
    /* admin() cut each NAME:PARTITIONS at the colon: argv now holds names. */
    for (int i = 0; create && !failed && i < n; i++) {
        int waited = 0;
        while (!topic_ready(rk, argv[4 + i]) && waited < TIMEOUT_MS) {
            nap_ms(100);
            waited += 100;
        }
        if (waited >= TIMEOUT_MS) {
            fprintf(stderr, "vb-test-topics: %s has no leader yet\n", argv[4 + i]);
            failed++;
        }
    }
    rd_kafka_destroy(rk);
    return failed ? 1 : 0;
}
