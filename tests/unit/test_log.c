/* test_log.c -- level names and the format of a log line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void level_names_parse(void **state)
{
    enum log_level l;
    (void)state;

    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_LEVEL_ERROR);
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("DEBUG", &l), -EINVAL);
    assert_int_equal(log_level_parse("", &l), -EINVAL);
}

/* Runs `fn` with stderr sent to a pipe and returns what it wrote. */
static void capture(void (*fn)(void), char *out, size_t len)
{
    int fds[2], saved = dup(STDERR_FILENO);
    ssize_t n;

    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    n = read(fds[0], out, len - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
}

static void log_some(void)
{
    log_threshold = LOG_LEVEL_WARN;
    log_info("hidden %d", 1);
    log_warn("shown %d", 2);
    log_debug("hidden %d", 3);
    log_error("also shown");
}

static void lines_are_gated_timestamped_and_whole(void **state)
{
    char out[1024];
    regex_t re;
    (void)state;

    capture(log_some, out, sizeof(out));
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z warn shown 2\n"
                             "[0-9TZ:.-]+ error also shown\n$",
                             REG_EXTENDED),
                     0);
    if (regexec(&re, out, 0, NULL, 0) != 0)
        fail_msg("unexpected log output: \"%s\"", out);
    regfree(&re);
}

static void log_long(void)
{
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_threshold = LOG_LEVEL_INFO;
    log_info("%s", big);
}

static void an_overlong_line_is_cut_not_split(void **state)
{
    char out[8192];
    (void)state;

    capture(log_long, out, sizeof(out));
    assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1);
    assert_true(strlen(out) <= 2048);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(level_names_parse),
        cmocka_unit_test(lines_are_gated_timestamped_and_whole),
        cmocka_unit_test(an_overlong_line_is_cut_not_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
