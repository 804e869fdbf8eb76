"""Run directories → rows → tables (rich, CSV, JSON, Markdown).

Reading is forgiving by design: a running trial, a truncated last metrics line, a corrupt or
missing result.json, NaN losses — each gives a row flagged with the reason, never a traceback.
"""

import csv
import io
import math
import os
from dataclasses import replace
from pathlib import Path

from dlhpc.fsutil import read_json
from dlhpc.node.stall import describe as describe_stall
from dlhpc.results import redact
from dlhpc.results.metrics import logged_keys, read_metrics, total_epochs
from dlhpc.spec.program import is_builtin, named
from dlhpc.states import JobStatus, State, reconcile

SPARK = "▁▂▃▄▅▆▇█"


def _finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def trial_row(
    exp_dir: Path, record: dict, trial: dict, sched: JobStatus | None, sched_missing: bool, names: set
) -> dict:
    """One row for one trial. `sched` is what the scheduler said about its job, if asked;
    `names` the files in the trial's folder (trial_files)."""
    tdir = exp_dir / trial["id"]
    spec = record.get("spec", {})
    result, metrics, flags = _read_trial_files(tdir, names)
    state, state_flags = reconcile(
        result.get("state"), sched, bool(metrics), bool(record.get("jobs")) and sched_missing
    )
    flags += state_flags
    stalls = _stalls(tdir, names) if state == "RUNNING" else []
    if stalls:  # the job runs, its ranks do not get on (each node's runner says so for its ranks)
        state = "STALLED"
        flags += [f"stalled: {describe_stall(v)}" for v in stalls]
    if result.get("error"):
        flags.append(str(result["error"]).splitlines()[0][:200])
    flags += _retried(record, trial["id"], state)
    last = metrics[-1] if metrics else {}
    accs = [m.get("test_acc") for m in metrics if _finite(m.get("test_acc"))]
    row = {
        "trial": trial["id"],
        "name": spec.get("name", record.get("name")),
        "model": trial.get("params", {}).get("model.name", spec.get("model", {}).get("name")),
        "experiment": exp_dir.name,
        "state": state,
        "job_id": result.get("job_id") or trial.get("job_id"),
        "world_size": result.get("world_size") or last.get("world_size"),
        "epochs": result.get("epochs") or _trial_epochs(trial, spec),
        "epochs_done": last.get("epoch", 0),
        "test_acc": result.get("test_acc", last.get("test_acc")) if state == "COMPLETED" else last.get("test_acc"),
        "best_test_acc": result.get("best_test_acc", max(accs) if accs else None),
        "time_to_target_s": result.get("time_to_target_s", _time_to_target(metrics, spec)),
        "train_time_s": result.get("train_time_s", last.get("elapsed_s")),
        "images_per_s": result.get("images_per_s", last.get("images_per_s")),
        "test_loss": result.get("test_loss", last.get("test_loss")),
        "nodes": result.get("nodes"),
        "device": result.get("device"),
        "gpu_util": result.get("gpu_util_mean"),
        "curve": accs,
        **redact.params(trial.get("params", {})),
    }
    if stalls:
        row["stalled"] = describe_stall(stalls[0])
    requeues = (read_json(tdir / "requeues.json", {}) or {}).get("count") if "requeues.json" in names else None
    if requeues:
        row["requeues"] = requeues
    if sched:
        for key in ("elapsed", "queue_wait_s", "core_hours", "gpu_hours"):
            if getattr(sched, key) is not None:
                row[key] = getattr(sched, key)
    if not is_builtin(spec):
        _program_columns(row, spec, metrics, state, flags)
    row["flags"] = "; ".join(flags)
    return row


def _retried(record: dict, trial_id: str, state: str) -> list[str]:
    """What resubmissions raised for this trial (resources.retry; submission/retry.py), and the
    automatic retries it had (submission/recovery.py): the last one 'retrying' while it is in
    flight; why the recovery did not retry it again, once it ended badly."""
    from dlhpc.states import BAD, IN_FLIGHT

    items = [item for item in record.get("retries") or [] if item.get("trial") == trial_id]
    flags = []
    for n, item in enumerate(items):
        if not item.get("automatic"):
            flags.append(f"retried, {retry_text(item)}")
            continue
        verb = "retrying" if n == len(items) - 1 and state in IN_FLIGHT else "retried"
        changes = [f"resources.{key} {old} -> {new}" for key, (old, new) in (item.get("resources") or {}).items()]
        changes += [f"kept off {node}" for node in item.get("kept_off") or []]
        flags.append(f"{verb} {item['attempt']}/{item['of']}: " + ", ".join([item["why"], *changes]))
    refused = (record.get("not_retried") or {}).get(trial_id)
    if refused and state in BAD:
        flags.append(f"not retried: {refused}")
    return flags


