/* verify_rate.c -- the reference for the ingest benchmark: how many of the same
 * signatures libsecp256k1 verifies per second on one core, ids included. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"

int main(int argc, char **argv)
{
    FILE *f;
    char *line = NULL;
    size_t cap = 0, n = 0, ok = 0;
    struct event *events = NULL;
    struct timespec t0, t1;

    if (argc != 2 || (f = fopen(argv[1], "r")) == NULL) {
        fprintf(stderr, "usage: verify_rate EVENTS.jsonl\n");
        return 2;
    }
    while (getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *obj = json_loads(line, 0, &err);
        if (obj == NULL)
            continue;
        events = realloc(events, (n + 1) * sizeof(*events));
        if (event_parse(obj, &events[n], NULL, 0) == 0)
            n++;
        json_decref(obj);
    }
    fclose(f);
    free(line);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n; i++)
        ok += event_id_valid(&events[i]) && event_verify_sig(events[i].id, events[i].pubkey, events[i].sig);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.0f %zu %zu\n", (double)n / secs, ok, n);
    for (size_t i = 0; i < n; i++)
        event_free(&events[i]);
    free(events);
    return ok == n ? 0 : 1;
}
