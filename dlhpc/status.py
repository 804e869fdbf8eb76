"""What is happening to an experiment: one batched scheduler query joined with the run directory."""

import os
import time
from datetime import datetime
from pathlib import Path

from dlhpc import results
from dlhpc.schema import parse_time
from dlhpc.states import BAD, FINISHED


def scheduler_info(exp_dir: Path) -> tuple[dict, list]:
    """{job_id: {state, elapsed, queue_wait_s, core_hours, gpu_hours, ...}}, warnings."""
    record = results.read_record(exp_dir)
    job_ids = sorted({j["job_id"] for j in record.get("jobs", []) if j.get("job_id")})
    sched = record.get("scheduler")
    if not job_ids:
        return {}, []
    if sched == "local":
        pid = record.get("local_pid")
        alive = bool(pid) and _pid_alive(pid)
        return {j: {"state": "RUNNING" if alive else "COMPLETED"} for j in job_ids}, []
    from dlhpc.schedulers import backend

    info, warnings = backend(sched).states(job_ids)
    for row in info.values():
        row.update(accounting(row))
    return info, warnings


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _ts(value):
    try:
        return datetime.fromisoformat(value) if value and value not in ("Unknown", "None") else None
    except ValueError:
        return None


def accounting(row: dict) -> dict:
    """Queue wait and allocated CPU/GPU hours from what sacct recorded (AllocTRES x Elapsed)."""
    out = {}
    submit, start = _ts(row.get("submit")), _ts(row.get("start"))
    if submit and start:
        out["queue_wait_s"] = max(0.0, (start - submit).total_seconds())
    elapsed = parse_time(row.get("elapsed") or "") if row.get("elapsed") else None
    tres = dict(item.split("=", 1) for item in (row.get("alloc_tres") or "").split(",") if "=" in item)
    if elapsed is not None and tres:
        cpus = int(tres.get("cpu", 0) or 0)
        gpus = int(tres.get("gres/gpu", 0) or 0)
        out["core_hours"] = cpus * elapsed / 3600
        out["gpu_hours"] = gpus * elapsed / 3600
        out["elapsed_s"] = elapsed
    return out


def collect(exp_dir: Path) -> dict:
    info, warnings = scheduler_info(exp_dir)
    record, rows = results.experiment_rows(exp_dir, info)
    trials = []
    for r in rows:
        sched = info.get(r.get("job_id")) or {}
        trials.append({
            "trial": r["trial"], "job_id": r.get("job_id"), "state": r["state"],
            "elapsed": sched.get("elapsed"), "epoch": r.get("epochs_done"), "epochs": r.get("epochs"),
            "test_acc": r.get("test_acc"), "params": {k: r[k] for k in record.get("swept_keys", []) if k in r},
            "flags": r.get("flags") or None,
        })
    return {"experiment": str(exp_dir), "name": record.get("name"), "scheduler": record.get("scheduler"),
            "finished": all(t["state"] in FINISHED for t in trials), "trials": trials, "warnings": warnings}


def report_table(report: dict):
    from rich.table import Table

    table = Table(title=f"{report['name']}  ({report['scheduler']})  {report['experiment']}", header_style="bold")
    for col in ("trial", "job", "state", "elapsed", "epoch", "test acc %", "notes"):
        table.add_column(col)
    for t in report["trials"]:
        acc = f"{100 * t['test_acc']:.2f}" if isinstance(t.get("test_acc"), (int, float)) else "-"
        table.add_row(t["trial"], str(t["job_id"] or "-"), t["state"], t["elapsed"] or "-",
                      f"{t['epoch'] or 0}/{t['epochs'] or '?'}", acc, t["flags"] or "")
    return table


def print_report(report: dict, console) -> None:
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(report_table(report))


def watch(exp_dir: Path, interval: float) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    report = collect(exp_dir)
    with Live(report_table(report), console=console, refresh_per_second=2) as live:
        while not report["finished"]:
            time.sleep(interval)
            report = collect(exp_dir)
            live.update(report_table(report))
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    return 1 if any(t["state"] in BAD for t in report["trials"]) else 0


def cancel(exp_dir: Path) -> list:
    record = results.read_record(exp_dir)
    job_ids = sorted({j["job_id"] for j in record.get("jobs", []) if j.get("job_id")})
    if record.get("scheduler") == "local":
        import signal

        pid = record.get("local_pid")
        if pid and _pid_alive(pid):
            os.killpg(int(pid), signal.SIGTERM)
            return [f"local-{pid}"]
        return []
    from dlhpc.schedulers import backend

    return backend(record["scheduler"]).cancel(job_ids)
