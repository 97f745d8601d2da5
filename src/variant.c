/* variant.c -- the variant parameters of picture requests, and format negotiation from Accept. */
#include "variant.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "http.h"
#include "image.h"

static const int AVATAR_STEPS[] = {32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024};
static const int BANNER_STEPS[] = {32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1440, 1920};

const struct variant_ladder VARIANT_AVATAR_LADDER = {AVATAR_STEPS, sizeof(AVATAR_STEPS) / sizeof(AVATAR_STEPS[0])};
const struct variant_ladder VARIANT_BANNER_LADDER = {BANNER_STEPS, sizeof(BANNER_STEPS) / sizeof(BANNER_STEPS[0])};

static const struct {
    const char *name, *mime;
} FORMATS[] = {
    [VARIANT_JPEG] = {"jpeg", "image/jpeg"}, [VARIANT_WEBP] = {"webp", "image/webp"},
    [VARIANT_AVIF] = {"avif", "image/avif"}, [VARIANT_PNG] = {"png", "image/png"},
    [VARIANT_GIF] = {"gif", "image/gif"},
};

const char *variant_format_name(enum variant_format f)
{
    return FORMATS[f].name;
}

const char *variant_format_mime(enum variant_format f)
{
    return FORMATS[f].mime;
}

static bool token_is(h2o_iovec_t v, const char *s)
{
    return v.len == strlen(s) && strncasecmp(v.base, s, v.len) == 0;
}

int variant_format_parse(h2o_iovec_t name, enum variant_format *out)
{
    /* GIF is what an animation becomes for a client without WebP, not a format to ask for. */
    for (enum variant_format f = VARIANT_JPEG; f <= VARIANT_PNG; f++) {
        if (token_is(name, FORMATS[f].name)) {
            *out = f;
            return 0;
        }
    }
    if (token_is(name, "jpg")) {
        *out = VARIANT_JPEG;
        return 0;
    }
    return -EINVAL;
}

/* The first of `names` present in the query. */
static bool param(h2o_iovec_t query, const char *const *names, h2o_iovec_t *value)
{
    for (; *names != NULL; names++)
        if (http_query_find(query, *names, value))
            return true;
    return false;
}

/* Digits only, no sign or spaces: 1 to `max`. */
static bool parse_int(h2o_iovec_t v, int max, int *out)
{
    long n = 0;

    if (v.len == 0 || v.len > 9)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return false;
        n = n * 10 + (v.base[i] - '0');
    }
    if (n < 1 || n > max)
        return false;
    *out = (int)n;
    return true;
}

bool variant_parse_decimal(h2o_iovec_t v, double *out)
{
    double n = 0, scale = 1;
    bool point = false, digits = false;

    if (v.len == 0 || v.len > 12)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.base[i];
        if (c == '.' && !point) {
            point = true;
        } else if (c >= '0' && c <= '9') {
            digits = true;
            if (point)
                n += (c - '0') * (scale /= 10);
            else
                n = n * 10 + (c - '0');
        } else {
            return false;
        }
    }
    if (!digits || n <= 0)
        return false;
    *out = n;
    return true;
}

static bool parse_bool(h2o_iovec_t v, bool *out)
{
    if (token_is(v, "1") || token_is(v, "true") || token_is(v, "yes")) {
        *out = true;
        return true;
    }
    if (token_is(v, "0") || token_is(v, "false") || token_is(v, "no")) {
        *out = false;
        return true;
    }
    return false;
}

/* `n` pixels rounded up to the ladder, and never past max_size. */
static int on_ladder(const struct variant_options *o, double n)
{
    /* 1.1 x 100 is 110.00000000000001: a hair over an integer is that integer. */
    int want = (int)ceil(n - 1e-9);

    for (size_t i = 0; i < o->ladder->n; i++)
        if (o->ladder->steps[i] >= want)
            return o->ladder->steps[i] < o->max_size ? o->ladder->steps[i] : o->max_size;
    return o->max_size;
}

/* The next `sep`-separated part of [*p, end), blanks around it trimmed; *p moves past the separator. */
static h2o_iovec_t next_part(const char **p, const char *end, char sep)
{
    const char *s = *p, *e = memchr(s, sep, (size_t)(end - s));

    if (e == NULL)
        e = end;
    *p = e < end ? e + 1 : end;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return h2o_iovec_init(s, (size_t)(e - s));
}

