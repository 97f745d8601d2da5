/* test_nip19.c -- public keys as hex, npub and nprofile, and the errors for everything else. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "hex.h"
/* Included so that tests can build bech32 strings of any content with the module's own encoder. */
#include "nip19.c"

#define VECTOR_NPUB     "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
#define VECTOR_NPUB_HEX "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
#define VECTOR_NPROFILE                                                                                                \
    "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4mhxue69uhkg6nzv9ejuum" \
    "pv34kytnrdaksjlyr9p"
#define VECTOR_NPROFILE_HEX "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"
#define VECTOR_NSEC         "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"

static void key_from_hex(const char *hex, uint8_t key[32])
{
    assert_int_equal(hex_decode(hex, 64, key, 32), 0);
}

/* Decodes `s` and expects failure with exactly the message `expect`. */
static void expect_refused(const char *s, size_t len, const char *expect)
{
    uint8_t key[32];
    char why[NIP19_ERR_LEN] = "";

    assert_int_equal(nip19_decode_pubkey(s, len, key, why, sizeof(why)), -EINVAL);
    assert_true(why[0] != '\0');
    if (strcmp(why, expect) != 0)
        fail_msg("\"%.*s\": message \"%s\", expected \"%s\"", (int)len, s, why, expect);
}

static void expect_key(const char *s, const char *hex)
{
    uint8_t key[32], want[32];
    char why[NIP19_ERR_LEN] = "";

    key_from_hex(hex, want);
    if (nip19_decode_pubkey(s, strlen(s), key, why, sizeof(why)) != 0)
        fail_msg("\"%s\" refused: %s", s, why);
    assert_memory_equal(key, want, 32);
}

/* An nprofile of `n` TLV bytes: the key record first, then relay records filling the rest. */
static size_t make_nprofile(const uint8_t key[32], size_t n, char *out, size_t outlen)
{
    uint8_t tlv[4096];
    size_t i = 0;

    assert_true(n >= 34 && n <= sizeof(tlv));
    tlv[i++] = 0;
    tlv[i++] = 32;
    memcpy(tlv + i, key, 32);
    i += 32;
    while (i < n) {
        size_t len = n - i - 2 > 200 ? 200 : n - i - 2;
        if (n - i - 2 - len == 1)
            len--;
        tlv[i++] = 1;
        tlv[i++] = (uint8_t)len;
        memset(tlv + i, 'r', len);
        i += len;
    }
    return bech32_encode("nprofile", tlv, n, out, outlen);
}

/* A bech32 string from raw 5-bit groups, to build paddings the byte encoder never writes. */
static void encode_groups(const char *hrp, const uint8_t *groups, size_t n, char *out)
{
    size_t hrplen = strlen(hrp), len = hrplen + 1;
    uint32_t chk = hrp_polymod(hrp, hrplen);

    memcpy(out, hrp, hrplen);
    out[hrplen] = '1';
    for (size_t i = 0; i < n; i++) {
        chk = polymod_step(chk, groups[i]);
        out[len++] = charset[groups[i]];
    }
    for (int i = 0; i < 6; i++)
        chk = polymod_step(chk, 0);
    chk ^= 1;
    for (int i = 0; i < 6; i++)
        out[len++] = charset[(chk >> (5 * (5 - i))) & 31];
    out[len] = '\0';
}

static void decodes_the_nip19_vectors(void **state)
{
    (void)state;
    expect_key(VECTOR_NPUB, VECTOR_NPUB_HEX);
    expect_key(VECTOR_NPROFILE, VECTOR_NPROFILE_HEX);
}

static void encodes_the_nip19_npub_vector(void **state)
{
    uint8_t key[32];
    char s[64];
    (void)state;

    key_from_hex(VECTOR_NPUB_HEX, key);
    assert_int_equal(nip19_encode_npub(key, s, sizeof(s)), 63);
    assert_string_equal(s, VECTOR_NPUB);
}

static void npubs_round_trip(void **state)
{
    uint8_t key[32], back[32];
    char s[64];
    char why[NIP19_ERR_LEN] = "";
    (void)state;

    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 32; i++)
            key[i] = k == 0 ? 0 : k == 1 ? 0xff : (uint8_t)(i * 37 + k * 11);
        assert_int_equal(nip19_encode_npub(key, s, sizeof(s)), 63);
        assert_int_equal(strlen(s), 63);
        assert_memory_equal(s, "npub1", 5);
        if (nip19_decode_pubkey(s, 63, back, why, sizeof(why)) != 0)
            fail_msg("\"%s\" refused: %s", s, why);
        assert_memory_equal(back, key, 32);
    }
}

