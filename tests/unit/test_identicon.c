/* test_identicon.c -- identicons: the same key the same pixels, distinct keys distinct pictures, mirrored cells. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "identicon.h"
#include "image.h"

static const uint8_t GROUND[3] = {240, 240, 240};

static void key_of(uint32_t n, uint8_t key[32])
{
    memset(key, 0xa5, 32);
    memcpy(key, &n, sizeof(n));
}

static uint8_t *draw(const uint8_t key[32], int size)
{
    uint8_t *rgb;

    assert_int_equal(identicon_draw(key, size, &rgb), 0);
    assert_non_null(rgb);
    return rgb;
}

static const uint8_t *at(const uint8_t *rgb, int size, int x, int y)
{
    return rgb + ((size_t)y * size + x) * 3;
}

static void the_same_key_always_gives_the_same_pixels(void **state)
{
    uint8_t key[32], *a, *b;

    (void)state;
    key_of(1, key);
    a = draw(key, 200);
    b = draw(key, 200);
    assert_memory_equal(a, b, 200 * 200 * 3);
    free(a);
    free(b);
}

/* Two colours only, the ground in the margin, a saturated colour in the cells that are on, and mirrored cells. */
static void one_colour_on_the_ground_in_mirrored_cells(void **state)
{
    static const int sizes[] = {8, 37, 48, 128, 200};

    (void)state;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int size = sizes[s], cell = size / 6, margin = (size - 5 * cell) / 2, on = 0;
        const uint8_t *fg = NULL;
        uint8_t key[32], *rgb;

        key_of(7 + (uint32_t)s, key);
        rgb = draw(key, size);
        assert_memory_equal(at(rgb, size, 0, 0), GROUND, 3);
        assert_memory_equal(at(rgb, size, size - 1, size - 1), GROUND, 3);
        for (int i = 0; i < size * size; i++) {
            const uint8_t *p = rgb + 3 * i;
            if (memcmp(p, GROUND, 3) == 0)
                continue;
            if (fg == NULL)
                fg = p;
            assert_memory_equal(p, fg, 3);
        }
        assert_non_null(fg);
        assert_true(abs(fg[0] - fg[1]) + abs(fg[1] - fg[2]) + abs(fg[0] - fg[2]) > 60);
        for (int cy = 0; cy < 5; cy++) {
            for (int cx = 0; cx < 5; cx++) {
                int y = margin + cy * cell + cell / 2;
                const uint8_t *p = at(rgb, size, margin + cx * cell + cell / 2, y);
                assert_memory_equal(p, at(rgb, size, margin + (4 - cx) * cell + cell / 2, y), 3);
                on += memcmp(p, fg, 3) == 0;
            }
        }
        assert_true(on > 0 && on < 25);
        free(rgb);
    }
}

/* The first pixel off the ground: the key's colour. */
static const uint8_t *colour_of(const uint8_t *rgb, int size)
{
    for (int i = 0; i < size * size; i++)
        if (memcmp(rgb + 3 * i, GROUND, 3) != 0)
            return rgb + 3 * i;
    fail_msg("an identicon with no cell on");
    return NULL;
}

static void distinct_keys_give_distinct_pictures(void **state)
{
    enum { KEYS = 200, SIZE = 24 };
    uint8_t *pics[KEYS], key[32], *a, *b;
    int distinct_colours = 0;

    (void)state;
    for (uint32_t i = 0; i < KEYS; i++) {
        key_of(1000 + i, key);
        pics[i] = draw(key, SIZE);
    }
    for (int i = 0; i < KEYS; i++) {
        bool seen = false;
        for (int j = 0; j < KEYS; j++) {
            if (j > i)
                assert_memory_not_equal(pics[i], pics[j], SIZE * SIZE * 3);
            if (j < i && memcmp(colour_of(pics[i], SIZE), colour_of(pics[j], SIZE), 3) == 0)
                seen = true;
        }
        distinct_colours += !seen;
    }
    /* The hue has 65,536 steps: 200 keys share few colours. */
    assert_true(distinct_colours > 150);
    for (int i = 0; i < KEYS; i++)
        free(pics[i]);
    /* One bit of the key changes the picture. */
    key_of(5, key);
    a = draw(key, SIZE);
    key[31] ^= 1;
    b = draw(key, SIZE);
    assert_memory_not_equal(a, b, SIZE * SIZE * 3);
    free(a);
    free(b);
}

static void sizes_out_of_range_are_refused(void **state)
{
    uint8_t key[32], *rgb = (uint8_t *)"x";

    (void)state;
    key_of(3, key);
    assert_int_equal(identicon_draw(key, IDENTICON_MIN_SIZE - 1, &rgb), -EINVAL);
    assert_null(rgb);
    assert_int_equal(identicon_draw(key, IDENTICON_MAX_SIZE + 1, &rgb), -EINVAL);
    assert_int_equal(identicon_draw(key, 0, &rgb), -EINVAL);
}

static int start(void **state)
{
    (void)state;
    return image_init();
}

static int stop(void **state)
{
    (void)state;
    image_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_same_key_always_gives_the_same_pixels),
        cmocka_unit_test(one_colour_on_the_ground_in_mirrored_cells),
        cmocka_unit_test(distinct_keys_give_distinct_pictures),
        cmocka_unit_test(sizes_out_of_range_are_refused),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
