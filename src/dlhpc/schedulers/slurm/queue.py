"""What SLURM says of jobs: one batched sacct call (squeue for what it lacks), mapped onto
dlhpc's State and Reason codes, and the accounting figures of a row."""

import re
from datetime import datetime

from dlhpc.errors import CommandError
from dlhpc.reasons import Reason
from dlhpc.schedulers.base import Unreachable, base_ids
from dlhpc.shell import run_command
from dlhpc.spec.schema import parse_time
from dlhpc.states import JobStatus, State

# Every state sacct/squeue can print (slurm 22.05+), in SLURM's words; unknown → UNKNOWN.
STATES = {
    "PENDING": "PENDING",
    "PD": "PENDING",
    "CONFIGURING": "PENDING",
    "CF": "PENDING",
    "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING",
    "RESV_DEL_HOLD": "PENDING",
    "RUNNING": "RUNNING",
    "R": "RUNNING",
    "COMPLETING": "RUNNING",
    "CG": "RUNNING",
    "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
    "SO": "RUNNING",
    "STOPPED": "RUNNING",
    "ST": "RUNNING",
    "SUSPENDED": "RUNNING",
    "S": "RUNNING",
    "RESIZING": "RUNNING",
    "UPDATE_DB": "RUNNING",
    "COMPLETED": "COMPLETED",
    "CD": "COMPLETED",
    "FAILED": "FAILED",
    "F": "FAILED",
    "BOOT_FAIL": "FAILED",
    "BF": "FAILED",
    "NODE_FAIL": "FAILED",
    "NF": "FAILED",
    "OUT_OF_MEMORY": "FAILED",
    "OOM": "FAILED",
    "DEADLINE": "FAILED",
    "DL": "FAILED",
    "SPECIAL_EXIT": "FAILED",
    "SE": "FAILED",
    "REVOKED": "CANCELLED",
    "RV": "CANCELLED",
    "CANCELLED": "CANCELLED",
    "CA": "CANCELLED",
    "TIMEOUT": "TIMEOUT",
    "TO": "TIMEOUT",
    "PREEMPTED": "PREEMPTED",
    "PR": "PREEMPTED",
    "REQUEUED": "REQUEUED",
    "RQ": "REQUEUED",
}


def map_state(raw: str) -> State:
    word = (raw or "").strip().split(" ")[0].rstrip("+").upper()
    return State(STATES.get(word, "UNKNOWN"))


