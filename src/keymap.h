/* keymap.h -- a hash map from fixed-length binary keys (pubkeys, hashes) to pointers. */
#ifndef PFP_KEYMAP_H
#define PFP_KEYMAP_H

#include <stddef.h>

#define KEYMAP_MAX_KEY 64

struct keymap;

/* A map whose keys are `keylen` bytes (8 to KEYMAP_MAX_KEY), already random enough to hash by sampling. */
struct keymap *keymap_new(size_t keylen);

/* Frees the map, and each value with `free_value` when it is not NULL. */
void keymap_free(struct keymap *m, void (*free_value)(void *));

void *keymap_get(const struct keymap *m, const void *key);

/* Adds `key`, which must not be in the map. The key is copied. */
void keymap_put(struct keymap *m, const void *key, void *value);

/* Removes `key`; returns its value, or NULL when it was not there. */
void *keymap_del(struct keymap *m, const void *key);

size_t keymap_count(const struct keymap *m);

#endif
