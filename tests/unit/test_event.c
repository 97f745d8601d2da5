/* test_event.c -- strict event parsing, the id serialization, signatures and the stored record, on nostr-tools vectors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "event.h"
#include "fixture.h"
#include "hex.h"

#define VECTORS "tests/vectors/events.json"

static json_t *vectors;

static int setup(void **state)
{
    (void)state;
    vectors = fixture_vectors(VECTORS, JSON_ALLOW_NUL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

static json_t *vector_event(size_t i)
{
    return json_object_get(json_array_get(json_object_get(vectors, "vectors"), i), "event");
}

static size_t nvectors(void)
{
    return json_array_size(json_object_get(vectors, "vectors"));
}

static bool has_other_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && !strchr("\n\r\t\b\f", c))
            return true;
    }
    return false;
}

static void every_vector_parses_hashes_and_verifies(void **state)
{
    (void)state;
    assert_true(nvectors() >= 10);
    for (size_t i = 0; i < nvectors(); i++) {
        json_t *v = json_array_get(json_object_get(vectors, "vectors"), i);
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *serialized = json_object_get(v, "serialized");
        struct event ev;
        struct buf nip01 = BUF_INIT, wire = BUF_INIT;
        char reason[200];

        if (event_parse(vector_event(i), &ev, reason, sizeof(reason)) != 0)
            fail_msg("%s: %s", name, reason);
        if (!event_id_valid(&ev))
            fail_msg("%s: id does not match", name);
        if (!event_verify_sig(ev.id, ev.pubkey, ev.sig))
            fail_msg("%s: signature does not verify", name);

        /* nostr-tools hashes JSON.stringify's output: NIP-01's unless other control characters appear. */
        event_serialize(&ev, &nip01, BUF_JSON_NIP01);
        event_serialize(&ev, &wire, BUF_JSON_WIRE);
        assert_int_equal(wire.len, json_string_length(serialized));
        assert_memory_equal(wire.data, json_string_value(serialized), wire.len);
        if (!has_other_control(ev.content, ev.content_len)) {
            assert_int_equal(nip01.len, wire.len);
            assert_memory_equal(nip01.data, wire.data, wire.len);
        }
        buf_free(&nip01);
        buf_free(&wire);
        event_free(&ev);
    }
}

static void nip01_serialization_keeps_other_control_characters_verbatim(void **state)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:i, s:i, s:[[s, s]], s:s#}", "id", "", "pubkey",
                            "87d3561f19b74adbe8bf840682992466068830a9d8c36b4a0c99d36f826cb6cb", "sig", "", "created_at",
                            7, "kind", 0, "tags", "t", "a\x01", "content", "q\"\\\n\r\t\b\f\x01\x1f\x7f/\0z", 14);
    struct event ev;
    struct buf b = BUF_INIT;
    const char expect[] =
        "[0,\"87d3561f19b74adbe8bf840682992466068830a9d8c36b4a0c99d36f826cb6cb\",7,0,[[\"t\",\"a\x01\"]],"
        "\"q\\\"\\\\\\n\\r\\t\\b\\f\x01\x1f\x7f/\0z\"]";
    (void)state;

    /* Only the serialization is under test here; the hex fields are filled in to pass the parser. */
    json_object_set_new(obj, "id", json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    json_object_set_new(obj, "sig",
                        json_string("00000000000000000000000000000000000000000000000000000000000000000000"
                                    "000000000000000000000000000000000000000000000000000000000000"));
    assert_int_equal(event_parse(obj, &ev, NULL, 0), 0);
    event_serialize(&ev, &b, BUF_JSON_NIP01);
    assert_int_equal(b.len, sizeof(expect) - 1);
    assert_memory_equal(b.data, expect, b.len);
    buf_free(&b);
    event_free(&ev);
    json_decref(obj);
}

/* Parses a copy of vector `i` with `field` replaced by `value`. */
static int parse_modified(size_t i, const char *field, json_t *value, struct event *ev)
{
    json_t *copy = json_deep_copy(vector_event(i));
    char reason[200];
    int r;

    json_object_set_new(copy, field, value);
    r = event_parse(copy, ev, reason, sizeof(reason));
    json_decref(copy);
    return r;
}

/* The hex string `s` with the character at `pos` changed to another hex digit. */
static json_t *flip_hex(const char *s, size_t pos)
{
    char *t = strdup(s);
    json_t *j;
    t[pos] = t[pos] == '0' ? '1' : '0';
    j = json_string(t);
    free(t);
    return j;
}

static void tampered_copies_are_caught(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors(); i++) {
        json_t *orig = vector_event(i);
        const char *content = json_string_value(json_object_get(orig, "content"));
        size_t clen = json_string_length(json_object_get(orig, "content"));
        struct event ev;
        char *changed = malloc(clen + 2);

        /* One ASCII byte of content changed, so the text stays valid UTF-8 (or one added, when there is none). */
        size_t at = 0;
        memcpy(changed, content, clen);
        while (at < clen && (unsigned char)changed[at] >= 0x80)
            at++;
        if (at < clen)
            changed[at] = changed[at] == 'x' ? 'y' : 'x';
        else
            changed[clen++] = 'x';
        assert_int_equal(parse_modified(i, "content", json_stringn(changed, clen), &ev), 0);
        assert_false(event_id_valid(&ev));
        /* With the id recomputed to match, the author's signature no longer fits. */
        event_compute_id(&ev, BUF_JSON_NIP01, ev.id);
        assert_true(event_id_valid(&ev));
        assert_false(event_verify_sig(ev.id, ev.pubkey, ev.sig));
        event_free(&ev);
        free(changed);

        assert_int_equal(parse_modified(i, "id", flip_hex(json_string_value(json_object_get(orig, "id")), 17), &ev), 0);
        assert_false(event_id_valid(&ev));
        event_free(&ev);

        assert_int_equal(parse_modified(i, "sig", flip_hex(json_string_value(json_object_get(orig, "sig")), 90), &ev),
                         0);
        assert_true(event_id_valid(&ev));
        assert_false(event_verify_sig(ev.id, ev.pubkey, ev.sig));
        event_free(&ev);

        assert_int_equal(
            parse_modified(i, "pubkey", flip_hex(json_string_value(json_object_get(orig, "pubkey")), 5), &ev), 0);
        assert_false(event_id_valid(&ev));
        assert_false(event_verify_sig(ev.id, ev.pubkey, ev.sig));
        event_free(&ev);
    }
}

