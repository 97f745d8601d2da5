/* test_auth.c -- admin authorization: tokens, NIP-98 events signed here with libsecp256k1, and the loopback rule. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Included so that the token comparison, the loopback test and the rules as a whole can be tested without h2o. */
#include "auth.c"

#define NOW   1700000000
#define URL   "https://relay.example/batch-cache?force=1"
#define TOKEN "s3cret-token-0123456789"

static const uint8_t admin_seckey[32] = {[0 ... 31] = 0x01};
static const uint8_t other_seckey[32] = {[0 ... 31] = 0x02};

static secp256k1_context *ctx;
static uint8_t admin_key[1][32];
static struct auth au;

enum tamper { TAMPER_NONE, TAMPER_SIG, TAMPER_CONTENT };

/* An event to sign; a NULL tag value leaves that tag out. */
struct spec {
    const uint8_t *seckey;
    uint32_t kind;
    int64_t created_at;
    const char *u, *method, *payload;
    enum tamper tamper;
};

static struct spec valid_spec(void)
{
    return (struct spec){admin_seckey, 27235, NOW, URL, "GET", NULL, TAMPER_NONE};
}

static void xonly(const uint8_t seckey[32], uint8_t out[32])
{
    secp256k1_keypair kp;
    secp256k1_xonly_pubkey xpk;

    assert_true(secp256k1_keypair_create(ctx, &kp, seckey));
    assert_true(secp256k1_keypair_xonly_pub(ctx, &xpk, NULL, &kp));
    assert_true(secp256k1_xonly_pubkey_serialize(ctx, out, &xpk));
}

static void add_tag(json_t *tags, const char *name, const char *value)
{
    if (value != NULL)
        json_array_append_new(tags, json_pack("[ss]", name, value));
}

/* The event of `s`, signed, as JSON text the caller frees. */
static char *signed_json(const struct spec *s)
{
    secp256k1_keypair kp;
    struct event ev = {0};
    char id[64], pubkey[64], sig[128], *text;
    json_t *obj;

    assert_true(secp256k1_keypair_create(ctx, &kp, s->seckey));
    xonly(s->seckey, ev.pubkey);
    ev.created_at = s->created_at;
    ev.kind = s->kind;
    ev.tags = json_array();
    add_tag(ev.tags, "u", s->u);
    add_tag(ev.tags, "method", s->method);
    add_tag(ev.tags, "payload", s->payload);
    ev.content = "";
    event_compute_id(&ev, BUF_JSON_NIP01, ev.id);
    assert_true(secp256k1_schnorrsig_sign32(ctx, ev.sig, ev.id, &kp, NULL));
    if (s->tamper == TAMPER_SIG)
        ev.sig[17] ^= 0x04;
    hex_encode(ev.id, 32, id);
    hex_encode(ev.pubkey, 32, pubkey);
    hex_encode(ev.sig, 64, sig);
    obj = json_pack("{s:s%, s:s%, s:I, s:i, s:o, s:s, s:s%}", "id", id, (size_t)64, "pubkey", pubkey, (size_t)64,
                    "created_at", (json_int_t)ev.created_at, "kind", (int)ev.kind, "tags", ev.tags, "content",
                    s->tamper == TAMPER_CONTENT ? "changed after signing" : "", "sig", sig, (size_t)128);
    text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return text;
}

/* "Nostr <base64 of len bytes of data>", padded or not, in `out`. */
static h2o_iovec_t nostr_header(const void *data, size_t len, bool pad, char *out)
{
    int n;

    memcpy(out, "Nostr ", 6);
    n = EVP_EncodeBlock((unsigned char *)out + 6, data, (int)len);
    while (!pad && out[6 + n - 1] == '=')
        n--;
    return h2o_iovec_init(out, 6 + (size_t)n);
}

static char header_buf[8192];

static h2o_iovec_t header_of(const struct spec *s)
{
    char *json = signed_json(s);
    h2o_iovec_t h = nostr_header(json, strlen(json), true, header_buf);
    free(json);
    return h;
}

static struct nip98_request request(const char *method, const char *body)
{
    return (struct nip98_request){h2o_iovec_init(H2O_STRLIT(URL)), h2o_iovec_init(NULL, 0),
                                  h2o_iovec_init(method, strlen(method)),
                                  body != NULL ? h2o_iovec_init(body, strlen(body)) : h2o_iovec_init(NULL, 0)};
}

