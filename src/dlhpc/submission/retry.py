"""resources.retry: a resubmission asks for more of what a trial ran out of.

A trial that `why` finds ran out of memory is resubmitted with resources.mem times
resources.retry.factor, one that ran out of time with resources.time times the factor, each up
to the cap the user set (retry.max_mem, retry.max_time: without a cap, nothing is raised) and
never past the site policy's maximum. The scheduler's own limits (a partition's MaxTime or
memory) are then checked by preflight, as for any submission. Trials that failed for any other
reason (preempted, a node failure, a bug) go again as they were. Each raise is said, written
into the trial's spec.yaml once its job is queued, and kept in experiment.json's `retries`.
"""

import time
from pathlib import Path

from dlhpc.spec.schema import format_time, mem_megabytes, parse_time

MEMORY, TIME = "out of memory", "out of time"


def raises(exp_dir: Path, chosen: list, spec) -> dict:
    """{trial id: {"why": ..., "resources": {key: [old, new]}}} for the chosen trials whose
    cause (why.diagnose) is memory or time and whose spec lets them have more."""
    from dlhpc.fsutil import read_trial_spec
    from dlhpc.results.why import diagnose

    causes = {d["trial"]: d["cause"] for d in diagnose(exp_dir) if d["trial"] in chosen}
    policy = spec.site.get("policy") or {}
    out = {}
    for tid, cause in causes.items():
        kind = next((k for k in (MEMORY, TIME) if cause.startswith(k)), None)
        if kind is None:
            continue
        resources = read_trial_spec(exp_dir / tid / "spec.yaml")["resources"]
        change = _more_memory(resources, policy) if kind == MEMORY else _more_time(resources, policy)
        if change:
            out[tid] = {"why": kind, "resources": change}
    return out


def _more_memory(resources: dict, policy: dict) -> dict:
    retry, now = resources.get("retry") or {}, mem_megabytes(resources["mem"])
    caps = [mem_megabytes(v) for v in (retry.get("max_mem"), policy.get("max_mem")) if v]
    if not retry.get("max_mem"):
        return {}
    new = int(min(now * float(retry.get("factor") or 2), *caps))
    return {"mem": [resources["mem"], f"{new}M"]} if new > now else {}


def _more_time(resources: dict, policy: dict) -> dict:
    retry, now = resources.get("retry") or {}, parse_time(resources["time"])
    caps = [parse_time(v) for v in (retry.get("max_time"), policy.get("max_time")) if v]
    if not retry.get("max_time"):
        return {}
    new = int(min(now * float(retry.get("factor") or 2), *caps))
    return {"time": [resources["time"], format_time(new)]} if new > now else {}


def apply(trials: list, planned: dict) -> None:
    """Raise the planned resources in the trials' data (what the scripts are rendered from)."""
    for trial in trials:
        for key, (_, new) in (planned.get(trial.id, {}).get("resources") or {}).items():
            trial.data["resources"][key] = new


def words(planned: dict) -> list[str]:
    from dlhpc.results.rows import retry_text

    return [f"{tid}: {retry_text(item)}" for tid, item in planned.items()]


def record(exp_dir: Path, trials: list, planned: dict, previous: list) -> list:
    """After the jobs are queued: the trials' spec.yaml say what they now ask for, and the
    record's retries list grows; returns that list."""
    from dlhpc.fsutil import atomic_write_text, private_mode
    from dlhpc.spec.load import dump_trial_spec

    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for trial in trials:
        if trial.id in planned:
            atomic_write_text(exp_dir / trial.id / "spec.yaml", dump_trial_spec(trial.data), mode=private_mode())
    return previous + [{"trial": tid, "at": when, **item} for tid, item in planned.items()]
