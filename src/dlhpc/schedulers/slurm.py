"""SLURM: submit through submitit with our rendered script, states from one batched sacct call.

submitit's SlurmExecutor renders its own sbatch text, and for job arrays builds a fresh
SlurmExecutor inside _internal_process_submissions, so overriding _make_submission_file_text alone
would give arrays submitit's built-in script. DlhpcSlurmExecutor overrides both paths.
"""

import os
import re
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from dlhpc.errors import CommandError, DlhpcError, UserError
from dlhpc.hostlist import expand_hostlist  # noqa: F401 - also slurm.expand_hostlist
from dlhpc.reasons import Reason
from dlhpc.schedulers.base import Backend, Check, base_ids, commands_missing
from dlhpc.shell import run_command
from dlhpc.spec.schema import parse_time
from dlhpc.states import State

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


def config() -> dict:
    """`scontrol show config` as a dict, asked once per command (Backend.asked); {} when SLURM is
    not reachable."""
    from dlhpc.schedulers import backend

    return backend("slurm").asked("config", _read_config)


def _read_config() -> dict:
    if shutil.which("scontrol") is None:
        return {}
    try:
        out = run_command(["scontrol", "show", "config"], timeout=20).stdout
    except CommandError:
        return {}
    conf = {}
    for line in out.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            conf[key.strip()] = value.strip()
    return conf


def max_array_size() -> int | None:
    value = config().get("MaxArraySize")
    return int(value) if value and value.isdigit() else None


def partitions() -> dict:
    """{name: {"max_time_s": int|None, "default": bool, "state": str}} from `scontrol show partition -o`."""
    out = run_command(["scontrol", "show", "partition", "-o"], timeout=20).stdout
    parts = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        name = fields.get("PartitionName")
        if not name:
            continue
        max_time = fields.get("MaxTime", "UNLIMITED")
        parts[name] = {
            "max_time_s": None if max_time in ("UNLIMITED", "INFINITE") else parse_time(max_time),
            "default": fields.get("Default") == "YES",
            "state": fields.get("State", "UP"),
            "max_time": max_time,
        }
    return parts


def wanted_partitions(resources: dict, parts: dict) -> list[str]:
    """The partitions a job asks for: the spec's list, else the cluster's default partition."""
    if resources["partition"]:
        return resources["partition"].split(",")
    return [name for name, p in parts.items() if p["default"]]


def preflight(plan) -> list[str]:
    """Refuse what SLURM would refuse later: unknown partition, walltime above its limit."""
    problems, parts = [], partitions()
    data_of = {t.id: t.data for t in plan.trials}
    for script in plan.scripts:
        res = data_of[script.trial_ids[0]]["resources"]  # a script's trials share their resources
        for name in wanted_partitions(res, parts):
            if name not in parts:
                problems.append(
                    f"partition {name!r} does not exist on this cluster (partitions: "
                    f"{', '.join(sorted(parts)) or 'none'}); set resources.partition"
                )
                continue
            limit = parts[name]["max_time_s"]
            if limit is not None and parse_time(res["time"]) > limit:
                problems.append(
                    f"resources.time {res['time']} exceeds the limit of partition {name!r} "
                    f"({parts[name]['max_time']}); ask for less time"
                )
    return sorted(set(problems))


def _limit(value: str) -> int | None:
    return int(value) if value and value.strip().lstrip("-").isdigit() and int(value) >= 0 else None


_JOB_LIMITS: dict = {}


def job_limits(res: dict) -> list[tuple[int, int, str]]:
    """job_limits_now, asked once per command (submit's packing choice and its preflight share it)."""
    key = (res.get("account"), res.get("qos"))
    if key not in _JOB_LIMITS:
        _JOB_LIMITS[key] = job_limits_now(res)
    return _JOB_LIMITS[key]


