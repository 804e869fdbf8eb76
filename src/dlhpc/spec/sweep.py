"""Sweep expansion: `sweep:` (dotted key → list) → the grid of Trials, each with a stable id.

The id is `<index>-<hash of the swept values>`, so the same spec gives the same ids on every
run, and a trial's directory name says both where it sits in the grid and what it is.
"""

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass

from dlhpc.errors import UserError
from dlhpc.spec import schema

MAX_TRIALS = 100_000  # a guard against a sweep bomb (a site can set less: policy.max_array_size)


@dataclass(frozen=True)
class Trial:
    index: int
    id: str
    params: dict  # dotted key -> value, only the swept keys
    data: dict  # the full resolved spec of this trial (no sweep section)


def check_sweep(spec) -> None:
    from dlhpc.spec.yamlsource import where

    sweep = spec.sweep
    sizes = []
    for key, values in sweep.items():
        path = ("sweep", key)
        field = schema.settable_field(
            key,
            f"{where(spec.origins, path)}: cannot sweep over",
            "sweep keys are dotted paths like train.lr, model.name or params.lr",
        )
        if not isinstance(values, list) or not values:
            raise UserError(f"{where(spec.origins, path)}: must be a non-empty list of values, e.g. [0.01, 0.1]")
        for i, value in enumerate(values):
            try:
                field.check(value)
            except schema.Invalid as exc:
                raise UserError(f"{where(spec.origins, path + (i,))}: sweep value {i} of {key}: {exc}") from None
        sizes.append(len(values))
    total = math.prod(sizes) if sizes else 1
    if total > MAX_TRIALS:
        raise UserError(
            f"{where(spec.origins, ('sweep',))}: the sweep makes {total:,} trials; at most "
            f"{MAX_TRIALS:,} are allowed. Sweep fewer values, or split it into several specs."
        )


def count_trials(spec) -> int:
    if spec.search:
        return spec.search["trials"]
    return math.prod(len(v) for v in spec.sweep.values()) if spec.sweep else 1


def _copy(node):
    """A spec's data is dicts, lists and plain values: copying them directly is several times
    faster than copy.deepcopy, which a 10,000-trial sweep feels."""
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _hidden_for(model: dict):
    """model.hidden as a trial of this model reads it: the mlp's layer widths, the cnn's one hidden
    width; nothing for the others, nor for a cnn trial of a sweep over model.name whose hidden
    lists the mlp's layers."""
    hidden, name = model["hidden"], model["name"]
    if name == "mlp" or (name == "cnn" and hidden is not None and len(hidden) == 1):
        return hidden
    return None


def with_values(base: dict, values: dict) -> tuple[dict, dict]:
    """A trial's data: the experiment's, with these dotted keys set (a grid point's or the values a
    search drew), each normalised as a plain value would be; and those values as set."""
    data, params = _copy(base), {}
    for key, value in values.items():
        parts = key.split(".")
        value = schema.sweep_field(tuple(parts)).check(value)
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        params[key] = value
    data["model"]["hidden"] = _hidden_for(data["model"])
    return data, params


def expand(spec) -> list[Trial]:
    """Every combination of the swept values, in the order the spec lists them."""
    base = copy.deepcopy(spec.data)
    sweep = base.pop("sweep", {}) or {}
    search = base.pop("search", None)
    if search:  # slots an agent fills with the values it draws (spec/search.py)
        from dlhpc.spec.search import slot_ids

        return [Trial(i, tid, {}, _copy(base)) for i, tid in enumerate(slot_ids(search["trials"], search["seed"]))]
    keys = list(sweep)
    combos = list(itertools.product(*(sweep[k] for k in keys))) if keys else [()]
    width = max(3, len(str(len(combos) - 1)))
    trials = []
    for index, combo in enumerate(combos):
        data, params = with_values(base, dict(zip(keys, combo, strict=True)))
        digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:6]
        trials.append(Trial(index, f"{index:0{width}d}-{digest}" if keys else f"{0:0{width}d}-{digest}", params, data))
    return trials
