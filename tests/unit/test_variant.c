/* test_variant.c -- the variant parameters: the size ladder, dpr, formats named or negotiated, and the 400s. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "variant.h"

static const enum variant_format WEBP_ONLY[] = {VARIANT_WEBP};
static const enum variant_format AVIF_WEBP[] = {VARIANT_AVIF, VARIANT_WEBP};

static const char CHROME[] = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
static const char SAFARI[] = "image/webp,image/avif,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
static const char FIREFOX[] = "image/avif,image/webp,*/*";

static struct variant_options avatars(const enum variant_format *neg, size_t n)
{
    return (struct variant_options){&VARIANT_AVATAR_LADDER, 200, 1024, neg, n};
}

static struct variant parse_ok(const struct variant_options *o, const char *query, const char *accept)
{
    struct variant v;
    char err[200] = "";

    if (variant_parse(o, h2o_iovec_init(query, strlen(query)), h2o_iovec_init(accept, strlen(accept)), &v, err,
                      sizeof(err)) != 0)
        fail_msg("%s: %s", query, err);
    return v;
}

static void parse_refused(const struct variant_options *o, const char *query, const char *want)
{
    struct variant v;
    char err[200] = "";

    assert_int_equal(
        variant_parse(o, h2o_iovec_init(query, strlen(query)), h2o_iovec_init("", 0), &v, err, sizeof(err)), -EINVAL);
    if (strstr(err, want) == NULL)
        fail_msg("%s: \"%s\" does not say \"%s\"", query, err, want);
}

static void sizes_round_up_the_ladder_and_dpr_multiplies_first(void **state)
{
    struct variant_options o = avatars(WEBP_ONLY, 1);

    (void)state;
    assert_int_equal(parse_ok(&o, "", "").size, 200);
    assert_int_equal(parse_ok(&o, "size=1", "").size, 32);
    assert_int_equal(parse_ok(&o, "size=32", "").size, 32);
    assert_int_equal(parse_ok(&o, "size=33", "").size, 48);
    assert_int_equal(parse_ok(&o, "s=100", "").size, 128);
    assert_int_equal(parse_ok(&o, "w=200", "").size, 256);
    assert_int_equal(parse_ok(&o, "size=1024", "").size, 1024);
    assert_int_equal(parse_ok(&o, "size=40&dpr=2", "").size, 96);
    assert_int_equal(parse_ok(&o, "size=100&dpr=1.1", "").size, 128);
    assert_int_equal(parse_ok(&o, "size=64&dpr=1.5", "").size, 96);
    assert_int_equal(parse_ok(&o, "size=600&dpr=3", "").size, 1024);
    /* dpr alone scales the default size; dpr=1 alone leaves it as it was. */
    assert_int_equal(parse_ok(&o, "dpr=2", "").size, 512);
    assert_int_equal(parse_ok(&o, "dpr=1", "").size, 200);
    assert_int_equal(parse_ok(&o, "size=100&s=999", "").size, 128);
}

static void a_smaller_master_caps_the_ladder(void **state)
{
    struct variant_options o = {&VARIANT_AVATAR_LADDER, 200, 800, WEBP_ONLY, 1};
    struct variant_options banners = {&VARIANT_BANNER_LADDER, 1000, 1920, WEBP_ONLY, 1};

    (void)state;
    assert_int_equal(parse_ok(&o, "size=700", "").size, 768);
    assert_int_equal(parse_ok(&o, "size=790", "").size, 800);
    assert_int_equal(parse_ok(&o, "size=400&dpr=4", "").size, 800);
    parse_refused(&o, "size=801", "from 1 to 800");
    assert_int_equal(parse_ok(&banners, "", "").size, 1000);
    assert_int_equal(parse_ok(&banners, "w=1100", "").size, 1440);
    assert_int_equal(parse_ok(&banners, "w=1500", "").size, 1920);
}

