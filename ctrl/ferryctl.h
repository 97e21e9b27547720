/**
 * @file ferryctl.h
 * ferryctl's output: human tables or JSON (jansson) for every reply it prints.
 */
#ifndef FERRY_CTRL_FERRYCTL_H
#define FERRY_CTRL_FERRYCTL_H

#include <stdbool.h>
#include <stdio.h>

#include "proto/ctrl.h"

void print_status(FILE *out, const struct ferry_ctrl_status *s, bool json);
void print_nodes(FILE *out, const struct ferry_ctrl_nodes *ns, bool json);
void print_vms(FILE *out, const struct ferry_ctrl_vms *vs, bool json);
void print_stats(FILE *out, const struct ferry_ctrl_stats_ok *st, bool json);
/** One PROGRESS: a bar redrawn in place on a TTY, a plain line otherwise, a JSON line with --json. */
void print_progress(FILE *out, const struct ferry_ctrl_progress *p, bool json, bool tty);
/** An ERROR reply, as a line on stderr or {"error":...} on @p out. */
void print_error(FILE *out, const char *what, uint32_t code, const char *msg, bool json);

#endif /* FERRY_CTRL_FERRYCTL_H */
