/* test_fsutil.c -- directory creation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

static void remove_tree(const char *root)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void mkdir_p_creates_every_missing_parent_and_is_idempotent(void **state)
{
    char root[] = "/tmp/pfp-test-fsutil-XXXXXX", path[256];
    (void)state;

    assert_non_null(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/a/b/c", root);
    assert_int_equal(fs_mkdir_p(path, 0755), 0);
    assert_true(is_dir(path));
    assert_int_equal(fs_mkdir_p(path, 0755), 0);

    snprintf(path, sizeof(path), "%s/d/e/pfpcache.db", root);
    assert_int_equal(fs_mkdir_parent(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/d/e", root);
    assert_true(is_dir(path));
    snprintf(path, sizeof(path), "%s/d/e/pfpcache.db", root);
    assert_false(is_dir(path));

    remove_tree(root);
}

static void a_file_in_the_way_is_reported(void **state)
{
    char root[] = "/tmp/pfp-test-fsutil-XXXXXX", path[256];
    FILE *f;
    (void)state;

    assert_non_null(mkdtemp(root));
    snprintf(path, sizeof(path), "%s/file", root);
    assert_non_null(f = fopen(path, "w"));
    fclose(f);
    assert_int_equal(fs_mkdir_p(path, 0755), -ENOTDIR);
    snprintf(path, sizeof(path), "%s/file/sub", root);
    assert_int_equal(fs_mkdir_p(path, 0755), -ENOTDIR);
    assert_int_equal(fs_mkdir_p("", 0755), -EINVAL);

    remove_tree(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mkdir_p_creates_every_missing_parent_and_is_idempotent),
        cmocka_unit_test(a_file_in_the_way_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