static void formats_are_named_or_negotiated_from_accept(void **state)
{
    struct variant_options webp = avatars(WEBP_ONLY, 1), both = avatars(AVIF_WEBP, 2), none = avatars(NULL, 0);
    struct variant v;

    (void)state;
    v = parse_ok(&webp, "", "*/*");
    assert_int_equal(v.format, VARIANT_JPEG); /* what curl sends: the JPEG of today */
    assert_true(v.negotiated);
    assert_int_equal(parse_ok(&webp, "", "").format, VARIANT_JPEG);
    assert_int_equal(parse_ok(&webp, "", "image/*").format, VARIANT_JPEG);
    assert_int_equal(parse_ok(&webp, "", CHROME).format, VARIANT_WEBP);
    assert_int_equal(parse_ok(&webp, "", SAFARI).format, VARIANT_WEBP);
    assert_int_equal(parse_ok(&both, "", FIREFOX).format, VARIANT_AVIF);
    assert_int_equal(parse_ok(&both, "", "image/webp").format, VARIANT_WEBP);
    assert_int_equal(parse_ok(&both, "", "image/avif;q=0, image/webp;q=0.5").format, VARIANT_WEBP);
    assert_int_equal(parse_ok(&both, "", "image/avif ; q=0.0,image/webp;q=0").format, VARIANT_JPEG);
    assert_int_equal(parse_ok(&both, "", "IMAGE/AVIF").format, VARIANT_AVIF);
    assert_int_equal(parse_ok(&none, "", CHROME).format, VARIANT_JPEG);
    v = parse_ok(&both, "format=png", CHROME);
    assert_int_equal(v.format, VARIANT_PNG);
    assert_false(v.negotiated);
    assert_int_equal(parse_ok(&both, "f=webp", "*/*").format, VARIANT_WEBP);
    assert_int_equal(parse_ok(&both, "f=jpg", CHROME).format, VARIANT_JPEG);
    assert_int_equal(parse_ok(&both, "format=avif", "").format, VARIANT_AVIF);
}

static void animations_are_webp_or_else_gif(void **state)
{
    struct variant_options o = avatars(AVIF_WEBP, 2);
    struct variant v;

    (void)state;
    assert_false(parse_ok(&o, "", CHROME).animated);
    v = parse_ok(&o, "animated=1", CHROME);
    assert_true(v.animated);
    assert_int_equal(v.format, VARIANT_WEBP);
    assert_true(v.negotiated);
    v = parse_ok(&o, "a=1", "*/*");
    assert_int_equal(v.format, VARIANT_GIF);
    v = parse_ok(&o, "a=true&f=webp", "");
    assert_int_equal(v.format, VARIANT_WEBP);
    assert_false(v.negotiated);
    assert_false(parse_ok(&o, "animated=0", CHROME).animated);
    parse_refused(&o, "animated=1&format=jpeg", "not as jpeg");
}

static void fallbacks_by_name(void **state)
{
    struct variant_options o = avatars(WEBP_ONLY, 1);

    (void)state;
    assert_int_equal(parse_ok(&o, "", "").fallback, VARIANT_FALLBACK_CONFIGURED);
    assert_int_equal(parse_ok(&o, "default=404", "").fallback, VARIANT_FALLBACK_404);
    assert_int_equal(parse_ok(&o, "d=identicon", "").fallback, VARIANT_FALLBACK_IDENTICON);
    assert_int_equal(parse_ok(&o, "default=blank&size=64", "").fallback, VARIANT_FALLBACK_BLANK);
}

static void what_cannot_be_used_is_refused_by_name(void **state)
{
    struct variant_options o = avatars(WEBP_ONLY, 1);

    (void)state;
    parse_refused(&o, "size=0", "size: must be an integer from 1 to 1024");
    parse_refused(&o, "size=1025", "size:");
    parse_refused(&o, "s=-5", "size:");
    parse_refused(&o, "w=12px", "size:");
    parse_refused(&o, "size=", "size:");
    parse_refused(&o, "size=99999999999", "size:");
    parse_refused(&o, "dpr=0.5", "dpr: must be a number from 1 to 4");
    parse_refused(&o, "dpr=5", "dpr:");
    parse_refused(&o, "dpr=1e1", "dpr:");
    parse_refused(&o, "dpr=.", "dpr:");
    parse_refused(&o, "dpr=1.2.3", "dpr:");
    parse_refused(&o, "format=gif", "format: must be one of jpeg, webp, avif, png");
    parse_refused(&o, "f=bmp", "format:");
    parse_refused(&o, "animated=maybe", "animated: must be 1 or 0");
    parse_refused(&o, "default=mp", "default: must be one of 404, identicon, blank");
    /* Parameters this relay does not know are a CDN's, not errors. */
    assert_int_equal(parse_ok(&o, "utm_source=x&v=3&size=64", "").size, 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes_round_up_the_ladder_and_dpr_multiplies_first),
        cmocka_unit_test(a_smaller_master_caps_the_ladder),
        cmocka_unit_test(formats_are_named_or_negotiated_from_accept),
        cmocka_unit_test(animations_are_webp_or_else_gif),
        cmocka_unit_test(fallbacks_by_name),
        cmocka_unit_test(what_cannot_be_used_is_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
