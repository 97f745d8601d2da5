/* fuzz_filter.c -- libFuzzer driver for filter parsing and matching. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One record to match every parsed filter against, with tags of each kind filters name. */
static struct event_view view;

static void make_view(void)
{
    static uint8_t *rec;
    static uint8_t id[32];
    struct event ev;
    size_t len;

    memset(&ev, 0, sizeof(ev));
    memset(ev.id, 0x11, 32);
    memset(ev.pubkey, 0x22, 32);
    ev.created_at = 1700000000;
    ev.kind = 3;
    ev.tags = json_pack("[[s,s],[s,s],[s,s],[s]]", "p", "aa", "e", "bb", "t", "nostr", "x");
    ev.content = "hello";
    ev.content_len = 5;
    memcpy(id, ev.id, 32);
    rec = event_record_build(&ev, &len);
    json_decref(ev.tags);
    if (event_view_decode(id, rec, len, &view) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *obj = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    struct filter f;
    char reason[200];

    if (view.json == NULL)
        make_view();
    if (obj == NULL)
        return 0;
    if (filter_parse(obj, 500, &f, reason, sizeof(reason)) == 0) {
        (void)filter_match(&f, &view);
        if (f.limit > 500)
            abort();
        filter_free(&f);
    }
    json_decref(obj);
    return 0;
}