def retry_text(item: dict) -> str:
    """'out of memory: resources.mem 150M -> 1200M' for one raise of a record's retries."""
    changes = (f"resources.{key} {old} -> {new}" for key, (old, new) in item["resources"].items())
    return f"{item['why']}: " + ", ".join(changes)


def _stalls(tdir: Path, names: set) -> list[dict]:
    """The stall verdicts of a running trial's nodes (node/stall.py), rank-naming ones first."""
    files = sorted(n for n in names if n.startswith("stall-") and n.endswith(".json"))
    verdicts = [read_json(tdir / name, None) for name in files]
    verdicts = [v for v in verdicts if isinstance(v, dict) and "no_epoch_for_s" in v]
    return sorted(verdicts, key=lambda v: v.get("suspect") is None)


def _program_columns(row: dict, spec: dict, metrics: list, state: str, flags: list) -> None:
    """A user's program: its name instead of the model, and the keys it logs as columns (their
    last values), in place of the built-in trainer's accuracy columns."""
    row["model"] = named(spec)
    keys = logged_keys(metrics)
    last = metrics[-1] if metrics else {}
    for key in keys:
        row.setdefault(key if key not in row else f"metric.{key}", last.get(key))
    row["logged"] = [k if k not in BUILTIN_ROW_KEYS else f"metric.{k}" for k in keys]
    if state == "COMPLETED" and not metrics:
        flags.append("no metrics logged (the program does not call dlhpc.trial.log; its exit code decided)")


# the row keys a program's logged keys must not overwrite (they become metric.<key>)
BUILTIN_ROW_KEYS = {
    "trial", "name", "model", "experiment", "state", "job_id", "world_size", "epochs", "epochs_done",
    "nodes", "device", "gpu_util", "curve", "flags", "requeues", "logged", "stalled", "objective", "agent",
    "pruned",
}  # fmt: skip


def trial_files(tdir: Path) -> set:
    """The names in a trial's folder, listed once: a trial that has not started has only what
    submit wrote, and its row then opens no file (10,000 pending trials: no 50,000 failed opens)."""
    try:
        return set(os.listdir(tdir))
    except OSError:
        return set()


def _read_trial_files(tdir: Path, names: set) -> tuple[dict, list, list]:
    """(result.json or {}, metrics lines, flags for what could not be read)."""
    flags = []
    result = read_result(tdir) if "result.json" in names else None
    if result is None and "result.json" in names:
        flags.append("result.json is corrupt")
    metrics, problem = read_metrics(tdir / "metrics.jsonl") if "metrics.jsonl" in names else ([], None)
    if problem:
        flags.append(problem)
    if any(k in m and not _finite(m[k]) for m in metrics for k in ("train_loss", "test_loss", "loss")):
        flags.append("NaN or infinite loss")
    return (result if isinstance(result, dict) else {}), metrics, flags


def read_result(tdir: Path) -> dict | None:
    """result.json, less the end of a run the scheduler has since requeued after a node was lost
    under it (node/runner.py counts that rerun when it starts): that run's FAILED is history."""
    result = read_json(tdir / "result.json")
    if isinstance(result, dict) and result.get("lost_at"):
        rerun = (read_json(tdir / "requeues.json", {}) or {}).get("after_loss_at") == result["lost_at"]
        if rerun:
            return {k: v for k, v in result.items() if k not in ("state", "error", "lost_node", "failed_node")}
    return result


def _trial_epochs(trial: dict, spec: dict):
    """The trial's epochs before it has a result: its swept value, else the experiment's (no
    spec.yaml to parse: a status of 1,000 pending trials stays fast)."""
    params = trial.get("params", {})
    if "train.epochs" in params or "params.epochs" in params:
        return params.get("train.epochs", params.get("params.epochs"))
    return total_epochs(spec)


