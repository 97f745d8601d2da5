/* imgproxy.c -- imgproxy URLs: the signature, the processing options and the source. */
#include "imgproxy.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "err.h"
#include "hex.h"

/* One `/`-separated part of a path, or one `:`-separated argument of an option. */
struct span {
    const char *p;
    size_t n;
};

static bool span_is(struct span s, const char *word)
{
    return s.n == strlen(word) && memcmp(s.p, word, s.n) == 0;
}

int imgproxy_key_parse(const char *key_hex, const char *salt_hex, struct imgproxy_key *out)
{
    size_t kl = strlen(key_hex), sl = strlen(salt_hex);

    if (kl == 0 || kl % 2 != 0 || kl / 2 > IMGPROXY_KEY_MAX || sl % 2 != 0 || sl / 2 > IMGPROXY_KEY_MAX ||
        hex_decode_any_case(key_hex, kl, out->key, kl / 2) != 0 ||
        hex_decode_any_case(salt_hex, sl, out->salt, sl / 2) != 0)
        return -EINVAL;
    out->key_len = kl / 2;
    out->salt_len = sl / 2;
    return 0;
}

/* base64url without padding, as imgproxy writes signatures. */
static size_t base64url(const uint8_t *in, size_t n, char *out)
{
    char tmp[64];
    int len = EVP_EncodeBlock((unsigned char *)tmp, in, (int)n);

    while (len > 0 && tmp[len - 1] == '=')
        len--;
    for (int i = 0; i < len; i++)
        out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
    out[len] = '\0';
    return (size_t)len;
}

static bool signature_ok(const struct imgproxy_options *o, struct span sig, const char *signed_part, size_t len)
{
    bool ok = false;

    for (size_t i = 0; i < o->nkeys; i++) {
        const struct imgproxy_key *k = &o->keys[i];
        uint8_t mac[EVP_MAX_MD_SIZE], *msg = malloc(k->salt_len + len + 1);
        unsigned maclen = 0;
        char want[64];
        size_t wlen;

        if (msg == NULL)
            abort();
        memcpy(msg, k->salt, k->salt_len);
        memcpy(msg + k->salt_len, signed_part, len);
        if (HMAC(EVP_sha256(), k->key, (int)k->key_len, msg, k->salt_len + len, mac, &maclen) == NULL)
            abort();
        free(msg);
        wlen = base64url(mac, o->signature_size < maclen ? o->signature_size : maclen, want);
        /* Every key is tried, whichever matches, so that the time taken says nothing. */
        ok |= wlen == sig.n && CRYPTO_memcmp(want, sig.p, wlen) == 0;
    }
    return ok;
}

/* The next part of [*p, end) up to `sep`; *p moves past it. */
static struct span next(const char **p, const char *end, char sep)
{
    const char *s = *p, *e = memchr(s, sep, (size_t)(end - s));

    if (e == NULL)
        e = end;
    *p = e < end ? e + 1 : end;
    return (struct span){s, (size_t)(e - s)};
}

static bool parse_uint(struct span s, int max, int *out)
{
    long v = 0;

    if (s.n == 0 || s.n > 6)
        return false;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        v = v * 10 + (s.p[i] - '0');
    }
    if (v > max)
        return false;
    *out = (int)v;
    return true;
}

/* imgproxy's booleans: "1", "t" and "true" are true; "0", "f" and "false" false. */
static bool parse_bool(struct span s, bool *out)
{
    if (span_is(s, "1") || span_is(s, "t") || span_is(s, "true"))
        *out = true;
    else if (span_is(s, "0") || span_is(s, "f") || span_is(s, "false"))
        *out = false;
    else
        return false;
    return true;
}

static bool parse_resize_type(struct span s, enum imgproxy_resize *out)
{
    static const char *const names[] = {[IMGPROXY_FIT] = "fit",
                                        [IMGPROXY_FILL] = "fill",
                                        [IMGPROXY_FILL_DOWN] = "fill-down",
                                        [IMGPROXY_FORCE] = "force",
                                        [IMGPROXY_AUTO] = "auto"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (span_is(s, names[i])) {
            *out = (enum imgproxy_resize)i;
            return true;
        }
    }
    return false;
}

