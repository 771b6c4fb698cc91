/*
 * metrics.c — the Prometheus registry of metrics.h.
 *
 * Families live in a singly linked list in registration order; each family
 * keeps its series in a growable array, found through an open-addressing
 * index on a hash of their label values (a family labelled by job can hold
 * VB_METRICS_SERIES_MAX series, and every firing looks its own up). One mutex per registry guards all of
 * it: updates are rare enough (a few per request or per run) that a finer
 * scheme would buy nothing. Label values are escaped (\\, \", \n) on output.
 */
#include "visionbatch/metrics.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "visionbatch/buf.h"

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } metric_kind;

typedef struct series {
    char **values; /* nlabels strings */
    uint64_t hash; /* values_hash of values */
    double value;  /* counter/gauge */
    double sum;    /* histogram */
    unsigned long long count;
    unsigned long long *bucket_counts; /* nbuckets, non-cumulative */
} series;

struct vb_metric {
    vb_metrics *reg;
    metric_kind kind;
    char *name, *help;
    char *labels_spec;
    char *label_names[VB_METRICS_LABELS_MAX];
    size_t nlabels;
    double buckets[VB_METRICS_BUCKETS_MAX];
    size_t nbuckets;
    series *series;
    size_t nseries, capseries;
    uint32_t *slots; /* nslots (a power of two, 0 before the first series):
                        series index + 1, 0 = empty */
    size_t nslots;
    struct vb_metric *next;
};

struct vb_metrics {
    pthread_mutex_t mu;
    vb_metric *head, *tail;
    unsigned long long dropped;
};

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10};

vb_metrics *vb_metrics_new(void)
{
    vb_metrics *r = calloc(1, sizeof *r);
    if (r && pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

static void metric_free(vb_metric *m)
{
    for (size_t i = 0; i < m->nseries; i++) {
        for (size_t j = 0; j < m->nlabels; j++)
            free(m->series[i].values[j]);
        free(m->series[i].values);
        free(m->series[i].bucket_counts);
    }
    free(m->series);
    free(m->slots);
    for (size_t j = 0; j < m->nlabels; j++)
        free(m->label_names[j]);
    free(m->name);
    free(m->help);
    free(m->labels_spec);
    free(m);
}

void vb_metrics_free(vb_metrics *r)
{
    if (!r)
        return;
    for (vb_metric *m = r->head, *next; m; m = next) {
        next = m->next;
        metric_free(m);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int valid_name(const char *s, int allow_colon)
{
    if (!s || !*s || isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || (allow_colon && *s == ':')))
            return 0;
    return 1;
}

static int split_labels(vb_metric *m, const char *spec)
{
    if (!spec || !*spec)
        return 1;
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (m->nlabels == VB_METRICS_LABELS_MAX || n == 0)
            return 0;
        char *name = strndup(p, n);
        if (!name)
            return 0;
        m->label_names[m->nlabels++] = name;
        if (!valid_name(name, 0) || strncmp(name, "__", 2) == 0 || strcmp(name, "le") == 0)
            return 0;
        p += n;
        if (*p == ',')
            p++;
    }
    return 1;
}

static vb_metric *do_register(vb_metrics *r, metric_kind kind, const char *name, const char *help,
                              const char *labels, const double *buckets, size_t nbuckets)
{
    if (!r || !valid_name(name, 1))
        return NULL;
    if (kind == KIND_HISTOGRAM) {
        if (!buckets) {
            buckets = default_buckets;
            nbuckets = sizeof default_buckets / sizeof default_buckets[0];
        }
        if (nbuckets == 0 || nbuckets > VB_METRICS_BUCKETS_MAX)
            return NULL;
        for (size_t i = 0; i < nbuckets; i++)
            if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1]))
                return NULL;
    }
    const char *spec = labels ? labels : "";
    pthread_mutex_lock(&r->mu);
    for (vb_metric *m = r->head; m; m = m->next) {
        if (strcmp(m->name, name) == 0) {
            vb_metric *found = (m->kind == kind && strcmp(m->labels_spec, spec) == 0) ? m : NULL;
            pthread_mutex_unlock(&r->mu);
            return found;
        }
    }
    vb_metric *m = calloc(1, sizeof *m);
    if (!m)
        goto fail;
    m->reg = r;
    m->kind = kind;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    m->labels_spec = strdup(spec);
    if (!m->name || !m->help || !m->labels_spec || !split_labels(m, spec))
        goto fail;
    if (kind == KIND_HISTOGRAM) {
        memcpy(m->buckets, buckets, nbuckets * sizeof *buckets);
        m->nbuckets = nbuckets;
    }
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    pthread_mutex_unlock(&r->mu);
    return m;
fail:
    pthread_mutex_unlock(&r->mu);
    if (m)
        metric_free(m);
    return NULL;
}

vb_metric *vb_metrics_counter(vb_metrics *r, const char *name, const char *help,
                              const char *labels)
{
    return do_register(r, KIND_COUNTER, name, help, labels, NULL, 0);
}

vb_metric *vb_metrics_gauge(vb_metrics *r, const char *name, const char *help, const char *labels)
{
    return do_register(r, KIND_GAUGE, name, help, labels, NULL, 0);
}