static void encoding_needs_room_for_the_nul(void **state)
{
    uint8_t key[32] = {0};
    char s[64];
    (void)state;

    memset(s, 'x', sizeof(s));
    assert_int_equal(nip19_encode_npub(key, s, 63), 0);
    assert_int_equal(nip19_encode_npub(key, s, 0), 0);
    assert_int_equal(s[0], 'x');
}

static void accepts_hex_in_either_case(void **state)
{
    char upper[65];
    (void)state;

    for (int i = 0; i < 65; i++)
        upper[i] = (char)toupper((unsigned char)VECTOR_NPUB_HEX[i]);
    expect_key(VECTOR_NPUB_HEX, VECTOR_NPUB_HEX);
    expect_key(upper, VECTOR_NPUB_HEX);
}

static void accepts_uppercase_bech32(void **state)
{
    char npub[] = VECTOR_NPUB, nprofile[] = VECTOR_NPROFILE;
    (void)state;

    for (size_t i = 0; npub[i] != '\0'; i++)
        npub[i] = (char)toupper((unsigned char)npub[i]);
    for (size_t i = 0; nprofile[i] != '\0'; i++)
        nprofile[i] = (char)toupper((unsigned char)nprofile[i]);
    expect_key(npub, VECTOR_NPUB_HEX);
    expect_key(nprofile, VECTOR_NPROFILE_HEX);
}

static void refuses_mixed_case(void **state)
{
    char s[] = VECTOR_NPUB;
    (void)state;

    s[10] = (char)toupper((unsigned char)s[10]);
    expect_refused(s, strlen(s), "mixed case");
    s[10] = VECTOR_NPUB[10];
    s[0] = 'N';
    expect_refused(s, strlen(s), "mixed case");
}

static void any_changed_character_fails_the_checksum(void **state)
{
    char s[] = VECTOR_NPUB;
    (void)state;

    /* BIP-173's code detects any single substitution; a changed prefix is no longer an npub at all. */
    for (size_t i = 5; i < sizeof(s) - 1; i++) {
        char was = s[i];
        s[i] = was == 'q' ? 'p' : 'q';
        expect_refused(s, strlen(s), "bad bech32 checksum");
        s[i] = was;
    }
}

static void refuses_hex_of_the_wrong_length(void **state)
{
    char s[] = VECTOR_NPUB_HEX "0";
    (void)state;

    expect_refused(s, 63, "not 64 hex characters, an npub or an nprofile");
    expect_refused(s, 65, "not 64 hex characters, an npub or an nprofile");
    expect_refused(s, 0, "not 64 hex characters, an npub or an nprofile");
    s[20] = 'g';
    expect_refused(s, 64, "not 64 hex characters, an npub or an nprofile");
}

