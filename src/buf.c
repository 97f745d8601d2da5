/* buf.c -- a growable byte buffer, and JSON string escaping into it. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_reserve(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 64;
    char *p;

    if (need <= b->cap)
        return;
    while (cap < need)
        cap *= 2;
    if ((p = realloc(b->data, cap)) == NULL)
        abort();
    b->data = p;
    b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    /* An empty source may be NULL, which memcpy() may not be given even for no bytes. */
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_appends(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_appendc(struct buf *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_steal(struct buf *b)
{
    char *p = b->data;
    if (p == NULL)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_json_string(struct buf *b, const char *s, size_t n, enum buf_json_mode mode)
{
    static const char digits[] = "0123456789abcdef";
    size_t start = 0;

    /* The worst case is six bytes per input byte; reserving for it once keeps the loop branch-light. */
    buf_reserve(b, n * 6 + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc = 0;
        switch (c) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        case '\b': esc = 'b'; break;
        case '\f': esc = 'f'; break;
        default:
            if (c >= 0x20 || mode == BUF_JSON_NIP01)
                continue;
        }
        memcpy(b->data + b->len, s + start, i - start);
        b->len += i - start;
        start = i + 1;
        b->data[b->len++] = '\\';
        if (esc != 0) {
            b->data[b->len++] = esc;
        } else {
            memcpy(b->data + b->len, "u00", 3);
            b->len += 3;
            b->data[b->len++] = digits[c >> 4];
            b->data[b->len++] = digits[c & 15];
        }
    }
    memcpy(b->data + b->len, s + start, n - start);
    b->len += n - start;
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}
