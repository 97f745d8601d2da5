/* negentropy.c -- Negentropy V1: bounds, fingerprints, range splitting and the reconciliation of one message. */
#include "negentropy.h"

#include <endian.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define BUCKETS       16
#define MAX_TIMESTAMP UINT64_MAX
/* Room kept under the frame size limit for the range that closes a cut message, as the reference keeps. */
#define FRAME_SLACK 200

enum mode { MODE_SKIP = 0, MODE_FINGERPRINT = 1, MODE_IDLIST = 2 };

/* An upper bound: records below it are in the range. `id` is zero past `idlen`. */
struct bound {
    uint64_t timestamp;
    uint8_t id[32];
    size_t idlen;
};

static int item_cmp(const void *a, const void *b)
{
    const struct neg_item *x = a, *y = b;

    if (x->timestamp != y->timestamp)
        return x->timestamp < y->timestamp ? -1 : 1;
    return memcmp(x->id, y->id, 32);
}

void neg_storage_add(struct neg_storage *s, uint64_t timestamp, const uint8_t id[32])
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        if ((s->items = realloc(s->items, s->cap * sizeof(*s->items))) == NULL)
            abort();
    }
    s->items[s->n].timestamp = timestamp;
    memcpy(s->items[s->n].id, id, 32);
    s->n++;
}

int neg_storage_seal(struct neg_storage *s)
{
    if (s->n > 1)
        qsort(s->items, s->n, sizeof(*s->items), item_cmp);
    for (size_t i = 1; i < s->n; i++)
        if (item_cmp(&s->items[i - 1], &s->items[i]) == 0)
            return -EEXIST;
    return 0;
}

void neg_storage_free(struct neg_storage *s)
{
    free(s->items);
    *s = (struct neg_storage){0};
}

void neg_put_varint(struct buf *out, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;

    do {
        tmp[n++] = v & 0x7f;
        v >>= 7;
    } while (v != 0);
    /* Most significant group first, each but the last with its high bit set. */
    for (size_t i = n; i-- > 0;)
        buf_appendc(out, (char)(tmp[i] | (i > 0 ? 0x80 : 0)));
}

int neg_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;

    for (;;) {
        uint8_t b;
        if (*p >= end || r > (UINT64_MAX >> 7))
            return -EINVAL;
        b = *(*p)++;
        r = (r << 7) | (b & 0x7f);
        if ((b & 0x80) == 0)
            break;
    }
    *v = r;
    return 0;
}

void neg_fingerprint(const struct neg_storage *s, size_t begin, size_t end, uint8_t out[NEG_FINGERPRINT])
{
    uint64_t sum[4] = {0};
    uint8_t digest[SHA256_DIGEST_LENGTH];
    struct buf in = BUF_INIT;

    for (size_t i = begin; i < end; i++) {
        unsigned carry = 0;
        for (int w = 0; w < 4; w++) {
            uint64_t x, a;
            memcpy(&x, s->items[i].id + 8 * w, 8);
            x = le64toh(x);
            a = sum[w] + x;
            unsigned c = a < sum[w];
            sum[w] = a + carry;
            carry = c | (sum[w] < a);
        }
    }
    for (int w = 0; w < 4; w++) {
        uint64_t le = htole64(sum[w]);
        buf_append(&in, &le, 8);
    }
    neg_put_varint(&in, end - begin);
    SHA256((const uint8_t *)in.data, in.len, digest);
    buf_free(&in);
    memcpy(out, digest, NEG_FINGERPRINT);
}

int neg_init(struct neg *n, const struct neg_storage *s, uint64_t frame_limit)
{
    if (frame_limit != 0 && frame_limit < NEG_MIN_FRAME)
        return -EINVAL;
    *n = (struct neg){._s = s, ._frame_limit = frame_limit};
    return 0;
}

static bool over_limit(const struct neg *n, size_t len)
{
    return n->_frame_limit != 0 && len > n->_frame_limit - FRAME_SLACK;
}

/* Timestamps are sent as the difference from the one before in the same message, plus one; 0 is infinity. */
static void put_timestamp(struct neg *n, struct buf *out, uint64_t ts)
{
    uint64_t prev = n->_last_out;

    if (ts == MAX_TIMESTAMP) {
        n->_last_out = MAX_TIMESTAMP;
        neg_put_varint(out, 0);
        return;
    }
    n->_last_out = ts;
    neg_put_varint(out, ts - prev + 1);
}

static void put_bound(struct neg *n, struct buf *out, const struct bound *b)
{
    put_timestamp(n, out, b->timestamp);
    neg_put_varint(out, b->idlen);
    buf_append(out, b->id, b->idlen);
}