def _time_to_target(metrics, spec):
    target = spec.get("train", {}).get("target_accuracy", 0.99)
    for m in metrics:
        if _finite(m.get("test_acc")) and m["test_acc"] >= target:
            return m.get("elapsed_s")
    return None


def read_record(exp_dir: Path) -> dict:
    """experiment.json of an experiment directory; a clear error when it is not one."""
    record = read_json(exp_dir / "experiment.json")
    if not isinstance(record, dict):
        from dlhpc.errors import UserError

        raise UserError(f"{exp_dir}: experiment.json is missing or corrupt; is this an experiment directory?")
    from dlhpc.submission.journal import unrecorded_jobs

    missed = unrecorded_jobs(exp_dir, record)
    if missed:  # dlhpc stopped between the scheduler's answer and the record: the journal has them
        record = {**record, "jobs": record.get("jobs", []) + missed}
    return record


def latest_entries(record: dict) -> dict:
    """{trial id: its latest job entry}: experiment.json keeps every job a trial had, oldest first."""
    return {j.get("trial"): j for j in record.get("jobs", []) if j.get("job_id")}


def latest_jobs(record: dict) -> dict:
    """{trial id: its latest job id}."""
    return {trial: entry["job_id"] for trial, entry in latest_entries(record).items()}


def packed_view(sched: JobStatus | None, entry: dict, started: bool) -> JobStatus | None:
    """What the scheduler says of a packed task, as it applies to one of its trials: a trial
    still waiting for the ones before it is PENDING, not RUNNING, and the task's hours are
    shared by its trials."""
    size = entry.get("task_size") or 1
    waits = sched is not None and sched.state == State.RUNNING and not started
    if not sched or size <= 1 or not (waits or sched.core_hours or sched.gpu_hours):
        return sched
    view = replace(sched)
    if waits:
        view.state, view.pending_reason = State.PENDING, f"waiting for the trials before it in its task ({size} trials)"
    for key in ("core_hours", "gpu_hours"):
        if getattr(view, key) is not None:
            setattr(view, key, getattr(view, key) / size)
    return view


def experiment_rows(exp_dir: Path, sched_by_job: dict | None = None) -> tuple[dict, list]:
    # (the record the scheduler was asked from, where it was: status.Answers)
    record = getattr(sched_by_job, "record", None) or read_record(exp_dir)
    entry_of = latest_entries(record)
    search = (record.get("spec") or {}).get("search")
    rows = []
    for trial in record.get("trials", []):
        entry = entry_of.get(trial["id"]) or {}
        names = trial_files(exp_dir / trial["id"])
        drawn = search_facts(exp_dir / trial["id"], names) if search else {}
        # a search's trial ran in whichever agent's job took it (its claim.json); a grid's in its own
        trial = dict(trial, job_id=drawn.get("job_id") if search else entry.get("job_id"))
        if drawn:
            trial["params"] = drawn["params"]
        sched = sched_by_job.get(trial["job_id"]) if trial["job_id"] and sched_by_job is not None else None
        missing = sched_by_job is not None and trial["job_id"] is not None and sched is None
        if entry.get("task_size"):
            sched = packed_view(sched, entry, bool(names & {"metrics.jsonl", "result.json"}))
        rows.append(trial_row(exp_dir, record, trial, sched, missing, names))
        if search:
            _search_columns(rows[-1], exp_dir / trial["id"], drawn, search)
        if sched and rows[-1]["state"] == "PENDING" and sched.pending_reason:
            rows[-1]["why_pending"] = sched.pending_reason
        git = record.get("git") or {}
        rows[-1]["commit"] = (git.get("commit", "")[:12] + ("+dirty" if git.get("dirty") else "")) or None
        image = record.get("container")
        if image:  # two experiments in two images are told apart by this
            rows[-1]["image"] = (image.get("digest") or image.get("image") or "")[:19]
    add_scaling(rows)
    return record, rows


def search_facts(tdir: Path, names: set) -> dict:
    from dlhpc.search.results import trial_facts

    return trial_facts(tdir, names)