vb_metric *vb_metrics_histogram(vb_metrics *r, const char *name, const char *help,
                                const char *labels, const double *buckets, size_t nbuckets)
{
    return do_register(r, KIND_HISTOGRAM, name, help, labels, buckets, nbuckets);
}

/* Finds or creates the series; caller holds the lock. NULL when the values
 * are missing, the family is full or memory ran out. */
/* FNV-1a over the label values, each followed by a 0xff separator. */
static uint64_t values_hash(const vb_metric *m, const char *const *values)
{
    uint64_t h = VB__FNV_START;
    for (size_t j = 0; j < m->nlabels; j++)
        h = vb__fnv1a_step(vb__fnv1a_str(h, values[j] ? values[j] : ""), 0xff);
    return h;
}

static int same_values(const vb_metric *m, const series *s, uint64_t hash,
                       const char *const *values)
{
    if (s->hash != hash)
        return 0;
    for (size_t j = 0; j < m->nlabels; j++)
        if (strcmp(s->values[j], values[j] ? values[j] : "") != 0)
            return 0;
    return 1;
}

/* Files series `i` in the index, doubling it first when it would be more
 * than half full. 0 when out of memory (the series is then not kept). */
static int index_series(vb_metric *m, size_t i)
{
    if ((m->nseries + 1) * 2 > m->nslots) {
        size_t n = m->nslots ? m->nslots * 2 : 8;
        uint32_t *slots = calloc(n, sizeof *slots);
        if (!slots)
            return 0;
        for (size_t k = 0; k < m->nseries; k++) {
            size_t at = (size_t)m->series[k].hash & (n - 1);
            while (slots[at])
                at = (at + 1) & (n - 1);
            slots[at] = (uint32_t)k + 1;
        }
        free(m->slots);
        m->slots = slots;
        m->nslots = n;
    }
    size_t at = (size_t)m->series[i].hash & (m->nslots - 1);
    while (m->slots[at])
        at = (at + 1) & (m->nslots - 1);
    m->slots[at] = (uint32_t)i + 1;
    return 1;
}

static series *find_series(vb_metric *m, const char *const *values, int create)
{
    if (m->nlabels && !values)
        return NULL;
    uint64_t hash = values_hash(m, values);
    for (size_t at = (size_t)hash & (m->nslots - 1); m->nslots && m->slots[at];
         at = (at + 1) & (m->nslots - 1))
        if (same_values(m, &m->series[m->slots[at] - 1], hash, values))
            return &m->series[m->slots[at] - 1];
    if (!create)
        return NULL;
    if (m->nseries == VB_METRICS_SERIES_MAX) {
        m->reg->dropped++;
        return NULL;
    }
    if (m->nseries == m->capseries) {
        size_t cap = m->capseries ? m->capseries * 2 : 4;
        series *p = realloc(m->series, cap * sizeof *p);
        if (!p)
            return NULL;
        m->series = p;
        m->capseries = cap;
    }
    series s = {0};
    s.values = calloc(m->nlabels ? m->nlabels : 1, sizeof *s.values);
    if (!s.values)
        return NULL;
    if (m->kind == KIND_HISTOGRAM) {
        s.bucket_counts = calloc(m->nbuckets, sizeof *s.bucket_counts);
        if (!s.bucket_counts)
            goto fail;
    }
    for (size_t j = 0; j < m->nlabels; j++)
        if (!(s.values[j] = strdup(values[j] ? values[j] : "")))
            goto fail;
    s.hash = hash;
    m->series[m->nseries] = s;
    if (!index_series(m, m->nseries))
        goto fail;
    return &m->series[m->nseries++];
fail:
    for (size_t j = 0; j < m->nlabels; j++)
        free(s.values[j]);
    free(s.values);
    free(s.bucket_counts);
    return NULL;
}

static void update(vb_metric *m, const char *const *values, double v, int op)
{
    if (!m || isnan(v))
        return;
    pthread_mutex_lock(&m->reg->mu);
    series *s = find_series(m, values, 1);
    if (s) {
        if (op == 0 && m->kind != KIND_HISTOGRAM && !(m->kind == KIND_COUNTER && v < 0))
            s->value += v;
        else if (op == 1 && m->kind == KIND_GAUGE)
            s->value = v;
        else if (op == 2 && m->kind == KIND_HISTOGRAM) {
            s->sum += v;
            s->count++;
            for (size_t i = 0; i < m->nbuckets; i++)
                if (v <= m->buckets[i]) {
                    s->bucket_counts[i]++;
                    break;
                }
        }
    }
    pthread_mutex_unlock(&m->reg->mu);
}

void vb_metric_add(vb_metric *m, const char *const *values, double v)
{
    update(m, values, v, 0);
}

void vb_metric_inc(vb_metric *m, const char *const *values)
{
    update(m, values, 1, 0);
}

void vb_metric_set(vb_metric *m, const char *const *values, double v)
{
    update(m, values, v, 1);
}

void vb_metric_observe(vb_metric *m, const char *const *values, double v)
{
    update(m, values, v, 2);
}