static bool parse_gravity(struct span s, enum image_gravity *out)
{
    static const char *const names[] = {
        [IMAGE_GRAVITY_CENTRE] = "ce", [IMAGE_GRAVITY_SMART] = "sm", [IMAGE_GRAVITY_NORTH] = "no",
        [IMAGE_GRAVITY_SOUTH] = "so",  [IMAGE_GRAVITY_EAST] = "ea",  [IMAGE_GRAVITY_WEST] = "we"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (span_is(s, names[i])) {
            *out = (enum image_gravity)i;
            return true;
        }
    }
    return false;
}

/*
 * Arguments of an option, each optional where imgproxy's are: an empty one
 * keeps the value before it. `what` names the arguments for the error.
 */
enum arg { ARG_TYPE, ARG_WIDTH, ARG_HEIGHT, ARG_ENLARGE, ARG_EXTEND };

static int apply_args(struct imgproxy_request *r, const enum arg *kinds, size_t nkinds, const char **p, const char *end,
                      struct span name, char *err, size_t errlen)
{
    for (size_t i = 0; i < nkinds && *p < end; i++) {
        struct span a = next(p, end, ':');
        bool ok = true;

        if (a.n == 0)
            continue;
        switch (kinds[i]) {
        case ARG_TYPE: ok = parse_resize_type(a, &r->resize); break;
        case ARG_WIDTH: ok = parse_uint(a, 100000, &r->width); break;
        case ARG_HEIGHT: ok = parse_uint(a, 100000, &r->height); break;
        case ARG_ENLARGE: ok = parse_bool(a, &r->enlarge); break;
        case ARG_EXTEND: ok = parse_bool(a, &r->extend); break;
        }
        if (!ok)
            return err_set(err, errlen, -EINVAL, "option %.*s: cannot use \"%.*s\"", (int)name.n, name.p, (int)a.n,
                           a.p);
    }
    if (*p < end)
        return err_set(err, errlen, -EINVAL, "option %.*s: too many arguments", (int)name.n, name.p);
    return 0;
}

