/*
 * imgproxy.h -- imgproxy's URL language, for clients that proxy images through
 * imgproxy (Snort, Coracle): "/{signature}/{options}/{source}". The signature
 * is checked (HMAC-SHA256 over salt and path, under one of several keys), the
 * options parsed with imgproxy's names and defaults, and the source decoded
 * (base64url in segments with an optional ".ext", or "plain/" percent-encoded
 * with an optional "@ext"). Parsing only.
 */
#ifndef PFP_IMGPROXY_H
#define PFP_IMGPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "variant.h"

/* The longest key and salt, in bytes (imgproxy's are hex, usually 32 or 64 bytes). */
#define IMGPROXY_KEY_MAX    128
#define IMGPROXY_SOURCE_MAX 65536

struct imgproxy_key {
    uint8_t key[IMGPROXY_KEY_MAX], salt[IMGPROXY_KEY_MAX];
    size_t key_len, salt_len;
};

struct imgproxy_options {
    const struct imgproxy_key *keys; /* any of them signs; several allow rotation */
    size_t nkeys;
    size_t signature_size; /* bytes of the HMAC kept, 1 to 32 */
    bool allow_unsigned;   /* with no keys: accept any signature text (imgproxy's "insecure") */
};

enum imgproxy_resize { IMGPROXY_FIT, IMGPROXY_FILL, IMGPROXY_FILL_DOWN, IMGPROXY_FORCE, IMGPROXY_AUTO };

struct imgproxy_request {
    enum imgproxy_resize resize;
    int width, height; /* 0 keeps the aspect ratio (both 0: the source's size) */
    bool enlarge, extend;
    double dpr;  /* 1 unless given */
    int quality; /* 0: the format's default */
    bool format_named;
    enum variant_format format; /* when format_named */
    enum image_gravity gravity;
    char *source; /* the source URL, NUL-terminated; free with imgproxy_request_free() */
};

/* Hex key and salt as imgproxy's own settings spell them. Returns 0, or -EINVAL. */
int imgproxy_key_parse(const char *key_hex, const char *salt_hex, struct imgproxy_key *out);

/*
 * Parses `path` (what follows the endpoint's prefix, starting with '/').
 * Returns 0; -ENOENT when no key is configured and unsigned requests are not
 * allowed (the endpoint is off); -EACCES for a wrong or missing signature;
 * -EINVAL for a malformed path, option or source, with the reason (naming the
 * option) in `err`. Signatures are compared in constant time.
 */
int imgproxy_parse(const struct imgproxy_options *o, const char *path, size_t len, struct imgproxy_request *out,
                   char *err, size_t errlen);

void imgproxy_request_free(struct imgproxy_request *r);

/*
 * The geometry `r` asks for from a master of `mw` x `mh`, as imgproxy works it out from a source: its resizing
 * type (`auto` settled by the orientations), zero sizes taken from the aspect ratio, `dpr`, `enlarge` and
 * `extend`. Sizes asked for are capped at `max_size` before `dpr`; every figure ends between 1 and
 * IMAGE_VARIANT_MAX_SIZE. The gravity is the centre's when nothing is cut, so that equal pictures share a key.
 */
void imgproxy_geometry(const struct imgproxy_request *r, int mw, int mh, int max_size, struct image_box *out);

#endif
