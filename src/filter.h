/* filter.h -- NIP-01 subscription filters: strict parsing and matching against stored events. */
#ifndef PFP_FILTER_H
#define PFP_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct filter_value {
    char *s; /* owned */
    size_t len;
};

struct filter_tag {
    char letter;
    struct filter_value *values; /* sorted, owned */
    size_t nvalues;
};

/*
 * A filter. A field that was absent matches everything; a field given as an
 * empty array matches nothing. Arrays are sorted for binary search. Everything is
 * owned by the filter and released by filter_free().
 */
struct filter {
    uint8_t (*ids)[32];
    size_t nids;
    uint8_t (*authors)[32];
    size_t nauthors;
    uint32_t *kinds;
    size_t nkinds;
    bool has_ids, has_authors, has_kinds;
    int64_t since;  /* 0 when absent */
    int64_t until;  /* INT64_MAX when absent */
    uint32_t limit; /* at most max_limit; max_limit when absent */
    struct filter_tag *tags;
    size_t ntags;
};

/*
 * Parses one filter object. `limit` is clamped to `max_limit`. Returns 0, or
 * -EINVAL with a reason in `reason` (for an "invalid:" reply); on failure nothing
 * is left to free.
 */
int filter_parse(const json_t *obj, uint32_t max_limit, struct filter *f, char *reason, size_t len);
void filter_free(struct filter *f);

/* True when the event matches every condition of the filter (the limit aside). */
bool filter_match(const struct filter *f, const struct event_view *ev);

/* Whether `id`, `pubkey` or `kind` is in the filter's list (true when the filter has no such list). */
bool filter_has_id(const struct filter *f, const uint8_t id[32]);
bool filter_has_author(const struct filter *f, const uint8_t pubkey[32]);
bool filter_has_kind(const struct filter *f, uint32_t kind);

#endif