static int parse_option(struct imgproxy_request *r, struct span seg, char *err, size_t errlen)
{
    static const enum arg RESIZE[] = {ARG_TYPE, ARG_WIDTH, ARG_HEIGHT, ARG_ENLARGE, ARG_EXTEND};
    static const enum arg SIZE[] = {ARG_WIDTH, ARG_HEIGHT, ARG_ENLARGE, ARG_EXTEND};
    static const enum arg TYPE[] = {ARG_TYPE}, WIDTH[] = {ARG_WIDTH}, HEIGHT[] = {ARG_HEIGHT};
    static const enum arg ENLARGE[] = {ARG_ENLARGE}, EXTEND[] = {ARG_EXTEND};
    const char *p = seg.p, *end = seg.p + seg.n;
    struct span name = next(&p, end, ':'), a;

#define ARGS(kinds) apply_args(r, kinds, sizeof(kinds) / sizeof(kinds[0]), &p, end, name, err, errlen)
    if (span_is(name, "rs") || span_is(name, "resize"))
        return ARGS(RESIZE);
    if (span_is(name, "s") || span_is(name, "size"))
        return ARGS(SIZE);
    if (span_is(name, "rt") || span_is(name, "resizing_type"))
        return ARGS(TYPE);
    if (span_is(name, "w") || span_is(name, "width"))
        return ARGS(WIDTH);
    if (span_is(name, "h") || span_is(name, "height"))
        return ARGS(HEIGHT);
    if (span_is(name, "el") || span_is(name, "enlarge"))
        return ARGS(ENLARGE);
    if (span_is(name, "ex") || span_is(name, "extend"))
        return ARGS(EXTEND);
#undef ARGS
    a = next(&p, end, ':');
    if (span_is(name, "dpr")) {
        if (!variant_parse_decimal(h2o_iovec_init(a.p, a.n), &r->dpr) || p < end)
            return err_set(err, errlen, -EINVAL, "option dpr: must be a positive number, such as 2 or 2.625");
        /* Sizes are capped at four times the largest master, as browsers report no more. */
        r->dpr = r->dpr > 4 ? 4 : r->dpr;
        return 0;
    }
    if (span_is(name, "q") || span_is(name, "quality")) {
        if (!parse_uint(a, 100, &r->quality) || p < end)
            return err_set(err, errlen, -EINVAL, "option %.*s: must be an integer from 0 to 100", (int)name.n, name.p);
        return 0;
    }
    if (span_is(name, "f") || span_is(name, "format") || span_is(name, "ext")) {
        if (variant_format_parse(h2o_iovec_init(a.p, a.n), &r->format) != 0 || p < end)
            return err_set(err, errlen, -EINVAL, "option %.*s: must be one of jpeg, webp, avif, png", (int)name.n,
                           name.p);
        r->format_named = true;
        return 0;
    }
    if (span_is(name, "g") || span_is(name, "gravity")) {
        int offset;
        if (!parse_gravity(a, &r->gravity))
            return err_set(err, errlen, -EINVAL, "option %.*s: must be one of ce, sm, no, so, ea, we", (int)name.n,
                           name.p);
        /* Offsets are accepted and have no effect: a crop is centred on its gravity's side. */
        for (int i = 0; i < 2 && p < end; i++)
            if (!parse_uint(next(&p, end, ':'), 100000, &offset))
                return err_set(err, errlen, -EINVAL, "option %.*s: offsets are whole pixels", (int)name.n, name.p);
        if (p < end)
            return err_set(err, errlen, -EINVAL, "option %.*s: too many arguments", (int)name.n, name.p);
        return 0;
    }
    return err_set(err, errlen, -EINVAL, "unknown option: %.*s", (int)name.n, name.p);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes `s` into a new string; NULL for a bad escape or a NUL. */
static char *percent_decode(struct span s)
{
    char *out = malloc(s.n + 1), *o = out;

    if (out == NULL)
        abort();
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (c == '%') {
            int hi = i + 2 < s.n ? hexval(s.p[i + 1]) : -1, lo = hi >= 0 ? hexval(s.p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

/*
 * base64url, padded or not, into a new string; NULL when it is not that. With `segments`, a '/' is between
 * segments and ignored; without, it is standard base64's 63rd digit.
 */
static char *base64url_decode(struct span s, bool segments)
{
    char *std = malloc(s.n + 1), *out;
    size_t n = 0, outlen;

    if (std == NULL)
        abort();
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] != '/' || !segments)
            std[n++] = s.p[i] == '-' ? '+' : s.p[i] == '_' ? '/' : s.p[i];
    /* Up to two '=' of padding at the end. A '+' of standard base64 is taken too, as some clients write it. */
    for (int pad = 0; pad < 2 && n > 0 && std[n - 1] == '='; pad++)
        n--;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] == '=' && i < s.n - 2) {
            free(std);
            return NULL;
        }
    }
    if ((out = malloc(base64_decoded_len(std, n) + 1)) == NULL)
        abort();
    if (base64_decode(std, n, (uint8_t *)out, &outlen) != 0 || memchr(out, '\0', outlen) != NULL) {
        free(std);
        free(out);
        return NULL;
    }
    out[outlen] = '\0';
    free(std);
    return out;
}

static bool source_scheme_ok(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0 ||
           strncasecmp(url, "data:", 5) == 0;
}