/* Checks `h` against `rq` at `now` and expects acceptance. */
static void expect_accepted(h2o_iovec_t h, const struct nip98_request *rq, int64_t now)
{
    char why[512] = "";

    if (nip98_check(&au, h, rq, now, why, sizeof(why)) != 0)
        fail_msg("refused: %s", why);
}

/* Checks `h` against `rq` at `now` and expects a refusal whose message starts with `expect`. */
static void expect_refused(h2o_iovec_t h, const struct nip98_request *rq, int64_t now, const char *expect)
{
    char why[512] = "";

    assert_int_equal(nip98_check(&au, h, rq, now, why, sizeof(why)), -EACCES);
    if (strncmp(why, expect, strlen(expect)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", why, expect);
}

static void sha256_hex(const char *s, char out[65])
{
    uint8_t digest[32];

    SHA256((const unsigned char *)s, strlen(s), digest);
    hex_encode(digest, 32, out);
    out[64] = '\0';
}

/* Options with `token` ("" for none) and, when `with_key`, the admin's public key, named as app.c names them. */
static void configure(const char *token, bool with_key)
{
    struct auth_options o = {token, admin_key, with_key ? 1 : 0, {"admin_token", "admin_pubkeys"}};

    xonly(admin_seckey, admin_key[0]);
    auth_free(&au);
    auth_init(&au, &o);
}

static int setup_keys(void **state)
{
    (void)state;
    configure("", true);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    auth_free(&au);
    return 0;
}

static void valid_event_is_accepted(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    expect_accepted(header_of(&s), &rq, NOW);
}

static void scheme_is_case_insensitive_and_padding_optional(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    char *json;
    h2o_iovec_t h;
    (void)state;

    s.u = URL "&pad=1";
    rq.url = h2o_iovec_init(H2O_STRLIT(URL "&pad=1"));
    json = signed_json(&s);
    /* Trailing spaces are valid JSON and make the base64 need padding. */
    json = realloc(json, strlen(json) + 3);
    while (strlen(json) % 3 == 0)
        strcat(json, " ");
    h = nostr_header(json, strlen(json), false, header_buf);
    assert_int_not_equal(h.base[h.len - 1], '=');
    memcpy(header_buf, "nOsTr", 5);
    expect_accepted(h, &rq, NOW);
    free(json);
}

static void u_tag_must_be_the_request_url(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    s.u = "https://relay.example/batch-cache";
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the u tag does not match the request URL, " URL);
    s.u = "http://relay.example/batch-cache?force=1";
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the u tag does not match the request URL");
    s.u = NULL;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the event has no u tag");
}

static void url_with_the_forwarded_scheme_is_accepted(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    rq.url = h2o_iovec_init(H2O_STRLIT("http://relay.example/batch-cache?force=1"));
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the u tag does not match the request URL");
    rq.proxied_url = h2o_iovec_init(H2O_STRLIT(URL));
    expect_accepted(header_of(&s), &rq, NOW);
}

static void method_tag_must_be_the_request_method(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("POST", NULL);
    (void)state;

    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the method tag does not match the request method, POST");
    s.method = "post";
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the method tag does not match the request method");
    s.method = NULL;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the event has no method tag");
    s.method = "POST";
    expect_accepted(header_of(&s), &rq, NOW);
}

static void created_at_must_be_within_60_seconds(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    s.created_at = NOW - 61;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: stale created_at");
    s.created_at = NOW + 61;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: created_at is more than 60 seconds ahead");
    s.created_at = NOW - 60;
    expect_accepted(header_of(&s), &rq, NOW);
    s.created_at = NOW + 60;
    expect_accepted(header_of(&s), &rq, NOW);
}

static void bad_signature_is_refused(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    s.tamper = TAMPER_SIG;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: bad signature");
}

static void wrong_id_is_refused(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    s.tamper = TAMPER_CONTENT;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the event's id is not the hash of its content");
}

static void wrong_kind_is_refused(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    s.kind = 27234;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the event's kind is not 27235");
}

static void pubkey_must_be_listed(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    (void)state;

    s.seckey = other_seckey;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the event's pubkey is not in admin_pubkeys");
}

static void body_must_match_the_payload_tag(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("POST", "[\"npub1...\"]");
    char hash[65];
    (void)state;

    s.method = "POST";
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the request has a body but the event has no payload tag");
    sha256_hex("[\"npub2...\"]", hash);
    s.payload = hash;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the payload tag is not the lowercase hex SHA-256");
    sha256_hex("[\"npub1...\"]", hash);
    for (char *c = hash; *c; c++)
        *c = (char)toupper(*c);
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the payload tag is not the lowercase hex SHA-256");
    sha256_hex("[\"npub1...\"]", hash);
    expect_accepted(header_of(&s), &rq, NOW);
}

static void payload_tag_binds_even_an_empty_body(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("POST", NULL);
    char hash[65];
    (void)state;

    s.method = "POST";
    sha256_hex("[\"npub1...\"]", hash);
    s.payload = hash;
    expect_refused(header_of(&s), &rq, NOW, "NIP-98: the payload tag is not the lowercase hex SHA-256");
    sha256_hex("", hash);
    expect_accepted(header_of(&s), &rq, NOW);
}

static void replay_is_refused_until_the_event_is_stale(void **state)
{
    struct spec s = valid_spec();
    struct nip98_request rq = request("GET", NULL);
    h2o_iovec_t h;
    (void)state;

    h = header_of(&s);
    expect_accepted(h, &rq, NOW);
    expect_refused(h, &rq, NOW, "NIP-98: event already used");
    expect_refused(h, &rq, NOW + 60, "NIP-98: event already used");

    /* Dated as far ahead as allowed, an event stays fresh for 120 s: it is remembered as long. */
    s.created_at = NOW + 60;
    h = header_of(&s);
    expect_accepted(h, &rq, NOW);
    expect_refused(h, &rq, NOW + AUTH_REPLAY_SECONDS, "NIP-98: event already used");
    expect_refused(h, &rq, NOW + AUTH_REPLAY_SECONDS + 1, "NIP-98: stale created_at");

    /* The next accepted event makes room: both earlier ids are forgotten. */
    s.created_at = NOW + AUTH_REPLAY_SECONDS + 1;
    expect_accepted(header_of(&s), &rq, NOW + AUTH_REPLAY_SECONDS + 1);
    assert_int_equal(keymap_count(au._seen), 1);
}

static void remembered_ids_are_bounded(void **state)
{
    uint8_t id[32] = {0};
    char err[256];
    (void)state;

    for (uint32_t i = 0; i < AUTH_REPLAY_MAX; i++) {
        memcpy(id, &i, sizeof(i));
        memcpy(id + 24, &i, sizeof(i));
        assert_int_equal(check_replay(&au, id, NOW + i / 1000, err, sizeof(err)), 0);
    }
    id[31] = 0xff;
    assert_int_equal(check_replay(&au, id, NOW + 10, err, sizeof(err)), -EACCES);
    assert_string_equal(err, "NIP-98: more than 10000 admin requests in 120 seconds; try again later");
    /* The first thousand were accepted in the first second; they are forgotten 121 s later. */
    assert_int_equal(check_replay(&au, id, NOW + AUTH_REPLAY_SECONDS + 1, err, sizeof(err)), 0);
    assert_int_equal(au._count, AUTH_REPLAY_MAX - 1000 + 1);
    assert_int_equal(keymap_count(au._seen), au._count);
}

static void undecodable_headers_are_refused(void **state)
{
    struct nip98_request rq = request("GET", NULL);
    struct spec s = valid_spec();
    char buf[256], bearer[8192];
    h2o_iovec_t h;
    (void)state;

    expect_refused(h2o_iovec_init(H2O_STRLIT("Nostr !!not*base64!!")), &rq, NOW,
                   "NIP-98: the Authorization header is not valid base64");
    expect_refused(h2o_iovec_init(H2O_STRLIT("Nostr eyJh=Zm9v")), &rq, NOW,
                   "NIP-98: the Authorization header is not valid base64");
    expect_refused(h2o_iovec_init(H2O_STRLIT("Nostr eyJhI")), &rq, NOW,
                   "NIP-98: the Authorization header is not valid base64");
    expect_refused(nostr_header("hello, world", 12, true, buf), &rq, NOW, "NIP-98: the event is not valid JSON");
    expect_refused(nostr_header("{}", 2, true, buf), &rq, NOW,
                   "NIP-98: malformed event: id must be 64 lowercase hex characters");
    expect_refused(h2o_iovec_init(H2O_STRLIT("Nostr")), &rq, NOW, "NIP-98: the Authorization header must be");

    h = header_of(&s);
    snprintf(bearer, sizeof(bearer), "Bearer %.*s", (int)h.len - 6, h.base + 6);
    expect_refused(h2o_iovec_init(bearer, strlen(bearer)), &rq, NOW,
                   "NIP-98: the Authorization header must be \"Nostr <base64 of the event>\"");
}

static void tokens_are_compared_whole(void **state)
{
    (void)state;

    configure(TOKEN, false);
    assert_true(token_ok(&au, h2o_iovec_init(H2O_STRLIT(TOKEN))));
    assert_false(token_ok(&au, h2o_iovec_init(H2O_STRLIT("s3cret-token-012345678"))));
    assert_false(token_ok(&au, h2o_iovec_init(H2O_STRLIT(TOKEN "9"))));
    assert_false(token_ok(&au, h2o_iovec_init(H2O_STRLIT("s3cret-token-0123456788"))));
    assert_false(token_ok(&au, h2o_iovec_init(H2O_STRLIT(""))));
    configure("", true);
    assert_false(token_ok(&au, h2o_iovec_init(H2O_STRLIT(""))));
}

static bool loopback(int family, const char *addr)
{
    struct sockaddr_storage ss = {0};

    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET) {
        assert_int_equal(inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr), 1);
        return peer_is_loopback((struct sockaddr *)&ss, sizeof(struct sockaddr_in));
    }
    assert_int_equal(inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
    return peer_is_loopback((struct sockaddr *)&ss, sizeof(struct sockaddr_in6));
}

static void loopback_peers_are_recognised(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    (void)state;

    assert_true(loopback(AF_INET, "127.0.0.1"));
    assert_true(loopback(AF_INET, "127.255.3.4"));
    assert_true(loopback(AF_INET6, "::1"));
    assert_true(loopback(AF_INET6, "::ffff:127.0.0.1"));
    assert_true(loopback(AF_INET6, "::ffff:127.9.9.9"));
    assert_false(loopback(AF_INET, "128.0.0.1"));
    assert_false(loopback(AF_INET, "10.0.0.1"));
    assert_false(loopback(AF_INET, "0.0.0.0"));
    assert_false(loopback(AF_INET6, "::ffff:10.0.0.1"));
    assert_false(loopback(AF_INET6, "::127.0.0.1"));
    assert_false(loopback(AF_INET6, "::"));
    assert_false(loopback(AF_INET6, "2001:db8::1"));
    assert_false(peer_is_loopback((struct sockaddr *)&sin, 4));
}

/* Runs the rules on `in` and expects `status`, and a message starting with `expect` when it is not 0. */
static void expect_decision(const struct auth_request *in, int status, const char *expect)
{
    char why[512] = "";
    int got = decide(&au, in, NOW, why, sizeof(why));

    if (got != status)
        fail_msg("status %d (%s), expected %d", got, why, status);
    if (status != 0 && strncmp(why, expect, strlen(expect)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", why, expect);
    if (strstr(why, TOKEN) != NULL)
        fail_msg("message \"%s\" quotes the token", why);
}

static struct auth_request from(const char *family_addr, const char *authorization)
{
    static struct sockaddr_storage ss;
    struct auth_request in = {0};

    memset(&ss, 0, sizeof(ss));
    if (strchr(family_addr, ':') != NULL) {
        ss.ss_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, family_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
        in.peer_len = sizeof(struct sockaddr_in6);
    } else {
        ss.ss_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, family_addr, &((struct sockaddr_in *)&ss)->sin_addr), 1);
        in.peer_len = sizeof(struct sockaddr_in);
    }
    in.peer = (struct sockaddr *)&ss;
    if (authorization != NULL)
        in.authorization = h2o_iovec_init(authorization, strlen(authorization));
    in.nip98 = request("GET", NULL);
    return in;
}

static void without_token_or_keys_only_direct_loopback_clients_are_admitted(void **state)
{
    struct auth_request in;
    (void)state;

    configure("", false);
    expect_decision((in = from("127.0.0.1", NULL), &in), 0, NULL);
    expect_decision((in = from("::1", "Bearer whatever"), &in), 0, NULL);
    expect_decision((in = from("192.0.2.7", NULL), &in), 403,
                    "admin endpoints are open to loopback clients only; set admin_token (or admin_pubkeys)");
    in = from("127.0.0.1", NULL);
    in.proxy_header = "x-forwarded-for";
    expect_decision(&in, 403,
                    "admin endpoints are open to loopback clients only, and this request came through a proxy (it "
                    "has the x-forwarded-for header); set admin_token");
    in = from("127.0.0.1", NULL);
    in.peer_len = 0;
    expect_decision(&in, 403, "admin endpoints are open to loopback clients only");
}

static void with_a_token_the_bearer_scheme_is_required(void **state)
{
    struct auth_request in;
    (void)state;

    configure(TOKEN, false);
    assert_string_equal(au._schemes, "Bearer");
    expect_decision((in = from("192.0.2.7", "Bearer " TOKEN), &in), 0, NULL);
    expect_decision((in = from("192.0.2.7", "bearer  " TOKEN), &in), 0, NULL);
    expect_decision((in = from("127.0.0.1", NULL), &in), 401,
                    "missing Authorization header; send \"Authorization: Bearer <admin_token>\"");
    expect_decision((in = from("192.0.2.7", "Bearer " TOKEN "x"), &in), 401, "wrong token in the Authorization header");
    expect_decision((in = from("192.0.2.7", "Bearer"), &in), 401, "the Authorization header's scheme is not accepted");
    expect_decision((in = from("192.0.2.7", "Basic " TOKEN), &in), 401,
                    "the Authorization header's scheme is not accepted");
    expect_decision((in = from("192.0.2.7", TOKEN), &in), 401, "the Authorization header's scheme is not accepted");
    expect_decision((in = from("192.0.2.7", "Nostr e30="), &in), 401,
                    "the Authorization header's scheme is not accepted");
}

static void with_keys_nip98_is_required(void **state)
{
    struct spec s = valid_spec();
    struct auth_request in;
    h2o_iovec_t h;
    (void)state;

    configure("", true);
    assert_string_equal(au._schemes, "Nostr");
    h = header_of(&s);
    in = from("192.0.2.7", NULL);
    in.authorization = h;
    expect_decision(&in, 0, NULL);
    expect_decision(&in, 401, "NIP-98: event already used");
    expect_decision((in = from("127.0.0.1", NULL), &in), 401,
                    "missing Authorization header; send \"Authorization: Nostr <base64 of a NIP-98 event>\"");
    expect_decision((in = from("192.0.2.7", "Bearer " TOKEN), &in), 401,
                    "the Authorization header's scheme is not accepted");

    configure(TOKEN, true);
    assert_string_equal(au._schemes, "Bearer, Nostr");
    s.created_at = NOW - 1;
    h = header_of(&s);
    in = from("192.0.2.7", NULL);
    in.authorization = h;
    expect_decision(&in, 0, NULL);
    expect_decision((in = from("192.0.2.7", "Bearer " TOKEN), &in), 0, NULL);
    expect_decision((in = from("192.0.2.7", NULL), &in), 401,
                    "missing Authorization header; send \"Authorization: Bearer <admin_token>\" or \"Authorization: "
                    "Nostr");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(valid_event_is_accepted, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(scheme_is_case_insensitive_and_padding_optional, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(u_tag_must_be_the_request_url, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(url_with_the_forwarded_scheme_is_accepted, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(method_tag_must_be_the_request_method, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(created_at_must_be_within_60_seconds, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(bad_signature_is_refused, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(wrong_id_is_refused, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(wrong_kind_is_refused, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(pubkey_must_be_listed, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(body_must_match_the_payload_tag, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(payload_tag_binds_even_an_empty_body, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(replay_is_refused_until_the_event_is_stale, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(remembered_ids_are_bounded, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(undecodable_headers_are_refused, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(tokens_are_compared_whole, setup_keys, teardown),
        cmocka_unit_test(loopback_peers_are_recognised),
        cmocka_unit_test_setup_teardown(without_token_or_keys_only_direct_loopback_clients_are_admitted, setup_keys,
                                        teardown),
        cmocka_unit_test_setup_teardown(with_a_token_the_bearer_scheme_is_required, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(with_keys_nip98_is_required, setup_keys, teardown),
    };
    int r;

    ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    r = cmocka_run_group_tests(tests, NULL, NULL);
    secp256k1_context_destroy(ctx);
    return r;
}
