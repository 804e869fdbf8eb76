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


def raises(exp_dir: Path, chosen: list, spec, diagnosed: list | None = None) -> dict:
    """{trial id: {"why": ..., "resources": {key: [old, new]}}} for the chosen trials whose
    cause (why.diagnose, or `diagnosed` when it was asked already) is memory or time and whose
    spec lets them have more."""
    from dlhpc.fsutil import read_trial_spec
    from dlhpc.results.why import diagnose

    asked = spec.data["resources"].get("retry") or {}
    if not (asked.get("max_mem") or asked.get("max_time") or any(k.startswith("resources.retry.") for k in spec.sweep)):
        return {}  # nothing may be raised: no need to ask the scheduler why the trials ended
    diagnosed = diagnose(exp_dir) if diagnosed is None else diagnosed
    causes = {d["trial"]: d["cause"] for d in diagnosed if d["trial"] in chosen}
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
    return _more(resources, policy, "mem", mem_megabytes, lambda megabytes: f"{megabytes}M")


def _more_time(resources: dict, policy: dict) -> dict:
    return _more(resources, policy, "time", parse_time, format_time)


def _more(resources: dict, policy: dict, key: str, to_number, to_text) -> dict:
    """{key: [now, raised]} when resources.retry.max_<key> is set and leaves room; else {}."""
    retry, now = resources.get("retry") or {}, to_number(resources[key])
    if not retry.get(f"max_{key}"):
        return {}
    caps = [to_number(v) for v in (retry.get(f"max_{key}"), policy.get(f"max_{key}")) if v]
    new = int(min(now * float(retry.get("factor") or 2), *caps))
    return {key: [resources[key], to_text(new)]} if new > now else {}


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
