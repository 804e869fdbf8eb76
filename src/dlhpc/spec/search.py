"""`search:` — adaptive hyperparameter search instead of a grid (docs/search.md).

This module checks the block against the merged spec and makes the experiment's trial slots: a
search of N trials is an experiment of N trials whose values an agent fills in when it takes the
slot (search/agent.py). It imports no Optuna, so `validate` stays fast and works without the extra.
"""

import hashlib
import json
import math
from dataclasses import dataclass

from dlhpc.errors import UserError
from dlhpc.spec import schema

KINDS = ("uniform", "loguniform", "int", "choice")
# what the built-in trainer logs each epoch (metrics.jsonl), the keys a search of it can follow
BUILTIN_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
LOWER_IS_BETTER = ("loss", "error", "err", "perplexity", "mse", "mae", "rmse", "time", "wer", "cer")
MAX_CHOICES = 1000
AGENT_FILE = "agent.json"  # marks a search agent's folder (what `python -m dlhpc.node` runs there)


@dataclass(frozen=True)
class Dimension:
    """One searched key: its dotted path and distribution."""

    key: str
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: int | float | None = None
    log: bool = False
    choices: tuple = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        step = f" step {self.step}" if self.step not in (None, 1) else ""
        scale = " (log scale)" if self.log else ""
        return f"{self.kind} {self.low:g} to {self.high:g}{step}{scale}"


def check_search(spec) -> None:
    """Fill in the search section's defaults and check it; nothing for a spec that does not search."""
    if "search" not in spec.data:
        return
    from dlhpc.spec.yamlsource import where

    given = spec.data["search"] or {}
    filled = {**schema.SEARCH_DEFAULTS, **given}
    filled["pruner"] = {**schema.SEARCH_DEFAULTS["pruner"], **(given.get("pruner") or {})}
    spec.data["search"] = filled
    at = lambda *path: where(spec.origins, ("search", *path))  # noqa: E731
    if spec.sweep:
        raise UserError(
            f"{where(spec.origins, ('sweep',))}: a spec either sweeps a grid or searches, not both; "
            "move the swept keys into search.space (e.g. train.lr: {choice: [0.01, 0.1]}), or remove search:"
        )
    if (spec.data.get("resources", {}).get("retry") or {}).get("automatic"):
        raise UserError(
            f"{where(spec.origins, ('resources', 'retry', 'automatic'))}: a search retries on its own: an agent "
            "takes over a trial whose agent died, once; remove resources.retry.automatic"
        )
    if filled["trials"] is None:
        raise UserError(f"{at()}: search needs search.trials, the number of configurations to try (e.g. trials: 64)")
    if filled["parallel"] > filled["trials"]:
        raise UserError(
            f"{at('parallel')}: {filled['parallel']} agents for {filled['trials']} trials: the extra agents "
            f"would have nothing to do; set search.parallel to at most {filled['trials']}"
        )
    dims = space(spec)
    _check_metric(spec, filled, at)
    _check_resume(spec, filled, at)
    if filled["sampler"] == "grid":
        continuous = [d.key for d in dims if d.kind in ("uniform", "loguniform")]
        if continuous:
            raise UserError(
                f"{at('sampler')}: the grid sampler needs a finite space, but {continuous[0]} is continuous; "
                "give it {choice: [...]} or {int: [lo, hi]}, or use sampler: tpe"
            )


def _check_resume(spec, filled: dict, at) -> None:
    """A paused trial is resumed from the built-in trainer's checkpoint: ASHA's only, the trainer's only."""
    from dlhpc.spec.program import is_builtin

    pruner = filled["pruner"]
    if not pruner["resume"]:
        return
    if pruner["kind"] != "asha":
        raise UserError(
            f"{at('pruner', 'resume')}: resume pauses trials at ASHA's rungs; it needs pruner.kind asha "
            f"(not {pruner['kind']}), or remove resume"
        )
    if not is_builtin(spec.data):
        raise UserError(
            f"{at('pruner', 'resume')}: a paused trial is resumed from the built-in trainer's checkpoint, and "
            "this spec runs its own program; remove resume (its trials are then stopped for good at a rung)"
        )


def _check_metric(spec, filled: dict, at) -> None:
    from dlhpc.spec.program import is_builtin

    builtin = is_builtin(spec.data)
    if filled["metric"] is None:
        if not builtin:
            raise UserError(
                f"{at()}: search.metric is required for a program of your own: the key it logs with "
                "dlhpc.trial.log (e.g. metric: val_acc)"
            )
        filled["metric"] = "test_acc"
    elif builtin and filled["metric"] not in BUILTIN_METRICS:
        raise UserError(
            f"{at('metric')}: the built-in trainer never logs {filled['metric']!r}; it logs "
            f"{', '.join(BUILTIN_METRICS)} each epoch"
        )
    if filled["direction"] is None:
        filled["direction"] = default_direction(filled["metric"])


def default_direction(metric: str) -> str:
    words = metric.lower().replace(".", "_").split("_")
    return "minimize" if any(w in LOWER_IS_BETTER for w in words) else "maximize"


def space(spec) -> list[Dimension]:
    """The searched keys, each checked: a key a sweep could set, a distribution of one kind with
    values the key accepts. One clear message for the first that is wrong."""
    from dlhpc.spec.program import is_builtin
    from dlhpc.spec.yamlsource import where

    entries = spec.data["search"].get("space") or {}
    if not entries:
        raise UserError(
            f"{where(spec.origins, ('search',))}: search.space is empty: name the keys to search, e.g.\n"
            "  space:\n    train.lr: {loguniform: [0.001, 1.0]}"
        )
    builtin = is_builtin(spec.data)
    dims = []
    for key, entry in entries.items():
        path = ("search", "space", key)
        at = where(spec.origins, path)
        parts = tuple(str(key).split("."))
        field = schema.settable_field(
            key, f"{at}: cannot search", "searched keys are dotted paths like train.lr, model.width or params.lr"
        )
        if parts[0] == "resources":
            raise UserError(
                f"{at}: cannot search {key}: every agent of a search runs in one allocation size; "
                "set resources outside search (a sweep can vary them)"
            )
        if not builtin and parts[0] in schema.BUILTIN_SECTIONS:
            raise UserError(f"{at}: cannot search {key}: this spec runs its own program; search params.NAME instead")
        dims.append(_dimension(str(key), entry, field, at))
    return dims