def _search_columns(row: dict, tdir: Path, drawn: dict, search: dict) -> None:
    """A search's trial: the value it scored, the agent that ran it, why it was pruned."""
    from dlhpc.search.results import describe_pruned, final_value

    if not drawn:
        row["why_pending"] = "waiting for an agent of the search to take it"
        return
    row["agent"] = drawn.get("agent")
    if drawn.get("attempt"):
        taken = f"taken over after its agent was lost (attempt {drawn['attempt']})"
        row["flags"] = "; ".join(filter(None, [row["flags"], taken]))
    if row["state"] in ("COMPLETED", "PRUNED", "RUNNING"):
        row["objective"] = final_value(tdir, search["metric"])
    if row["state"] == "PRUNED":
        result = read_result(tdir) or {}
        row["pruned"] = describe_pruned(result.get("pruned") or {}, search["metric"])
        row["flags"] = "; ".join(filter(None, [row["flags"], row["pruned"]]))


def efficiency_hint(row: dict) -> str:
    """Plain advice where a trial used under a quarter of what it asked for."""
    import math

    hints = []
    cpus, used = row.get("cpus"), row.get("cpus_used")
    if cpus and used is not None and cpus >= 2 and used < cpus / 4:
        hints.append(f"asked for {cpus} CPUs, used {used:.1f} on average: ask for {max(1, math.ceil(used * 1.5))}")
    req, peak = row.get("mem_req_mb"), row.get("mem_peak_mb")
    if req and peak and peak < req / 4:
        hints.append(
            f"asked for {req / 1024:.0f}G of memory, the peak was {peak / 1024:.1f}G: "
            f"ask for {max(1, math.ceil(peak * 1.5 / 1024))}G"
        )
    gpu = row.get("gpu_util")
    if gpu is not None and gpu < 25:
        hints.append(f"the GPU was {gpu:.0f}% busy on average: a smaller GPU, or more work per step (batch size)")
    return "; ".join(hints)


def add_efficiency(rows: list, by_job: dict) -> None:
    """Join what accounting says each job used (backend.efficiency) into the rows, with hints."""
    for row in rows:
        used = by_job.get(row.get("job_id")) or {}
        row.update({k: used.get(k) for k in ("cpus", "cpus_used", "cpu_efficiency", "mem_peak_mb", "mem_req_mb")})
        row["hint"] = efficiency_hint(row)


def add_scaling(rows: list) -> None:
    """Speedup and efficiency of throughput and time-to-target against the smallest world size."""
    sizes = {r.get("world_size") for r in rows if r.get("world_size")}
    if len(sizes) < 2:
        return
    base_ws = min(sizes)
    base = [r for r in rows if r.get("world_size") == base_ws]
    base_ips = _mean([r.get("images_per_s") for r in base])
    base_ttt = _mean([r.get("time_to_target_s") for r in base])
    for r in rows:
        ws = r.get("world_size")
        if not ws:
            continue
        if base_ips and _finite(r.get("images_per_s")):
            r["speedup"] = r["images_per_s"] / base_ips
            r["efficiency"] = r["speedup"] / (ws / base_ws)
        if base_ttt and _finite(r.get("time_to_target_s")):
            r["ttt_speedup"] = base_ttt / r["time_to_target_s"]
            r["ttt_efficiency"] = r["ttt_speedup"] / (ws / base_ws)


def _mean(values):
    values = [v for v in values if _finite(v)]
    return sum(values) / len(values) if values else None


def sparkline(values) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1)))] for v in values[-20:])


def sort_rows(rows: list, key: str | None) -> list:
    if not key:
        return rows
    if not any(key in r for r in rows):
        from dlhpc.errors import UserError

        known = sorted({k for r in rows for k in r if k not in ("curve", "flags", "logged")})
        raise UserError(f"--sort {key!r}: no such column; columns: {', '.join(known)}")
    reverse = key in ("test_acc", "best_test_acc", "images_per_s", "speedup", "efficiency")
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: (str(type(r[key])), r[key]), reverse=reverse) + missing


def json_rows(rows: list) -> list:
    out = []
    for r in rows:
        item = {k: v for k, v in r.items() if k not in ("curve", "logged")}
        for k, v in item.items():
            if isinstance(v, float) and not math.isfinite(v):
                item[k] = None
        out.append(item)
    return out