def job_limits_now(res: dict) -> list[tuple[int, int, str]]:
    """Limits on the number of jobs in the system, as (limit, jobs already counted against it,
    what it is): MaxJobCount, and where accounting is on, the user's association and QOS limits
    on submitted jobs (MaxSubmitJobs, GrpSubmitJobs, MaxSubmitJobsPerUser). Every array task
    counts as a job. One squeue and two sacctmgr calls."""
    import getpass

    user, limits = getpass.getuser(), []
    queue = run_command(["squeue", "-h", "-r", "-o", "%i|%u"], timeout=20).stdout.splitlines()
    mine = sum(1 for line in queue if line.endswith(f"|{user}"))
    max_jobs = _limit(config().get("MaxJobCount", ""))
    if max_jobs is not None:
        limits.append((max_jobs, len(queue), "the cluster holds at most {limit:,} jobs (MaxJobCount) and has {used:,}"))
    try:
        assocs = run_command(
            [
                "sacctmgr",
                "-n",
                "-P",
                "show",
                "assoc",
                "where",
                f"user={user}",
                "format=Account,MaxSubmitJobs,GrpSubmitJobs,QOS",
            ],
            timeout=20,
        ).stdout.splitlines()
        qos_rows = run_command(
            ["sacctmgr", "-n", "-P", "show", "qos", "format=Name,MaxSubmitJobsPerUser,GrpSubmitJobs"], timeout=20
        ).stdout.splitlines()
    except CommandError:
        return limits  # no accounting: slurmctld's own limit is all there is
    qos_limits = {row.split("|")[0]: row.split("|")[1:] for row in qos_rows if row.count("|") == 2}
    for row in assocs:
        account, max_submit, grp_submit, qos_list = (row.split("|") + ["", "", "", ""])[:4]
        if res.get("account") and account != res["account"]:
            continue
        for name, limit in (("MaxSubmitJobs", _limit(max_submit)), ("GrpSubmitJobs", _limit(grp_submit))):
            if limit is not None:
                what = f"your association (account {account}) allows {{limit:,}} submitted jobs ({name})"
                limits.append((limit, mine, what + "; you have {used:,}"))
        for qos in [res.get("qos")] if res.get("qos") else qos_list.split(","):
            per_user, grp = (qos_limits.get(qos) or [None, None])[:2]
            for name, limit in (("MaxSubmitJobsPerUser", _limit(per_user)), ("GrpSubmitJobs", _limit(grp))):
                if limit is not None:
                    what = f"QOS {qos} allows {{limit:,}} submitted jobs ({name})"
                    limits.append((limit, mine, what + "; you have {used:,}"))
    return limits


def submission_limits(plan, limits=None) -> list[str]:
    """What slurmctld and the accounting limits will refuse, checked before sbatch would sit in its
    "temporarily unable to accept job" loop."""
    from dlhpc.plan.experiment import jobs_added

    res = plan.trials[0].data["resources"] if plan.trials else {}
    adding = jobs_added(plan.trials, plan.max_array, plan.trials_per_task)
    fix = (
        "Fix: pack trials (resources.trials_per_task), submit fewer trials at once (split the sweep, or sweep "
        "fewer values), or wait for your queued jobs to end"
    )
    return sorted(
        {
            f"this submission adds {adding:,} jobs (one per array task, plus one per array), but "
            f"{what.format(limit=limit, used=used)}. {fix}"
            for limit, used, what in (limits if limits is not None else job_limits(res))
            if used + adding > limit
        }
    )


def test_only(script_text: str, workdir: Path) -> str:
    """`sbatch --test-only`: SLURM checks partition, account, QOS and limits, queues nothing."""
    path = workdir / f".test-only-{uuid.uuid4().hex}.sh"
    path.write_text(script_text)
    try:
        proc = run_command(["sbatch", "--test-only", str(path)], timeout=30, cwd=workdir, check=False)
    finally:
        path.unlink(missing_ok=True)
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise CommandError(
            ["sbatch", "--test-only", "<script>"],
            proc.returncode,
            proc.stdout,
            proc.stderr,
            note="SLURM would refuse this job",
        )
    return text


_JOB_ID = re.compile(r"Submitted batch job (\d+)")


def parse_job_id(output: str) -> str:
    m = _JOB_ID.search(output or "")
    if not m:
        raise DlhpcError(f"sbatch printed something dlhpc cannot read (no 'Submitted batch job N'):\n{output.strip()}")
    return m.group(1)


def _executor_class():
    import submitit

    from dlhpc.schedulers.submission import RenderedScriptMixin

    class DlhpcSlurmExecutor(RenderedScriptMixin, submitit.SlurmExecutor):
        """submitit's SLURM executor; every script (single or array) is our rendered template."""

        def __init__(self, folder, script_text, submit_cwd, max_num_timeout, timeout_min):
            super().__init__(folder, max_num_timeout=max_num_timeout)
            self._use_script(script_text, submit_cwd, timeout_min)
            self.parameters["time"] = timeout_min  # submitit's single-job path reads it here

        @staticmethod
        def _get_job_id_from_submission_command(string) -> str:
            return parse_job_id(string.decode() if isinstance(string, bytes) else string)

    return DlhpcSlurmExecutor


# ---- state ----------------------------------------------------------------------------------


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
    proc = run_command(["squeue", "-h", "-j", ",".join(bases), "-o", "%i|%T|%M|%N", "--states=all"], timeout=timeout)
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            for jid in _expand_array_row(parts[0]):
                rows[jid] = {"JobID": jid, "State": parts[1], "Elapsed": parts[2], "NodeList": parts[3]}
    return rows


