/* imgscan.c -- picture files walked with bounded cursors: JPEG markers, PNG chunks, ISO-BMFF boxes, GIF blocks. */
#include "imgscan.h"

#include <string.h>
#include <zlib.h>

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* --- JPEG ------------------------------------------------------------------------------------------------------ */

/*
 * The offset of the next marker from `i`: an 0xff followed by a byte other than 0 (a stuffed 0xff in
 * entropy-coded data) or 0xff (fill). Anything before it is skipped, as libjpeg skips entropy-coded data and
 * stray bytes between segments; `n` when there is none.
 */
static size_t next_marker(const uint8_t *p, size_t n, size_t i)
{
    while (i < n) {
        const uint8_t *ff = memchr(p + i, 0xff, n - i);
        if (ff == NULL || (size_t)(ff - p) + 1 >= n)
            return n;
        i = (size_t)(ff - p);
        if (p[i + 1] != 0x00 && p[i + 1] != 0xff)
            return i;
        i += p[i + 1] == 0xff ? 1 : 2;
    }
    return n;
}

void imgscan_jpeg(const uint8_t *p, size_t n, struct imgscan_jpeg *out)
{
    size_t i = 2, len;

    memset(out, 0, sizeof(*out));
    if (n < 2 || p[0] != 0xff || p[1] != 0xd8)
        return;
    while ((i = next_marker(p, n, i)) < n) {
        uint8_t m = p[i + 1];

        if (m == 0xd9) {
            out->end = i + 2;
            return;
        }
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* TEM and restart markers have no length */
            i += 2;
            continue;
        }
        if (i + 4 > n || (len = be16(p + i + 2)) < 2 || len > n - i - 2)
            return;
        out->scans += m == 0xda;
        i += 2 + len;
    }
}

/* --- PNG ------------------------------------------------------------------------------------------------------- */

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* A chunk: its type, and its data at `data` for `len` bytes. */
struct chunk {
    const uint8_t *type, *data;
    uint32_t len;
};

/* The chunk at *off, which then moves past it (length, type, data, CRC); false when it does not fit. */
static bool next_chunk(const uint8_t *p, size_t n, size_t *off, struct chunk *c)
{
    size_t i = *off;

    if (n < 12 || i > n - 12)
        return false;
    c->len = be32(p + i);
    if (c->len > n - i - 12)
        return false;
    c->type = p + i + 4;
    c->data = p + i + 8;
    *off = i + 12 + c->len;
    return true;
}

/* The bytes of `rows` rows of `width` pixels of `bits` bits each, every row after its filter byte; UINT64_MAX
 * when that does not fit. */
static uint64_t rows_len(uint64_t width, uint64_t rows, unsigned bits)
{
    uint64_t len;

    if (width == 0)
        return 0;
    return __builtin_mul_overflow(rows, 1 + (width * bits + 7) / 8, &len) ? UINT64_MAX : len;
}

