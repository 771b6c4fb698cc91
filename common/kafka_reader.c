/*
 * kafka_reader.c — the operator half of kafka.h: read a whole topic without
 * a consumer group, and describe topics with a group's lag.
 *
 * Why no group: `visionbatch dlq list|replay` must be able to read the
 * dead-letter topic any number of times, from the beginning, while leaving
 * no trace in the cluster — so the reader assigns every partition itself
 * (rd_kafka_assign at the first retained offset) and never commits. It reads
 * up to the high watermarks taken when it was opened, so it ends even while
 * others keep writing. `visionbatch topics` asks the broker for metadata,
 * the watermarks of every partition and, with rd_kafka_committed, the
 * workers' committed offsets: the group coordinator answers that without
 * the caller joining the group, so the workers are not rebalanced.
 *
 * Threading: a reader handle is used by one thread. vb_kafka_topics_describe
 * opens and closes its own client, so it may be called from any thread.
 * Ownership: records and topic lists are owned by the caller.
 */
#include "visionbatch/kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka_internal.h"
#include "util.h"

#define MAX_PARTITIONS 100000

struct vb_kafka_reader {
    rd_kafka_t *rk;
    char *topic;
    int nparts;
    int *part_ids;
    long long *end;  /* high watermark at open */
    int *done;       /* partition reached its end */
    int remaining;   /* partitions not done */
    long long expected;
};

void vb_kafka_record_free(vb_kafka_record *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nheaders; i++) {
        free((char *)r->headers[i].name);
        free((char *)r->headers[i].value);
    }
    free(r->headers);
    free(r->key);
    free(r->value);
    free(r);
}

const char *vb_kafka_record_header(const vb_kafka_record *r, const char *name)
{
    if (!r || !name)
        return NULL;
    for (size_t i = r->nheaders; i > 0; i--)
        if (strcmp(r->headers[i - 1].name, name) == 0)
            return r->headers[i - 1].value;
    return NULL;
}

/* A client of the given type with our common settings and the operator's
 * properties, after a probe bounded by timeout_ms; group may be NULL. */
static vb_err new_client(rd_kafka_type_t type, const char *brokers, const char *const *props,
                         const char *group, int timeout_ms, rd_kafka_t **out, vb_error *err)
{
    *out = NULL;
    char errstr[512];
    vb_err rc = vb__kafka_probe(brokers, props, timeout_ms, err);
    if (rc != VB_OK)
        return rc;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    char gid[96];
    if (!group) {
        /* librdkafka wants a group id for a consumer handle; this one is
         * never joined nor committed to. */
        snprintf(gid, sizeof gid, "visionbatch-reader-%ld-%lld", (long)getpid(),
                 (long long)time(NULL));
        group = gid;
    }
    const char *settings[][2] = {
        {"bootstrap.servers", brokers},
        {"client.id", "visionbatch-cli"},
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
        {"auto.offset.reset", "earliest"},
        {"log_level", "3"}, /* errors only: stdout/stderr are the tool's answer */
    };
    size_t n = sizeof settings / sizeof settings[0];
    if (type == RD_KAFKA_PRODUCER)
        n = 2;
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return vb_error_set(err, VB_ERR_KAFKA, "kafka setting %s: %s", settings[i][0], errstr);
        }
    }
    if ((rc = vb__kafka_conf_apply(conf, props, err)) != VB_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return vb_error_set(err, VB_ERR_KAFKA, "kafka client: %s", errstr);
    }
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    *out = rk;
    return VB_OK;
}

static vb_err metadata_error(rd_kafka_resp_err_t e, vb_error *err)
{
    return vb_error_set(err, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? VB_ERR_TIMEOUT : VB_ERR_KAFKA,
                        "kafka metadata: %s", rd_kafka_err2str(e));
}

/* ---- reader ---- */