static int get_bound(struct neg *n, const uint8_t **p, const uint8_t *end, struct bound *b, char *err, size_t errlen)
{
    uint64_t ts, len;

    if (neg_get_varint(p, end, &ts) != 0)
        return err_set(err, errlen, -EINVAL, "parse ends prematurely");
    if (ts == 0 || n->_last_in == MAX_TIMESTAMP) {
        ts = MAX_TIMESTAMP;
    } else {
        ts -= 1;
        if (ts > MAX_TIMESTAMP - 1 - n->_last_in)
            return err_set(err, errlen, -EINVAL, "timestamp out of range");
        ts += n->_last_in;
    }
    n->_last_in = ts;
    if (neg_get_varint(p, end, &len) != 0)
        return err_set(err, errlen, -EINVAL, "parse ends prematurely");
    if (len > 32)
        return err_set(err, errlen, -EINVAL, "bound key too long");
    if ((size_t)(end - *p) < len)
        return err_set(err, errlen, -EINVAL, "parse ends prematurely");
    memset(b, 0, sizeof(*b));
    b->timestamp = ts;
    b->idlen = (size_t)len;
    memcpy(b->id, *p, b->idlen);
    *p += len;
    return 0;
}

static int item_bound_cmp(const struct neg_item *it, const struct bound *b)
{
    if (it->timestamp != b->timestamp)
        return it->timestamp < b->timestamp ? -1 : 1;
    return memcmp(it->id, b->id, 32);
}

/* The first record in [begin, end) not below `b`. */
static size_t lower_bound(const struct neg_storage *s, size_t begin, size_t end, const struct bound *b)
{
    while (begin < end) {
        size_t mid = begin + (end - begin) / 2;
        if (item_bound_cmp(&s->items[mid], b) < 0)
            begin = mid + 1;
        else
            end = mid;
    }
    return begin;
}

/* The shortest bound that separates `prev` from `curr`, the record after it. */
static struct bound minimal_bound(const struct neg_item *prev, const struct neg_item *curr)
{
    struct bound b = {.timestamp = curr->timestamp};
    size_t shared = 0;

    if (curr->timestamp == prev->timestamp) {
        while (shared < 32 && curr->id[shared] == prev->id[shared])
            shared++;
        b.idlen = shared + 1;
        memcpy(b.id, curr->id, b.idlen);
    }
    return b;
}

static void split_range(struct neg *n, size_t lower, size_t upper, const struct bound *upper_bound, struct buf *out)
{
    const struct neg_storage *s = n->_s;
    size_t count = upper - lower;

    if (count < BUCKETS * 2) {
        put_bound(n, out, upper_bound);
        neg_put_varint(out, MODE_IDLIST);
        neg_put_varint(out, count);
        for (size_t i = lower; i < upper; i++)
            buf_append(out, s->items[i].id, 32);
        return;
    }
    size_t per = count / BUCKETS, extra = count % BUCKETS, curr = lower;
    for (size_t i = 0; i < BUCKETS; i++) {
        uint8_t fp[NEG_FINGERPRINT];
        size_t size = per + (i < extra ? 1 : 0);
        struct bound next;

        neg_fingerprint(s, curr, curr + size, fp);
        curr += size;
        next = curr == upper ? *upper_bound : minimal_bound(&s->items[curr - 1], &s->items[curr]);
        put_bound(n, out, &next);
        neg_put_varint(out, MODE_FINGERPRINT);
        buf_append(out, fp, sizeof(fp));
    }
}