bool variant_accepts(h2o_iovec_t accept, const char *mime)
{
    const char *p = accept.base, *end = accept.base + accept.len;

    while (p < end) {
        h2o_iovec_t item = next_part(&p, end, ',');
        const char *q = item.base, *qend = item.base + item.len;
        h2o_iovec_t type = next_part(&q, qend, ';');
        double quality = 1;

        while (q < qend) {
            h2o_iovec_t prm = next_part(&q, qend, ';');
            if (prm.len > 2 && (prm.base[0] == 'q' || prm.base[0] == 'Q') && prm.base[1] == '=') {
                char num[8] = {0};
                memcpy(num, prm.base + 2, prm.len - 2 < sizeof(num) - 1 ? prm.len - 2 : sizeof(num) - 1);
                quality = strtod(num, NULL);
            }
        }
        if (token_is(type, mime) && quality > 0)
            return true;
    }
    return false;
}

int variant_parse(const struct variant_options *o, h2o_iovec_t query, h2o_iovec_t accept, struct variant *out,
                  char *err, size_t errlen)
{
    static const char *const SIZE[] = {"size", "s", "w", NULL}, *const DPR[] = {"dpr", NULL};
    static const char *const FORMAT[] = {"format", "f", NULL}, *const ANIMATED[] = {"animated", "a", NULL};
    static const char *const DEFAULT[] = {"default", "d", NULL};
    h2o_iovec_t v;
    int size = o->default_size;
    double dpr = 1;
    bool sized = false, named = false;

    *out = (struct variant){.format = VARIANT_JPEG};
    if (param(query, SIZE, &v)) {
        if (!parse_int(v, o->max_size, &size))
            return err_set(err, errlen, -EINVAL, "size: must be an integer from 1 to %d", o->max_size);
        sized = true;
    }
    if (param(query, DPR, &v) && (!variant_parse_decimal(v, &dpr) || dpr < 1 || dpr > 4))
        return err_set(err, errlen, -EINVAL, "dpr: must be a number from 1 to 4, such as 2 or 1.5");
    if (param(query, FORMAT, &v)) {
        if (variant_format_parse(v, &out->format) != 0)
            return err_set(err, errlen, -EINVAL, "format: must be one of jpeg, webp, avif, png");
        named = true;
    }
    if (param(query, ANIMATED, &v) && !parse_bool(v, &out->animated))
        return err_set(err, errlen, -EINVAL, "animated: must be 1 or 0");
    if (param(query, DEFAULT, &v)) {
        if (token_is(v, "404"))
            out->fallback = VARIANT_FALLBACK_404;
        else if (token_is(v, "identicon"))
            out->fallback = VARIANT_FALLBACK_IDENTICON;
        else if (token_is(v, "blank"))
            out->fallback = VARIANT_FALLBACK_BLANK;
        else
            return err_set(err, errlen, -EINVAL, "default: must be one of 404, identicon, blank");
    }
    if (out->animated && named && out->format != VARIANT_WEBP)
        return err_set(err, errlen, -EINVAL, "animated: an animation is served as webp (or gif), not as %s",
                       variant_format_name(out->format));
    out->width_only = o->width_only;
    out->sized = sized || dpr != 1;
    out->size = out->sized ? on_ladder(o, size * dpr) : o->default_size;
    if (!named) {
        out->negotiated = true;
        out->format = variant_negotiate(o->negotiate, o->nnegotiate, accept);
    }
    out->still_format = out->format;
    if (out->animated && !named)
        out->format = variant_accepts(accept, "image/webp") ? VARIANT_WEBP : VARIANT_GIF;
    return 0;
}

enum variant_format variant_negotiate(const enum variant_format *formats, size_t n, h2o_iovec_t accept)
{
    for (size_t i = 0; i < n; i++)
        if (variant_accepts(accept, variant_format_mime(formats[i])))
            return formats[i];
    return VARIANT_JPEG;
}

int variant_image_type(enum variant_format f)
{
    switch (f) {
    case VARIANT_WEBP: return IMAGE_WEBP;
    case VARIANT_AVIF: return IMAGE_AVIF;
    case VARIANT_PNG: return IMAGE_PNG;
    case VARIANT_GIF: return IMAGE_GIF;
    default: return IMAGE_JPEG;
    }
}
