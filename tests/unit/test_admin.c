/* test_admin.c -- the follows read from a contact list, job ids as clients write them, and batch bodies with keys and
 * names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "hex.h"

static const char A[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char B[] = "2222222222222222222222222222222222222222222222222222222222222222";
static const char C[] = "3333333333333333333333333333333333333333333333333333333333333333";

static size_t follows(const char *tags, size_t limit, uint8_t (*out)[32])
{
    char json[2048];
    snprintf(json, sizeof(json), "{\"kind\":3,\"content\":\"\",\"tags\":%s}", tags);
    return admin_follows_of(json, strlen(json), limit, out, NULL, NULL);
}

struct hints {
    char got[4][64];
    size_t n;
};

static void record_hint(void *ctx, const uint8_t pubkey[32], const char *url)
{
    struct hints *h = ctx;
    (void)pubkey;
    if (h->n < 4)
        snprintf(h->got[h->n++], sizeof(h->got[0]), "%s", url);
}

/* ["p", key, relay] tags hand their relay on as a hint; tags without one, or with another type, do not. */
static void follows_give_their_relay_hints(void **state)
{
    char json[1024];
    uint8_t out[4][32];
    struct hints h = {.n = 0};
    (void)state;

    snprintf(json, sizeof(json),
             "{\"kind\":3,\"tags\":[[\"p\",\"%s\",\"wss://a.example\"],[\"p\",\"%s\"],[\"p\",\"%s\",7],"
             "[\"e\",\"%s\",\"wss://not.a.follow\"]]}",
             A, B, C, A);
    assert_int_equal(admin_follows_of(json, strlen(json), 4, out, record_hint, &h), 3);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.got[0], "wss://a.example");
}

static void assert_key(const uint8_t key[32], const char *hex)
{
    uint8_t want[32];
    assert_int_equal(hex_decode(hex, 64, want, 32), 0);
    assert_memory_equal(key, want, 32);
}

static void follows_are_the_distinct_p_tags_in_order(void **state)
{
    uint8_t out[8][32];
    char tags[1024];
    (void)state;

    snprintf(tags, sizeof(tags),
             "[[\"p\",\"%s\"],[\"e\",\"%s\"],[\"p\",\"%s\",\"wss://r\",\"alice\"],[\"p\",\"%s\"],[\"p\",\"%s\"]]", B, C,
             A, B, C);
    assert_int_equal(follows(tags, 8, out), 3);
    assert_key(out[0], B);
    assert_key(out[1], A);
    assert_key(out[2], C);
}

static void the_limit_counts_distinct_follows(void **state)
{
    uint8_t out[2][32];
    char tags[1024];
    (void)state;

    snprintf(tags, sizeof(tags), "[[\"p\",\"%s\"],[\"p\",\"%s\"],[\"p\",\"%s\"],[\"p\",\"%s\"]]", A, A, B, C);
    assert_int_equal(follows(tags, 2, out), 2);
    assert_key(out[0], A);
    assert_key(out[1], B);
}

static void malformed_tags_are_skipped(void **state)
{
    uint8_t out[4][32];
    char tags[1024], upper[65];
    (void)state;

    for (size_t i = 0; i < 64; i++)
        upper[i] = "ABCDEF"[i % 6];
    upper[64] = '\0';
    snprintf(tags, sizeof(tags),
             "[[\"p\"],[\"p\",42],[\"p\",\"%.63s\"],[\"p\",\"%s\"],\"p\",[],[\"P\",\"%s\"],[1,\"%s\"],[\"p\",\"%s\"]]",
             A, upper, B, B, C);
    assert_int_equal(follows(tags, 4, out), 1);
    assert_key(out[0], C);
}

static void no_tags_or_no_json_give_no_follows(void **state)
{
    uint8_t out[1][32];
    (void)state;

    assert_int_equal(follows("[]", 1, out), 0);
    assert_int_equal(follows("{}", 1, out), 0);
    assert_int_equal(admin_follows_of("not json", 8, 1, out, NULL, NULL), 0);
}

static void job_ids_are_sixteen_hex_digits(void **state)
{
    uint64_t id;
    (void)state;

    assert_int_equal(jobs_parse_id("0001a20c2d3c3000", 16, &id), 0);
    assert_true(id == 0x0001a20c2d3c3000ull);
    assert_int_not_equal(jobs_parse_id("0001a20c2d3c300", 15, &id), 0);
    assert_int_not_equal(jobs_parse_id("0001a20c2d3c30000", 17, &id), 0);
    assert_int_not_equal(jobs_parse_id("0001A20C2D3C3000", 16, &id), 0);
    assert_int_not_equal(jobs_parse_id("0001a20c2d3c300g", 16, &id), 0);
}

/* The status admin_parse_batch() gives `body`, its message in `error`. */
static int parse_batch(const char *body, size_t *n, char *error, size_t errlen)
{
    struct admin_batch b;
    int status = admin_parse_batch(body, strlen(body), true, &b);

    *n = b.n;
    snprintf(error, errlen, "%s", b.error);
    if (status == 400 && b.invalid != NULL)
        assert_true(json_array_size(b.invalid) > 0);
    admin_batch_free(&b);
    return status;
}

