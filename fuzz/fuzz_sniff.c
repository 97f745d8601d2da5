/* fuzz_sniff.c -- libFuzzer driver for image sniffing: magic bytes and the ISO-BMFF ftyp box walk of downloaded bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *name = NULL;
    /* A copy of exactly `size` bytes, so that ASan sees any read past the end. */
    uint8_t *copy = malloc(size > 0 ? size : 1);
    enum image_type t;

    memcpy(copy, data, size);
    t = image_sniff(copy, size, &name);
    if (t > IMAGE_HEIC || name == NULL || strlen(name) == 0)
        abort();
    if (strcmp(image_mime(t), "") == 0)
        abort();
    free(copy);
    return 0;
}
