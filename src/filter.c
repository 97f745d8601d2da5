/* filter.c -- NIP-01 subscription filters. */
#include "filter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_value(const void *a, const void *b)
{
    const struct filter_value *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Drops repeated elements of a sorted array; returns the new count. */
static size_t unique(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    char *a = base;
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        if (out == 0 || cmp(a + (out - 1) * size, a + i * size) != 0) {
            if (out != i)
                memcpy(a + out * size, a + i * size, size);
            out++;
        }
    }
    return out;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        abort();
    return p;
}

static int parse_hex_list(const json_t *arr, const char *name, uint8_t (**out)[32], size_t *n, char *reason, size_t len)
{
    size_t i;
    json_t *v;

    if (!json_is_array(arr)) {
        snprintf(reason, len, "%s must be an array of 64-character lowercase hex strings", name);
        return -EINVAL;
    }
    *out = xcalloc(json_array_size(arr), 32);
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || hex_decode(json_string_value(v), json_string_length(v), (*out)[i], 32) != 0) {
            snprintf(reason, len, "%s[%zu] is not a 64-character lowercase hex string", name, i);
            return -EINVAL;
        }
    }
    qsort(*out, json_array_size(arr), 32, cmp32);
    *n = unique(*out, json_array_size(arr), 32, cmp32);
    return 0;
}

static int parse_time(const json_t *v, const char *name, int64_t *out, char *reason, size_t len)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(reason, len, "%s must be a non-negative integer", name);
        return -EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

static int parse_tag(const char *key, const json_t *arr, struct filter *f, char *reason, size_t len)
{
    struct filter_tag *t;
    size_t i;
    json_t *v;

    if (!json_is_array(arr)) {
        snprintf(reason, len, "%s must be an array of strings", key);
        return -EINVAL;
    }
    t = &f->tags[f->ntags++];
    t->letter = key[1];
    t->values = xcalloc(json_array_size(arr), sizeof(*t->values));
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v)) {
            snprintf(reason, len, "%s[%zu] is not a string", key, i);
            return -EINVAL;
        }
        t->values[i].len = json_string_length(v);
        t->values[i].s = malloc(t->values[i].len + 1);
        if (t->values[i].s == NULL)
            abort();
        memcpy(t->values[i].s, json_string_value(v), t->values[i].len + 1);
        t->nvalues = i + 1;
    }
    qsort(t->values, t->nvalues, sizeof(*t->values), cmp_value);
    /* Repeated values are dropped (and freed), so that each opens one index stream. */
    size_t out = 0;
    for (size_t k = 0; k < t->nvalues; k++) {
        if (out > 0 && cmp_value(&t->values[out - 1], &t->values[k]) == 0)
            free(t->values[k].s);
        else
            t->values[out++] = t->values[k];
    }
    t->nvalues = out;
    return 0;
}

static bool is_tag_key(const char *key)
{
    return key[0] == '#' && ((key[1] >= 'a' && key[1] <= 'z') || (key[1] >= 'A' && key[1] <= 'Z')) && key[2] == '\0';
}