static void a_batch_body_gives_its_distinct_keys_or_a_precise_refusal(void **state)
{
    char body[4096], error[512];
    size_t n;
    (void)state;

    snprintf(body, sizeof(body), "{\"pubkeys\": [\"%s\", \"%s\", \"%s\"]}", A, B, A);
    assert_int_equal(parse_batch(body, &n, error, sizeof(error)), 0);
    assert_int_equal(n, 2);
    assert_int_equal(parse_batch("{\"pubkeys\": [", &n, error, sizeof(error)), 400);
    assert_non_null(strstr(error, "malformed JSON"));
    assert_int_equal(parse_batch("{\"pubkeys\": []}", &n, error, sizeof(error)), 400);
    assert_string_equal(error, "\"pubkeys\" is empty");
    snprintf(body, sizeof(body), "{\"pubkeys\": [\"%s\", 7]}", A);
    assert_int_equal(parse_batch(body, &n, error, sizeof(error)), 400);
    assert_string_equal(error, "\"pubkeys\"[1] is not a string");
    snprintf(body, sizeof(body), "{\"pubkeys\": [\"%s\", \"xyz\"]}", A);
    assert_int_equal(parse_batch(body, &n, error, sizeof(error)), 400);
    assert_non_null(strstr(error, "index 1"));
}

static void names_in_a_batch_get_a_slot_each_and_count_once_in_any_case(void **state)
{
    char body[4096];
    struct admin_batch b;
    (void)state;

    snprintf(body, sizeof(body),
             "{\"pubkeys\": [\"%s\", \"alice@example.com\", \"ALICE@Example.com\", \"example.com\", \"%s\"]}", A, B);
    assert_int_equal(admin_parse_batch(body, strlen(body), true, &b), 0);
    assert_int_equal(b.n, 4);
    assert_int_equal(b.nnames, 2);
    assert_string_equal(b.names[0].id.name, "alice");
    assert_string_equal(b.names[0].given, "alice@example.com");
    assert_int_equal(b.names[0].index, 1);
    assert_int_equal(b.names[0].slot, 1);
    assert_string_equal(b.names[1].id.name, "_");
    assert_string_equal(b.names[1].id.domain, "example.com");
    assert_int_equal(b.names[1].index, 3);
    assert_int_equal(b.names[1].slot, 2);
    /* alice is B, spelt as a key later on; the bare domain is C. */
    assert_int_equal(hex_decode(B, 64, b.keys[b.names[0].slot], 32), 0);
    assert_int_equal(hex_decode(C, 64, b.keys[b.names[1].slot], 32), 0);
    admin_batch_settle(&b);
    assert_int_equal(b.n, 3);
    assert_key(b.keys[0], A);
    assert_key(b.keys[1], B);
    assert_key(b.keys[2], C);
    admin_batch_free(&b);

    /* Without a resolver, a name is an entry that is not a key. */
    assert_int_equal(admin_parse_batch(body, strlen(body), false, &b), 400);
    assert_int_equal(json_array_size(b.invalid), 3);
    assert_non_null(strstr(b.error, "not a public key (hex, npub or nprofile): indexes 1, 2, 3"));
    admin_batch_free(&b);
    /* A word without a dot is no name. */
    snprintf(body, sizeof(body), "{\"pubkeys\": [\"%s\", \"alice\"]}", A);
    assert_int_equal(admin_parse_batch(body, strlen(body), true, &b), 400);
    assert_non_null(strstr(
        b.error, "1 entry of \"pubkeys\" is not a public key (hex, npub or nprofile) or a NIP-05 name: index 1"));
    admin_batch_free(&b);
}

static void a_batch_names_at_most_its_bound_of_distinct_names(void **state)
{
    char body[8192];
    size_t off;
    struct admin_batch b;
    (void)state;

    for (int extra = 0; extra < 2; extra++) {
        off = (size_t)snprintf(body, sizeof(body), "{\"pubkeys\": [\"u0@example.com\"");
        /* The same name again does not count. */
        for (int i = 0; i < ADMIN_BATCH_NAMES_MAX + extra; i++)
            off += (size_t)snprintf(body + off, sizeof(body) - off, ", \"U%d@example.com\"", i);
        snprintf(body + off, sizeof(body) - off, "]}");
        if (extra == 0) {
            assert_int_equal(admin_parse_batch(body, strlen(body), true, &b), 0);
            assert_int_equal(b.nnames, ADMIN_BATCH_NAMES_MAX);
        } else {
            assert_int_equal(admin_parse_batch(body, strlen(body), true, &b), 413);
            assert_string_equal(b.error, "at most 100 NIP-05 names per request");
        }
        admin_batch_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follows_give_their_relay_hints),
        cmocka_unit_test(follows_are_the_distinct_p_tags_in_order),
        cmocka_unit_test(the_limit_counts_distinct_follows),
        cmocka_unit_test(malformed_tags_are_skipped),
        cmocka_unit_test(no_tags_or_no_json_give_no_follows),
        cmocka_unit_test(job_ids_are_sixteen_hex_digits),
        cmocka_unit_test(a_batch_body_gives_its_distinct_keys_or_a_precise_refusal),
        cmocka_unit_test(names_in_a_batch_get_a_slot_each_and_count_once_in_any_case),
        cmocka_unit_test(a_batch_names_at_most_its_bound_of_distinct_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