static void malformed_fields_are_refused_with_a_reason(void **state)
{
    struct {
        const char *field;
        json_t *value;
        const char *reason;
    } cases[] = {
        {"id", json_string("ABCDEF"), "id must be 64 lowercase hex"},
        {"id", json_integer(5), "id must be 64 lowercase hex"},
        {"pubkey", json_string("87D3561F19B74ADBE8BF840682992466068830A9D8C36B4A0C99D36F826CB6CB"),
         "pubkey must be 64 lowercase hex"},
        {"sig", json_string("00"), "sig must be 128 lowercase hex"},
        {"created_at", json_integer(-1), "created_at must be a non-negative integer"},
        {"created_at", json_real(1.5), "created_at must be a non-negative integer"},
        {"created_at", json_string("1700000000"), "created_at must be a non-negative integer"},
        {"kind", json_integer(65536), "kind must be an integer from 0 to 65535"},
        {"kind", json_string("0"), "kind must be an integer from 0 to 65535"},
        {"tags", json_object(), "tags must be an array of arrays of strings"},
        {"tags", json_pack("[[s, i]]", "p", 1), "tags must be an array of arrays of strings"},
        {"tags", json_pack("[s]", "p"), "tags must be an array of arrays of strings"},
        {"content", json_null(), "content must be a string"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *copy = json_deep_copy(vector_event(0));
        struct event ev;
        char reason[200] = "";

        json_object_set_new(copy, cases[i].field, cases[i].value);
        assert_int_equal(event_parse(copy, &ev, reason, sizeof(reason)), -EINVAL);
        if (strstr(reason, cases[i].reason) == NULL)
            fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, reason, cases[i].reason);
        json_decref(copy);
    }

    json_t *missing = json_deep_copy(vector_event(0));
    struct event ev;
    char reason[200];
    json_object_del(missing, "sig");
    assert_int_equal(event_parse(missing, &ev, reason, sizeof(reason)), -EINVAL);
    json_decref(missing);
    json_t *not_object = json_array();
    assert_int_equal(event_parse(not_object, &ev, reason, sizeof(reason)), -EINVAL);
    json_decref(not_object);
}

static void records_carry_header_tags_and_wire_json(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvectors(); i++) {
        struct event ev;
        struct event_view v;
        size_t len, pos = 0, vlen;
        uint8_t *rec;
        json_t *back;
        json_error_t err;
        const char *value;
        char letter;
        size_t tags_seen = 0;

        assert_int_equal(event_parse(vector_event(i), &ev, NULL, 0), 0);
        rec = event_record_build(&ev, &len);
        assert_int_equal(event_view_decode(ev.id, rec, len, &v), 0);
        assert_int_equal(v.created_at, ev.created_at);
        assert_int_equal(v.kind, ev.kind);
        assert_memory_equal(v.pubkey, ev.pubkey, 32);

        /* The JSON clients receive is the same event, field for field. */
        back = json_loadb(v.json, v.json_len, JSON_ALLOW_NUL, &err);
        assert_non_null(back);
        assert_true(json_equal(back, vector_event(i)));
        json_decref(back);

        while (event_view_next_tag(&v, &pos, &letter, &value, &vlen)) {
            assert_true((letter >= 'a' && letter <= 'z') || (letter >= 'A' && letter <= 'Z'));
            tags_seen++;
        }
        assert_int_equal(pos, v.tags_len);
        if (ev.kind == 3 && json_array_size(ev.tags) == 1000)
            assert_int_equal(tags_seen, 1000);

        assert_int_equal(event_view_decode(ev.id, rec, len - 1, &v), -EINVAL);
        free(rec);
        event_free(&ev);
    }
}

static void kinds_fall_into_nip01_classes(void **state)
{
    (void)state;
    assert_int_equal(event_kind_class(0), EVENT_REPLACEABLE);
    assert_int_equal(event_kind_class(3), EVENT_REPLACEABLE);
    assert_int_equal(event_kind_class(10002), EVENT_REPLACEABLE);
    assert_int_equal(event_kind_class(1), EVENT_REGULAR);
    assert_int_equal(event_kind_class(20001), EVENT_EPHEMERAL);
    assert_int_equal(event_kind_class(30023), EVENT_ADDRESSABLE);
    assert_int_equal(event_kind_class(40000), EVENT_REGULAR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_vector_parses_hashes_and_verifies),
        cmocka_unit_test(nip01_serialization_keeps_other_control_characters_verbatim),
        cmocka_unit_test(tampered_copies_are_caught),
        cmocka_unit_test(malformed_fields_are_refused_with_a_reason),
        cmocka_unit_test(records_carry_header_tags_and_wire_json),
        cmocka_unit_test(kinds_fall_into_nip01_classes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
