/*
 * imgscan.h -- picture files walked with bounded cursors before any decoder sees them: JPEG markers, PNG
 * chunks and how much image data their stream holds, ISO-BMFF boxes, GIF blocks, the RIFF header of WebP.
 * What a header alone cannot tell about the cost of decoding, and where each file's picture ends.
 *
 * Every function reads only the `n` bytes at `p`, whatever the bytes claim, and allocates nothing that
 * outlives the call.
 */
#ifndef PFP_IMGSCAN_H
#define PFP_IMGSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A JPEG's start of scan markers, counted up to its end of image marker (as libjpeg reads them, segments
 * skipped by their lengths and entropy-coded data by its markers), and the offset just past that end marker,
 * 0 when there is none before the bytes run out or stop making sense.
 */
struct imgscan_jpeg {
    unsigned scans;
    size_t end;
};
void imgscan_jpeg(const uint8_t *p, size_t n, struct imgscan_jpeg *out);

/*
 * A PNG's header and the length its image data must inflate to (the rows with their filter bytes, Adam7
 * passes included), 0 when IHDR is missing or invalid; `end` is the offset just past IEND, 0 without one.
 */
struct imgscan_png {
    uint32_t width, height;
    uint8_t depth, colour, interlace;
    uint64_t data_len;
    size_t end;
};
void imgscan_png(const uint8_t *p, size_t n, struct imgscan_png *out);

/*
 * Whether the zlib stream of the PNG's IDAT chunks inflates to more than `data_len` bytes, that is, goes on
 * past the last row. Inflates at most `data_len` + 1 bytes, into a scratch buffer; a stream that is broken
 * or ends early is not this function's concern (the decoder refuses it) and gives false.
 */
bool imgscan_png_overlong(const uint8_t *p, size_t n, uint64_t data_len);

/*
 * An ISO-BMFF file (HEIF, AVIF): the largest width x height any `ispe` property claims (meta/iprp/ipco),
 * 0 when none does; and the offset just past its last whole top-level box.
 */
struct imgscan_bmff {
    uint32_t width, height;
    size_t end;
};
void imgscan_bmff(const uint8_t *p, size_t n, struct imgscan_bmff *out);

/* The offset just past a GIF's trailer, following its blocks; 0 when there is none. */
size_t imgscan_gif_end(const uint8_t *p, size_t n);

/* The end of a WebP's RIFF container as its header gives it; 0 when that is past the bytes. */
size_t imgscan_webp_end(const uint8_t *p, size_t n);

#endif
