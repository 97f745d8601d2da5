/*
 * vipsbudget.h -- the time and memory budgets of libvips work, shared by every image thread: a deadline after which
 * a watchdog thread stops the pipeline being computed, and reservations of a memory limit that wait for room.
 */
#ifndef PFP_VIPSBUDGET_H
#define PFP_VIPSBUDGET_H

#include <stdbool.h>
#include <stdint.h>
#include <vips/vips.h>

/*
 * One picture's budgets (the fields are private). While it has a deadline it is on the watchdog's list, and once the
 * deadline passes the watchdog sets libvips' kill flag on `image`, the head of the pipeline being computed: every strip
 * of pixels asked of it checks the flag, so the work stops at the next strip. Work inside one decoder call (a
 * progressive JPEG's scans, the end of a PNG's stream) is not interruptible; the checks before decoding bound it.
 */
struct vipsbudget {
    uint64_t deadline_ns; /* 0: none, and not on the list */
    VipsImage *image;     /* referenced while watched */
    bool expired;
    int64_t reserved; /* bytes of the memory budget held */
    struct vipsbudget *prev, *next;
};

/* Starts the watchdog thread. Returns 0 or -EAGAIN. */
int vipsbudget_init(void);
/* Stops it, once no budget is running. Idempotent. */
void vipsbudget_free(void);

/* Starts the clock of a picture (timeout_ms 0: none). Any thread. */
void vipsbudget_start(struct vipsbudget *b, int timeout_ms);
/* The image whose evaluation the watchdog stops at the deadline; killed at once if the deadline has passed. */
void vipsbudget_watch(struct vipsbudget *b, VipsImage *im);
/* Takes the picture off the watchdog's list; true if its deadline had passed. */
bool vipsbudget_stop(struct vipsbudget *b);

/* Waits until `need` bytes fit within `limit` beside what the other pictures hold, and takes them. */
void vipsbudget_reserve(struct vipsbudget *b, int64_t need, int64_t limit);
/* Gives them back; idempotent. */
void vipsbudget_release(struct vipsbudget *b);

#endif
