/* hashurl.c -- cached files by their content hash, immutable; read off the loop, checked against their name. */
#include "hashurl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "blobcache.h"
#include "cluster.h"
#include "hex.h"
#include "http.h"
#include "pictures.h"
#include "workpool.h"

#define IMMUTABLE "public, max-age=31536000, immutable"

static const struct {
    const char *ext;
    enum image_type type;
} EXTS[] = {{"jpg", IMAGE_JPEG}, {"jpeg", IMAGE_JPEG}, {"png", IMAGE_PNG},
            {"gif", IMAGE_GIF},  {"webp", IMAGE_WEBP}, {"avif", IMAGE_AVIF}};

struct hashurl {
    struct hashurl_services sv;
    struct workpool reader;
    bool closing;
};

/* A file being read for a request. */
struct read {
    struct work work;
    struct hashurl *h;
    struct http_hold *hold;
    uint8_t hash[32];
    uint64_t bytes;
    enum image_type type;
    int err;
    uint8_t *data;
    size_t len;
};

void hashurl_path(const uint8_t hash[32], enum image_type t, char out[HASHURL_PATH_MAX])
{
    char hex[65];
    const char *ext = "jpg";

    for (size_t i = 0; i < sizeof(EXTS) / sizeof(EXTS[0]); i++)
        if (EXTS[i].type == t && strcmp(EXTS[i].ext, "jpeg") != 0) {
            ext = EXTS[i].ext;
            break;
        }
    hex_encode(hash, 32, hex);
    hex[64] = '\0';
    snprintf(out, HASHURL_PATH_MAX, "/p/%s.%s", hex, ext);
}

static void release_blob(void *ptr)
{
    blob_release(*(struct blob_ref **)ptr);
}

static void send_file(h2o_req_t *req, struct blob_ref *blob, enum image_type type)
{
    static h2o_generator_t generator = {NULL, NULL};
    struct blob_ref **slot;
    h2o_iovec_t body = h2o_iovec_init(blob->data, blob->len);
    bool not_modified = http_if_none_match(req, h2o_iovec_init(blob->etag, 66));
    bool head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));

    http_begin_response(req, not_modified ? 304 : 200);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, blob->etag, 66);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT(IMMUTABLE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, image_mime(type),
                   strlen(image_mime(type)));
    if (not_modified || head) {
        if (head)
            req->res.content_length = blob->len;
        h2o_start_response(req, &generator);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    /* The response keeps a reference to the bytes until it is done with them. */
    slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), release_blob);
    *slot = blob;
    blob_retain(blob);
    req->res.content_length = blob->len;
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* Answers with `blob` when its bytes are the type its name says. */
static void answer(h2o_req_t *req, struct blob_ref *blob, enum image_type type)
{
    const char *what;

    if (image_sniff(blob->data, blob->len, &what) != type) {
        http_reply_error(req, 404, "no such file: its bytes are not of the type its extension names");
        return;
    }
    send_file(req, blob, type);
}

static void read_run(struct work *w)
{
    struct read *r = H2O_STRUCT_FROM_MEMBER(struct read, work, w);

    r->err = blob_read(r->h->sv.blobs, r->hash, r->bytes, &r->data, &r->len);
}

static void read_done(struct work *w)
{
    struct read *r = H2O_STRUCT_FROM_MEMBER(struct read, work, w);
    h2o_req_t *req = http_held(r->hold);

    if (req != NULL && r->err == 0) {
        struct blob_ref *blob = blobcache_put(r->h->sv.cache, r->hash, r->data, r->len);
        answer(req, blob, r->type);
        blob_release(blob);
    } else if (req != NULL) {
        http_reply_error(req, 404, "no such file: it is no longer cached");
    }
    free(r->data);
    http_unhold(r->hold);
    free(r);
}

static void not_here(const void *ctx, h2o_req_t *req)
{
    (void)ctx;
    http_reply_error(req, 404, "no cached file has this hash");
}

static void on_file(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct hashurl *h = data;
    const char *dot = memchr(param.base, '.', param.len);
    enum image_type type = IMAGE_NONE;
    uint8_t hash[32];
    uint64_t bytes;
    struct blob_ref *blob;
    struct read *r;

    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                          H2O_STRLIT("default-src 'none'"));
    if (dot == NULL || dot - param.base != 64 || hex_decode(param.base, 64, hash, 32) != 0) {
        http_reply_error(req, 400, "not /p/{sha256}.{ext}: the name is 64 lowercase hex digits, a dot, an extension");
        return;
    }
    for (size_t i = 0; i < sizeof(EXTS) / sizeof(EXTS[0]); i++)
        if (h2o_memis(dot + 1, param.len - 65, EXTS[i].ext, strlen(EXTS[i].ext)))
            type = EXTS[i].type;
    if (type == IMAGE_NONE) {
        http_reply_error(req, 400, "the extension must be jpg, jpeg, png, gif, webp or avif");
        return;
    }
    if (h->closing) {
        http_reply_error(req, 503, "the relay is shutting down");
        return;
    }
    if (pictures_get_file(h->sv.pictures, hash, &bytes) != 0) {
        if (!cluster_ask_others(h->sv.cluster, req, not_here, NULL, 0))
            not_here(NULL, req);
        return;
    }
    if ((blob = blobcache_get(h->sv.cache, hash)) != NULL) {
        answer(req, blob, type);
        blob_release(blob);
        return;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        abort();
    r->h = h;
    r->hold = http_hold(req);
    memcpy(r->hash, hash, 32);
    r->bytes = bytes;
    r->type = type;
    r->work.run = read_run;
    r->work.done = read_done;
    workpool_submit(&h->reader, &r->work);
}

int hashurl_init(struct hashurl **out, const struct hashurl_services *sv)
{
    struct hashurl *h = calloc(1, sizeof(*h));
    int r;

    if (h == NULL)
        abort();
    h->sv = *sv;
    if ((r = workpool_init(&h->reader, 1, sv->inbox)) != 0) {
        free(h);
        return r;
    }
    *out = h;
    return 0;
}

int hashurl_route(struct hashurl *h, struct http_server *http)
{
    return http_route(http, HTTP_GET, "/p/*", on_file, h);
}

void hashurl_shutdown(struct hashurl *h)
{
    if (h == NULL)
        return;
    h->closing = true;
    workpool_shutdown(&h->reader);
}

void hashurl_free(struct hashurl *h)
{
    if (h == NULL)
        return;
    workpool_free(&h->reader);
    free(h);
}
