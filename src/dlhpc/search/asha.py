"""ASHA that pauses (`search.pruner.resume: true`; docs/search.md): the rule, with no Optuna here.

Optuna's successive halving decides at once when a trial reaches a rung: it stops it for good, or
lets it go on; while the rung holds fewer than `reduction` trials it lets the best so far go on,
so a study's first trials run to the end whatever they are worth. ASHA as published (Li et al.,
2020) pauses instead: a trial at a rung goes on only while it is in the top 1/reduction of the
trials that reached that rung; otherwise it waits there, and is promoted later, from its
checkpoint, once enough trials behind it have done worse.
"""


def rung_steps(min_epochs: int, reduction: int, last: int) -> list[int]:
    """The steps at which a trial may be paused: min_epochs x reduction^k, before the last."""
    steps, at = [], min_epochs
    while at < last:
        steps.append(at)
        at *= reduction
    return steps


def in_top(value: float, values: list[float], reduction: int, maximize: bool, at_least: int = 0) -> bool:
    """Whether `value` (one of `values`, every trial's at that rung) is in their top 1/reduction;
    never while fewer than `reduction` trials reached the rung, unless `at_least` is 1: at the
    study's end, when no more trials will come, the best at a rung is promoted all the same."""
    keep = max(at_least, len(values) // reduction)
    if keep == 0:
        return False
    ranked = sorted(values, reverse=maximize)
    cut = ranked[keep - 1]
    return value >= cut if maximize else value <= cut


def values_at(trials, step: int) -> list[float]:
    """Each trial's value at `step`, for those that reported one (Optuna frozen trials)."""
    return [t.intermediate_values[step] for t in trials if step in t.intermediate_values]