void neg_initiate(struct neg *n, struct buf *out)
{
    struct bound all = {.timestamp = MAX_TIMESTAMP};

    n->_initiator = true;
    n->_last_out = 0;
    buf_appendc(out, (char)NEG_VERSION);
    split_range(n, 0, n->_s->n, &all, out);
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* The initiator's side of an id list: which ids of [lower, upper) each side lacks. */
static void compare_ids(struct neg *n, const uint8_t *theirs, size_t count, size_t lower, size_t upper,
                        struct buf *have, struct buf *need)
{
    uint8_t(*sorted)[32] = count > 0 ? malloc(count * 32) : NULL;
    bool *seen = count > 0 ? calloc(count, 1) : NULL;

    if (count > 0 && (sorted == NULL || seen == NULL))
        abort();
    if (count > 0)
        memcpy(sorted, theirs, count * 32);
    if (count > 1)
        qsort(sorted, count, 32, cmp_id);
    for (size_t i = lower; i < upper; i++) {
        const uint8_t(*hit)[32] = count > 0 ? bsearch(n->_s->items[i].id, sorted, count, 32, cmp_id) : NULL;
        if (hit == NULL)
            buf_append(have, n->_s->items[i].id, 32);
        else
            seen[hit - sorted] = true;
    }
    for (size_t k = 0; k < count; k++)
        if (!seen[k] && (k == 0 || memcmp(sorted[k], sorted[k - 1], 32) != 0))
            buf_append(need, sorted[k], 32);
    free(sorted);
    free(seen);
}

/* A skipped range is written only when something follows it, as the bound before what follows. */
static void flush_skip(struct neg *n, struct buf *o, bool *skip, const struct bound *prev)
{
    if (*skip) {
        *skip = false;
        put_bound(n, o, prev);
        neg_put_varint(o, MODE_SKIP);
    }
}

/* The responder's side of an id list: its own ids of [lower, *upper), as many as the frame holds. */
static void answer_ids(struct neg *n, size_t used, size_t lower, size_t *upper, const struct bound *curr, struct buf *o)
{
    const struct neg_storage *s = n->_s;
    struct bound end_bound = *curr;
    size_t ids = 0;

    for (size_t i = lower; i < *upper; i++, ids++) {
        if (over_limit(n, used + ids * 32)) {
            /* Cut here: the rest of the range goes to the closing fingerprint. */
            end_bound = (struct bound){.timestamp = s->items[i].timestamp, .idlen = 32};
            memcpy(end_bound.id, s->items[i].id, 32);
            *upper = i;
            break;
        }
    }
    put_bound(n, o, &end_bound);
    neg_put_varint(o, MODE_IDLIST);
    neg_put_varint(o, ids);
    for (size_t i = lower; i < lower + ids; i++)
        buf_append(o, s->items[i].id, 32);
}

int neg_reconcile(struct neg *n, const uint8_t *msg, size_t len, struct buf *out, struct buf *have, struct buf *need,
                  char *err, size_t errlen)
{
    const struct neg_storage *s = n->_s;
    const uint8_t *p = msg, *end = msg + len;
    struct bound prev_bound = {0};
    size_t prev_index = 0, start = out->len;
    bool skip = false;
    struct buf o = BUF_INIT;
    int r = 0;

    n->_last_in = n->_last_out = 0;
    if (len == 0)
        return err_set(err, errlen, -EINVAL, "parse ends prematurely");
    if (*p < 0x60 || *p > 0x6f)
        return err_set(err, errlen, -EINVAL, "invalid negentropy protocol version byte");
    if (*p != NEG_VERSION) {
        if (n->_initiator)
            return err_set(err, errlen, -EINVAL, "unsupported negentropy protocol version requested: %d", *p - 0x60);
        /* The responder answers with the version it speaks, and nothing else. */
        buf_appendc(out, (char)NEG_VERSION);
        return 0;
    }
    p++;
    buf_appendc(out, (char)NEG_VERSION);
    while (p < end) {
        struct bound curr;
        uint64_t mode, count;
        size_t lower = prev_index, upper;
        uint8_t ours[NEG_FINGERPRINT];

        o.len = 0;
        if ((r = get_bound(n, &p, end, &curr, err, errlen)) != 0)
            break;
        if (neg_get_varint(&p, end, &mode) != 0) {
            r = err_set(err, errlen, -EINVAL, "parse ends prematurely");
            break;
        }
        upper = lower_bound(s, prev_index, s->n, &curr);
        if (mode == MODE_SKIP) {
            skip = true;
        } else if (mode == MODE_FINGERPRINT) {
            if ((size_t)(end - p) < NEG_FINGERPRINT) {
                r = err_set(err, errlen, -EINVAL, "parse ends prematurely");
                break;
            }
            neg_fingerprint(s, lower, upper, ours);
            if (memcmp(p, ours, NEG_FINGERPRINT) != 0) {
                flush_skip(n, &o, &skip, &prev_bound);
                split_range(n, lower, upper, &curr, &o);
            } else {
                skip = true;
            }
            p += NEG_FINGERPRINT;
        } else if (mode == MODE_IDLIST) {
            if (neg_get_varint(&p, end, &count) != 0 || count > (uint64_t)(end - p) / 32) {
                r = err_set(err, errlen, -EINVAL, "parse ends prematurely");
                break;
            }
            if (n->_initiator) {
                skip = true;
                compare_ids(n, p, (size_t)count, lower, upper, have, need);
            } else {
                flush_skip(n, &o, &skip, &prev_bound);
                answer_ids(n, out->len - start, lower, &upper, &curr, &o);
                buf_append(out, o.data, o.len);
                o.len = 0;
            }
            p += count * 32;
        } else {
            r = err_set(err, errlen, -EINVAL, "unexpected mode");
            break;
        }
        if (over_limit(n, out->len - start + o.len)) {
            /* The frame is full: what is left of our records goes as one fingerprint, for the next round. */
            struct bound all = {.timestamp = MAX_TIMESTAMP};
            neg_fingerprint(s, upper, s->n, ours);
            put_bound(n, out, &all);
            neg_put_varint(out, MODE_FINGERPRINT);
            buf_append(out, ours, sizeof(ours));
            break;
        }
        buf_append(out, o.data, o.len);
        prev_index = upper;
        prev_bound = curr;
    }
    buf_free(&o);
    if (r != 0) {
        out->len = start;
        return r;
    }
    if (n->_initiator && out->len - start == 1)
        out->len = start;
    return 0;
}