def states(job_ids, details=False) -> tuple[dict, list]:
    """({job_id: {"state", "elapsed", ...}}, warnings). sacct first; squeue when sacct fails.
    With details, pending jobs also get their reason in plain words and expected start (squeue)."""
    warnings, rows = [], {}
    try:
        rows = sacct_rows(job_ids)
    except (CommandError, OSError) as exc:
        warnings.append(f"sacct failed, using squeue (finished jobs may show as UNKNOWN): {str(exc).splitlines()[0]}")
    missing = [j for j in job_ids if j not in rows]
    if missing:
        try:
            for jid, row in squeue_rows(missing).items():
                rows.setdefault(jid, row)
        except (CommandError, OSError) as exc:
            warnings.append(f"squeue failed too: {str(exc).splitlines()[0]}")
    out = {}
    for jid in job_ids:
        row = rows.get(jid)
        if row is None:
            continue
        raw = row.get("State", "")
        code, sig = exit_parts(row.get("ExitCode"))
        out[jid] = {
            "state": map_state(raw),
            "raw_state": raw,
            "elapsed": row.get("Elapsed"),
            "submit": row.get("Submit"),
            "start": row.get("Start"),
            "end": row.get("End"),
            "alloc_tres": row.get("AllocTRES"),
            "nodes": row.get("NodeList"),
            "exit_code": code,
            "signal": sig,
            "reason_code": END_REASONS.get(raw.split()[0] if raw else ""),
        }
        if out[jid]["state"] == "PENDING":
            words, reason = explain_pending(row.get("Reason", ""))
            out[jid].update(pending_reason=words, reason_code=reason)
    pending = [j for j, row in out.items() if row["state"] == "PENDING"]
    if details and pending:
        try:
            for jid, (code, start) in pending_details(pending).items():
                if jid in out:
                    words, reason = explain_pending(code)
                    out[jid].update(pending_reason=words, reason_code=reason, est_start=start)
        except (CommandError, OSError) as exc:
            warnings.append(f"squeue --start failed: {str(exc).splitlines()[0]}")
    return out, warnings


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
    if elapsed is not None:
        out["elapsed_s"] = elapsed
    if elapsed is not None and tres:
        out["core_hours"] = int(tres.get("cpu", 0) or 0) * elapsed / 3600
        out["gpu_hours"] = int(tres.get("gres/gpu", 0) or 0) * elapsed / 3600
    return out


# ---- efficiency -----------------------------------------------------------------------------

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


# ---- usage ----------------------------------------------------------------------------------

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


# ---- doctor ---------------------------------------------------------------------------------


def doctor_checks(spec) -> list[Check]:
    missing = commands_missing(("sbatch", "squeue", "sacct", "scancel", "scontrol"))
    checks = [
        Check(
            "SLURM commands",
            not missing,
            "all present" if not missing else f"missing: {', '.join(missing)}",
            "run on the cluster's login node, or load the slurm module",
        )
    ]
    if missing:
        return checks
    try:
        run_command(["sacct", "-n", "-X", "-S", "now-1minutes"], timeout=20)
        checks.append(Check("accounting (sacct)", True, "sacct answers"))
    except CommandError as exc:
        checks.append(
            Check(
                "accounting (sacct)",
                False,
                str(exc).splitlines()[0],
                "ask the admins to enable slurmdbd; dlhpc status falls back to squeue meanwhile",
            )
        )
    size = max_array_size()
    checks.append(
        Check("MaxArraySize", size is not None, str(size) if size else "unknown", "scontrol show config must answer")
    )
    try:
        parts = partitions()
    except CommandError as exc:
        checks.append(Check("partitions", False, str(exc).splitlines()[0], "scontrol show partition must answer"))
        return checks
    res = spec.data["resources"]
    for name in wanted_partitions(res, parts):
        if name not in parts:
            checks.append(
                Check(
                    f"partition {name}",
                    False,
                    "does not exist",
                    f"set resources.partition to one of: {', '.join(sorted(parts))}",
                )
            )
            continue
        checks.append(
            Check(
                f"partition {name}",
                parts[name]["state"] == "UP",
                f"state {parts[name]['state']}, max time {parts[name]['max_time']}",
                "pick a partition that is UP",
            )
        )
        if res["gpus_per_node"]:
            gpus = partition_gpus(name)
            checks.append(
                Check(
                    f"GPUs in {name}",
                    gpus >= res["gpus_per_node"],
                    f"{gpus} per node available, {res['gpus_per_node']} asked",
                    "ask for fewer GPUs, or pick a GPU partition (`sinfo -o '%P %G'`)",
                )
            )
    return checks


