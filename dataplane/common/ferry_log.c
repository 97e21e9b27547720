#include "dataplane/common/ferry_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *log_component = "ferry";
static int log_threshold = -1;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void ferry_log_set_component(const char *component)
{
	log_component = component;
}

void ferry_log_set_level(enum ferry_log_level level)
{
	log_threshold = (int)level;
}

int ferry_log_parse_level(const char *name)
{
	static const char *const lower[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (name && strcmp(name, lower[i]) == 0)
			return i;
	return -1;
}

static int current_threshold(void)
{
	if (log_threshold < 0) {
		int lvl = ferry_log_parse_level(getenv("FERRY_LOG_LEVEL"));
		log_threshold = lvl >= 0 ? lvl : FERRY_LOG_INFO;
	}
	return log_threshold;
}

void ferry_log(enum ferry_log_level level, const char *fmt, ...)
{
	if ((int)level > current_threshold())
		return;

	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t off;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	off += (size_t)snprintf(line + off, sizeof(line) - off, ".%03ldZ %s %-5s ",
				ts.tv_nsec / 1000000, log_component, level_names[level]);
	va_start(ap, fmt);
	if (off < sizeof(line))
		vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	va_end(ap);
	/* One write per line so concurrent processes do not interleave mid-line. */
	fprintf(stderr, "%s\n", line);
}
