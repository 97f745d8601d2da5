/* log.h -- level-gated, timestamped log lines on stderr, safe from any thread. */
#ifndef PFP_LOG_H
#define PFP_LOG_H

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Lines above this level are skipped before their arguments are evaluated. */
extern enum log_level log_threshold;

/* Parses "error", "warn", "info" or "debug". Returns 0, or -EINVAL for any other name. */
int log_level_parse(const char *name, enum log_level *out);

/* Writes one line, "2026-11-24T10:00:00.123Z warn message", with a single write(2). */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(level, ...)                                                                                             \
    do {                                                                                                               \
        if ((level) <= log_threshold)                                                                                  \
            log_write((level), __VA_ARGS__);                                                                           \
    } while (0)

#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