def columns(rows: list, swept: list) -> list:
    logged = list(dict.fromkeys(k for r in rows for k in r.get("logged") or []))
    if rows and all("logged" in r for r in rows):  # a program's: its own keys
        cols = ["trial", *swept, "state", "world_size", "epochs_done", *logged]
    else:
        cols = _builtin_columns(swept)
    extra = [
        c
        for c in (
            "requeues",
            "queue_wait_s",
            "elapsed",
            "core_hours",
            "gpu_hours",
            "speedup",
            "efficiency",
            "ttt_speedup",
            "ttt_efficiency",
        )
        if any(c in r for r in rows)
    ]
    return cols + extra


def _builtin_columns(swept: list) -> list:
    return [
        "trial",
        *swept,
        "model",
        "state",
        "world_size",
        "epochs_done",
        "test_acc",
        "best_test_acc",
        "time_to_target_s",
        "train_time_s",
        "images_per_s",
    ]


def fmt(key: str, value) -> str:
    if value is None or value == "":
        return "-"
    if key in ("test_acc", "best_test_acc"):
        return f"{100 * value:.2f}" if _finite(value) else "-"
    if key in ("speedup", "efficiency", "ttt_speedup", "ttt_efficiency"):
        return f"{value:.2f}"
    if key in ("time_to_target_s", "train_time_s", "queue_wait_s"):
        return f"{value:.1f}" if _finite(value) else "-"
    if key in ("images_per_s",):
        return f"{value:,.0f}" if _finite(value) else "-"
    if key == "cpu_efficiency":
        return f"{100 * value:.0f}%"
    if key == "cpus_used":
        return f"{value:.1f}"
    if key in ("mem_peak_mb", "mem_req_mb"):
        return f"{value / 1024:.1f}G" if value >= 1024 else f"{value:.0f}M"
    if key == "gpu_util":
        return f"{value:.0f}%"
    if key in ("core_hours", "gpu_hours"):
        return f"{value:.3f}"
    if isinstance(value, float):  # a program's own metric
        return f"{value:.4g}"
    return str(value)


HEADERS = {
    "test_acc": "test acc %",
    "best_test_acc": "best %",
    "time_to_target_s": "to target s",
    "train_time_s": "train s",
    "images_per_s": "img/s",
    "epochs_done": "epochs",
    "world_size": "ranks",
    "queue_wait_s": "queue s",
    "core_hours": "core-h",
    "gpu_hours": "GPU-h",
    "ttt_speedup": "ttt speedup",
    "ttt_efficiency": "ttt eff.",
    "cpu_efficiency": "CPU eff.",
    "cpus_used": "CPUs used",
    "mem_peak_mb": "mem peak",
    "mem_req_mb": "mem asked",
    "gpu_util": "GPU busy",
}


def render_csv(rows, cols) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


def render_markdown(rows, cols) -> str:
    lines = ["| " + " | ".join(HEADERS.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c, r.get(c)).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def best_index(rows) -> int | None:
    scored = [
        (r["test_acc"], i) for i, r in enumerate(rows) if r.get("state") == "COMPLETED" and _finite(r.get("test_acc"))
    ]
    return max(scored)[1] if scored else None


def rich_table(rows, cols, title=""):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for c in cols:
        left = c in ("trial", "model", "state")
        table.add_column(HEADERS.get(c, c), justify="left" if left else "right", no_wrap=c in ("trial", "state"))
    table.add_column("test acc curve")
    best = best_index(rows)
    colours = {
        "COMPLETED": "green",
        "FAILED": "red",
        "CANCELLED": "red",
        "TIMEOUT": "red",
        "RUNNING": "cyan",
        "PENDING": "yellow",
        "REQUEUED": "yellow",
        "STALLED": "magenta",
        "PREEMPTED": "yellow",
    }
    for i, r in enumerate(rows):
        cells = []
        for c in cols:
            text = escape(str(fmt(c, r.get(c))))  # user's text (a swept value, an error): no markup
            if c == "state":
                text = f"[{colours.get(text, 'white')}]{text}[/]"
            cells.append(text)
        table.add_row(*cells, sparkline(r.get("curve") or []), style="bold" if i == best else None)
    return table
