/* keymap.h -- a hash map from fixed-length binary keys (pubkeys, hashes) to pointers. */
#ifndef PFP_KEYMAP_H
#define PFP_KEYMAP_H

#include <stddef.h>

#define KEYMAP_MAX_KEY 64

struct keymap;

/*
 * A map whose keys are `keylen` bytes (8 to KEYMAP_MAX_KEY). Keys may be chosen
 * by clients: they are placed by SipHash-2-4 under a key drawn from getrandom()
 * at the first keymap_new() of the process, so that nobody can pick keys that
 * share a bucket. Aborts when memory or the OS random source fails. Free the
 * map with keymap_free(). Not safe for concurrent use of one map.
 */
struct keymap *keymap_new(size_t keylen);

/* Frees the map, and each value with `free_value` when it is not NULL. */
void keymap_free(struct keymap *m, void (*free_value)(void *));

/* The value stored under `key` (keylen bytes), or NULL. */
void *keymap_get(const struct keymap *m, const void *key);

/* Adds `key`, which must not be in the map. The key is copied; the map does not own `value`. */
void keymap_put(struct keymap *m, const void *key, void *value);

/* Removes `key`; returns its value, or NULL when it was not there. */
void *keymap_del(struct keymap *m, const void *key);

size_t keymap_count(const struct keymap *m);

#endif
