/* auth.h -- who may call the admin endpoints: a bearer token, NIP-98 signed events, or else loopback clients only. */
#ifndef PFP_AUTH_H
#define PFP_AUTH_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_NIP98_KIND     27235
#define AUTH_NIP98_WINDOW   60    /* seconds created_at may be from the clock, either way */
#define AUTH_REPLAY_SECONDS 120   /* how long an accepted event's id is remembered: longer than it stays fresh */
#define AUTH_REPLAY_MAX     10000 /* most ids remembered; past that, NIP-98 is refused until some expire */
#define AUTH_MAX_HEADER     65536 /* longest base64 event accepted */

struct keymap;

struct auth_seen {
    uint8_t id[32];
    int64_t forget_after; /* unix seconds */
};

/* Who may call the admin endpoints. The token and the keys stay the caller's and must outlive the auth. */
struct auth_options {
    const char *token;            /* a bearer token, "" when off */
    const uint8_t (*pubkeys)[32]; /* who may sign NIP-98 events */
    size_t npubkeys;
    /* How messages name the two options to the operator: app.c gives the configuration's keys. */
    struct {
        const char *token, *pubkeys;
    } names;
};

/* Embedded in its owner; the fields are private to auth.c. */
struct auth {
    struct auth_options _opts;
    size_t _token_len;
    const char *_schemes;    /* for WWW-Authenticate */
    char _usage[160];        /* what to send, for 401 messages */
    char _open_up[160];      /* how to let other clients in, for 403 messages */
    struct keymap *_seen;    /* ids of accepted NIP-98 events -> their slot in `_ring` */
    struct auth_seen *_ring; /* the same, oldest first from `_head` */
    size_t _head, _count;
};

/* What a NIP-98 event must be bound to. The slices stay the caller's. */
struct nip98_request {
    h2o_iovec_t url;         /* <scheme>://<authority><path with query> */
    h2o_iovec_t proxied_url; /* the same with the scheme X-Forwarded-Proto names, or {NULL, 0} */
    h2o_iovec_t method;
    h2o_iovec_t body; /* {NULL, 0} when there is none */
};

/* Sets `a` up from `o`; `a` keeps pointers to the token, the keys and the names. Release with auth_free(). */
void auth_init(struct auth *a, const struct auth_options *o);

void auth_free(struct auth *a);

/* Which authentication the admin endpoints expect, for /stats; never the token itself. */
struct auth_stats {
    bool token;         /* Authorization: Bearer */
    bool nip98;         /* NIP-98 events signed by listed keys */
    bool loopback_only; /* neither: loopback clients only */
};

void auth_stats(const struct auth *a, struct auth_stats *out);

/*
 * True when `req` may call an admin endpoint. Otherwise answers it, 401 with a
 * WWW-Authenticate header when a token or keys are configured, 403 when neither
 * is and the client is not on loopback, with a JSON error saying what was wrong,
 * and returns false. Loop thread only: it remembers the NIP-98 events it accepts.
 */
bool auth_admit(struct auth *a, h2o_req_t *req);

/*
 * The NIP-98 checks of an Authorization header value ("Nostr <base64 event>")
 * against `rq` at `now` (unix seconds). Returns 0 and remembers the event so
 * that it is refused if seen again, or -EACCES with `err` saying which check
 * failed.
 */
int nip98_check(struct auth *a, h2o_iovec_t header, const struct nip98_request *rq, int64_t now, char *err,
                size_t errlen);

#endif