double vb_metric_value(vb_metric *m, const char *const *values)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->reg->mu);
    series *s = find_series(m, values, 0);
    double v = !s ? 0 : m->kind == KIND_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&m->reg->mu);
    return v;
}

static vb_err put_escaped(vb_buf *b, const char *s, int help)
{
    vb_err rc = VB_OK;
    for (; *s && rc == VB_OK; s++) {
        if (*s == '\\')
            rc = vb_buf_append_str(b, "\\\\");
        else if (*s == '\n')
            rc = vb_buf_append_str(b, "\\n");
        else if (*s == '"' && !help)
            rc = vb_buf_append_str(b, "\\\"");
        else
            rc = vb_buf_append(b, s, 1);
    }
    return rc;
}

static vb_err put_num(vb_buf *b, double v)
{
    if (isinf(v))
        return vb_buf_append_str(b, v > 0 ? "+Inf" : "-Inf");
    return vb_buf_printf(b, "%.17g", v);
}

/* name{l1="v1",…[,le="x"]} */
static vb_err put_series_name(vb_buf *b, const vb_metric *m, const series *s, const char *suffix,
                              const char *le)
{
    vb_err rc = vb_buf_printf(b, "%s%s", m->name, suffix);
    if (rc != VB_OK || (m->nlabels == 0 && !le))
        return rc;
    rc = vb_buf_append_str(b, "{");
    for (size_t j = 0; j < m->nlabels && rc == VB_OK; j++) {
        rc = vb_buf_printf(b, "%s%s=\"", j ? "," : "", m->label_names[j]);
        if (rc == VB_OK)
            rc = put_escaped(b, s->values[j], 0);
        if (rc == VB_OK)
            rc = vb_buf_append_str(b, "\"");
    }
    if (rc == VB_OK && le)
        rc = vb_buf_printf(b, "%sle=\"%s\"", m->nlabels ? "," : "", le);
    if (rc == VB_OK)
        rc = vb_buf_append_str(b, "}");
    return rc;
}

static vb_err render_metric(vb_buf *b, const vb_metric *m)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    vb_err rc = vb_buf_printf(b, "# HELP %s ", m->name);
    if (rc == VB_OK)
        rc = put_escaped(b, m->help, 1);
    if (rc == VB_OK)
        rc = vb_buf_printf(b, "\n# TYPE %s %s\n", m->name, type_names[m->kind]);
    for (size_t i = 0; i < m->nseries && rc == VB_OK; i++) {
        const series *s = &m->series[i];
        if (m->kind != KIND_HISTOGRAM) {
            rc = put_series_name(b, m, s, "", NULL);
            if (rc == VB_OK)
                rc = vb_buf_append_str(b, " ");
            if (rc == VB_OK)
                rc = put_num(b, s->value);
            if (rc == VB_OK)
                rc = vb_buf_append_str(b, "\n");
            continue;
        }
        unsigned long long cum = 0;
        for (size_t k = 0; k <= m->nbuckets && rc == VB_OK; k++) {
            char le[40];
            if (k < m->nbuckets) {
                cum += s->bucket_counts[k];
                snprintf(le, sizeof le, "%.17g", m->buckets[k]);
            } else {
                cum = s->count;
                snprintf(le, sizeof le, "+Inf");
            }
            rc = put_series_name(b, m, s, "_bucket", le);
            if (rc == VB_OK)
                rc = vb_buf_printf(b, " %llu\n", cum);
        }
        if (rc == VB_OK)
            rc = put_series_name(b, m, s, "_sum", NULL);
        if (rc == VB_OK)
            rc = vb_buf_append_str(b, " ");
        if (rc == VB_OK)
            rc = put_num(b, s->sum);
        if (rc == VB_OK)
            rc = vb_buf_append_str(b, "\n");
        if (rc == VB_OK)
            rc = put_series_name(b, m, s, "_count", NULL);
        if (rc == VB_OK)
            rc = vb_buf_printf(b, " %llu\n", s->count);
    }
    return rc;
}

vb_err vb_metrics_render(vb_metrics *r, char **out, vb_error *err)
{
    vb_buf b = {0};
    vb_err rc = VB_OK;
    *out = NULL;
    if (!r)
        return vb_error_set(err, VB_ERR_INVALID, "metrics: no registry");
    pthread_mutex_lock(&r->mu);
    for (const vb_metric *m = r->head; m && rc == VB_OK; m = m->next)
        rc = render_metric(&b, m);
    if (rc == VB_OK)
        rc = vb_buf_printf(&b,
                           "# HELP visionbatch_metrics_dropped_series_total Series dropped "
                           "because a family reached its series cap.\n"
                           "# TYPE visionbatch_metrics_dropped_series_total counter\n"
                           "visionbatch_metrics_dropped_series_total %llu\n",
                           r->dropped);
    pthread_mutex_unlock(&r->mu);
    if (rc != VB_OK) {
        vb_buf_free(&b);
        return vb_error_set(err, rc, "metrics: rendering failed");
    }
    *out = vb_buf_steal(&b);
    return VB_OK;
}
