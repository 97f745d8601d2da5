/*
 * profile.h -- what a kind 0's content says about pictures: its picture and
 * banner URLs, checked before use, and the bytes of those inlined as data: URIs.
 */
#ifndef PFP_PROFILE_H
#define PFP_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest URL kept; longer ones are refused, never cut. data: URIs are bounded by their bytes instead. */
#define PROFILE_MAX_URL 4096

/* How a data: URI's bytes are named in `url`: this prefix and their SHA-256 in lowercase hex. */
#define PROFILE_DATA_PREFIX "data:sha256,"

enum profile_url_state {
    PROFILE_URL_ABSENT,   /* no such field, or not a non-empty string */
    PROFILE_URL_OK,       /* an http(s) URL with a host, or a data: URI with base64 data */
    PROFILE_URL_BAD,      /* unusable: another scheme, unparsable, spaces or controls, data that is not base64 */
    PROFILE_URL_TOO_LONG, /* longer than PROFILE_MAX_URL (not a data: URI) */
    PROFILE_DATA_TOO_BIG, /* a data: URI of more bytes than the limit profile_parse() was given */
};

struct profile_url {
    enum profile_url_state state;
    size_t len; /* of `url`, when state is PROFILE_URL_OK */
    /*
     * NUL-terminated, when state is PROFILE_URL_OK: the URL, or for a data: URI
     * the name of its bytes (PROFILE_DATA_PREFIX and their SHA-256), so that a
     * picture inlined has one name however its URI is written, and a short one.
     */
    char url[PROFILE_MAX_URL + 1];
    uint8_t *data;   /* a data: URI's bytes, else NULL; released by profile_free() */
    size_t data_len; /* of `data` */
};

struct profile {
    struct profile_url picture; /* "picture", else "image", as the seed program read it */
    struct profile_url banner;  /* "banner" */
};

/*
 * Reads a kind 0's content: `len` bytes of JSON text (NUL not needed). data:
 * URIs of more than `max_data_bytes` bytes once decoded are refused. Fills
 * every field of `out`, whatever the outcome; release it with profile_free().
 * Returns 0, or -EINVAL when the content is not a JSON object (both URLs are
 * then absent).
 */
int profile_parse(const char *content, size_t len, size_t max_data_bytes, struct profile *out);

/* Releases the bytes of data: URIs that profile_parse() decoded into `p`. */
void profile_free(struct profile *p);

/* Whether a URL that profile_parse() accepted is http or https (rather than a data: URI's name). */
bool profile_url_is_http(const char *url);

#endif
