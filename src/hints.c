/* hints.c -- relay hints per pubkey, in a keymap, with the pubkeys in order of arrival for forgetting the oldest. */
#include "hints.h"

#include <stdlib.h>
#include <string.h>

#include <h2o/linklist.h>
#include <h2o/memory.h>

#include "keymap.h"

struct pubkey_hints {
    uint8_t pubkey[32];
    char *urls[HINTS_PER_PUBKEY]; /* the oldest first */
    size_t n;
    h2o_linklist_t link; /* in hints->order */
};

struct hints {
    struct keymap *map; /* pubkey -> struct pubkey_hints */
    h2o_linklist_t order;
    size_t max;
};

struct hints *hints_new(size_t max_pubkeys)
{
    struct hints *h = calloc(1, sizeof(*h));

    if (h == NULL)
        abort();
    h->map = keymap_new(32);
    h2o_linklist_init_anchor(&h->order);
    h->max = max_pubkeys > 0 ? max_pubkeys : 1;
    return h;
}

static void free_pubkey(void *p)
{
    struct pubkey_hints *ph = p;

    for (size_t i = 0; i < ph->n; i++)
        free(ph->urls[i]);
    free(ph);
}

bool hints_add(struct hints *h, const uint8_t pubkey[32], const char *url)
{
    struct pubkey_hints *ph = keymap_get(h->map, pubkey);

    if (ph == NULL) {
        if (keymap_count(h->map) >= h->max) {
            struct pubkey_hints *old = H2O_STRUCT_FROM_MEMBER(struct pubkey_hints, link, h->order.next);
            h2o_linklist_unlink(&old->link);
            keymap_del(h->map, old->pubkey);
            free_pubkey(old);
        }
        if ((ph = calloc(1, sizeof(*ph))) == NULL)
            abort();
        memcpy(ph->pubkey, pubkey, 32);
        keymap_put(h->map, pubkey, ph);
        h2o_linklist_insert(&h->order, &ph->link);
    }
    for (size_t i = 0; i < ph->n; i++) {
        if (strcmp(ph->urls[i], url) == 0)
            return false;
    }
    if (ph->n == HINTS_PER_PUBKEY) {
        free(ph->urls[0]);
        memmove(ph->urls, ph->urls + 1, (HINTS_PER_PUBKEY - 1) * sizeof(ph->urls[0]));
        ph->n--;
    }
    if ((ph->urls[ph->n++] = strdup(url)) == NULL)
        abort();
    return true;
}

size_t hints_get(const struct hints *h, const uint8_t pubkey[32], const char *const **urls)
{
    const struct pubkey_hints *ph = keymap_get(h->map, pubkey);

    if (ph == NULL)
        return 0;
    *urls = (const char *const *)ph->urls;
    return ph->n;
}

void hints_free(struct hints *h)
{
    if (h == NULL)
        return;
    keymap_free(h->map, free_pubkey);
    free(h);
}
