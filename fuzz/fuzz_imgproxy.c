/* fuzz_imgproxy.c -- libFuzzer driver for imgproxy paths, signed (always refused here) and unsigned. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imgproxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whatever was asked, the geometry is one image_variant() takes. */
static void check_geometry(const struct imgproxy_request *r)
{
    static const int masters[][2] = {{1, 1}, {1024, 683}, {64, 64}, {1, 1024}, {1024, 1}};

    for (size_t i = 0; i < sizeof(masters) / sizeof(masters[0]); i++) {
        struct image_box b;
        imgproxy_geometry(r, masters[i][0], masters[i][1], 1024, &b);
        if (b.scale_w < 1 || b.scale_h < 1 || b.scale_w > IMAGE_VARIANT_MAX_SIZE ||
            b.scale_h > IMAGE_VARIANT_MAX_SIZE || b.crop_w < 1 || b.crop_h < 1 || b.crop_w > b.scale_w ||
            b.crop_h > b.scale_h || b.canvas_w < b.crop_w || b.canvas_h < b.crop_h ||
            b.canvas_w > IMAGE_VARIANT_MAX_SIZE || b.canvas_h > IMAGE_VARIANT_MAX_SIZE)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct imgproxy_key key;
    const struct imgproxy_options open = {NULL, 0, 32, true}, sealed = {&key, 1, 8, false};
    /* An exact copy, so that a read past the end is caught. */
    char *path = malloc(size ? size : 1), err[200];
    struct imgproxy_request r;

    if (key.key_len == 0 && imgproxy_key_parse("00112233", "4455", &key) != 0)
        abort();
    memcpy(path, data, size);
    if (imgproxy_parse(&open, path, size, &r, err, sizeof(err)) == 0) {
        if (r.source == NULL || strlen(r.source) == 0 || r.dpr <= 0 || r.dpr > 4 || r.quality > 100)
            abort();
        check_geometry(&r);
        imgproxy_request_free(&r);
    } else if (r.source != NULL || err[0] == '\0') {
        abort();
    }
    if (imgproxy_parse(&sealed, path, size, &r, err, sizeof(err)) == 0)
        imgproxy_request_free(&r);
    free(path);
    return 0;
}
