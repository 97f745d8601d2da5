/*
 * test_imgproxy.c -- imgproxy URLs as the official builder (@imgproxy/imgproxy-node) signs them and as Snort
 * and Coracle write them: signatures (keys, rotation, truncation), options, sources, and every refusal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "imgproxy.h"

#define VECTORS "tests/vectors/imgproxy.json"

static json_t *vectors;
static struct imgproxy_key keys[2];

static int load(void **state)
{
    (void)state;
    vectors = fixture_vectors(VECTORS, 0);
    for (size_t i = 0; i < 2; i++) {
        json_t *k = json_array_get(json_object_get(vectors, "keys"), i);
        assert_int_equal(imgproxy_key_parse(json_string_value(json_object_get(k, "key")),
                                            json_string_value(json_object_get(k, "salt")), &keys[i]),
                         0);
    }
    return 0;
}

static int unload(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

static int parse(const struct imgproxy_options *o, const char *path, struct imgproxy_request *r, char *err)
{
    return imgproxy_parse(o, path, strlen(path), r, err, 200);
}

static void the_official_builders_urls_parse_as_built(void **state)
{
    struct imgproxy_options signed_opts = {keys, 2, 32, false}, open_opts = {NULL, 0, 32, true};
    static const char *const resizes[] = {"fit", "fill", "fill-down", "force", "auto"};
    static const char *const gravities[] = {"ce", "sm", "no", "so", "ea", "we"};
    size_t i;
    json_t *v;

    (void)state;
    json_array_foreach(json_object_get(vectors, "vectors"), i, v)
    {
        const char *path = json_string_value(json_object_get(v, "path")), *name;
        json_t *e = json_object_get(v, "expect"), *x;
        struct imgproxy_request r;
        char err[200] = "";

        name = json_string_value(json_object_get(v, "name"));
        json_t *key = json_object_get(v, "key");

        if (parse(json_is_integer(key) ? &signed_opts : &open_opts, path, &r, err) != 0)
            fail_msg("%s: %s", name, err);
        assert_string_equal(r.source, json_string_value(json_object_get(e, "source")));
        assert_string_equal(resizes[r.resize], (x = json_object_get(e, "resize")) ? json_string_value(x) : "fit");
        assert_int_equal(r.width, json_integer_value(json_object_get(e, "width")));
        assert_int_equal(r.height, json_integer_value(json_object_get(e, "height")));
        assert_int_equal(r.enlarge, json_is_true(json_object_get(e, "enlarge")));
        assert_true(r.dpr == ((x = json_object_get(e, "dpr")) ? json_number_value(x) : 1));
        assert_int_equal(r.quality, json_integer_value(json_object_get(e, "quality")));
        assert_string_equal(gravities[r.gravity], (x = json_object_get(e, "gravity")) ? json_string_value(x) : "ce");
        if ((x = json_object_get(e, "format")) != NULL) {
            assert_true(r.format_named);
            assert_string_equal(variant_format_name(r.format), json_string_value(x));
        } else {
            assert_false(r.format_named);
        }
        imgproxy_request_free(&r);
        /* Signed paths are refused without their key, and by a relay that takes no unsigned ones. */
        if (json_is_true(json_object_get(v, "signed"))) {
            struct imgproxy_options other = {&keys[1], 1, 32, false};
            assert_int_equal(parse(&other, path, &r, err) == -EACCES ||
                                 parse(&(struct imgproxy_options){keys, 1, 32, false}, path, &r, err) == -EACCES,
                             true);
        }
    }
}

/* A signature as imgproxy makes it: base64url of the HMAC-SHA256 of salt and path, cut to `size` bytes. */
static void sign(const struct imgproxy_key *k, const char *rest, size_t size, char *out)
{
    uint8_t msg[4096], mac[32];
    unsigned len;
    char b64[64];
    int n;

    memcpy(msg, k->salt, k->salt_len);
    memcpy(msg + k->salt_len, rest, strlen(rest));
    HMAC(EVP_sha256(), k->key, (int)k->key_len, msg, k->salt_len + strlen(rest), mac, &len);
    n = EVP_EncodeBlock((unsigned char *)b64, mac, (int)size);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    out[n] = '\0';
}

