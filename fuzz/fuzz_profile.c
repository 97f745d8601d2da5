/* fuzz_profile.c -- libFuzzer driver for a kind 0's content: the picture and banner URLs taken from untrusted JSON. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The most bytes a data: URI may hold here. */
#define MAX_DATA 4096

/*
 * An accepted URL is whole, within bounds, and free of what a Location header
 * must not carry; a data: URI's bytes, and only those, come with it, under the limit.
 */
static void check(const struct profile_url *u)
{
    bool data = strncmp(u->url, PROFILE_DATA_PREFIX, sizeof(PROFILE_DATA_PREFIX) - 1) == 0;

    if (u->state != PROFILE_URL_OK) {
        if (u->data != NULL)
            abort();
        return;
    }
    if (u->len == 0 || u->len > PROFILE_MAX_URL || strlen(u->url) != u->len)
        abort();
    if (data != (u->data != NULL) || u->data_len > MAX_DATA || (data && u->data_len == 0))
        abort();
    for (size_t i = 0; i < u->len; i++) {
        if ((unsigned char)u->url[i] <= ' ' || u->url[i] == 0x7f)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct profile p;

    if (profile_parse((const char *)data, size, MAX_DATA, &p) != 0 &&
        (p.picture.state != PROFILE_URL_ABSENT || p.banner.state != PROFILE_URL_ABSENT))
        abort();
    check(&p.picture);
    check(&p.banner);
    if (p.picture.state == PROFILE_URL_OK)
        (void)profile_url_is_http(p.picture.url);
    profile_free(&p);
    return 0;
}
