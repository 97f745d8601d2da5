/* fuzz_event.c -- libFuzzer driver for event parsing, the id check, and the stored record. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *obj = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
    struct event ev;
    struct event_view v;
    char reason[200];

    if (obj == NULL)
        return 0;
    if (event_parse(obj, &ev, reason, sizeof(reason)) == 0) {
        size_t len, pos = 0, vlen;
        const char *value;
        char letter;
        uint8_t *rec;

        (void)event_id_valid(&ev);
        rec = event_record_build(&ev, &len);
        if (event_view_decode(ev.id, rec, len, &v) != 0)
            abort();
        while (event_view_next_tag(&v, &pos, &letter, &value, &vlen))
            ;
        if (pos != v.tags_len)
            abort();
        event_view_d_tag(&v, &value, &vlen);
        free(rec);
        event_free(&ev);
    }
    json_decref(obj);
    return 0;
}
