/* buf.h -- a growable byte buffer, and JSON string escaping into it. */
#ifndef PFP_BUF_H
#define PFP_BUF_H

#include <stddef.h>

/* Allocation failure aborts the process: a server that cannot allocate a few bytes cannot answer anyway. */
struct buf {
    char *data; /* owned; NUL-terminated after every append, not counted in len */
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                                                                       \
    {                                                                                                                  \
        NULL, 0, 0                                                                                                     \
    }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_appends(struct buf *b, const char *s);
void buf_appendc(struct buf *b, char c);
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);

/* Hands the bytes to the caller (free() them) and leaves `b` empty. */
char *buf_steal(struct buf *b);

/*
 * Appends `s` as a quoted JSON string. BUF_JSON_WIRE escapes every control
 * character (valid JSON); BUF_JSON_NIP01 escapes exactly \n \" \\ \r \t \b \f and
 * keeps every other byte verbatim, as NIP-01's id serialization requires.
 */
enum buf_json_mode { BUF_JSON_WIRE, BUF_JSON_NIP01 };
void buf_json_string(struct buf *b, const char *s, size_t n, enum buf_json_mode mode);

#endif
