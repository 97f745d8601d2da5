/* event.c -- Nostr events (NIP-01): strict parsing, the id serialization, signatures, and the stored record. */
#include "event.h"

#include <errno.h>
#include <openssl/sha.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

static int refuse(char *reason, size_t len, const char *msg)
{
    snprintf(reason, len, "%s", msg);
    return -EINVAL;
}

static int hex_field(json_t *obj, const char *name, uint8_t *out, size_t n, char *reason, size_t len)
{
    json_t *v = json_object_get(obj, name);

    if (!json_is_string(v) || hex_decode(json_string_value(v), json_string_length(v), out, n) != 0) {
        snprintf(reason, len, "%s must be %zu lowercase hex characters", name, 2 * n);
        return -EINVAL;
    }
    return 0;
}

int event_parse(json_t *obj, struct event *ev, char *reason, size_t len)
{
    json_t *v, *tag, *item;
    size_t i, j;
    int r;

    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(obj))
        return refuse(reason, len, "event must be a JSON object");
    if ((r = hex_field(obj, "id", ev->id, 32, reason, len)) != 0 ||
        (r = hex_field(obj, "pubkey", ev->pubkey, 32, reason, len)) != 0 ||
        (r = hex_field(obj, "sig", ev->sig, 64, reason, len)) != 0)
        return r;

    v = json_object_get(obj, "created_at");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return refuse(reason, len, "created_at must be a non-negative integer");
    ev->created_at = json_integer_value(v);

    v = json_object_get(obj, "kind");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
        return refuse(reason, len, "kind must be an integer from 0 to 65535");
    ev->kind = (uint32_t)json_integer_value(v);

    v = json_object_get(obj, "tags");
    if (!json_is_array(v))
        return refuse(reason, len, "tags must be an array of arrays of strings");
    json_array_foreach(v, i, tag)
    {
        if (!json_is_array(tag))
            return refuse(reason, len, "tags must be an array of arrays of strings");
        json_array_foreach(tag, j, item)
        {
            if (!json_is_string(item))
                return refuse(reason, len, "tags must be an array of arrays of strings");
        }
    }
    ev->tags = v;

    v = json_object_get(obj, "content");
    if (!json_is_string(v))
        return refuse(reason, len, "content must be a string");
    ev->content = json_string_value(v);
    ev->content_len = json_string_length(v);

    ev->root = json_incref(obj);
    return 0;
}

void event_free(struct event *ev)
{
    json_decref(ev->root);
    memset(ev, 0, sizeof(*ev));
}

static void write_tags(const json_t *tags, struct buf *b, enum buf_json_mode mode)
{
    size_t i, j;
    json_t *tag, *item;

    buf_appendc(b, '[');
    json_array_foreach(tags, i, tag)
    {
        if (i > 0)
            buf_appendc(b, ',');
        buf_appendc(b, '[');
        json_array_foreach(tag, j, item)
        {
            if (j > 0)
                buf_appendc(b, ',');
            buf_json_string(b, json_string_value(item), json_string_length(item), mode);
        }
        buf_appendc(b, ']');
    }
    buf_appendc(b, ']');
}

void event_serialize(const struct event *ev, struct buf *b, enum buf_json_mode mode)
{
    char pubkey[64];

    hex_encode(ev->pubkey, 32, pubkey);
    buf_append(b, "[0,\"", 4);
    buf_append(b, pubkey, 64);
    buf_appendf(b, "\",%lld,%u,", (long long)ev->created_at, ev->kind);
    write_tags(ev->tags, b, mode);
    buf_appendc(b, ',');
    buf_json_string(b, ev->content, ev->content_len, mode);
    buf_appendc(b, ']');
}

void event_compute_id(const struct event *ev, enum buf_json_mode mode, uint8_t out[32])
{
    struct buf b = BUF_INIT;

    event_serialize(ev, &b, mode);
    SHA256((const unsigned char *)b.data, b.len, out);
    buf_free(&b);
}

/* Whether `s` holds a byte below 0x20 that NIP-01 keeps verbatim but JSON.stringify escapes. */
static bool has_other_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\b' && c != '\f')
            return true;
    }
    return false;
}

static bool tags_have_other_control(const json_t *tags)
{
    size_t i, j;
    json_t *tag, *item;

    json_array_foreach(tags, i, tag)
    {
        json_array_foreach(tag, j, item)
        {
            if (has_other_control(json_string_value(item), json_string_length(item)))
                return true;
        }
    }
    return false;
}

bool event_id_valid(const struct event *ev)
{
    uint8_t id[32];

    event_compute_id(ev, BUF_JSON_NIP01, id);
    if (memcmp(id, ev->id, 32) == 0)
        return true;
    if (!has_other_control(ev->content, ev->content_len) && !tags_have_other_control(ev->tags))
        return false;
    event_compute_id(ev, BUF_JSON_WIRE, id);
    return memcmp(id, ev->id, 32) == 0;
}

bool event_verify_sig(const uint8_t id[32], const uint8_t pubkey[32], const uint8_t sig[64])
{
    secp256k1_xonly_pubkey pk;

    if (!secp256k1_xonly_pubkey_parse(secp256k1_context_static, &pk, pubkey))
        return false;
    return secp256k1_schnorrsig_verify(secp256k1_context_static, sig, id, 32, &pk) == 1;
}