static void signatures_truncated_rotated_and_refused(void **state)
{
    const char *rest = "/rs:fit:96:96/dpr:2/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw";
    char sig[64], path[256], err[200];
    struct imgproxy_request r;
    struct imgproxy_options o = {keys, 2, 8, false}, none = {NULL, 0, 32, false};

    (void)state;
    sign(&keys[1], rest, 8, sig);
    snprintf(path, sizeof(path), "/%s%s", sig, rest);
    assert_int_equal(parse(&o, path, &r, err), 0);
    assert_string_equal(r.source, "https://example.com/a.jpg");
    imgproxy_request_free(&r);
    /* The full signature is not the truncated one. */
    sign(&keys[1], rest, 32, sig);
    snprintf(path, sizeof(path), "/%s%s", sig, rest);
    assert_int_equal(parse(&o, path, &r, err), -EACCES);
    o.signature_size = 32;
    assert_int_equal(parse(&o, path, &r, err), 0);
    imgproxy_request_free(&r);
    /* One character changed in the path, or none at all. */
    path[strlen(path) - 1] ^= 1;
    assert_int_equal(parse(&o, path, &r, err), -EACCES);
    assert_int_equal(parse(&o, "/insecure/rs:fit:1:1/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", &r, err), -EACCES);
    assert_non_null(strstr(err, "signature"));
    /* No key and no unsigned requests: the endpoint is off. */
    assert_int_equal(parse(&none, "/insecure/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", &r, err), -ENOENT);
    assert_int_equal(
        imgproxy_key_parse("abc", "", &keys[0]) == -EINVAL && imgproxy_key_parse("zz", "", &keys[0]) == -EINVAL, true);
}

static void snort_and_coracle_paths(void **state)
{
    struct imgproxy_options o = {NULL, 0, 32, true};
    struct imgproxy_request r;
    char err[200];

    (void)state;
    /* Snort, with a resize and a fractional dpr, then without a resize: an empty option part. */
    assert_int_equal(parse(&o, "/x/rs:fit:64:64/dpr:1.5/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", &r, err), 0);
    assert_int_equal(r.width, 64);
    assert_true(r.dpr == 1.5);
    imgproxy_request_free(&r);
    assert_int_equal(parse(&o, "/x//aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", &r, err), 0);
    assert_int_equal(r.width, 0);
    assert_string_equal(r.source, "https://example.com/a.jpg");
    imgproxy_request_free(&r);
    /* Coracle: unsigned, s:W:H, padded base64, split into segments. */
    assert_int_equal(parse(&o, "/x/s:320:200/aHR0cHM6Ly9leGFtcGxlLmNvbS9i/LnBuZw==", &r, err), 0);
    assert_int_equal(r.width, 320);
    assert_int_equal(r.height, 200);
    assert_string_equal(r.source, "https://example.com/b.png");
    imgproxy_request_free(&r);
    /* A plain source with its format, and a base64 one with ".webp". */
    assert_int_equal(parse(&o, "/x/w:50/plain/https%3A%2F%2Fexample.com%2Fa%20b.jpg@png", &r, err), 0);
    assert_string_equal(r.source, "https://example.com/a b.jpg");
    assert_true(r.format_named && r.format == VARIANT_PNG);
    imgproxy_request_free(&r);
    assert_int_equal(parse(&o, "/x/h:10/h:20/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw.webp", &r, err), 0);
    assert_int_equal(r.height, 20); /* the last of a repeated option */
    assert_true(r.format_named && r.format == VARIANT_WEBP);
    imgproxy_request_free(&r);
    assert_int_equal(parse(&o, "/x/plain/http://example.com/p.gif", &r, err), 0);
    assert_string_equal(r.source, "http://example.com/p.gif");
    imgproxy_request_free(&r);
}

/* btoa()'s standard base64, '/' and '+' and all, as Coracle sends it, where base64url in segments misreads it. */
static void standard_base64_sources(void **state)
{
    struct imgproxy_options o = {NULL, 0, 32, true};
    struct imgproxy_request r;
    char err[200];

    (void)state;
    /* "http://h/u??x" and "http://h/?>>>": a '/' and a '+' in their encodings. */
    assert_int_equal(parse(&o, "/x/s:300:300/aHR0cDovL2gvdT8/eA==", &r, err), 0);
    assert_string_equal(r.source, "http://h/u??x");
    imgproxy_request_free(&r);
    assert_int_equal(parse(&o, "/x/s:300:300/aHR0cDovL2gvPz4+Pg==", &r, err), 0);
    assert_string_equal(r.source, "http://h/?>>>");
    imgproxy_request_free(&r);
}

/* The request `path` asks for a box of a master of `mw` x `mh`. */
static struct image_box box_of(const char *path, int mw, int mh)
{
    struct imgproxy_options o = {NULL, 0, 32, true};
    struct imgproxy_request r;
    struct image_box b;
    char err[200];

    assert_int_equal(parse(&o, path, &r, err), 0);
    imgproxy_geometry(&r, mw, mh, 1024, &b);
    imgproxy_request_free(&r);
    return b;
}

#define SRC "/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw"

static void assert_box(struct image_box b, int sw, int sh, int cw, int ch, int vw, int vh)
{
    assert_int_equal(b.scale_w, sw);
    assert_int_equal(b.scale_h, sh);
    assert_int_equal(b.crop_w, cw);
    assert_int_equal(b.crop_h, ch);
    assert_int_equal(b.canvas_w, vw);
    assert_int_equal(b.canvas_h, vh);
}