def _dimension(key: str, entry, field, at: str) -> Dimension:
    if not isinstance(entry, dict) or not (set(entry) & set(KINDS)):
        raise UserError(
            f"{at}: {key} needs a distribution, one of {{uniform: [lo, hi]}}, {{loguniform: [lo, hi]}}, "
            f"{{int: [lo, hi]}} or {{choice: [a, b, ...]}}; got {schema._show(entry)}"
        )
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) > 1:
        raise UserError(f"{at}: {key} has {' and '.join(kinds)}: give one distribution")
    kind = kinds[0]
    allowed = {kind} | ({"step", "log"} if kind == "int" else {"step"} if kind == "uniform" else set())
    extra = sorted(set(map(str, entry)) - allowed)
    if extra:
        raise UserError(f"{at}: {key}: {extra[0]!r} does not go with {kind}; allowed: {', '.join(sorted(allowed))}")
    values = entry[kind]
    if kind == "choice":
        return _choice(key, values, field, at)
    if not isinstance(values, list) or len(values) != 2:
        raise UserError(f"{at}: {key}: {kind} takes [low, high], e.g. {kind}: [1, 10]; got {schema._show(values)}")
    low, high = values
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if not numeric or (kind == "int" and not all(isinstance(v, int) for v in values)):
        what = "whole numbers" if kind == "int" else "numbers"
        raise UserError(f"{at}: {key}: {kind} bounds must be {what}; got {schema._show(values)}")
    if low >= high:
        raise UserError(f"{at}: {key}: the low bound {low} must be below the high bound {high}")
    log = kind == "loguniform" or bool(entry.get("log", False))
    if not isinstance(entry.get("log", False), bool):
        raise UserError(f"{at}: {key}: log must be true or false")
    if log and low <= 0:
        raise UserError(
            f"{at}: {key}: a log scale needs bounds above 0, got {low}; e.g. loguniform: [0.0001, 0.1], "
            "or uniform for a range that includes 0"
        )
    step = entry.get("step")
    if step is not None:
        if kind == "int" and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise UserError(f"{at}: {key}: step must be a whole number of at least 1, got {schema._show(step)}")
        if kind == "uniform" and (isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0):
            raise UserError(f"{at}: {key}: step must be a number above 0, got {schema._show(step)}")
        if step > high - low:
            raise UserError(f"{at}: {key}: step {step} is wider than the range {low} to {high}")
        if log:
            raise UserError(f"{at}: {key}: a log scale takes no step (Optuna samples it continuously)")
    for bound in (low, high):
        try:
            field.check(int(bound) if kind == "int" else _as_field_number(field, bound))
        except schema.Invalid as exc:
            raise UserError(f"{at}: {key}: the bound {bound}: {exc}") from None
    return Dimension(key, "int" if kind == "int" else "uniform", low, high, step, log)


def _as_field_number(field, value):
    """A float bound for a float key; an integer key is searched with int: (said by its check)."""
    inner = field.inner if isinstance(field, schema.Optional) else field
    if isinstance(inner, schema.Int):
        raise schema.Invalid(f"{inner.allowed} is wanted: search it with {{int: [lo, hi]}}")
    return float(value)


def _choice(key: str, values, field, at: str) -> Dimension:
    if not isinstance(values, list) or len(values) < 2:
        raise UserError(
            f"{at}: {key}: choice needs at least two values to choose from, got {schema._show(values)}; "
            f"a single value is not searched: set {key} outside search"
        )
    if len(values) > MAX_CHOICES:
        raise UserError(f"{at}: {key}: {len(values)} choices; at most {MAX_CHOICES}")
    checked = []
    for i, value in enumerate(values):
        try:
            checked.append(field.check(value))
        except schema.Invalid as exc:
            raise UserError(f"{at}: {key}: choice {i}: {exc}") from None
    seen = [json.dumps(v, sort_keys=True) for v in checked]
    if len(set(seen)) < len(seen):
        raise UserError(f"{at}: {key}: the choices repeat a value; list each once")
    return Dimension(key, "choice", choices=tuple(checked))


def slot_ids(n: int, seed: int) -> list[str]:
    """The ids of a search's trial slots, `<index>-<hash>` as a sweep's (the hash of the seed and
    index: its values are not known until an agent draws them)."""
    width = max(3, len(str(n - 1)))
    return [f"{i:0{width}d}-{hashlib.sha1(f'search:{seed}:{i}'.encode()).hexdigest()[:6]}" for i in range(n)]


def agent_ids(n: int) -> list[str]:
    """The folders of a search's agents in the experiment (each array task's log and state)."""
    return [f"agent-{i}" for i in range(n)]


def trials_per_agent(search: dict) -> int:
    """How many trials each agent runs if all go the distance: its walltime is this many trials'."""
    return math.ceil(search["trials"] / search["parallel"])


def space_of(search: dict) -> list[Dimension]:
    """The dimensions of a search section that was checked at submit (an agent's, a summary's)."""
    return [
        _dimension(key, entry, schema.sweep_field(tuple(key.split("."))), key)
        for key, entry in (search.get("space") or {}).items()
    ]