void vb_kafka_reader_free(vb_kafka_reader *r)
{
    if (!r)
        return;
    if (r->rk) {
        rd_kafka_assign(r->rk, NULL);
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    free(r->topic);
    free(r->part_ids);
    free(r->end);
    free(r->done);
    free(r);
}

long long vb_kafka_reader_expected(const vb_kafka_reader *r)
{
    return r ? r->expected : 0;
}

vb_err vb_kafka_reader_new(const char *brokers, const char *const *props, const char *topic,
                           int timeout_ms, vb_kafka_reader **out, vb_error *err)
{
    *out = NULL;
    if (!brokers || !*brokers || !topic || !*topic)
        return vb_error_set(err, VB_ERR_INVALID, "kafka reader needs brokers and a topic");
    vb_err rc;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    vb_kafka_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->topic = strdup(topic))) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = new_client(RD_KAFKA_CONSUMER, brokers, props, NULL, timeout_ms, &r->rk, err)) !=
        VB_OK)
        goto fail;
    rkt = rd_kafka_topic_new(r->rk, topic, NULL);
    if (!rkt) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka topic %s: %s", topic,
                          rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 0, rkt, &md, timeout_ms);
    if (e) {
        rc = metadata_error(e, err);
        goto fail;
    }
    if (md->topic_cnt != 1 || md->topics[0].err ||
        md->topics[0].partition_cnt <= 0) {
        rd_kafka_resp_err_t te = md->topic_cnt == 1 ? md->topics[0].err : 0;
        if (te && te != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            rc = vb_error_set(err, VB_ERR_KAFKA, "kafka topic %s: %s", topic,
                              rd_kafka_err2str(te));
        else
            rc = vb_error_set(err, VB_ERR_NOT_FOUND, "kafka topic %s does not exist", topic);
        goto fail;
    }
    const rd_kafka_metadata_topic_t *mt = &md->topics[0];
    int np = mt->partition_cnt > MAX_PARTITIONS ? MAX_PARTITIONS : mt->partition_cnt;
    r->part_ids = calloc((size_t)np, sizeof *r->part_ids);
    r->end = calloc((size_t)np, sizeof *r->end);
    r->done = calloc((size_t)np, sizeof *r->done);
    parts = rd_kafka_topic_partition_list_new(np);
    if (!r->part_ids || !r->end || !r->done || !parts) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    r->nparts = np;
    for (int i = 0; i < np; i++) {
        int64_t lo = 0, hi = 0;
        r->part_ids[i] = mt->partitions[i].id;
        e = rd_kafka_query_watermark_offsets(r->rk, topic, r->part_ids[i], &lo, &hi, timeout_ms);
        if (e) {
            rc = vb_error_set(err, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? VB_ERR_TIMEOUT
                                                                      : VB_ERR_KAFKA,
                              "kafka offsets of %s [%d]: %s", topic, r->part_ids[i],
                              rd_kafka_err2str(e));
            goto fail;
        }
        r->end[i] = hi;
        if (hi <= lo) {
            r->done[i] = 1;
            continue;
        }
        r->remaining++;
        r->expected += hi - lo;
        rd_kafka_topic_partition_list_add(parts, topic, r->part_ids[i])->offset = lo;
    }
    if (parts->cnt > 0 && (e = rd_kafka_assign(r->rk, parts)) != 0) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka assign %s: %s", topic, rd_kafka_err2str(e));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    *out = r;
    return VB_OK;
fail:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    vb_kafka_reader_free(r);
    return rc;
}

static int part_index(const vb_kafka_reader *r, int partition)
{
    for (int i = 0; i < r->nparts; i++)
        if (r->part_ids[i] == partition)
            return i;
    return -1;
}

static void mark_done(vb_kafka_reader *r, int idx)
{
    if (idx >= 0 && !r->done[idx]) {
        r->done[idx] = 1;
        r->remaining--;
    }
}

