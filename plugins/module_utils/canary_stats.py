# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)
"""Exact one-sided tests on counts, for the canary analysis (module_utils/canary.py).

Fisher's exact test asks: if the batch and the baseline answered from the same rate,
how likely is a split of the events (errors, slow requests, requests to one route) at
least as lopsided as the one seen? It knows both sample sizes, so a handful of requests
can neither fail a rollout on one unlucky answer nor pass one whose every answer failed.
The binomial test is for a route only the batch serves (no baseline to compare with):
held to a fixed rate instead. Standard library only: the module runs on any controller.
"""

from __future__ import annotations

import math


def _log_choose(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _at_least(x, low, high, mode, log_pmf):
    """P(X >= x) of a discrete distribution on low..high with the given mode, summed from
    x away from the mode (the terms only shrink there, so the sum stops once they add
    nothing, and a tail too small for a float is 0, not the float error of 1 - 1)."""
    if x <= low:
        return 1.0
    if x > high:
        return 0.0
    if x > mode:
        return min(_sum(range(x, high + 1), log_pmf), 1.0)
    return max(1.0 - _sum(range(x - 1, low - 1, -1), log_pmf), 0.0)


def _sum(ks, log_pmf):
    total = 0.0
    for k in ks:
        term = math.exp(log_pmf(k))
        total += term
        if term <= total * 1e-17:
            break
    return total


def hypergeom_at_least(x, total, marked, drawn):
    """P(X >= x) for X the marked items among `drawn` taken from `total`, `marked` of
    them marked (the hypergeometric distribution)."""
    low, high = max(0, drawn - (total - marked)), min(marked, drawn)
    mode = (drawn + 1) * (marked + 1) // (total + 2)
    denominator = _log_choose(total, drawn)

    def log_pmf(k):
        return _log_choose(marked, k) + _log_choose(total - marked, drawn - k) - denominator

    return _at_least(x, low, high, mode, log_pmf)


def fisher_greater(events, size, base_events, base_size):
    """p-value of 'the batch's rate (events of size) is higher than the baseline's'."""
    return hypergeom_at_least(events, size + base_size, events + base_events, size)


def fisher_less(events, size, base_events, base_size):
    """p-value of 'the batch's rate is lower than the baseline's'."""
    return 1.0 - hypergeom_at_least(events + 1, size + base_size, events + base_events, size)


def binomial_at_least(x, size, rate):
    """P(X >= x) for X ~ Binomial(size, rate): 'more events than rate allows'."""
    if rate <= 0:  # never an event
        return 1.0 if x <= 0 else 0.0
    if rate >= 1:  # always one
        return 1.0 if x <= size else 0.0

    def log_pmf(k):
        return _log_choose(size, k) + k * math.log(rate) + (size - k) * math.log1p(-rate)

    return _at_least(x, 0, size, int((size + 1) * rate), log_pmf)


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
