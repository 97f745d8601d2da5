/* web.c -- the page: profile-pic-example.html, built into the binary, served at / and under its own name. */
#include "web.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "hex.h"

/* The file's bytes, placed in the binary by the assembler: the page works with nothing but the binary. */
__asm__(".section .rodata\n"
        ".global web_page_start\n"
        "web_page_start:\n"
        ".incbin \"web/profile-pic-example.html\"\n"
        ".global web_page_end\n"
        "web_page_end:\n"
        ".previous\n");
extern const char web_page_start[], web_page_end[];

/* Inline script and style are the page's own; pictures may come from anywhere a profile's 307 points. */
static const char CSP[] = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                          "img-src * data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                          "frame-ancestors 'none'";

static const char *etag(void)
{
    static char tag[67];
    uint8_t digest[32];

    if (tag[0] == '\0') {
        SHA256((const unsigned char *)web_page_start, (size_t)(web_page_end - web_page_start), digest);
        tag[0] = '"';
        hex_encode(digest, 32, tag + 1);
        tag[65] = '"';
    }
    return tag;
}

void web_page(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t body = h2o_iovec_init(web_page_start, (size_t)(web_page_end - web_page_start));
    bool not_modified = http_if_none_match(req, h2o_iovec_init(etag(), strlen(etag())));

    (void)data;
    (void)param;
    http_begin_response(req, not_modified ? 304 : 200);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag(), strlen(etag()));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL, CSP,
                          sizeof(CSP) - 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("no-referrer"));
    if (!not_modified) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("text/html; charset=utf-8"));
        req->res.content_length = body.len;
    }
    h2o_start_response(req, &generator);
    if (not_modified || h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

int web_route(struct http_server *http)
{
    return http_route(http, HTTP_GET, "/profile-pic-example.html", web_page, NULL);
}
