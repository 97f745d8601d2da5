/* router.h -- maps a method and a path to a handler; tells 404 from 405 and what to put in Allow. */
#ifndef PFP_ROUTER_H
#define PFP_ROUTER_H

#include <stddef.h>

enum {
    HTTP_GET = 1 << 0,
    HTTP_HEAD = 1 << 1,
    HTTP_POST = 1 << 2,
    HTTP_PUT = 1 << 3,
    HTTP_DELETE = 1 << 4,
    HTTP_OPTIONS = 1 << 5,
    HTTP_PATCH = 1 << 6,
};

#define ROUTER_MAX_ROUTES 64

enum router_result { ROUTER_FOUND, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

struct router_route {
    unsigned methods;
    const char *pattern; /* "/health" exactly; "/profile-pic/" then "*": one non-empty segment; or then "**": the
                            rest of the path, not empty, slashes and all, under a prefix no other route has */
    void *data;          /* the caller's, opaque to the router */
};

struct router {
    struct router_route routes[ROUTER_MAX_ROUTES];
    size_t count;
};

struct router_match {
    const struct router_route *route; /* ROUTER_FOUND: the route; valid while the router lives */
    const char *param;                /* the segment "*" matched, inside the path given to router_match */
    size_t param_len;
    unsigned allowed; /* every method some route accepts on this path (405's Allow) */
};

/*
 * Adds a route. GET also accepts HEAD. `pattern` must outlive the router.
 * Returns 0, or -ENOSPC past ROUTER_MAX_ROUTES, or -EINVAL for a pattern that
 * does not start with '/' or has '*' anywhere but as a whole final segment.
 */
int router_add(struct router *r, unsigned methods, const char *pattern, void *data);

/* The method's bit, or 0 for a method no route can accept. */
unsigned router_method(const char *method, size_t len);

/* Matches `path` (without query string). The first route in insertion order that matches wins. */
enum router_result router_match(const struct router *r, unsigned method, const char *path, size_t len,
                                struct router_match *m);

/* Writes "GET, HEAD, OPTIONS" for a set of methods into `buf` (NUL-terminated). Returns the length. */
size_t router_format_methods(unsigned methods, char *buf, size_t len);

#endif