/* A URL as one is written: an accepted scheme, and printable ASCII without spaces. */
static bool plausible_url(const char *url)
{
    for (const char *c = url; *c != '\0'; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return false;
    return source_scheme_ok(url);
}

/*
 * A base64 source as imgproxy reads it (base64url in segments); failing that, as standard base64 with its '+'
 * and '/', which is what btoa() gives and what Coracle sends.
 */
static char *base64_source(struct span s)
{
    char *url = base64url_decode(s, true);

    if ((url == NULL || !plausible_url(url)) && memchr(s.p, '/', s.n) != NULL) {
        char *std = base64url_decode(s, false);
        if (std != NULL && plausible_url(std)) {
            free(url);
            return std;
        }
        free(std);
    }
    return url;
}

/* The source from `seg` on: "plain/..." with "@ext", or base64url segments with ".ext". */
static int parse_source(struct imgproxy_request *r, const char *p, const char *end, char *err, size_t errlen)
{
    struct span src = {p, (size_t)(end - p)}, ext = {NULL, 0};
    bool plain = src.n >= 6 && memcmp(p, "plain/", 6) == 0;
    const char *cut;

    if (plain) {
        src = (struct span){p + 6, src.n - 6};
        cut = memrchr(src.p, '@', src.n);
    } else {
        const char *last = memrchr(src.p, '/', src.n);
        last = last != NULL ? last + 1 : src.p;
        cut = memrchr(last, '.', (size_t)(end - last));
    }
    if (cut != NULL) {
        ext = (struct span){cut + 1, (size_t)(end - cut - 1)};
        src.n = (size_t)(cut - src.p);
        if (variant_format_parse(h2o_iovec_init(ext.p, ext.n), &r->format) != 0)
            return err_set(err, errlen, -EINVAL, "source: the extension must be one of jpeg, webp, avif, png");
        r->format_named = true;
    }
    if (src.n == 0)
        return err_set(err, errlen, -EINVAL, "source: missing");
    if (src.n > IMGPROXY_SOURCE_MAX)
        return err_set(err, errlen, -EINVAL, "source: longer than %d bytes", IMGPROXY_SOURCE_MAX);
    r->source = plain ? percent_decode(src) : base64_source(src);
    if (r->source == NULL)
        return err_set(err, errlen, -EINVAL, plain ? "source: a bad percent escape" : "source: not base64url");
    if (!source_scheme_ok(r->source))
        return err_set(err, errlen, -EINVAL, "source: only http, https and data: URLs are accepted");
    return 0;
}

int imgproxy_parse(const struct imgproxy_options *o, const char *path, size_t len, struct imgproxy_request *out,
                   char *err, size_t errlen)
{
    const char *p = path, *end = path + len;
    struct span sig;
    int r;

    *out = (struct imgproxy_request){.resize = IMGPROXY_FIT, .dpr = 1};
    if (len == 0 || path[0] != '/')
        return err_set(err, errlen, -EINVAL, "the path must be /{signature}/{options}/{source}");
    p++;
    sig = next(&p, end, '/');
    if (p == end && (sig.p + sig.n == end))
        return err_set(err, errlen, -EINVAL, "the path must be /{signature}/{options}/{source}");
    /* What is signed: the path after the signature, from its '/'. */
    if (o->nkeys == 0) {
        if (!o->allow_unsigned)
            return err_set(err, errlen, -ENOENT, "this relay has no imgproxy key");
    } else if (!signature_ok(o, sig, sig.p + sig.n, (size_t)(end - (sig.p + sig.n)))) {
        return err_set(err, errlen, -EACCES, "invalid signature");
    }
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p)), *seg_end = slash != NULL ? slash : end;
        struct span seg = {p, (size_t)(seg_end - p)};

        if (seg.n == 0) {
            p = seg_end + 1; /* an empty option part, as Snort writes it without a resize */
            continue;
        }
        if (memchr(seg.p, ':', seg.n) == NULL)
            break;
        if ((r = parse_option(out, seg, err, errlen)) != 0)
            return r;
        p = seg_end < end ? seg_end + 1 : end;
    }
    if (p >= end)
        return err_set(err, errlen, -EINVAL, "source: missing");
    if ((r = parse_source(out, p, end, err, errlen)) != 0) {
        imgproxy_request_free(out);
        return r;
    }
    return 0;
}