def _expand_array_row(job_id: str) -> list[str]:
    """'123_[0-3%2]' / '123_[1,4]' → ['123_0', ...]; other ids unchanged."""
    m = re.fullmatch(r"(\d+)_\[([0-9,\-]+)(?:%\d+)?\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


SACCT_FIELDS = ("JobID", "State", "Elapsed", "Submit", "Start", "End", "AllocTRES", "NodeList", "ExitCode", "Reason")


# Why a job is pending, in plain words (SLURM's reason codes; a prefix match covers families).
# SLURM's pending reasons (squeue %r, sacct Reason) by prefix: a code (reasons.Reason) and words
PENDING_REASONS = (
    ("Priority", Reason.QUEUED, "waiting behind jobs with a higher priority"),
    ("Resources", Reason.QUEUED, "waiting for nodes, CPUs or GPUs to free up"),
    ("QOS", Reason.LIMIT, "held back by a limit of its QOS ({code}): it starts when your other jobs finish"),
    ("Assoc", Reason.LIMIT, "held back by a limit of your account ({code}): it starts when your other jobs finish"),
    ("ReqNodeNotAvail", Reason.NODES_UNAVAILABLE, "the nodes it needs are down, drained or reserved"),
    ("DependencyNeverSatisfied", Reason.DEPENDENCY_NEVER, "its dependency can never be met"),
    ("Dependency", Reason.DEPENDENCY, "waiting for the jobs it depends on to end"),
    ("BeginTime", Reason.BEGIN_TIME, "not to start before its begin time"),
    ("JobHeldUser", Reason.HELD_BY_USER, "held by you"),
    ("JobHeldAdmin", Reason.HELD_BY_ADMIN, "held by an administrator"),
    ("Reservation", Reason.RESERVATION, "waiting for its reservation to start"),
    ("JobArrayTaskLimit", Reason.ARRAY_THROTTLE, "waiting for its turn: resources.array_parallelism caps the trials"),
    ("PartitionTimeLimit", Reason.TIME_OVER_LIMIT, "asks for more time than the partition allows"),
    ("PartitionNodeLimit", Reason.NODES_OVER_LIMIT, "asks for more nodes than the partition allows"),
    ("PartitionDown", Reason.PARTITION_DOWN, "its partition is down"),
    ("PartitionInactive", Reason.PARTITION_DOWN, "its partition is inactive"),
    ("None", Reason.JUST_SUBMITTED, "just submitted: the scheduler has not looked at it yet"),
)


# SLURM's end states whose reason is a dlhpc reason code
END_REASONS = {
    "OUT_OF_MEMORY": Reason.OUT_OF_MEMORY,
    "NODE_FAIL": Reason.NODE_FAIL,
    "BOOT_FAIL": Reason.NODE_FAIL,
    "PREEMPTED": Reason.PREEMPTED,
    "TIMEOUT": Reason.TIMEOUT,
    "DEADLINE": Reason.TIMEOUT,
    "CANCELLED": Reason.CANCELLED,
}


def explain_pending(code: str) -> tuple[str, Reason | None]:
    """(SLURM's pending reason in plain words, its reason code)."""
    code = (code or "").strip().strip("()")
    for prefix, reason, words in PENDING_REASONS:
        if code.startswith(prefix):
            return f"{words.format(code=code)} ({code})", reason
    return code or "pending", None


def exit_parts(exit_code: str | None) -> tuple[int | None, int | None]:
    """SLURM's ExitCode 'code:signal' → (exit code, signal), None where it says nothing."""
    code, _, sig = str(exit_code or "").partition(":")
    return (int(code) if code.isdigit() else None), (int(sig) if sig.isdigit() and int(sig) else None)


def pending_details(job_ids, timeout=30) -> dict:
    """{job_id: (reason, expected start)} for pending jobs: one `squeue` call."""
    out = {}
    proc = run_command(
        ["squeue", "-h", "-t", "PD", "-j", ",".join(base_ids(job_ids)), "-o", "%i|%r|%S"], timeout=timeout
    )
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            start = parts[2] if parts[2] not in ("N/A", "", "Unknown") else None
            for jid in _expand_array_row(parts[0]):
                out[jid] = (parts[1], start)
    return out


def sacct_rows(job_ids, timeout=30) -> dict:
    """One batched sacct call → {job_id: {field: value}} for allocations (not steps)."""
    bases = base_ids(job_ids)
    if not bases:
        return {}
    proc = run_command(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(bases), "-o", ",".join(SACCT_FIELDS)], timeout=timeout
    )
    rows, explicit = {}, set()
    for line in proc.stdout.splitlines():
        values = line.split("|")
        if len(values) != len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, values, strict=True))
        expanded = _expand_array_row(row["JobID"])
        for jid in expanded:
            # A row of its own (later ones, after a requeue, replace earlier ones) beats the
            # summary row `123_[2-3%1]` that sacct prints for the elements not started yet.
            if len(expanded) == 1 or jid not in explicit:
                rows[jid] = row
            if len(expanded) == 1:
                explicit.add(jid)
    return rows


def squeue_rows(job_ids, timeout=30) -> dict:
    bases = base_ids(job_ids)
    command = ["squeue", "-h", "-j", ",".join(bases), "-o", "%i|%T|%M|%N", "--states=all"]
    proc = run_command(command, timeout=timeout, check=False)
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:  # (that one: jobs gone from its memory)
        raise CommandError(command, proc.returncode, proc.stdout, proc.stderr)
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            for jid in _expand_array_row(parts[0]):
                rows[jid] = {"JobID": jid, "State": parts[1], "Elapsed": parts[2], "NodeList": parts[3]}
    return rows


