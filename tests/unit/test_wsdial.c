/* test_wsdial.c -- checking a server's answer to the WebSocket upgrade. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ws.h"
#include "wsdial.h"

/* The example handshake of RFC 6455, section 1.3. */
#define KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static ssize_t parse(const char *text, char err[WSDIAL_ERR_LEN])
{
    err[0] = '\0';
    return wsdial_parse_response(text, strlen(text), KEY, err, WSDIAL_ERR_LEN);
}

static void accept_key_matches_rfc_6455(void **state)
{
    char out[29];
    (void)state;
    ws_accept_key(out, KEY, strlen(KEY));
    assert_string_equal(out, ACCEPT);
}

static void a_valid_101_is_accepted_and_its_length_returned(void **state)
{
    char err[WSDIAL_ERR_LEN];
    const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                        "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n";
    char with_frames[256];
    (void)state;

    assert_int_equal(parse(head, err), (ssize_t)strlen(head));
    /* Bytes after the head are the first frames: they are not part of it. */
    snprintf(with_frames, sizeof(with_frames), "%s\x81\x02hi", head);
    assert_int_equal(parse(with_frames, err), (ssize_t)strlen(head));
}

static void an_incomplete_head_asks_for_more(void **state)
{
    char err[WSDIAL_ERR_LEN];
    (void)state;
    assert_int_equal(parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", err), 0);
    assert_int_equal(parse("", err), 0);
}

static void refusals_and_mismatches_are_errors(void **state)
{
    struct {
        const char *text, *why;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "refused"},
        {"HTTP/1.1 403 Forbidden\r\n\r\n", "refused"},
        {"HTTP/1.0 101 Switching Protocols\r\n\r\n", "not HTTP/1.1"},
        {"HTTP/1.1 1010 Nope\r\n\r\n", "refused"},
        {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
         "lacks Upgrade"},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
         "lacks Upgrade"},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "does not match"},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
         "does not match"},
        {"HTTP/1.1 101 Switching Protocols\r\nno colon here\r\n\r\n", "malformed header"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[WSDIAL_ERR_LEN];
        assert_int_equal(parse(cases[i].text, err), -EPROTO);
        if (strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, err, cases[i].why);
    }
}

static void an_endless_head_is_refused(void **state)
{
    static char big[20000];
    char err[WSDIAL_ERR_LEN] = "";
    (void)state;

    memset(big, 'x', sizeof(big));
    memcpy(big, "HTTP/1.1 101 Switching Protocols\r\nX-Filler: ", 44);
    assert_int_equal(wsdial_parse_response(big, sizeof(big), KEY, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "too large"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_key_matches_rfc_6455),
        cmocka_unit_test(a_valid_101_is_accepted_and_its_length_returned),
        cmocka_unit_test(an_incomplete_head_asks_for_more),
        cmocka_unit_test(refusals_and_mismatches_are_errors),
        cmocka_unit_test(an_endless_head_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