void imgproxy_request_free(struct imgproxy_request *r)
{
    free(r->source);
    r->source = NULL;
}

/* --- geometry ---------------------------------------------------------------------------------------------------- */

static int clamp_size(double v)
{
    long n = lround(v);

    return n < 1 ? 1 : n > IMAGE_VARIANT_MAX_SIZE ? IMAGE_VARIANT_MAX_SIZE : (int)n;
}

void imgproxy_geometry(const struct imgproxy_request *r, int mw, int mh, int max_size, struct image_box *out)
{
    double sw = mw > 0 ? mw : 1, sh = mh > 0 ? mh : 1, dpr = r->dpr > 0 ? r->dpr : 1;
    int w = r->width > max_size ? max_size : r->width, h = r->height > max_size ? max_size : r->height;
    double dw = w > 0 ? w : sw, dh = h > 0 ? h : sh, wshrink, hshrink;
    enum imgproxy_resize type = r->resize;
    int tw, th;

    /* imgproxy's scale: the shrink on each side, made one for the types that keep the aspect ratio. */
    wshrink = dw == sw ? 1 : sw / dw;
    hshrink = dh == sh ? 1 : sh / dh;
    if (type == IMGPROXY_AUTO)
        type = (sw >= sh) == (dw >= dh) ? IMGPROXY_FILL : IMGPROXY_FIT;
    if (wshrink != 1 || hshrink != 1) {
        if (w == 0 && type != IMGPROXY_FORCE)
            wshrink = hshrink;
        else if (h == 0 && type != IMGPROXY_FORCE)
            hshrink = wshrink;
        else if (type == IMGPROXY_FIT)
            wshrink = hshrink = wshrink > hshrink ? wshrink : hshrink;
        else if (type == IMGPROXY_FILL || type == IMGPROXY_FILL_DOWN)
            wshrink = hshrink = wshrink < hshrink ? wshrink : hshrink;
    }
    wshrink /= dpr;
    hshrink /= dpr;
    if (!r->enlarge) {
        /* Never larger than the master: the side that would grow most is held at one, the other follows. */
        if (wshrink < 1) {
            hshrink /= wshrink;
            wshrink = 1;
        }
        if (hshrink < 1) {
            wshrink /= hshrink;
            hshrink = 1;
        }
    }
    out->scale_w = clamp_size(sw / wshrink);
    out->scale_h = clamp_size(sh / hshrink);
    out->crop_w = out->scale_w;
    out->crop_h = out->scale_h;
    /* What was asked for, in pixels; a side not asked for is the result's. */
    tw = w > 0 ? clamp_size(w * dpr) : 0;
    th = h > 0 ? clamp_size(h * dpr) : 0;
    if ((type == IMGPROXY_FILL || type == IMGPROXY_FILL_DOWN) && tw > 0 && th > 0) {
        out->crop_w = tw < out->scale_w ? tw : out->scale_w;
        out->crop_h = th < out->scale_h ? th : out->scale_h;
        if (type == IMGPROXY_FILL_DOWN && (out->scale_w < tw || out->scale_h < th)) {
            /* Smaller than asked: cut to the aspect ratio asked for instead, as large as the picture allows. */
            double f = (double)out->scale_w / tw < (double)out->scale_h / th ? (double)out->scale_w / tw
                                                                             : (double)out->scale_h / th;
            out->crop_w = clamp_size(tw * f);
            out->crop_h = clamp_size(th * f);
        }
    }
    out->gravity = out->crop_w == out->scale_w && out->crop_h == out->scale_h ? IMAGE_GRAVITY_CENTRE : r->gravity;
    out->canvas_w = out->crop_w;
    out->canvas_h = out->crop_h;
    if (r->extend) {
        out->canvas_w = tw > out->crop_w ? tw : out->crop_w;
        out->canvas_h = th > out->crop_h ? th : out->crop_h;
    }
}