def states(job_ids, details=False) -> tuple[dict, list]:
    """({job_id: JobStatus}, warnings). sacct first; squeue when sacct fails.
    With details, pending jobs also get their reason in plain words and expected start (squeue)."""
    warnings, rows, sacct_error = [], {}, None
    try:
        rows = sacct_rows(job_ids)
    except (CommandError, OSError) as exc:
        sacct_error = str(exc).splitlines()[0]
        warnings.append(
            "sacct failed: the accounting (slurmdbd) is unavailable, so queue wait, core-hours and GPU-hours are "
            f"left out and the states come from squeue (finished jobs may show as UNKNOWN): {sacct_error}"
        )
    # a job ended by a node failure is requeued (JobRequeue), or requeued by its runner after a
    # lost node: the accounting says NODE_FAIL or REQUEUED until its new record reaches slurmdbd,
    # the controller says PENDING at once; believe the controller
    lagging = ("NODE_FAIL", "REQUEUED")
    missing = [j for j in job_ids if j not in rows or rows[j].get("State", "").startswith(lagging)]
    if missing:
        try:
            for jid, row in squeue_rows(missing).items():
                if jid not in rows or row["State"] in ("PENDING", "REQUEUED", "RUNNING", "CONFIGURING"):
                    rows[jid] = {**rows.get(jid, {}), **row}
        except (CommandError, OSError) as exc:
            if sacct_error is None:
                warnings.append(f"squeue failed too: {str(exc).splitlines()[0]}")
            else:  # neither the accounting nor the controller answers
                warnings = [
                    Unreachable(
                        "SLURM does not answer (sacct and squeue failed; slurmctld or slurmdbd is down or "
                        "unreachable): the states shown are the last known, from the trials' own files. "
                        f"sacct: {sacct_error}"
                    )
                ]
    out = {jid: job_status(rows[jid]) for jid in job_ids if jid in rows}
    pending = [j for j, status in out.items() if status.state == State.PENDING]
    if details and pending:
        try:
            for jid, (code, start) in pending_details(pending).items():
                if jid in out:
                    words, reason = explain_pending(code)
                    out[jid].pending_reason, out[jid].reason_code, out[jid].est_start = words, reason, start
        except (CommandError, OSError) as exc:
            warnings.append(f"squeue --start failed: {str(exc).splitlines()[0]}")
    return out, warnings


def job_status(row: dict) -> JobStatus:
    """One sacct (or squeue) row as a JobStatus, with its accounting figures."""
    raw = row.get("State", "")
    code, sig = exit_parts(row.get("ExitCode"))
    status = JobStatus(
        state=map_state(raw),
        raw_state=raw,
        elapsed=row.get("Elapsed"),
        submit=row.get("Submit"),
        start=row.get("Start"),
        end=row.get("End"),
        nodes=row.get("NodeList") or "",
        exit_code=code,
        signal=sig,
        reason_code=END_REASONS.get(raw.split()[0] if raw else ""),
        **accounting(row),
    )
    if status.state == State.PENDING:
        status.pending_reason, status.reason_code = explain_pending(row.get("Reason", ""))
    return status


def _ts(value):
    try:
        return datetime.fromisoformat(value) if value and value not in ("Unknown", "None") else None
    except ValueError:
        return None


def accounting(row: dict) -> dict:
    """Queue wait and allocated CPU/GPU hours from what sacct recorded (AllocTRES x Elapsed)."""
    out = {}
    submit, start = _ts(row.get("Submit")), _ts(row.get("Start"))
    if submit and start:
        out["queue_wait_s"] = max(0.0, (start - submit).total_seconds())
    elapsed = parse_time(row.get("Elapsed") or "") if row.get("Elapsed") else None
    tres = dict(item.split("=", 1) for item in (row.get("AllocTRES") or "").split(",") if "=" in item)
    if elapsed is not None:
        out["elapsed_s"] = elapsed
    if elapsed is not None and tres:
        out["core_hours"] = int(tres.get("cpu", 0) or 0) * elapsed / 3600
        out["gpu_hours"] = int(tres.get("gres/gpu", 0) or 0) * elapsed / 3600
    return out
