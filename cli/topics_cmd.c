/*
 * topics_cmd.c — `visionbatch topics`: the Kafka topics with their
 * partition counts and message counts, and the workers' consumer lag.
 *
 *   topics [--group-id G] [--all] [--json]
 *
 * For every topic (internal "__" topics, and topics being created or deleted
 * meanwhile, left out): partitions and messages retained (Σ high − low). Then, for the runs topic (setting `topic`), and
 * with --all for every topic where the group has committed offsets, one line
 * per partition: the group's committed offset, the high watermark and the
 * lag (high − committed; with nothing committed, everything retained counts,
 * as workers start from the earliest offset). The group (default: setting
 * group_id, visionbatch-workers) is asked for its offsets, never joined, so
 * running this does not rebalance the workers.
 *
 * Exit status 0 success, 1 Kafka failure, 2 usage or configuration error.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "visionbatch/config.h"
#include "visionbatch/kafka.h"
#include "visionbatch/log.h"

#define KAFKA_TIMEOUT_MS 15000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: visionbatch topics [--group-id GROUP] [--all] [--json] [settings]\n\n"
            "Kafka topics with their partitions and retained messages, then the consumer\n"
            "lag of GROUP (default: group_id) on the runs topic (topic) per partition:\n"
            "committed offset, end offset (high watermark) and lag. --all shows the lag\n"
            "on every topic the group has committed offsets for. The group is only asked\n"
            "for its offsets, never joined.\n"
            "Exit status: 0 success, 1 Kafka failure, 2 usage or configuration error.\n");
}

static void help(void)
{
    usage(stdout);
    printf("\nSettings (flag > environment > config file > default):\n");
    vb_config_print_help(stdout, VB_PROG_ADMIN);
}

static int has_commits(const vb_kafka_topic_info *t)
{
    for (int j = 0; j < t->npartitions; j++)
        if (t->partitions[j].committed >= 0)
            return 1;
    return 0;
}

static long long retained(const vb_kafka_topic_info *t)
{
    long long n = 0;
    for (int j = 0; j < t->npartitions; j++)
        n += t->partitions[j].high - t->partitions[j].low;
    return n;
}

static int shows_lag(const vb_kafka_topic_info *t, const char *runs_topic, int all)
{
    return strcmp(t->name, runs_topic) == 0 || (all && has_commits(t));
}

static int print_json(const vb_kafka_topic_list *l, const char *group, const char *runs_topic,
                      int all)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "topics") : NULL;
    if (root)
        cJSON_AddStringToObject(root, "group", group);
    for (size_t i = 0; arr && i < l->n; i++) {
        const vb_kafka_topic_info *t = &l->items[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddNumberToObject(o, "partitions", t->npartitions);
        cJSON_AddNumberToObject(o, "messages", (double)retained(t));
        if (!shows_lag(t, runs_topic, all))
            continue;
        long long total = 0;
        cJSON *parts = cJSON_AddArrayToObject(o, "lag");
        for (int j = 0; parts && j < t->npartitions; j++) {
            const vb_kafka_partition_info *p = &t->partitions[j];
            cJSON *po = cJSON_CreateObject();
            if (!po)
                break;
            cJSON_AddItemToArray(parts, po);
            cJSON_AddNumberToObject(po, "partition", p->partition);
            if (p->committed >= 0)
                cJSON_AddNumberToObject(po, "committed", (double)p->committed);
            else
                cJSON_AddNullToObject(po, "committed");
            cJSON_AddNumberToObject(po, "low", (double)p->low);
            cJSON_AddNumberToObject(po, "high", (double)p->high);
            cJSON_AddNumberToObject(po, "lag", (double)vb_kafka_partition_lag(p));
            total += vb_kafka_partition_lag(p);
        }
        cJSON_AddNumberToObject(o, "total_lag", (double)total);
    }
    return vb_cli_print_json("topics", root);
}

static void print_text(const vb_kafka_topic_list *l, const char *group, const char *runs_topic,
                       int all)
{
    size_t w = 5;
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->items[i].name) > w)
            w = strlen(l->items[i].name);
    printf("%-*s %10s %12s\n", (int)w, "TOPIC", "PARTITIONS", "MESSAGES");
    for (size_t i = 0; i < l->n; i++)
        printf("%-*s %10d %12lld\n", (int)w, l->items[i].name, l->items[i].npartitions,
               retained(&l->items[i]));
    int shown = 0;
    for (size_t i = 0; i < l->n; i++) {
        const vb_kafka_topic_info *t = &l->items[i];
        if (!shows_lag(t, runs_topic, all))
            continue;
        shown = 1;
        printf("\nconsumer group %s on %s:\n", group, t->name);
        printf("%9s %12s %12s %10s\n", "PARTITION", "COMMITTED", "END", "LAG");
        long long total = 0;
        for (int j = 0; j < t->npartitions; j++) {
            const vb_kafka_partition_info *p = &t->partitions[j];
            char c[24];
            if (p->committed >= 0)
                snprintf(c, sizeof c, "%lld", p->committed);
            else
                snprintf(c, sizeof c, "-");
            printf("%9d %12s %12lld %10lld\n", p->partition, c, p->high, vb_kafka_partition_lag(p));
            total += vb_kafka_partition_lag(p);
        }
        printf("total lag %lld\n", total);
    }
    if (!shown)
        printf("\nthe runs topic %s does not exist\n", runs_topic);
}

int vb_cli_topics(int argc, char **argv)
{
    if (vb_config_wants_help(argc, argv)) {
        help();
        return 0;
    }
    static const char *const passthrough[] = {"json", "all", NULL};
    vb_config cfg;
    char **rest = NULL;
    int nrest = 0;
    if (vb_cli_load("topics", VB_PROG_ADMIN, argc, argv, passthrough, &cfg, &rest, &nrest) != 0)
        return 2;
    vb_error err;
    vb_error_clear(&err);
    int json = 0, all = 0;
    const vb_cli_opt opts[] = {{"--json", &json, NULL}, {"--all", &all, NULL}, {NULL, NULL, NULL}};
    if (vb_cli_parse_args("topics", nrest, rest, opts, NULL, 0) != 0) {
        usage(stderr);
        vb_config_free(&cfg);
        return 2;
    }
    vb_kafka_topic_list l;
    int rc = 0;
    if (vb_kafka_topics_describe(cfg.kafka_brokers, cfg.kafka_properties, cfg.group_id, NULL,
                                 KAFKA_TIMEOUT_MS, &l, &err) != VB_OK) {
        fprintf(stderr, "visionbatch topics: %s\n", err.msg);
        rc = 1;
    } else if (json) {
        rc = print_json(&l, cfg.group_id, cfg.topic, all);
    } else {
        print_text(&l, cfg.group_id, cfg.topic, all);
    }
    vb_kafka_topic_list_free(&l);
    vb_log_close();
    vb_config_free(&cfg);
    return rc;
}