static void geometry_as_imgproxy_works_it_out(void **state)
{
    (void)state;
    /* fit keeps the aspect ratio; a missing side follows the other; nothing grows unless asked. */
    assert_box(box_of("/x/rs:fit:300:300" SRC, 1024, 683), 300, 200, 300, 200, 300, 200);
    assert_box(box_of("/x/w:150" SRC, 1024, 683), 150, 100, 150, 100, 150, 100);
    assert_box(box_of("/x/h:100" SRC, 1024, 683), 150, 100, 150, 100, 150, 100);
    assert_box(box_of("/x" SRC, 1024, 683), 1024, 683, 1024, 683, 1024, 683);
    assert_box(box_of("/x/rs:fit:300:300" SRC, 64, 64), 64, 64, 64, 64, 64, 64);
    assert_box(box_of("/x/rs:fit:300:300:1" SRC, 64, 64), 300, 300, 300, 300, 300, 300);
    /* dpr multiplies, up to the master. */
    assert_box(box_of("/x/rs:fit:48:48/dpr:2.625" SRC, 1024, 683), 126, 84, 126, 84, 126, 84);
    assert_box(box_of("/x/rs:fit:400:400/dpr:2.625" SRC, 1024, 683), 1024, 683, 1024, 683, 1024, 683);
    /* fill covers the box and cuts it; force stretches; auto picks by orientation. */
    assert_box(box_of("/x/rs:fill:100:50" SRC, 1024, 683), 100, 67, 100, 50, 100, 50);
    assert_box(box_of("/x/rs:fill:100:100" SRC, 1024, 683), 150, 100, 100, 100, 100, 100);
    assert_box(box_of("/x/rs:force:100:100" SRC, 1024, 683), 100, 100, 100, 100, 100, 100);
    assert_box(box_of("/x/rs:auto:100:50" SRC, 1024, 683), 100, 67, 100, 50, 100, 50);
    assert_box(box_of("/x/rs:auto:50:100" SRC, 1024, 683), 50, 33, 50, 33, 50, 33);
    /* A small picture: fill cuts what it has; fill-down keeps the aspect ratio asked for instead. */
    assert_box(box_of("/x/rs:fill:200:100" SRC, 150, 150), 150, 150, 150, 100, 150, 100);
    assert_box(box_of("/x/rs:fill-down:200:100" SRC, 150, 150), 150, 150, 150, 75, 150, 75);
    /* extend pads to the box. */
    assert_box(box_of("/x/rs:fit:200:200:0:1" SRC, 64, 64), 64, 64, 64, 64, 200, 200);
    /* Sizes are capped at the master's largest before dpr. */
    assert_box(box_of("/x/rs:force:5000:10:1/dpr:4" SRC, 100, 100), 4096, 40, 4096, 40, 4096, 40);
    /* The gravity counts only where something is cut. */
    assert_int_equal(box_of("/x/rs:fit:100:100/g:no" SRC, 1024, 683).gravity, IMAGE_GRAVITY_CENTRE);
    assert_int_equal(box_of("/x/rs:fill:100:100/g:no" SRC, 1024, 683).gravity, IMAGE_GRAVITY_NORTH);
}

static void malformed_paths_name_what_is_wrong(void **state)
{
    static const struct {
        const char *path, *reason;
    } cases[] = {
        {"", "the path must be"},
        {"x/aGk", "the path must be"},
        {"/x", "the path must be"},
        {"/x/rs:fit:10:10", "source: missing"},
        {"/x/bl:5/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "unknown option: bl"},
        {"/x/rs:round:10/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option rs: cannot use \"round\""},
        {"/x/w:-1/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option w"},
        {"/x/s:1:2:t:f:9/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "too many arguments"},
        {"/x/el:maybe/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option el"},
        {"/x/dpr:0/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option dpr"},
        {"/x/q:101/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option q"},
        {"/x/f:bmp/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option f"},
        {"/x/g:nowe/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw", "option g"},
        {"/x/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLmpwZw.bmp", "extension"},
        {"/x/!!!!", "not base64url"},
        {"/x/Zm9vOi8vYmFy", "only http, https and data:"},
        {"/x/plain/https%3A%2F%2Fexample.com%2", "percent escape"},
        {"/x/plain/https://a/%00", "percent escape"},
        {"/x/plain/", "source: missing"},
    };
    struct imgproxy_options o = {NULL, 0, 32, true};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct imgproxy_request r;
        char err[200] = "";
        if (parse(&o, cases[i].path, &r, err) != -EINVAL || strstr(err, cases[i].reason) == NULL)
            fail_msg("%s: \"%s\", not \"%s\"", cases[i].path, err, cases[i].reason);
        assert_null(r.source);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_official_builders_urls_parse_as_built),
        cmocka_unit_test(signatures_truncated_rotated_and_refused),
        cmocka_unit_test(snort_and_coracle_paths),
        cmocka_unit_test(standard_base64_sources),
        cmocka_unit_test(geometry_as_imgproxy_works_it_out),
        cmocka_unit_test(malformed_paths_name_what_is_wrong),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
