/* profile.h -- what a kind 0's content says about pictures: its picture and banner URLs, checked before use. */
#ifndef PFP_PROFILE_H
#define PFP_PROFILE_H

#include <stdbool.h>
#include <stddef.h>

/* The longest URL kept; longer ones are refused, never cut. */
#define PROFILE_MAX_URL 4096

enum profile_url_state {
    PROFILE_URL_ABSENT, /* no such field, or not a non-empty string */
    PROFILE_URL_OK,     /* an http(s) URL with a host, or a data: URI */
    PROFILE_URL_BAD,    /* present but unusable: another scheme, unparsable, too long, spaces or controls */
};

struct profile_url {
    enum profile_url_state state;
    size_t len;                    /* of `url`, when state is PROFILE_URL_OK */
    char url[PROFILE_MAX_URL + 1]; /* NUL-terminated, when state is PROFILE_URL_OK */
};

struct profile {
    struct profile_url picture; /* "picture", else "image", as the seed program read it */
    struct profile_url banner;  /* "banner" */
};

/*
 * Reads a kind 0's content: `len` bytes of JSON text (NUL not needed). Fills
 * every field of `out`, whatever the outcome. Returns 0, or -EINVAL when the
 * content is not a JSON object (both URLs are then absent).
 */
int profile_parse(const char *content, size_t len, struct profile *out);

/* Whether a URL that profile_parse() accepted is http or https (rather than a data: URI). */
bool profile_url_is_http(const char *url);

#endif