/* What the image data inflates to, from IHDR; 0 for a combination of depth and colour type PNG does not allow. */
static uint64_t png_data_len(const struct imgscan_png *h)
{
    /* Adam7: the first column and row of each pass, and its steps across and down. */
    static const uint8_t passes[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                         {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    unsigned channels, bits;
    uint64_t len = 0;

    switch (h->colour) {
    case 0: channels = 1; break;
    case 2: channels = 3; break;
    case 3: channels = 1; break;
    case 4: channels = 2; break;
    case 6: channels = 4; break;
    default: return 0;
    }
    if (h->width == 0 || h->height == 0 || h->width > INT32_MAX || h->height > INT32_MAX)
        return 0;
    if (h->depth == 0 || h->depth > 16 || (h->depth & (h->depth - 1)) != 0 ||
        (h->colour != 0 && h->colour != 3 && h->depth < 8) || (h->colour == 3 && h->depth == 16))
        return 0;
    bits = channels * h->depth;
    if (h->interlace == 0)
        return rows_len(h->width, h->height, bits);
    if (h->interlace != 1)
        return 0;
    for (int i = 0; i < 7; i++) {
        uint64_t w = h->width > passes[i][0] ? (h->width - passes[i][0] + passes[i][2] - 1) / passes[i][2] : 0;
        uint64_t rows = h->height > passes[i][1] ? (h->height - passes[i][1] + passes[i][3] - 1) / passes[i][3] : 0;
        if (__builtin_add_overflow(len, rows_len(w, rows, bits), &len))
            return UINT64_MAX;
    }
    return len;
}

void imgscan_png(const uint8_t *p, size_t n, struct imgscan_png *out)
{
    size_t off = sizeof(PNG_SIGNATURE);
    struct chunk c;

    memset(out, 0, sizeof(*out));
    if (n < off || memcmp(p, PNG_SIGNATURE, off) != 0)
        return;
    while (next_chunk(p, n, &off, &c)) {
        if (memcmp(c.type, "IHDR", 4) == 0 && c.len == 13 && out->width == 0) {
            out->width = be32(c.data);
            out->height = be32(c.data + 4);
            out->depth = c.data[8];
            out->colour = c.data[9];
            out->interlace = c.data[12];
            out->data_len = png_data_len(out);
        } else if (memcmp(c.type, "IEND", 4) == 0) {
            out->end = off;
            return;
        }
    }
}

bool imgscan_png_overlong(const uint8_t *p, size_t n, uint64_t data_len)
{
    uint8_t scratch[1 << 16];
    size_t off = sizeof(PNG_SIGNATURE);
    uint64_t inflated = 0;
    z_stream z;
    struct chunk c;
    int r = Z_OK;

    if (n < off || memcmp(p, PNG_SIGNATURE, off) != 0)
        return false;
    memset(&z, 0, sizeof(z));
    if (inflateInit(&z) != Z_OK)
        return false;
    while (r == Z_OK && inflated <= data_len && next_chunk(p, n, &off, &c)) {
        if (memcmp(c.type, "IDAT", 4) != 0)
            continue;
        z.next_in = (Bytef *)c.data;
        z.avail_in = c.len;
        /* Inflating stops as soon as the stream has given a byte more than the rows hold. */
        while (r == Z_OK && inflated <= data_len && z.avail_in > 0) {
            uint64_t room = data_len + 1 - inflated;
            z.next_out = scratch;
            z.avail_out = room < sizeof(scratch) ? (uInt)room : (uInt)sizeof(scratch);
            r = inflate(&z, Z_NO_FLUSH);
            inflated += (uInt)(z.next_out - scratch);
        }
        if (r == Z_BUF_ERROR) /* this chunk's data is used up mid-stream: on to the next */
            r = Z_OK;
    }
    inflateEnd(&z);
    return inflated > data_len;
}

/* --- ISO-BMFF -------------------------------------------------------------------------------------------------- */

/* A box: its type, and its content (after the size, type and any 64-bit size) at `body` for `len` bytes. */
struct box {
    const uint8_t *type, *body;
    size_t len;
};

/* The box at *off within [0, n), which then moves past it; false when it does not fit. */
static bool next_box(const uint8_t *p, size_t n, size_t *off, struct box *b)
{
    size_t i = *off, head = 8;
    uint64_t size;

    if (n < 8 || i > n - 8)
        return false;
    size = be32(p + i);
    if (size == 1) {
        if (n - i < 16)
            return false;
        size = (uint64_t)be32(p + i + 8) << 32 | be32(p + i + 12);
        head = 16;
    } else if (size == 0) {
        size = n - i; /* to the end of the enclosing box or file */
    }
    if (size < head || size > n - i)
        return false;
    b->type = p + i + 4;
    b->body = p + i + head;
    b->len = (size_t)size - head;
    *off = i + (size_t)size;
    return true;
}

/* The ispe properties among the boxes in [p, p + n): the largest claim is kept. `depth` bounds the nesting. */
static void find_ispe(const uint8_t *p, size_t n, int depth, struct imgscan_bmff *out)
{
    size_t off = 0;
    struct box b;

    while (depth < 4 && next_box(p, n, &off, &b)) {
        if (memcmp(b.type, "meta", 4) == 0 && b.len >= 4) {
            find_ispe(b.body + 4, b.len - 4, depth + 1, out); /* a full box: version and flags first */
        } else if (memcmp(b.type, "iprp", 4) == 0 || memcmp(b.type, "ipco", 4) == 0) {
            find_ispe(b.body, b.len, depth + 1, out);
        } else if (memcmp(b.type, "ispe", 4) == 0 && b.len >= 12) {
            uint32_t w = be32(b.body + 4), h = be32(b.body + 8);
            if ((uint64_t)w * h > (uint64_t)out->width * out->height) {
                out->width = w;
                out->height = h;
            }
        }
    }
}

void imgscan_bmff(const uint8_t *p, size_t n, struct imgscan_bmff *out)
{
    struct box b;

    memset(out, 0, sizeof(*out));
    while (next_box(p, n, &out->end, &b))
        ;
    find_ispe(p, out->end, 0, out);
}

/* --- GIF and WebP ---------------------------------------------------------------------------------------------- */

/* Past the data sub-blocks at `i` (a length byte, then that many bytes, until a length of 0); 0 if they run out. */
static size_t skip_sub_blocks(const uint8_t *p, size_t n, size_t i)
{
    while (i < n) {
        if (p[i] == 0)
            return i + 1;
        i += 1 + (size_t)p[i];
    }
    return 0;
}

/* The bytes of a colour table announced by `flags` (its top bit, and its size in the low three). */
static size_t colour_table(uint8_t flags)
{
    return flags & 0x80 ? (size_t)3 << ((flags & 7) + 1) : 0;
}

size_t imgscan_gif_end(const uint8_t *p, size_t n)
{
    size_t i;

    if (n < 13 || (memcmp(p, "GIF87a", 6) != 0 && memcmp(p, "GIF89a", 6) != 0))
        return 0;
    i = 13 + colour_table(p[10]); /* the header, the logical screen descriptor, the global colour table */
    while (i < n) {
        switch (p[i]) {
        case 0x3b: return i + 1;
        case 0x21: /* an extension: its label, then its sub-blocks */
            if (n - i < 2 || (i = skip_sub_blocks(p, n, i + 2)) == 0)
                return 0;
            break;
        case 0x2c: /* an image: its descriptor, its colour table, the LZW code size, then its sub-blocks */
            if (n - i < 11)
                return 0;
            i += 10 + colour_table(p[i + 9]);
            if (i >= n || (i = skip_sub_blocks(p, n, i + 1)) == 0)
                return 0;
            break;
        default: return 0;
        }
    }
    return 0;
}

size_t imgscan_webp_end(const uint8_t *p, size_t n)
{
    uint64_t end;

    if (n < 12 || memcmp(p, "RIFF", 4) != 0 || memcmp(p + 8, "WEBP", 4) != 0)
        return 0;
    end = 8 + ((uint64_t)p[4] | (uint64_t)p[5] << 8 | (uint64_t)p[6] << 16 | (uint64_t)p[7] << 24);
    return end <= n ? (size_t)end : 0;
}