static void refuses_an_nsec_without_echoing_it(void **state)
{
    uint8_t key[32];
    char why[NIP19_ERR_LEN] = "";
    const char *data = VECTOR_NSEC + 5;
    char window[7] = "";
    (void)state;

    assert_int_equal(nip19_decode_pubkey(VECTOR_NSEC, strlen(VECTOR_NSEC), key, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "unknown bech32 prefix \"nsec\"");
    for (size_t i = 0; i + 6 <= strlen(data); i++) {
        memcpy(window, data + i, 6);
        assert_null(strstr(why, window));
    }
}

static void refuses_other_prefixes(void **state)
{
    uint8_t key[32] = {1};
    char s[100];
    (void)state;

    assert_int_not_equal(bech32_encode("note", key, 32, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "unknown bech32 prefix \"note\"");
    assert_int_not_equal(bech32_encode("nfoo", key, 32, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "not 64 hex characters, an npub or an nprofile");
    /* The separator is the last '1', so this is prefix "npub1" rather than a longer npub. */
    assert_int_not_equal(bech32_encode("npub1", key, 32, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "not 64 hex characters, an npub or an nprofile");
    /* A damaged nsec is still named, so that the user learns what was pasted. */
    expect_refused("nsec1qqqq", 9, "unknown bech32 prefix \"nsec\"");
}

static void an_npub_holds_exactly_32_bytes(void **state)
{
    uint8_t key[33] = {0};
    char s[100];
    (void)state;

    assert_int_not_equal(bech32_encode("npub", key, 31, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "an npub must hold 32 bytes");
    assert_int_not_equal(bech32_encode("npub", key, 33, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "an npub must hold 32 bytes");
}

static void refuses_bad_padding(void **state)
{
    uint8_t groups[52] = {0};
    char s[100];
    (void)state;

    /* 52 groups carry 32 bytes and 4 bits of padding, which must be zero. */
    groups[51] = 1;
    encode_groups("npub", groups, 52, s);
    expect_refused(s, strlen(s), "bad bech32 padding");
    /* Nine groups are 5 bytes and 5 bits: a whole group of padding. */
    groups[51] = 0;
    encode_groups("npub", groups, 9, s);
    expect_refused(s, strlen(s), "bad bech32 padding");
}

static void refuses_what_is_not_bech32(void **state)
{
    const char *bad[] = {"npub1", "1qqqqqqqqqqqqqq", "npub1qqqqq", "npub1b0elfcs4fr0l0r8af98", "npub 1qqqqqqqq", "x",
                         "npub",  "nprofile",        "nsec",       "npubqqqqqqqqqqqqqq"};
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t key[32];
        char why[NIP19_ERR_LEN] = "";
        if (nip19_decode_pubkey(bad[i], strlen(bad[i]), key, why, sizeof(why)) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_non_null(why);
    }
    expect_refused("npub1b0elfcs4fr0l0r8af98", 24, "character outside the bech32 alphabet");
    expect_refused("npub", 4, "not 64 hex characters, an npub or an nprofile");
    expect_refused("npub1qqqqq", 10, "not 64 hex characters, an npub or an nprofile");
    expect_refused("npub\0" VECTOR_NPUB, 5 + 63, "not 64 hex characters, an npub or an nprofile");
}

static void refuses_trailing_garbage(void **state)
{
    const char *bad[] = {VECTOR_NPUB "q", VECTOR_NPUB " ",     VECTOR_NPUB "\n",
                         " " VECTOR_NPUB, VECTOR_NPROFILE "x", VECTOR_NPUB_HEX " "};
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t key[32];
        char why[NIP19_ERR_LEN] = "";
        if (nip19_decode_pubkey(bad[i], strlen(bad[i]), key, why, sizeof(why)) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
    expect_refused(VECTOR_NPUB "q", 64, "bad bech32 checksum");
    expect_refused(VECTOR_NPUB_HEX "\0", 65, "not 64 hex characters, an npub or an nprofile");
}

static void nprofile_skips_relays_and_unknown_records(void **state)
{
    uint8_t key[32], tlv[64] = {1, 3, 'w', 's', 's', 7, 0, 0};
    char s[200];
    (void)state;

    key_from_hex(VECTOR_NPROFILE_HEX, key);
    tlv[7] = 0;
    tlv[8] = 32;
    memcpy(tlv + 9, key, 32);
    tlv[41] = 2;
    tlv[42] = 1;
    tlv[43] = 9;
    assert_int_not_equal(bech32_encode("nprofile", tlv, 44, s, sizeof(s)), 0);
    expect_key(s, VECTOR_NPROFILE_HEX);
}

/* The relays of an nprofile come out as hints, in order, the first NIP19_MAX_RELAYS of them. */
static void nprofile_relays_are_read_as_hints(void **state)
{
    uint8_t key[32], tlv[200], got[32];
    const char *relays[] = {"wss://one.example", "ws://127.0.0.1:7777", "wss://three", "wss://four", "wss://five"};
    struct nip19_relays hints;
    char s[400], err[NIP19_ERR_LEN];
    size_t n = 0;
    (void)state;

    key_from_hex(VECTOR_NPROFILE_HEX, key);
    for (size_t i = 0; i < 5; i++) {
        tlv[n++] = 1;
        tlv[n++] = (uint8_t)strlen(relays[i]);
        memcpy(tlv + n, relays[i], strlen(relays[i]));
        n += strlen(relays[i]);
        if (i == 1) {
            tlv[n++] = 0;
            tlv[n++] = 32;
            memcpy(tlv + n, key, 32);
            n += 32;
        }
    }
    assert_int_not_equal(bech32_encode("nprofile", tlv, n, s, sizeof(s)), 0);
    assert_int_equal(nip19_decode_profile(s, strlen(s), got, &hints, err, sizeof(err)), 0);
    assert_memory_equal(got, key, 32);
    assert_int_equal(hints.n, NIP19_MAX_RELAYS);
    for (size_t i = 0; i < NIP19_MAX_RELAYS; i++)
        assert_string_equal(hints.urls[i], relays[i]);
    /* A hex key names no relay. */
    assert_int_equal(nip19_decode_profile(VECTOR_NPROFILE_HEX, 64, got, &hints, err, sizeof(err)), 0);
    assert_int_equal(hints.n, 0);
}

static void nprofile_without_a_key_is_refused(void **state)
{
    uint8_t tlv[] = {1, 3, 'w', 's', 's', 2, 0};
    char s[100];
    (void)state;

    assert_int_not_equal(bech32_encode("nprofile", tlv, sizeof(tlv), s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "nprofile has no public key");
    assert_int_not_equal(bech32_encode("nprofile", tlv, 0, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "nprofile has no public key");
}

static void nprofile_key_must_be_32_bytes_and_single(void **state)
{
    uint8_t tlv[68] = {0, 31};
    char s[200];
    (void)state;

    assert_int_not_equal(bech32_encode("nprofile", tlv, 33, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "an nprofile public key must be 32 bytes");
    tlv[1] = 32;
    tlv[34] = 0;
    tlv[35] = 32;
    assert_int_not_equal(bech32_encode("nprofile", tlv, 68, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "nprofile has two public keys");
}

static void truncated_tlv_is_refused(void **state)
{
    uint8_t tlv[40] = {0, 32};
    char s[200];
    (void)state;

    /* A key record that announces 32 bytes but holds 20. */
    assert_int_not_equal(bech32_encode("nprofile", tlv, 22, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "truncated nprofile record");
    /* A whole key followed by a type byte with no length. */
    tlv[34] = 1;
    assert_int_not_equal(bech32_encode("nprofile", tlv, 35, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "truncated nprofile record");
    /* A relay record whose length runs past the end. */
    tlv[35] = 4;
    tlv[36] = 'w';
    assert_int_not_equal(bech32_encode("nprofile", tlv, 37, s, sizeof(s)), 0);
    expect_refused(s, strlen(s), "truncated nprofile record");
}

static void long_nprofiles_are_accepted_up_to_5000_characters(void **state)
{
    uint8_t key[32];
    char s[5100];
    (void)state;

    key_from_hex(VECTOR_NPROFILE_HEX, key);
    assert_int_equal(make_nprofile(key, 3115, s, sizeof(s)), 4999);
    expect_key(s, VECTOR_NPROFILE_HEX);
    assert_int_equal(make_nprofile(key, 3116, s, sizeof(s)), 5001);
    expect_refused(s, strlen(s), "longer than 5000 characters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_the_nip19_vectors),
        cmocka_unit_test(encodes_the_nip19_npub_vector),
        cmocka_unit_test(npubs_round_trip),
        cmocka_unit_test(encoding_needs_room_for_the_nul),
        cmocka_unit_test(accepts_hex_in_either_case),
        cmocka_unit_test(accepts_uppercase_bech32),
        cmocka_unit_test(refuses_mixed_case),
        cmocka_unit_test(any_changed_character_fails_the_checksum),
        cmocka_unit_test(refuses_hex_of_the_wrong_length),
        cmocka_unit_test(refuses_an_nsec_without_echoing_it),
        cmocka_unit_test(refuses_other_prefixes),
        cmocka_unit_test(an_npub_holds_exactly_32_bytes),
        cmocka_unit_test(refuses_bad_padding),
        cmocka_unit_test(refuses_what_is_not_bech32),
        cmocka_unit_test(refuses_trailing_garbage),
        cmocka_unit_test(nprofile_skips_relays_and_unknown_records),
        cmocka_unit_test(nprofile_relays_are_read_as_hints),
        cmocka_unit_test(nprofile_without_a_key_is_refused),
        cmocka_unit_test(nprofile_key_must_be_32_bytes_and_single),
        cmocka_unit_test(truncated_tlv_is_refused),
        cmocka_unit_test(long_nprofiles_are_accepted_up_to_5000_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
