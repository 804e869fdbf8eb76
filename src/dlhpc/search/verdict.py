"""The pruning verdict between a search's agent and the trial it runs (no Optuna here: the
built-in trainer and `dlhpc.trial` read it).

The agent follows the trial's metrics.jsonl; for each step the program logs with the searched
metric it asks the study's pruner and writes `verdict.json` in the trial folder: the step, and
whether to stop. The program, at the end of that step, waits a moment for the verdict of it and
stops if told to. A program that never asks (`dlhpc.trial.should_prune()`) is never stopped.
"""

import json
import os
import time
from pathlib import Path

VERDICT = "verdict.json"
STOPPED = "pruned.json"  # the program stopped on a verdict (dlhpc.trial.should_prune said so)
METRIC_VAR = "DLHPC_SEARCH_METRIC"  # set for a trial a search runs: the metric its agent follows
WAIT_S = 20.0  # how long a program waits for the verdict of a step before going on without it


def searched_metric() -> str | None:
    """The metric a search follows for this trial, or None outside a search."""
    return os.environ.get(METRIC_VAR) or None


def write(trial_dir: Path, step, prune: bool, **facts) -> None:
    from dlhpc.fsutil import atomic_write_json

    atomic_write_json(Path(trial_dir) / VERDICT, {"step": step, "prune": bool(prune), **facts})


def read(trial_dir: Path) -> dict | None:
    try:
        with open(Path(trial_dir) / VERDICT, "rb") as f:
            verdict = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) and isinstance(verdict.get("step"), (int, float)) else None


def wait_for(trial_dir: Path, step, timeout_s: float = WAIT_S) -> dict | None:
    """The verdict for `step` (or a later one), waiting up to timeout_s; None if none came."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        verdict = read(trial_dir)
        if verdict is not None and (verdict["step"] >= step or verdict["prune"]):
            return verdict
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def should_stop(trial_dir: Path, step) -> dict | None:
    """For a program under a search: the verdict that says to stop at `step`, else None."""
    if searched_metric() is None:
        return None
    verdict = wait_for(trial_dir, step)
    return verdict if verdict is not None and verdict["prune"] else None
