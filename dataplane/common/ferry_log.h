/**
 * @file ferry_log.h
 * One line per event, to stderr: "2026-11-22T10:00:00.123Z memsrv INFO  client 3 connected from 127.0.0.1:5401".
 *
 * The level threshold comes from FERRY_LOG_LEVEL (error|warn|info|debug) or
 * ferry_log_set_level(); the component is a short fixed word per program.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

enum ferry_log_level { FERRY_LOG_ERROR, FERRY_LOG_WARN, FERRY_LOG_INFO, FERRY_LOG_DEBUG };

/** Set the component name printed on every line (default "ferry"). Not copied. */
void ferry_log_set_component(const char *component);
void ferry_log_set_level(enum ferry_log_level level);
/** Parse "error"/"warn"/"info"/"debug"; returns -1 on anything else. */
int ferry_log_parse_level(const char *name);

void ferry_log(enum ferry_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_ERR(...)   ferry_log(FERRY_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...)  ferry_log(FERRY_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...)  ferry_log(FERRY_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) ferry_log(FERRY_LOG_DEBUG, __VA_ARGS__)

#endif /* FERRY_LOG_H */
