/* fuzz_imgscan.c -- libFuzzer driver for the walks of picture files before decoding: JPEG markers, PNG chunks and
 * their zlib stream, ISO-BMFF boxes, GIF blocks and the RIFF header of WebP. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imgscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so that ASan sees any read past the end. */
    uint8_t *copy = malloc(size > 0 ? size : 1);
    struct imgscan_jpeg j;
    struct imgscan_png p;
    struct imgscan_bmff b;

    memcpy(copy, data, size);
    imgscan_jpeg(copy, size, &j);
    imgscan_png(copy, size, &p);
    /* Bounded as the caller bounds it (by the picture's pixels), so that one input cannot inflate for long. */
    if (p.data_len > 0)
        imgscan_png_overlong(copy, size, p.data_len < (1u << 20) ? p.data_len : 1u << 20);
    imgscan_bmff(copy, size, &b);
    if (j.end > size || p.end > size || b.end > size || imgscan_gif_end(copy, size) > size ||
        imgscan_webp_end(copy, size) > size)
        abort();
    free(copy);
    return 0;
}