static vb_err copy_record(const rd_kafka_message_t *m, vb_kafka_record **out, vb_error *err)
{
    vb_kafka_record *rec = calloc(1, sizeof *rec);
    if (!rec)
        goto nomem;
    rec->partition = m->partition;
    rec->offset = m->offset;
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    rec->timestamp_ms = tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts;
    if (m->key) {
        if (!(rec->key = vb__dup_bytes(m->key, m->key_len)))
            goto nomem;
        rec->key_len = m->key_len;
    }
    if (!(rec->value = vb__dup_bytes(m->payload, m->payload ? m->len : 0)))
        goto nomem;
    rec->len = m->payload ? m->len : 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == 0 && hdrs) {
        size_t n = rd_kafka_header_cnt(hdrs);
        if (n > 0 && !(rec->headers = calloc(n, sizeof *rec->headers)))
            goto nomem;
        for (size_t i = 0; i < n; i++) {
            const char *name;
            const void *val;
            size_t vlen;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) != 0)
                break;
            vb_kafka_header *h = &rec->headers[rec->nheaders++];
            if (!(h->name = strdup(name)))
                goto nomem;
            if (val && !(h->value = vb__dup_bytes(val, vlen)))
                goto nomem;
        }
    }
    *out = rec;
    return VB_OK;
nomem:
    vb_kafka_record_free(rec);
    return vb_error_set(err, VB_ERR_NOMEM, "out of memory copying a kafka message");
}

vb_err vb_kafka_reader_next(vb_kafka_reader *r, int timeout_ms, vb_kafka_record **out,
                            vb_error *err)
{
    *out = NULL;
    long long t0 = vb__mono_ms();
    while (r->remaining > 0) {
        long elapsed = (long)(vb__mono_ms() - t0);
        if (elapsed >= timeout_ms)
            return vb_error_set(err, VB_ERR_TIMEOUT,
                                "kafka topic %s: no message for %d ms (%d partition(s) unread)",
                                r->topic, timeout_ms, r->remaining);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, (int)(timeout_ms - elapsed));
        if (!m)
            continue;
        int idx = part_index(r, m->partition);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            mark_done(r, idx);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            rd_kafka_resp_err_t e = m->err;
            int fatal = e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
            rd_kafka_message_destroy(m);
            if (fatal)
                return vb_error_set(err, VB_ERR_KAFKA, "kafka topic %s: %s", r->topic,
                                    rd_kafka_err2str(e));
            continue; /* transient: the client retries */
        }
        if (idx < 0 || r->done[idx] || m->offset >= r->end[idx]) {
            if (idx >= 0 && m->offset >= r->end[idx])
                mark_done(r, idx);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset + 1 >= r->end[idx])
            mark_done(r, idx);
        vb_err rc = copy_record(m, out, err);
        rd_kafka_message_destroy(m);
        return rc;
    }
    return VB_OK;
}

/* ---- topics ---- */

void vb_kafka_topic_list_free(vb_kafka_topic_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].name);
        free(l->items[i].partitions);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* A topic being created (no leader yet) or deleted since the metadata was
 * read: a listing of all topics leaves it out instead of failing. */
static int in_transition(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
           e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
}

static int cmp_topic(const void *a, const void *b)
{
    return strcmp(((const vb_kafka_topic_info *)a)->name, ((const vb_kafka_topic_info *)b)->name);
}

static int cmp_part(const void *a, const void *b)
{
    int x = ((const vb_kafka_partition_info *)a)->partition;
    int y = ((const vb_kafka_partition_info *)b)->partition;
    return (x > y) - (x < y);
}

