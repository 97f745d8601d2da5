/* err.h -- the one way a function explains its failure: one line in the caller's (err, errlen). */
#ifndef PFP_ERR_H
#define PFP_ERR_H

#include <stddef.h>

/* Writes the formatted reason into `err` (truncated to `errlen`) and returns `code`, a negative errno. */
int err_set(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