enum event_class event_kind_class(uint32_t kind)
{
    if (kind == 0 || kind == 3 || (kind >= 10000 && kind < 20000))
        return EVENT_REPLACEABLE;
    if (kind >= 20000 && kind < 30000)
        return EVENT_EPHEMERAL;
    if (kind >= 30000 && kind < 40000)
        return EVENT_ADDRESSABLE;
    return EVENT_REGULAR;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool is_letter(const char *s, size_t n)
{
    return n == 1 && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'));
}

uint8_t *event_record_build(const struct event *ev, size_t *len)
{
    struct buf b = BUF_INIT;
    char hex[128];
    size_t i, tags_len, json_start;
    json_t *tag;

    buf_reserve(&b, EVENT_RECORD_HEADER + 256 + ev->content_len * 2);
    b.len = EVENT_RECORD_HEADER;

    json_array_foreach(ev->tags, i, tag)
    {
        json_t *name = json_array_get(tag, 0), *value = json_array_get(tag, 1);
        size_t vlen = json_string_length(value);
        if (value == NULL || !is_letter(json_string_value(name), json_string_length(name)) ||
            vlen > EVENT_TAG_VALUE_MAX)
            continue;
        buf_appendc(&b, json_string_value(name)[0]);
        buf_appendc(&b, (char)(vlen & 0xff));
        buf_appendc(&b, (char)(vlen >> 8));
        buf_append(&b, json_string_value(value), vlen);
    }
    tags_len = b.len - EVENT_RECORD_HEADER;
    json_start = b.len;

    buf_append(&b, "{\"id\":\"", 7);
    hex_encode(ev->id, 32, hex);
    buf_append(&b, hex, 64);
    buf_append(&b, "\",\"pubkey\":\"", 12);
    hex_encode(ev->pubkey, 32, hex);
    buf_append(&b, hex, 64);
    buf_appendf(&b, "\",\"created_at\":%lld,\"kind\":%u,\"tags\":", (long long)ev->created_at, ev->kind);
    write_tags(ev->tags, &b, BUF_JSON_WIRE);
    buf_append(&b, ",\"content\":", 11);
    buf_json_string(&b, ev->content, ev->content_len, BUF_JSON_WIRE);
    buf_append(&b, ",\"sig\":\"", 8);
    hex_encode(ev->sig, 64, hex);
    buf_append(&b, hex, 128);
    buf_append(&b, "\"}", 2);

    put_u64((uint8_t *)b.data, (uint64_t)ev->created_at);
    put_u32((uint8_t *)b.data + 8, ev->kind);
    memcpy(b.data + 12, ev->pubkey, 32);
    put_u32((uint8_t *)b.data + 44, (uint32_t)tags_len);
    put_u32((uint8_t *)b.data + 48, (uint32_t)(b.len - json_start));
    *len = b.len;
    return (uint8_t *)buf_steal(&b);
}

int event_view_decode(const uint8_t *id, const void *rec, size_t len, struct event_view *v)
{
    const uint8_t *p = rec;
    uint32_t tags_len, json_len;

    if (len < EVENT_RECORD_HEADER)
        return -EINVAL;
    tags_len = get_u32(p + 44);
    json_len = get_u32(p + 48);
    if ((uint64_t)EVENT_RECORD_HEADER + tags_len + json_len != len)
        return -EINVAL;
    v->id = id;
    v->created_at = (int64_t)get_u64(p);
    v->kind = get_u32(p + 8);
    v->pubkey = p + 12;
    v->tags = p + EVENT_RECORD_HEADER;
    v->tags_len = tags_len;
    v->json = (const char *)p + EVENT_RECORD_HEADER + tags_len;
    v->json_len = json_len;
    return 0;
}

void *event_view_dup(const struct event_view *v, struct event_view *out)
{
    size_t len = EVENT_RECORD_HEADER + v->tags_len + v->json_len;
    const uint8_t *rec = v->pubkey - 12;
    uint8_t *copy = malloc(32 + len);

    if (copy == NULL)
        abort();
    memcpy(copy, v->id, 32);
    memcpy(copy + 32, rec, len);
    event_view_decode(copy, copy + 32, len, out);
    return copy;
}

bool event_view_next_tag(const struct event_view *v, size_t *pos, char *letter, const char **value, size_t *value_len)
{
    size_t n;

    if (*pos + 3 > v->tags_len)
        return false;
    n = (size_t)v->tags[*pos + 1] | (size_t)v->tags[*pos + 2] << 8;
    if (*pos + 3 + n > v->tags_len)
        return false;
    *letter = (char)v->tags[*pos];
    *value = (const char *)v->tags + *pos + 3;
    *value_len = n;
    *pos += 3 + n;
    return true;
}

void event_view_d_tag(const struct event_view *v, const char **value, size_t *len)
{
    size_t pos = 0;
    char letter;

    while (event_view_next_tag(v, &pos, &letter, value, len)) {
        if (letter == 'd')
            return;
    }
    *value = "";
    *len = 0;
}