int filter_parse(const json_t *obj, uint32_t max_limit, struct filter *f, char *reason, size_t len)
{
    const char *key;
    json_t *v;
    int r = 0;

    memset(f, 0, sizeof(*f));
    f->until = INT64_MAX;
    f->limit = max_limit;
    if (!json_is_object(obj)) {
        snprintf(reason, len, "a filter must be a JSON object");
        return -EINVAL;
    }
    f->tags = xcalloc(json_object_size(obj), sizeof(*f->tags));

    json_object_foreach((json_t *)obj, key, v)
    {
        if (strcmp(key, "ids") == 0) {
            f->has_ids = true;
            r = parse_hex_list(v, "ids", &f->ids, &f->nids, reason, len);
        } else if (strcmp(key, "authors") == 0) {
            f->has_authors = true;
            r = parse_hex_list(v, "authors", &f->authors, &f->nauthors, reason, len);
        } else if (strcmp(key, "kinds") == 0) {
            size_t i;
            json_t *k;
            f->has_kinds = true;
            if (!json_is_array(v)) {
                snprintf(reason, len, "kinds must be an array of integers from 0 to 65535");
                r = -EINVAL;
                break;
            }
            f->kinds = xcalloc(json_array_size(v), sizeof(uint32_t));
            json_array_foreach(v, i, k)
            {
                if (!json_is_integer(k) || json_integer_value(k) < 0 || json_integer_value(k) > 65535) {
                    snprintf(reason, len, "kinds[%zu] is not an integer from 0 to 65535", i);
                    r = -EINVAL;
                    break;
                }
                f->kinds[i] = (uint32_t)json_integer_value(k);
            }
            qsort(f->kinds, json_array_size(v), sizeof(uint32_t), cmp_u32);
            f->nkinds = unique(f->kinds, json_array_size(v), sizeof(uint32_t), cmp_u32);
        } else if (strcmp(key, "since") == 0) {
            r = parse_time(v, "since", &f->since, reason, len);
        } else if (strcmp(key, "until") == 0) {
            r = parse_time(v, "until", &f->until, reason, len);
        } else if (strcmp(key, "limit") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                snprintf(reason, len, "limit must be a non-negative integer");
                r = -EINVAL;
            } else if (json_integer_value(v) < max_limit) {
                f->limit = (uint32_t)json_integer_value(v);
            }
        } else if (is_tag_key(key)) {
            for (size_t i = 0; i < f->ntags; i++) {
                if (f->tags[i].letter == key[1]) {
                    snprintf(reason, len, "%s is given twice", key);
                    r = -EINVAL;
                }
            }
            if (r == 0)
                r = parse_tag(key, v, f, reason, len);
        } else {
            snprintf(reason, len, "unsupported filter field \"%.40s\"", key);
            r = -EINVAL;
        }
        if (r != 0)
            break;
    }
    if (r != 0)
        filter_free(f);
    return r;
}

void filter_free(struct filter *f)
{
    free(f->ids);
    free(f->authors);
    free(f->kinds);
    for (size_t i = 0; i < f->ntags; i++) {
        for (size_t j = 0; j < f->tags[i].nvalues; j++)
            free(f->tags[i].values[j].s);
        free(f->tags[i].values);
    }
    free(f->tags);
    memset(f, 0, sizeof(*f));
}

bool filter_has_id(const struct filter *f, const uint8_t id[32])
{
    return !f->has_ids || bsearch(id, f->ids, f->nids, 32, cmp32) != NULL;
}

bool filter_has_author(const struct filter *f, const uint8_t pubkey[32])
{
    return !f->has_authors || bsearch(pubkey, f->authors, f->nauthors, 32, cmp32) != NULL;
}

bool filter_has_kind(const struct filter *f, uint32_t kind)
{
    return !f->has_kinds || bsearch(&kind, f->kinds, f->nkinds, sizeof(uint32_t), cmp_u32) != NULL;
}

static bool tag_matches(const struct filter_tag *t, const struct event_view *ev)
{
    size_t pos = 0;
    char letter;
    struct filter_value key;

    while (event_view_next_tag(ev, &pos, &letter, (const char **)&key.s, &key.len)) {
        if (letter == t->letter && bsearch(&key, t->values, t->nvalues, sizeof(key), cmp_value) != NULL)
            return true;
    }
    return false;
}

bool filter_match(const struct filter *f, const struct event_view *ev)
{
    if (ev->created_at < f->since || ev->created_at > f->until)
        return false;
    if (!filter_has_kind(f, ev->kind) || !filter_has_author(f, ev->pubkey) || !filter_has_id(f, ev->id))
        return false;
    for (size_t i = 0; i < f->ntags; i++) {
        if (!tag_matches(&f->tags[i], ev))
            return false;
    }
    return true;
}