vb_err vb_kafka_topics_describe(const char *brokers, const char *const *props, const char *group,
                                const char *only, int timeout_ms, vb_kafka_topic_list *out,
                                vb_error *err)
{
    memset(out, 0, sizeof *out);
    if (!brokers || !*brokers)
        return vb_error_set(err, VB_ERR_INVALID, "kafka brokers are needed");
    vb_err rc;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *tp = NULL;
    if ((rc = new_client(RD_KAFKA_CONSUMER, brokers, props, group && *group ? group : NULL,
                         timeout_ms, &rk, err)) !=
        VB_OK)
        goto fail;
    if (only && !(rkt = rd_kafka_topic_new(rk, only, NULL))) {
        rc = vb_error_set(err, VB_ERR_KAFKA, "kafka topic %s: %s", only,
                          rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, only ? 0 : 1, rkt, &md, timeout_ms);
    if (e) {
        rc = metadata_error(e, err);
        goto fail;
    }
    out->items = calloc((size_t)md->topic_cnt + 1, sizeof *out->items);
    tp = rd_kafka_topic_partition_list_new(16);
    if (!out->items || !tp) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[i];
        if (strncmp(mt->topic, "__", 2) == 0)
            continue;
        if (mt->err) {
            if (only && mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                rc = vb_error_set(err, VB_ERR_NOT_FOUND, "kafka topic %s does not exist", only);
                goto fail;
            }
            continue; /* e.g. a topic being deleted */
        }
        vb_kafka_topic_info *ti = &out->items[out->n];
        int np = mt->partition_cnt > MAX_PARTITIONS ? MAX_PARTITIONS : mt->partition_cnt;
        if (!(ti->name = strdup(mt->topic)) ||
            (np > 0 && !(ti->partitions = calloc((size_t)np, sizeof *ti->partitions)))) {
            free(ti->name);
            ti->name = NULL;
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto fail;
        }
        out->n++;
        ti->npartitions = np;
        e = RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int j = 0; j < np; j++) {
            vb_kafka_partition_info *pi = &ti->partitions[j];
            int64_t lo = 0, hi = 0;
            pi->partition = mt->partitions[j].id;
            pi->committed = -1;
            e = rd_kafka_query_watermark_offsets(rk, mt->topic, pi->partition, &lo, &hi,
                                                 timeout_ms);
            if (!only && in_transition(e))
                break; /* created or deleted meanwhile: left out below */
            if (e) {
                rc = vb_error_set(err, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? VB_ERR_TIMEOUT
                                                                          : VB_ERR_KAFKA,
                                  "kafka offsets of %s [%d]: %s", mt->topic, pi->partition,
                                  rd_kafka_err2str(e));
                goto fail;
            }
            pi->low = lo;
            pi->high = hi;
        }
        if (e) {
            out->n--;
            free(ti->name);
            free(ti->partitions);
            memset(ti, 0, sizeof *ti);
            continue;
        }
        for (int j = 0; j < np && group && *group; j++)
            rd_kafka_topic_partition_list_add(tp, mt->topic, ti->partitions[j].partition);
        qsort(ti->partitions, (size_t)np, sizeof *ti->partitions, cmp_part);
    }
    if (only && out->n == 0) {
        rc = vb_error_set(err, VB_ERR_NOT_FOUND, "kafka topic %s does not exist", only);
        goto fail;
    }
    if (tp->cnt > 0) {
        e = rd_kafka_committed(rk, tp, timeout_ms);
        if (e) {
            rc = vb_error_set(err, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? VB_ERR_TIMEOUT
                                                                      : VB_ERR_KAFKA,
                              "kafka committed offsets of group %s: %s", group,
                              rd_kafka_err2str(e));
            goto fail;
        }
        for (int k = 0; k < tp->cnt; k++) {
            const rd_kafka_topic_partition_t *p = &tp->elems[k];
            if (p->err || p->offset < 0)
                continue;
            for (size_t i = 0; i < out->n; i++) {
                if (strcmp(out->items[i].name, p->topic) != 0)
                    continue;
                for (int j = 0; j < out->items[i].npartitions; j++)
                    if (out->items[i].partitions[j].partition == p->partition)
                        out->items[i].partitions[j].committed = p->offset;
            }
        }
    }
    qsort(out->items, out->n, sizeof *out->items, cmp_topic);
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return VB_OK;
fail:
    if (tp)
        rd_kafka_topic_partition_list_destroy(tp);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk)
        rd_kafka_destroy(rk);
    vb_kafka_topic_list_free(out);
    return rc;
}

long long vb_kafka_partition_lag(const vb_kafka_partition_info *p)
{
    long long from = p->committed >= 0 ? p->committed : p->low;
    if (from < p->low) /* committed offset older than retention */
        from = p->low;
    return p->high > from ? p->high - from : 0;
}

void vb_kafka_group_free(vb_kafka_group *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->members[i].member_id);
        free(g->members[i].client_id);
        free(g->members[i].host);
        free(g->members[i].partitions);
    }
    free(g->members);
    free(g->state);
    memset(g, 0, sizeof *g);
}

