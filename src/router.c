/* router.c -- method and path matching. */
#include "router.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const struct {
    unsigned bit;
    const char *name;
} methods[] = {
    {HTTP_GET, "GET"},       {HTTP_HEAD, "HEAD"},       {HTTP_POST, "POST"},   {HTTP_PUT, "PUT"},
    {HTTP_DELETE, "DELETE"}, {HTTP_OPTIONS, "OPTIONS"}, {HTTP_PATCH, "PATCH"},
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

unsigned router_method(const char *method, size_t len)
{
    for (size_t i = 0; i < NMETHODS; i++) {
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, method, len) == 0)
            return methods[i].bit;
    }
    return 0;
}

/* Whether `rest` (a pattern ending in "**") takes every path `other` could: `other` starts with its prefix. */
static bool shadows(const char *rest, const char *other)
{
    size_t n = strlen(rest);

    return n >= 2 && strcmp(rest + n - 2, "**") == 0 && strncmp(other, rest, n - 2) == 0;
}

int router_add(struct router *r, unsigned m, const char *pattern, void *data)
{
    const char *star = strchr(pattern, '*');

    if (pattern[0] != '/')
        return -EINVAL;
    if (star != NULL && (star[-1] != '/' || (star[1] != '\0' && strcmp(star, "**") != 0)))
        return -EINVAL;
    for (size_t i = 0; i < r->count; i++)
        if (shadows(pattern, r->routes[i].pattern) || shadows(r->routes[i].pattern, pattern))
            return -EEXIST;
    if (r->count == ROUTER_MAX_ROUTES)
        return -ENOSPC;
    if (m & HTTP_GET)
        m |= HTTP_HEAD;
    r->routes[r->count++] = (struct router_route){m, pattern, data};
    return 0;
}

/* Returns 1 and sets the parameter when `path` matches `pattern`. */
static int path_matches(const char *pattern, const char *path, size_t len, const char **param, size_t *param_len)
{
    size_t plen = strlen(pattern);

    if (plen > 1 && pattern[plen - 2] == '*') {
        /* "**": the rest of the path, whatever its slashes. */
        size_t prefix = plen - 2;
        if (len <= prefix || memcmp(pattern, path, prefix) != 0)
            return 0;
        *param = path + prefix;
        *param_len = len - prefix;
        return 1;
    }
    if (plen > 0 && pattern[plen - 1] == '*') {
        size_t prefix = plen - 1;
        if (len <= prefix || memcmp(pattern, path, prefix) != 0)
            return 0;
        if (memchr(path + prefix, '/', len - prefix) != NULL)
            return 0;
        *param = path + prefix;
        *param_len = len - prefix;
        return 1;
    }
    if (plen != len || memcmp(pattern, path, len) != 0)
        return 0;
    *param = NULL;
    *param_len = 0;
    return 1;
}

enum router_result router_match(const struct router *r, unsigned method, const char *path, size_t len,
                                struct router_match *m)
{
    const char *param;
    size_t param_len;

    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < r->count; i++) {
        const struct router_route *route = &r->routes[i];
        if (!path_matches(route->pattern, path, len, &param, &param_len))
            continue;
        m->allowed |= route->methods;
        if (m->route == NULL && (route->methods & method) != 0) {
            m->route = route;
            m->param = param;
            m->param_len = param_len;
        }
    }
    if (m->route != NULL)
        return ROUTER_FOUND;
    return m->allowed != 0 ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

size_t router_format_methods(unsigned set, char *buf, size_t len)
{
    size_t n = 0;

    if (len == 0)
        return 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NMETHODS; i++) {
        if ((set & methods[i].bit) == 0)
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n == 0 ? "" : ", ", methods[i].name);
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
    return n;
}
