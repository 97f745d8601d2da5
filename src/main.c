/* main.c -- command line of pfpcache-relay. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "app.h"
#include "log.h"

/*
 * Each connection holds h2o socket buffers (8 KiB and more) and a request
 * pool; h2o keeps only 16 of each for reuse, so at a few hundred connections
 * every request frees and allocates again. With glibc's defaults (trim at
 * 128 KiB of free heap top, no padding), those frees hand the heap top back to
 * the kernel and the next allocations fault it in again: at 50 connections a
 * quarter of the hit path was brk() and page faults. Keep up to 64 MiB of free
 * heap, grow it 16 MiB at a time, and give allocations of 4 MiB and more
 * (large downloads, decoded images) their own mappings, returned at free().
 * Setting these also stops glibc from moving the thresholds by itself.
 */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

/*
 * Every connection, download and picture file takes a descriptor, and the soft
 * limit is often 1024 (systemd's default) although the hard limit allows far
 * more: the soft limit is raised to the hard one, and said when it stays low.
 */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 4096)
        log_warn("only %llu file descriptors (RLIMIT_NOFILE): the relay refuses connections past that; raise "
                 "LimitNOFILE",
                 (unsigned long long)rl.rlim_cur);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pfpcache-relay [--config PATH] [--check | --check-db]\n"
               "  --config PATH  configuration file (default: config.json; written with defaults if missing)\n"
               "  --check        check the configuration and exit\n"
               "  --check-db     walk the database and exit: 0 sound, 2 damaged, 1 not checked\n"
               "  --version      print the version and exit\n");
}

int main(int argc, char **argv)
{
    /* Static so that everything the app holds stays reachable for the leak checker at exit. */
    static struct app app;
    const char *config_path = "config.json";
    bool check_only = false, check_db = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--check-db") == 0) {
            check_db = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("pfpcache-relay %s\n", PFP_VERSION);
            return APP_EXIT_OK;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return APP_EXIT_OK;
        } else {
            fprintf(stderr, "pfpcache-relay: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return APP_EXIT_CONFIG;
        }
    }

    tune_malloc();
    if (!check_only)
        raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    return check_db ? app_check_db(&app, config_path) : app_run(&app, config_path, check_only);
}
