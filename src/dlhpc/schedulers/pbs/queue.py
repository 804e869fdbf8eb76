"""What PBS says of jobs: one batched `qstat -x -f -t -F json` (plain `qstat` for Torque),
mapped onto dlhpc's State and Reason codes, with the accounting figures and what jobs used."""

import json
import re
from datetime import datetime

from dlhpc.errors import CommandError
from dlhpc.reasons import Reason
from dlhpc.schedulers.base import Unreachable, base_ids
from dlhpc.schedulers.pbs_ids import parse_job_id  # noqa: F401 - also pbs.parse_job_id
from dlhpc.shell import run_command
from dlhpc.spec.schema import parse_time
from dlhpc.states import JobStatus, State

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


# OpenPBS's own exit codes for a job it ended (src/include/job.h), and signals + 256; every value
# is one of dlhpc's state words (states.STATES): the reason says the rest
EXIT_STATES = {-29: "TIMEOUT", -27: "FAILED", -26: "FAILED", 265: "CANCELLED", 271: "CANCELLED"}
EXIT_CODES = {
    -29: Reason.TIMEOUT,
    -27: Reason.OUT_OF_MEMORY,
    -26: Reason.OUT_OF_MEMORY,
    265: Reason.CANCELLED,
    271: Reason.CANCELLED,
}
EXIT_REASONS = {
    -27: "out of memory: the job went over its memory limit (PBS exit -27); ask for more with resources.mem",
    -26: "out of memory: the job went over its virtual memory limit (PBS exit -26); ask for more with resources.mem",
}


def reason_code(job: dict) -> Reason | None:
    """The reason code of a job in `qstat -f -F json`: from its exit status once it ended, from
    its state and holds while it waits."""
    try:
        status = int(job.get("Exit_status"))
    except (TypeError, ValueError):
        status = None
    if status is not None and status in EXIT_CODES:
        return EXIT_CODES[status]
    letter = str(job.get("job_state") or "")
    if letter == "H":
        if "u" in str(job.get("Hold_Types") or ""):
            return Reason.HELD_BY_USER
        return Reason.DEPENDENCY if job.get("depend") else Reason.HELD_BY_ADMIN
    return {"W": Reason.BEGIN_TIME, "Q": Reason.QUEUED}.get(letter)


def _exit_parts(exit_status) -> dict:
    """PBS's Exit_status as dlhpc's exit_code and signal: 256 + N is signal N; negative values
    are PBS's own (in the reason)."""
    try:
        status = int(exit_status)
    except (TypeError, ValueError):
        return {"exit_code": None, "signal": None}
    if status > 256:
        return {"exit_code": None, "signal": status - 256}
    return {"exit_code": status if status >= 0 else None, "signal": None}


def exit_reason(exit_status) -> str | None:
    try:
        return EXIT_REASONS.get(int(exit_status))
    except (TypeError, ValueError):
        return None


# ---- template filters: PBS's forms of dlhpc's resources ----------------------------------------


def map_state(letter: str, exit_status=None) -> State:
    state = STATES.get((letter or "").strip().upper()[:1], "UNKNOWN")
    if state == "COMPLETED" and exit_status not in (None, "", 0, "0"):
        try:
            code = int(exit_status)
        except (TypeError, ValueError):
            return State.UNKNOWN
        # 271 = killed by qdel (SIGTERM + 256), -29 = walltime; other non-zero = failed
        return State(EXIT_STATES.get(code, "FAILED"))
    return State(state)


def qstat_ids(job_ids):
    bases = base_ids(job_ids)
    arrays = {j.split("_")[0] for j in job_ids if "_" in j}
    return [b + "[]" if b in arrays else b for b in bases]


def qstat_json(job_ids):
    """OpenPBS: `qstat -x -f -t -F json` over the jobs (history included, -t: each array element);
    None where the server or a wrapper does not speak JSON (Torque). One call per job id: given
    several, OpenPBS 23.06 prints the first one's JSON alone (a finished trial's job beside its
    recovery job, or two job groups, lost all but one)."""
    jobs = {}
    for job_id in qstat_ids(job_ids):
        answer = _qstat_json_one(job_id)
        if answer is None:
            return None
        jobs.update(answer)
    return jobs


def _qstat_json_one(job_id: str):
    try:
        proc = run_command(["qstat", "-x", "-f", "-t", "-F", "json", job_id], timeout=30, check=False)
    except CommandError as exc:
        if "timed out" in str(exc):
            raise ServerDown(f"qstat did not answer: {str(exc).splitlines()[0]}") from None
        return None
    if proc.returncode != 0 and "cannot connect to server" in (proc.stderr or ""):
        raise ServerDown((proc.stderr or "").strip().splitlines()[-1])
    if proc.returncode != 0 and "Unknown Job Id" in (proc.stderr or ""):
        return {}  # (purged from the history: the job is missing, not the server)
    try:
        return json.loads(proc.stdout).get("Jobs") or {} if proc.stdout.strip().startswith("{") else None
    except json.JSONDecodeError:
        return None


