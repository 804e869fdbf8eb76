"""PBS (OpenPBS / PBS Pro and Torque): the dlhpc backend. Jobs are submitted through the
submitit plugin in pbs_submitit.py and their ranks started by pbs_launch.py.

Job ids: dlhpc records `<base>` for a single job and `<base>_<index>` for array elements, the
same shape as SLURM's; pbs_launch computes the same id inside the job, so submitit finds each
element's pickle.
"""

import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

from dlhpc.errors import CommandError, DlhpcError, UserError
from dlhpc.schedulers.base import Backend, Check, base_ids, commands_missing
from dlhpc.schema import parse_time
from dlhpc.shell import run_command

# OpenPBS / Torque one-letter states → SLURM's words.
STATES = {
    "Q": "PENDING",
    "H": "PENDING",
    "W": "PENDING",
    "T": "PENDING",
    "U": "PENDING",
    "M": "UNKNOWN",
    "R": "RUNNING",
    "E": "RUNNING",
    "B": "RUNNING",
    "S": "RUNNING",
    "C": "COMPLETED",
    "X": "COMPLETED",
    "F": "COMPLETED",
}


def map_state(letter: str, exit_status=None) -> str:
    state = STATES.get((letter or "").strip().upper()[:1], "UNKNOWN")
    if state == "COMPLETED" and exit_status not in (None, "", 0, "0"):
        try:
            code = int(exit_status)
        except (TypeError, ValueError):
            return "UNKNOWN"
        # PBS: 271 = killed by qdel (SIGTERM + 256); negative = never ran; other non-zero = failed
        return "CANCELLED" if code in (271, 265) else "FAILED"
    return state


_JOB_ID = re.compile(r"^\s*(\d+)(\[\])?(\.[^\s]+)?\s*$", re.MULTILINE)


def parse_job_id(output: str) -> str:
    """qsub prints '123.server' (OpenPBS/Torque), '123[].server' for arrays, or '123' (wrappers)."""
    m = _JOB_ID.search(output or "")
    if not m:
        raise DlhpcError(
            f"qsub printed something dlhpc cannot read (expected a job id like 123.server):\n{(output or '').strip()}"
        )
    return m.group(1)


# ---- the dlhpc verbs --------------------------------------------------------------------------


def preflight(plan) -> list[str]:
    """Queue names and walltime limits from `qstat -Q -f` when the server offers them."""
    try:
        out = run_command(["qstat", "-Q", "-f"], timeout=20, check=False).stdout
    except CommandError:
        return []
    queues, current = {}, None
    for line in out.splitlines():
        m = re.match(r"^Queue:\s*(\S+)", line)
        if m:
            current = queues.setdefault(m.group(1), {})
        elif current is not None and "resources_max.walltime" in line:
            current["max_walltime"] = line.split("=", 1)[1].strip()
    if not queues:
        return []  # a server (or wrapper) that does not list queues: let qsub decide
    problems = []
    for trial in plan.trials:
        res = trial.data["resources"]
        q = res["partition"]
        if q and q not in queues:
            problems.append(
                f"queue {q!r} does not exist (queues: {', '.join(sorted(queues))}); set resources.partition"
            )
        elif q and queues[q].get("max_walltime"):
            if parse_time(res["time"]) > parse_time(queues[q]["max_walltime"]):
                problems.append(f"resources.time {res['time']} exceeds queue {q!r}'s limit {queues[q]['max_walltime']}")
    return sorted(set(problems))


def server_limits() -> dict:
    """max_array_size and the per-user max_queued (u:PBS_GENERIC) from `qstat -B -f`, where set."""
    try:
        out = run_command(["qstat", "-B", "-f"], timeout=20, check=False).stdout
    except CommandError:
        return {}
    limits = {}
    m = re.search(r"^\s*max_array_size\s*=\s*(\d+)", out, re.MULTILINE)
    if m:
        limits["max_array_size"] = int(m.group(1))
    m = re.search(r"^\s*max_queued\s*=\s*\[u:PBS_GENERIC=(\d+)\]", out, re.MULTILINE)
    if m:
        limits["max_queued_per_user"] = int(m.group(1))
    return limits


def submission_limits(plan) -> list[str]:
    """The server's per-user queued-job limit, against the jobs this submission adds (array
    subjobs count); arrays are already split at max_array_size (max_array)."""
    limit = server_limits().get("max_queued_per_user")
    adding = len(plan.trials)
    if limit is not None and adding > limit:
        return [
            f"the PBS server queues at most {limit:,} jobs per user (max_queued) and this submission adds "
            f"{adding:,}. Fix: submit fewer trials at once (split the sweep), or wait for your queued jobs to end"
        ]
    return []


def _qstat_ids(job_ids):
    bases = base_ids(job_ids)
    arrays = {j.split("_")[0] for j in job_ids if "_" in j}
    return [b + "[]" if b in arrays else b for b in bases]


