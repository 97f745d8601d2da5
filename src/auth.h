/* auth.h -- who may call the admin endpoints: a bearer token, NIP-98 signed events, or else loopback clients only. */
#ifndef PFP_AUTH_H
#define PFP_AUTH_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

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

struct auth {
    const char *token; /* the configuration's admin_token, "" when off */
    size_t token_len;
    const struct config_pubkeys *pubkeys;
    const char *schemes;    /* for WWW-Authenticate */
    const char *usage;      /* what to send, for 401 messages */
    struct keymap *seen;    /* ids of accepted NIP-98 events -> their slot in `ring` */
    struct auth_seen *ring; /* the same, oldest first from `head` */
    size_t head, count;
    char why[256]; /* room for the messages that quote a detail */
};

/* What a NIP-98 event must be bound to. The slices stay the caller's. */
struct nip98_request {
    h2o_iovec_t url;         /* <scheme>://<authority><path with query> */
    h2o_iovec_t proxied_url; /* the same with the scheme X-Forwarded-Proto names, or {NULL, 0} */
    h2o_iovec_t method;
    h2o_iovec_t body; /* {NULL, 0} when there is none */
};

/* Sets `a` up from `cfg`, which must outlive it: `a` keeps pointers to the token and the keys. */
void auth_init(struct auth *a, const struct config *cfg);

void auth_free(struct auth *a);

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
 * that it is refused if seen again, or -EACCES with `*why` saying which check
 * failed; `*why` is valid until the next call on `a`.
 */
int nip98_check(struct auth *a, h2o_iovec_t header, const struct nip98_request *rq, int64_t now, const char **why);

#endif
