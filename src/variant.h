/*
 * variant.h -- which variant of a picture a request asks for: its size on a
 * fixed ladder, its format (named, or negotiated from Accept), whether it
 * moves, and what a pubkey without a picture gets. Parsing only; the variants
 * are made and cached elsewhere.
 */
#ifndef PFP_VARIANT_H
#define PFP_VARIANT_H

#include <h2o/memory.h>
#include <stdbool.h>
#include <stddef.h>

enum variant_format { VARIANT_JPEG, VARIANT_WEBP, VARIANT_AVIF, VARIANT_PNG, VARIANT_GIF };

enum variant_fallback {
    VARIANT_FALLBACK_CONFIGURED, /* no `default` in the request: the operator's choice */
    VARIANT_FALLBACK_404,
    VARIANT_FALLBACK_IDENTICON,
    VARIANT_FALLBACK_BLANK,
};

/* The sizes variants are made at, smallest first, so that caches see a bounded set. */
struct variant_ladder {
    const int *steps;
    size_t n;
};

extern const struct variant_ladder VARIANT_AVATAR_LADDER; /* 32 to 1024 */
extern const struct variant_ladder VARIANT_BANNER_LADDER; /* the same, and 1440 and 1920 */

/* The widest banner asked for and made. */
#define VARIANT_BANNER_MAX 1920

struct variant_options {
    const struct variant_ladder *ladder;
    int default_size;                     /* with neither size nor dpr: exactly this, as before variants */
    int max_size;                         /* the largest size asked for and made */
    const enum variant_format *negotiate; /* chosen from Accept in this order; JPEG when none is accepted */
    size_t nnegotiate;
    bool width_only; /* banners: sizes are widths */
};

struct variant {
    int size;
    bool sized; /* `size` or `dpr` was given; else the size is the default */
    enum variant_format format;
    enum variant_format still_format; /* with `animated`: the format for a picture that does not move */
    bool width_only;                  /* `size` is a width (a banner's), not the longer side */
    bool negotiated;                  /* the format came from Accept: the answer varies on it */
    bool animated;
    enum variant_fallback fallback;
};

/*
 * The variant that `query` (the part after '?', empty when none) asks for,
 * with `accept` the request's Accept header (empty when none): `size` (or `s`,
 * `w`) from 1 to max_size, `dpr` from 1 to 4, `format` (or `f`), `animated`
 * (or `a`), `default` (or `d`); other parameters are ignored, as CDNs add their
 * own. Returns 0, or -EINVAL with the parameter and what it allows in `err`.
 */
int variant_parse(const struct variant_options *o, h2o_iovec_t query, h2o_iovec_t accept, struct variant *out,
                  char *err, size_t errlen);

/* Whether `accept` names `mime` (e.g. "image/webp") with a quality above zero; wildcards do not count. */
bool variant_accepts(h2o_iovec_t accept, const char *mime);

/* The first of `formats` that `accept` names; JPEG when none is. */
enum variant_format variant_negotiate(const enum variant_format *formats, size_t n, h2o_iovec_t accept);

/* A plain positive decimal ("2", "1.5", "2.625"), as browsers report device pixel ratios: no sign or exponent. */
bool variant_parse_decimal(h2o_iovec_t v, double *out);

/* "jpeg", "webp", ... and "image/jpeg", ... */
const char *variant_format_name(enum variant_format f);
const char *variant_format_mime(enum variant_format f);

/* The enum image_type of `f`. */
int variant_image_type(enum variant_format f);

/* A format by its name ("jpg" too). Returns 0 or -EINVAL. */
int variant_format_parse(h2o_iovec_t name, enum variant_format *out);

#endif
