"""What jobs used (sacct TotalCPU, MaxRSS) and dlhpc's jobs in accounting by their comment
tag, for `dlhpc summary --efficiency` and `dlhpc usage`."""

import os
import re

from dlhpc.errors import CommandError
from dlhpc.schedulers.base import base_ids
from dlhpc.schedulers.slurm.queue import map_state
from dlhpc.shell import run_command

EFFICIENCY_FIELDS = ("JobID", "TotalCPU", "MaxRSS", "ReqMem", "AllocTRES", "ElapsedRaw")


def _cpu_seconds(text: str) -> float:
    """sacct's TotalCPU: [D-][HH:]MM:SS[.mmm]."""
    days, _, rest = text.rpartition("-")
    parts = [float(p) for p in rest.split(":")] if rest else [0.0]
    seconds = sum(value * 60**i for i, value in enumerate(reversed(parts)))
    return seconds + (int(days) * 86400 if days else 0)


def _megabytes(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)([KMGT]?)[nc]?", (text or "").strip())
    if not m:
        return None
    return float(m.group(1)) * {"K": 1 / 1024, "": 1 / 2**20, "M": 1, "G": 1024, "T": 2**20}[m.group(2)]


def efficiency(job_ids) -> dict:
    """{job_id: {cpus, cpus_used, cpu_efficiency, mem_peak_mb, mem_req_mb}} from one sacct call
    over the jobs and their steps (MaxRSS is recorded per step)."""
    proc = run_command(
        ["sacct", "-n", "-P", "-j", ",".join(base_ids(job_ids)), "-o", ",".join(EFFICIENCY_FIELDS)], timeout=60
    )
    out: dict = {}
    for line in proc.stdout.splitlines():
        values = line.split("|")
        if len(values) != len(EFFICIENCY_FIELDS):
            continue
        row = dict(zip(EFFICIENCY_FIELDS, values, strict=True))
        job, _, step = row["JobID"].partition(".")
        if "[" in job:
            continue  # the summary row of elements that never started
        entry = out.setdefault(job, {"mem_peak_mb": None})
        if not step:  # the allocation: its TotalCPU covers every step
            tres = dict(item.split("=", 1) for item in row["AllocTRES"].split(",") if "=" in item)
            cpus, elapsed = int(tres.get("cpu", 0) or 0), int(row["ElapsedRaw"] or 0)
            used = _cpu_seconds(row["TotalCPU"]) / elapsed if elapsed else None
            entry.update(
                cpus=cpus,
                cpus_used=used,
                cpu_efficiency=used / cpus if used is not None and cpus else None,
                mem_req_mb=_megabytes(row["ReqMem"]),
            )
        peak = _megabytes(row["MaxRSS"])
        if peak is not None:
            entry["mem_peak_mb"] = max(entry["mem_peak_mb"] or 0, peak)
    return out


TAG = "dlhpc:"  # every job dlhpc submits carries `--comment=dlhpc:<experiment>:<est core-h>:<est GPU-h>`


USAGE_FIELDS = ("JobID", "User", "Account", "AllocTRES", "ElapsedRaw", "State", "Comment")  # Comment last: may hold |


def is_operator() -> bool:
    """Whether sacct will show other users' jobs: root, or an Operator/Administrator in slurmdbd."""
    if os.geteuid() == 0:
        return True
    import getpass

    try:
        out = run_command(
            ["sacctmgr", "-n", "-P", "show", "user", getpass.getuser(), "format=AdminLevel"], timeout=20
        ).stdout
    except CommandError:
        return False
    return out.strip() in ("Operator", "Administrator")


def parse_tag(comment: str) -> dict | None:
    if not comment.startswith(TAG):
        return None
    parts = comment[len(TAG) :].split(":")
    try:
        return {"experiment": parts[0], "est_core_hours": float(parts[1]), "est_gpu_hours": float(parts[2])}
    except (IndexError, ValueError):
        return {"experiment": parts[0], "est_core_hours": None, "est_gpu_hours": None}


def usage_rows(since: str, account: str | None, all_users: bool) -> tuple[list, list]:
    """One row per dlhpc job (array elements counted apart) from one sacct call."""
    warnings = []
    argv = ["sacct", "-X", "-n", "-P", "-S", since, "-E", "now", "-o", ",".join(USAGE_FIELDS)]
    if all_users:
        if is_operator():
            argv.append("-a")
        else:
            warnings.append(
                "--all-users needs the rights sacct gives an operator (root, or AdminLevel Operator in "
                "sacctmgr): showing your own jobs only"
            )
    if account:
        argv += ["-A", account]
    rows = []
    for line in run_command(argv, timeout=120).stdout.splitlines():
        values = line.split("|", len(USAGE_FIELDS) - 1)
        if len(values) != len(USAGE_FIELDS):
            continue
        row = dict(zip(USAGE_FIELDS, values, strict=True))
        tag = parse_tag(row["Comment"])
        if tag is None:
            continue
        tres = dict(item.split("=", 1) for item in row["AllocTRES"].split(",") if "=" in item)
        elapsed_h = int(row["ElapsedRaw"] or 0) / 3600
        rows.append(
            {
                "job_id": row["JobID"],
                "user": row["User"],
                "account": row["Account"] or "-",
                "state": map_state(row["State"]),
                **tag,
                "core_hours": int(tres.get("cpu", 0) or 0) * elapsed_h,
                "gpu_hours": int(tres.get("gres/gpu", 0) or 0) * elapsed_h,
            }
        )
    if not rows and not warnings:
        warnings.append(
            "no dlhpc jobs found; dlhpc finds its jobs by their comment, which slurmdbd keeps only "
            "with AccountingStoreFlags=job_comment in slurm.conf"
        )
    return rows, warnings