class ServerDown(Exception):
    """qstat could not reach the PBS server (pbs_server stopped, restarting, or unreachable)."""


def _dlhpc_id(full_id: str):
    """'12[3].server' → '12_3', '12.server' → '12', the array itself ('12[].server') → None."""
    m = re.match(r"(\d+)(?:\[(\d*)\])?", full_id)
    if not m or m.group(2) == "":
        return None
    return m.group(1) + (f"_{m.group(2)}" if m.group(2) else "")


def states(job_ids) -> tuple[dict, list]:
    """OpenPBS: `qstat -x -f -t -F json` (finished jobs too). Torque and wrappers: plain `qstat`."""
    warnings, out = [], {}
    ids = qstat_ids(job_ids)
    try:
        data = qstat_json(job_ids)
    except ServerDown as exc:
        return {}, [
            Unreachable(
                "PBS does not answer (qstat failed; pbs_server is down, restarting or unreachable): the states "
                f"shown are the last known, from the trials' own files. {exc}"
            )
        ]
    if data is not None:
        for full_id, job in data.items():
            jid = _dlhpc_id(full_id)
            if jid is not None:
                out[jid] = job_status(job)
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
            out[jid] = JobStatus(state=map_state(parts[4]), raw_state=parts[4], elapsed=parts[3])
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


def job_status(job: dict) -> JobStatus:
    """One job of `qstat -x -f -F json` as a JobStatus, with its accounting figures."""
    used = job.get("resources_used") or {}
    state = map_state(job.get("job_state"), job.get("Exit_status"))
    if state == "COMPLETED" and str(job.get("substate")) == "91":  # finished by qdel
        state = "CANCELLED"
    status = JobStatus(
        state=state,
        raw_state=job.get("job_state") or "",
        elapsed=used.get("walltime"),
        submit=job.get("qtime"),
        start=job.get("stime"),
        end=job.get("obittime") if job.get("job_state") in ("F", "X") else None,
        nodes=job.get("exec_host") or "",
        reason=exit_reason(job.get("Exit_status")) or "",
        reason_code=reason_code(job),
        **_exit_parts(job.get("Exit_status")),
        **accounting(job),
    )
    if status.state == State.PENDING:  # the scheduler's own words, and its estimate where it has one
        status.pending_reason = job.get("comment") or ("held" if job.get("job_state") == "H" else "")
        status.est_start = (job.get("estimated") or {}).get("start_time")
    return status


def accounting(job: dict) -> dict:
    """Queue wait (qtime → stime), elapsed and allocated CPU/GPU hours (Resource_List x walltime)."""
    out = {}
    submit, start = _ctime(job.get("qtime")), _ctime(job.get("stime"))
    if submit and start:
        out["queue_wait_s"] = max(0.0, (start - submit).total_seconds())
    walltime = (job.get("resources_used") or {}).get("walltime")
    asked = job.get("Resource_List") or {}
    elapsed = parse_time(walltime) if walltime else None
    if elapsed is not None:
        out["elapsed_s"] = elapsed
        if asked.get("ncpus") is not None:
            out["core_hours"] = int(asked["ncpus"] or 0) * elapsed / 3600
            out["gpu_hours"] = int(asked.get("ngpus") or 0) * elapsed / 3600
    return out


def pbs_megabytes(value) -> float | None:
    """PBS sizes: '4gb', '1048576kb', '512mb', '123b'."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(b|w)?\s*$", str(value or "").lower())
    if not m:
        return None
    scale = {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024, "t": 2**20, "p": 2**30}[m.group(2)]
    return float(m.group(1)) * scale * (8 if m.group(3) == "w" else 1)


def efficiency(job_ids) -> dict:
    """{job_id: {cpus, cpus_used, cpu_efficiency, mem_peak_mb, mem_req_mb}} from the server's
    record of each job (resources_used: cput, mem, walltime), in one qstat call."""
    out = {}
    try:
        found = qstat_json(job_ids) or {}
    except ServerDown:
        return {}  # (summary says the server does not answer; its accounting columns stay empty)
    for full_id, job in found.items():
        jid = _dlhpc_id(full_id)
        used, asked = job.get("resources_used") or {}, job.get("Resource_List") or {}
        if jid is None or not used:
            continue
        cpus = int(asked.get("ncpus") or 0)
        elapsed = parse_time(used["walltime"]) if used.get("walltime") else 0
        peak = pbs_megabytes(used.get("mem"))
        # a mom that never sampled the job (it skips root's processes; a job shorter than its
        # poll interval) reports 0 kb: unknown, not idle
        sampled = bool(peak)
        busy = parse_time(used["cput"]) / elapsed if sampled and used.get("cput") and elapsed else None
        out[jid] = {
            "cpus": cpus,
            "cpus_used": busy,
            "cpu_efficiency": busy / cpus if busy is not None and cpus else None,
            "mem_peak_mb": peak if sampled else None,
            "mem_req_mb": pbs_megabytes(asked.get("mem")),
        }
    return out
