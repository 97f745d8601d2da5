/* fsutil.h -- small filesystem helpers. */
#ifndef PFP_FSUTIL_H
#define PFP_FSUTIL_H

/* Creates `path` and any missing parents, like `mkdir -p`. Returns 0 or -errno. */
int fs_mkdir_p(const char *path, unsigned mode);

/* Creates the directory that will contain `path` (its dirname) and any missing parents. Returns 0 or -errno. */
int fs_mkdir_parent(const char *path, unsigned mode);

#endif
