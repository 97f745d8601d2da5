/* main.c -- command line of pfpcache-relay. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "app.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: pfpcache-relay [--config PATH] [--check]\n"
               "  --config PATH  configuration file (default: config.json; written with defaults if missing)\n"
               "  --check        check the configuration and exit\n"
               "  --version      print the version and exit\n");
}

int main(int argc, char **argv)
{
    /* Static so that everything the app holds stays reachable for the leak checker at exit. */
    static struct app app;
    const char *config_path = "config.json";
    bool check_only = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check_only = true;
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

    signal(SIGPIPE, SIG_IGN);
    return app_run(&app, config_path, check_only);
}