def partition_gpus(partition: str) -> int:
    try:
        out = run_command(["sinfo", "-h", "-p", partition, "-o", "%G"], timeout=20).stdout
    except CommandError:
        return 0
    best = 0
    for gres in out.split():
        for item in gres.split(","):
            fields = item.split(":")
            if fields[0] == "gpu" and fields[-1].split("(")[0].isdigit():
                best = max(best, int(fields[-1].split("(")[0]))
    return best


NODE_SOFTWARE = (
    "import torch,platform;print('python',platform.python_version(),'torch',torch.__version__,"
    "'cuda',torch.version.cuda,'gpus',torch.cuda.device_count(),'nccl',"
    "'.'.join(map(str,torch.cuda.nccl.version())) if torch.cuda.is_available() else None)"
)


def job_check(spec) -> list[Check]:
    """Run a tiny job to see Python/torch/CUDA/NCCL as the compute node sees them."""
    import sys

    res = spec.data["resources"]
    argv = ["srun", "-N1", "-n1", "--time=00:05:00"]
    if res["partition"]:
        argv.append(f"--partition={res['partition']}")
    if res["gpus_per_node"]:
        argv.append(f"--gpus-per-node={res['gpus_per_node']}")
    try:
        out = run_command(argv + [sys.executable, "-c", NODE_SOFTWARE], timeout=300).stdout.strip()
        return [Check("compute node software", True, out)]
    except CommandError as exc:
        return [Check("compute node software", False, str(exc).splitlines()[0], "see the srun error above")]


# ---- the backend ----------------------------------------------------------------------------


class SlurmBackend(Backend):
    name = "slurm"
    submit_command = "sbatch"
    job_id_expr = "${SLURM_JOB_ID}"
    job_id_pattern = r"\d+(_\d+)?"

    def queue_command(self, job_name: str) -> str:
        return f"squeue --me --name {job_name}"

    def release_command(self, job_id: str) -> str:
        return f"scontrol release {job_id.split('_')[0]}"

    array_index_expr = "${SLURM_ARRAY_TASK_ID:-0}"

    def check(self) -> None:
        if shutil.which("sbatch") is None:
            raise UserError(
                "sbatch not found: this machine is not a SLURM login node. Use `dlhpc run SPEC` to run "
                "here, or --scheduler pbs on a PBS cluster"
            )

    def inside_allocation(self) -> bool:
        return bool(os.environ.get("SLURM_JOB_ID"))

    def allocation(self) -> tuple[str, list[str]]:
        return os.environ.get("SLURM_JOB_ID", ""), expand_hostlist(os.environ.get("SLURM_JOB_NODELIST", ""))

    def preflight(self, plan) -> list[str]:
        return submission_limits(plan) + preflight(plan)

    def job_headroom(self, plan) -> tuple[int | None, str]:
        res = plan.trials[0].data["resources"] if plan.trials else {}
        room = [(limit - used, what.format(limit=limit, used=used)) for limit, used, what in job_limits(res)]
        return min(room) if room else (None, "")

    def test_only(self, script_text: str, workdir: Path) -> str:
        return test_only(script_text, workdir)

    def max_array(self) -> int | None:
        return max_array_size()

    def submit(self, plan, queued: list) -> list[dict]:
        from dlhpc.schedulers.submission import submit_plan

        return submit_plan(plan, _executor_class(), queued)

    def states(self, job_ids, exp_dir, details=False) -> tuple[dict, list]:
        return states(job_ids, details)

    def dependency_args(self, kind: str, job_ids: list[str]) -> list[str]:
        return [f"--dependency={kind}:{':'.join(base_ids(job_ids))}"]

    def submit_followup(self, script, after, name, resources, exp_dir) -> str:
        argv = ["sbatch", *self.dependency_args("afterany", after), f"--job-name={name}"]
        argv += ["--ntasks=1", "--cpus-per-task=1", "--mem=2G", "--time=00:15:00", "--kill-on-invalid-dep=no"]
        argv += [f"--output={exp_dir / 'logs' / (name + '-%j.out')}"]
        for key in ("partition", "account", "qos"):
            if resources.get(key):
                argv.append(f"--{key}={resources[key]}")
        return parse_job_id(run_command([*argv, str(script)], timeout=60, cwd=exp_dir / "logs").stdout)

    def cancel(self, job_ids, exp_dir) -> list[str]:
        bases = base_ids(job_ids)
        if bases:
            run_command(["scancel", "--", *bases], timeout=60)
        return bases

    def accounting(self, row: dict) -> dict:
        return accounting(row)

    def doctor_checks(self, spec) -> list[Check]:
        return doctor_checks(spec)

    def job_check(self, spec) -> list[Check]:
        return job_check(spec)

    def usage(self, since: str, account: str | None, all_users: bool) -> tuple[list, list]:
        return usage_rows(since, account, all_users)

    def efficiency(self, job_ids, exp_dir) -> dict:
        return efficiency(job_ids)