def states(job_ids) -> tuple[dict, list]:
    """OpenPBS: `qstat -x -f -F json` (finished jobs too). Torque and wrappers: plain `qstat`."""
    warnings, out = [], {}
    ids = _qstat_ids(job_ids)
    try:
        proc = run_command(["qstat", "-x", "-f", "-F", "json", *ids], timeout=30, check=False)
        data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    except (CommandError, json.JSONDecodeError):
        data = None
    if data is not None:
        for full_id, job in (data.get("Jobs") or {}).items():
            m = re.match(r"(\d+)(?:\[(\d+)\])?", full_id)
            if not m:
                continue
            jid = m.group(1) + (f"_{m.group(2)}" if m.group(2) else "")
            used, asked = job.get("resources_used") or {}, job.get("Resource_List") or {}
            out[jid] = {
                "state": map_state(job.get("job_state"), job.get("Exit_status")),
                "raw_state": job.get("job_state"),
                "elapsed": used.get("walltime"),
                "submit": job.get("qtime"),
                "start": job.get("stime"),
                "ncpus": asked.get("ncpus"),
                "ngpus": asked.get("ngpus"),
                "nodes": job.get("exec_host"),
            }
            if out[jid]["state"] == "PENDING":  # the scheduler's own words, and its estimate where it has one
                out[jid]["pending_reason"] = job.get("comment") or ("held" if job.get("job_state") == "H" else None)
                out[jid]["est_start"] = (job.get("estimated") or {}).get("start_time")
        return out, warnings
    try:
        proc = run_command(["qstat", *ids], timeout=30, check=False)
    except CommandError as exc:
        return {}, [f"qstat failed: {str(exc).splitlines()[0]}"]
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and re.match(r"\d", parts[0]):
            m = re.match(r"(\d+)(?:\[(\d+)\]|[_-](\d+))?", parts[0])
            index = m.group(2) or m.group(3)
            jid = m.group(1) + (f"_{index}" if index else "")
            out[jid] = {"state": map_state(parts[4]), "raw_state": parts[4], "elapsed": parts[3]}
    return out, warnings


def _ctime(value):
    """PBS times: 'Thu Nov 26 04:19:16 2026' (qstat -f), or seconds since the epoch."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(value))
    except (TypeError, ValueError):
        pass
    try:
        return datetime.strptime(" ".join(str(value).split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None


def accounting(row: dict) -> dict:
    """Queue wait (qtime → stime), elapsed and allocated CPU/GPU hours (Resource_List x walltime)."""
    out = {}
    submit, start = _ctime(row.get("submit")), _ctime(row.get("start"))
    if submit and start:
        out["queue_wait_s"] = max(0.0, (start - submit).total_seconds())
    elapsed = parse_time(row["elapsed"]) if row.get("elapsed") else None
    if elapsed is not None:
        out["elapsed_s"] = elapsed
        if row.get("ncpus") is not None:
            out["core_hours"] = int(row["ncpus"] or 0) * elapsed / 3600
            out["gpu_hours"] = int(row.get("ngpus") or 0) * elapsed / 3600
    return out


def doctor_checks(spec) -> list[Check]:
    missing = commands_missing(("qsub", "qstat", "qdel"))
    checks = [
        Check(
            "PBS commands",
            not missing,
            "all present" if not missing else f"missing: {', '.join(missing)}",
            "run on the cluster's login node, or load the PBS module",
        )
    ]
    return checks


class PBSBackend(Backend):
    name = "pbs"
    # Torque sets PBS_ARRAYID and OpenPBS PBS_ARRAY_INDEX; PBS-on-SLURM wrappers set neither.
    job_id_expr = "${PBS_JOBID:-${SLURM_JOB_ID:-}}"
    array_index_expr = "${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-0}}}"

    def template(self, resources: dict) -> str:
        return f"pbs/{resources['pbs_flavor']}"

    def check(self) -> None:
        if shutil.which("qsub") is None:
            raise UserError(
                "qsub not found: this machine is not a PBS login node. Use `dlhpc run SPEC` to run "
                "here, or --scheduler slurm on a SLURM cluster"
            )

    def inside_allocation(self) -> bool:
        return bool(os.environ.get("PBS_JOBID"))

    def allocation(self) -> tuple[str, list[str]]:
        from dlhpc.schedulers.pbs_launch import node_list

        return os.environ.get("PBS_JOBID", ""), node_list()

    def preflight(self, plan) -> list[str]:
        return submission_limits(plan) + preflight(plan)

    def max_array(self) -> int | None:
        return server_limits().get("max_array_size") if self.available() else None

    def test_only(self, script_text: str, workdir: Path) -> str:
        # qsub has no --test-only; preflight() already checked the queue and its walltime limit
        return "rendered; PBS has no test-only submission, queue and walltime were checked with qstat -Q"

    def submit(self, plan, queued: list) -> list[dict]:
        from dlhpc.schedulers.pbs_submitit import PBSExecutor
        from dlhpc.schedulers.submission import submit_plan

        return submit_plan(plan, PBSExecutor, queued)

    def states(self, job_ids, exp_dir, details=False) -> tuple[dict, list]:
        return states(job_ids)

    def cancel(self, job_ids, exp_dir) -> list[str]:
        ids = _qstat_ids(job_ids)
        if ids:
            run_command(["qdel", *ids], timeout=60, check=False)
        return [i.replace("[]", "") for i in ids]

    def accounting(self, row: dict) -> dict:
        return accounting(row)

    def doctor_checks(self, spec) -> list[Check]:
        return doctor_checks(spec)