/* Big-endian reader over a member assignment (Kafka's consumer protocol:
 * int16 version, [int16-length topic, [int32 partition]], user data). */
typedef struct be_reader {
    const unsigned char *p;
    size_t left;
    int bad;
} be_reader;

static long be_read(be_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return 0;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | r->p[i];
    r->p += n;
    r->left -= n;
    return n == 2 ? (long)(int16_t)v : (long)(int32_t)v;
}

/* The partitions of `topic` in an assignment; malformed input gives none. */
static void assigned_partitions(const void *data, size_t len, const char *topic,
                                vb_kafka_member *m)
{
    be_reader r = {data, len, 0};
    be_read(&r, 2);
    long ntopics = be_read(&r, 4);
    for (long t = 0; t < ntopics && !r.bad; t++) {
        long nlen = be_read(&r, 2);
        if (nlen < 0 || (size_t)nlen > r.left) {
            r.bad = 1;
            break;
        }
        int same = topic && strlen(topic) == (size_t)nlen && memcmp(r.p, topic, (size_t)nlen) == 0;
        r.p += nlen;
        r.left -= (size_t)nlen;
        long np = be_read(&r, 4);
        if (np < 0 || (size_t)np > r.left / 4 || np > MAX_PARTITIONS) {
            r.bad = 1;
            break;
        }
        if (same && np > 0 && !m->partitions && (m->partitions = calloc((size_t)np, sizeof(int))))
            m->npartitions = (int)np;
        for (long j = 0; j < np; j++) {
            long part = be_read(&r, 4);
            if (same && m->partitions && j < m->npartitions)
                m->partitions[j] = (int)part;
        }
    }
}

vb_err vb_kafka_group_describe(const char *brokers, const char *const *props, const char *group,
                               const char *topic, int timeout_ms, vb_kafka_group *out,
                               vb_error *err)
{
    memset(out, 0, sizeof *out);
    if (!brokers || !*brokers || !group || !*group)
        return vb_error_set(err, VB_ERR_INVALID, "kafka brokers and a group are needed");
    vb_err rc;
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_group_list *gl = NULL;
    if ((rc = new_client(RD_KAFKA_PRODUCER, brokers, props, NULL, timeout_ms, &rk, err)) != VB_OK)
        goto fail;
    rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, group, &gl, timeout_ms);
    if (e) {
        rc = vb_error_set(err, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? VB_ERR_TIMEOUT : VB_ERR_KAFKA,
                          "kafka group %s: %s", group, rd_kafka_err2str(e));
        goto fail;
    }
    const struct rd_kafka_group_info *gi = NULL;
    for (int i = 0; i < gl->group_cnt; i++)
        if (strcmp(gl->groups[i].group, group) == 0)
            gi = &gl->groups[i];
    if (!(out->state = strdup(gi && gi->state ? gi->state : "Dead"))) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (gi && gi->member_cnt > 0) {
        if (!(out->members = calloc((size_t)gi->member_cnt, sizeof *out->members))) {
            rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < gi->member_cnt; i++) {
            const struct rd_kafka_group_member_info *mi = &gi->members[i];
            vb_kafka_member *m = &out->members[out->n++];
            m->member_id = strdup(mi->member_id ? mi->member_id : "");
            m->client_id = strdup(mi->client_id ? mi->client_id : "");
            m->host = strdup(mi->client_host ? mi->client_host : "");
            if (!m->member_id || !m->client_id || !m->host) {
                rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory");
                goto fail;
            }
            if (mi->member_assignment && mi->member_assignment_size > 0)
                assigned_partitions(mi->member_assignment, (size_t)mi->member_assignment_size,
                                    topic, m);
        }
    }
    rd_kafka_group_list_destroy(gl);
    rd_kafka_destroy(rk);
    return VB_OK;
fail:
    if (gl)
        rd_kafka_group_list_destroy(gl);
    if (rk)
        rd_kafka_destroy(rk);
    vb_kafka_group_free(out);
    return rc;
}
