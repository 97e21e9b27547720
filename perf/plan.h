/**
 * @file plan.h
 * `ferry-perf plan`: the phase planner's misprediction table (seed 002's
 * A(w|c), A(w|r), A(c|w), A(r|w) over window sizes) and the bytes a planned
 * migration re-sends against pre-copy, measured on a real blocked LU
 * factorisation sampled through userfaultfd (see perf/plan.c).
 */
#ifndef FERRY_PERF_PLAN_H
#define FERRY_PERF_PLAN_H

#include <stdio.h>

int perf_plan_main(int argc, char **argv);
void perf_plan_usage(FILE *out);

#endif /* FERRY_PERF_PLAN_H */
