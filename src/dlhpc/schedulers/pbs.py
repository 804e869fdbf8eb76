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
import sys
import time
from datetime import datetime
from pathlib import Path

from dlhpc.errors import CommandError, UserError
from dlhpc.reasons import Reason
from dlhpc.schedulers.base import Backend, Check, Unreachable, base_ids, commands_missing
from dlhpc.schedulers.pbs_ids import parse_job_id  # noqa: F401 - also pbs.parse_job_id
from dlhpc.shell import run_command
from dlhpc.spec.schema import mem_megabytes, parse_time
from dlhpc.states import JobStatus, State

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


def pbs_walltime(time: str) -> str:
    seconds = parse_time(time)
    h, rest = divmod(seconds, 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"


def pbs_mem(mem: str, nodes: int = 1) -> str:
    """SLURM-style '4G' (per node) → PBS 'gb'/'mb' units; Torque's -l mem is for the whole job."""
    mb = mem_megabytes(mem) * nodes
    return f"{int(mb // 1024)}gb" if mb % 1024 == 0 else f"{int(mb)}mb"


def pbs_flag(key: str) -> str:
    # extra: {l: "software=x"} → "-l"; {mail-type: ...} style keys are SLURM-only
    return f"-{key}" if len(key) == 1 else f"--{key}"


def flavor(resources: dict) -> str:
    """resources.pbs.flavor (a record written before it moved there says resources.pbs_flavor)."""
    return (resources.get("pbs") or {}).get("flavor") or resources.get("pbs_flavor") or "openpbs"


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


def queues() -> dict:
    """{queue: {enabled, started, max_walltime, type}} from `qstat -Q -f` (OpenPBS and Torque
    print the same `key = value` lines); {} where the server (or a wrapper) lists none."""
    try:
        out = run_command(["qstat", "-Q", "-f"], timeout=20, check=False).stdout
    except CommandError:
        return {}
    found, current = {}, None
    for line in out.splitlines():
        m = re.match(r"^Queue:\s*(\S+)", line)
        if m:
            current = found.setdefault(m.group(1), {})
            continue
        key, eq, value = line.strip().partition(" = ")
        if current is None or not eq:
            continue
        if key == "resources_max.walltime":
            current["max_walltime"] = value.strip()
        elif key in ("enabled", "started"):
            current[key] = value.strip().lower() in ("true", "yes", "t", "y", "1")
        elif key == "queue_type":
            current["type"] = value.strip()
    if any("enabled" in q for q in found.values()):  # OpenPBS omits false ones: unset means not
        for q in found.values():
            q.setdefault("enabled", False)
            q.setdefault("started", False)
    return found


def nodes() -> list[dict] | None:
    """Each execution node's size from `pbsnodes -a -F json` (OpenPBS): name, ncpus, mem_mb,
    ngpus, state; None where pbsnodes does not answer so (Torque, wrappers)."""
    try:
        proc = run_command(["pbsnodes", "-a", "-F", "json"], timeout=20, check=False)
        data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    except (CommandError, json.JSONDecodeError):
        return None
    if not data:
        return None
    found = []
    for name, node in (data.get("nodes") or {}).items():
        avail = node.get("resources_available") or {}
        found.append(
            {
                "name": name,
                "ncpus": int(avail.get("ncpus") or 0),
                "mem_mb": _megabytes(avail.get("mem")),
                "ngpus": int(avail.get("ngpus") or 0),
                "state": node.get("state", ""),
            }
        )
    return found


def hosts_besides_excluded(res: dict) -> list[str]:
    """For resources.exclude: the first `nodes` usable hosts (pbsnodes) that are not excluded, one
    per chunk of the select (OpenPBS cannot exclude a host, only name the ones to use)."""
    from dlhpc.errors import UserError

    sizes = nodes()
    if sizes is None:
        raise UserError("resources.exclude on PBS needs `pbsnodes -a -F json` to list the hosts, which did not answer")
    want, excluded = chunk(res), set(res.get("exclude") or [])
    usable = [
        n["name"]
        for n in sizes
        if n["name"] not in excluded
        and not any(bad in n["state"] for bad in ("offline", "down", "unknown"))
        and n["ncpus"] >= want["ncpus"]
        and n["ngpus"] >= want["ngpus"]
    ]
    if len(usable) < res["nodes"]:
        raise UserError(
            f"resources.exclude leaves {len(usable)} usable host(s) ({', '.join(usable) or 'none'}) and the "
            f"trial needs resources.nodes {res['nodes']}: exclude fewer hosts"
        )
    return usable[: res["nodes"]]


def chunk(res: dict) -> dict:
    """What one node of the job asks for (the template's select chunk)."""
    from dlhpc.spec.load import tasks_per_node
    from dlhpc.spec.schema import mem_megabytes

    tasks = tasks_per_node(res)
    return {
        "ncpus": tasks * res["cpus_per_task"],
        "mem_mb": mem_megabytes(res["mem"]),
        "ngpus": res["gpus_per_node"] or 0,
    }


def fit_problems(res: dict, sizes: list[dict]) -> list[str]:
    """Whether `nodes` nodes of the cluster can each hold one chunk of the job."""
    usable = [n for n in sizes if not any(bad in n["state"] for bad in ("offline", "down", "unknown"))]
    want = chunk(res)
    fits = [
        n
        for n in usable
        if n["ncpus"] >= want["ncpus"]
        and n["ngpus"] >= want["ngpus"]
        and (n["mem_mb"] is None or n["mem_mb"] >= want["mem_mb"])
    ]
    if len(fits) >= res["nodes"]:
        return []
    biggest = ", ".join(
        f"{n['name']}: {n['ncpus']} CPUs, {n['ngpus']} GPUs, {(n['mem_mb'] or 0) / 1024:.0f}G" for n in usable[:4]
    )
    return [
        f"each of {res['nodes']} node(s) must hold {want['ncpus']} CPUs, {want['ngpus']} GPUs and "
        f"{want['mem_mb'] / 1024:.1f}G (tasks_per_node x cpus_per_task, gpus_per_node, mem), and "
        f"{len(fits)} of the {len(usable)} usable PBS node(s) can ({biggest or 'none usable'}). "
        f"Fix: ask for less per node, or for fewer nodes"
    ]


def queue_problems(res: dict, found: dict) -> list[str]:
    q = res["partition"]
    if not q or not found:
        return []  # the server's default queue, or a server that does not list its queues
    if q not in found:
        return [f"queue {q!r} does not exist (queues: {', '.join(sorted(found))}); set resources.partition"]
    info, problems = found[q], []
    if info.get("enabled") is False or info.get("started") is False:
        what = " and ".join(k for k in ("enabled", "started") if info.get(k) is False)
        problems.append(f"queue {q!r} is not {what}: it would not take or run the jobs; ask the admins, or use another")
    if info.get("max_walltime") and parse_time(res["time"]) > parse_time(info["max_walltime"]):
        problems.append(f"resources.time {res['time']} exceeds queue {q!r}'s limit {info['max_walltime']}")
    return problems


def preflight(plan) -> list[str]:
    """The queue (exists, enabled and started, walltime) and the nodes (a chunk fits), as the
    server reports them, before anything is queued."""
    found, sizes, problems = queues(), nodes(), []
    default = server_limits().get("default_queue", "") if found else ""
    for trial in plan.trials:
        res = trial.data["resources"]
        if res.get("exclude") and flavor(res) == "torque":
            problems.append("resources.exclude works with OpenPBS only (resources.pbs.flavor torque): leave it out")
        if res.get("reservation"):
            problems += reservation_problems(res)
            continue  # its own queue, made by the server for it
        problems += queue_problems({**res, "partition": res["partition"] or default}, found)
        if sizes:
            problems += fit_problems(res, sizes)
    return sorted(set(problems))


GONE_RESERVATION_STATES = ("RESV_BEING_DELETED", "RESV_DELETED", "RESV_FINISHED", "RESV_DELETING_JOBS")


def reservation_problems(res: dict) -> list[str]:
    from dlhpc.schedulers import reservations as checks

    if res.get("partition"):
        return ["a PBS reservation is its own queue: leave resources.partition out when resources.reservation is set"]
    return checks.problems(res, reservations())


def reservations() -> list:
    """reservations_now, asked once per command."""
    from dlhpc.schedulers import backend

    return backend("pbs").asked("reservations", reservations_now)


def reservations_now() -> list:
    """Every reservation `pbs_rstat -f` lists: name, id, queue, state, times, authorised users."""
    from dlhpc.schedulers.reservations import Reservation

    try:
        out = run_command(["pbs_rstat", "-f"], timeout=20, check=False).stdout
    except CommandError:
        return []
    found = []
    for block in re.split(r"^Resv ID:\s*", out, flags=re.MULTILINE)[1:]:
        rid, _, rest = block.partition("\n")
        fields = dict(line.strip().split(" = ", 1) for line in rest.splitlines() if " = " in line)
        if fields.get("reserve_state") in GONE_RESERVATION_STATES:
            continue  # deleted, or being deleted after its end: not one a job could name
        queue = fields.get("queue", rid.strip().split(".")[0])
        users = [u.lstrip("+").split("@")[0] for u in fields.get("Authorized_Users", "").split(",") if u]
        found.append(
            Reservation(
                name=fields.get("Reserve_Name", rid.strip()),
                state=fields.get("reserve_state", "?"),
                usable=fields.get("reserve_state") in ("RESV_CONFIRMED", "RESV_RUNNING"),
                start=_pbs_time(fields.get("reserve_start")),
                end=_pbs_time(fields.get("reserve_end")),
                users=users,
                other_names=(rid.strip(), rid.strip().split(".")[0], queue),
                queue=queue,
            )
        )
    return found


def _pbs_time(value: str | None) -> float:
    try:
        return time.mktime(time.strptime(value or "", "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return float("inf")


def pbs_reservation_queue(name: str) -> str:
    """The queue a reservation's jobs go to (`R123`), for the template; the name as given where
    the server does not know it (preflight then refuses it, naming the ones that exist)."""
    from dlhpc.schedulers.reservations import find

    found = find(name, reservations())
    return found.queue if found else name


def server_limits() -> dict:
    """server_limits_now, asked once per command (Backend.asked; submit asks it four ways)."""
    from dlhpc.schedulers import backend

    return backend("pbs").asked("server_limits", server_limits_now)


def server_limits_now() -> dict:
    """max_array_size, the per-user max_queued (u:PBS_GENERIC) and default_queue from `qstat -B -f`, where set."""
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
    m = re.search(r"^\s*default_queue\s*=\s*(\S+)", out, re.MULTILINE)
    if m:
        limits["default_queue"] = m.group(1)
    return limits


def submission_limits(plan) -> list[str]:
    """The server's per-user queued-job limit, against the jobs this submission adds (array
    subjobs count); arrays are already split at max_array_size (max_array)."""
    from dlhpc.plan.experiment import jobs_added

    limit = server_limits().get("max_queued_per_user")
    adding = jobs_added(plan.trials, plan.max_array, plan.trials_per_task)
    if limit is not None and adding > limit:
        return [
            f"the PBS server queues at most {limit:,} jobs per user (max_queued) and this submission adds "
            f"{adding:,}. Fix: pack trials (resources.trials_per_task), submit fewer trials at once (split the "
            f"sweep), or wait for your queued jobs to end"
        ]
    return []


def _qstat_ids(job_ids):
    bases = base_ids(job_ids)
    arrays = {j.split("_")[0] for j in job_ids if "_" in j}
    return [b + "[]" if b in arrays else b for b in bases]


def qstat_json(job_ids):
    """OpenPBS: one `qstat -x -f -t -F json` over the jobs (history included, -t: each array
    element); None where the server or a wrapper does not speak JSON (Torque)."""
    ids = _qstat_ids(job_ids)
    if not ids:
        return {}
    try:
        proc = run_command(["qstat", "-x", "-f", "-t", "-F", "json", *ids], timeout=30, check=False)
    except CommandError as exc:
        if "timed out" in str(exc):
            raise ServerDown(f"qstat did not answer: {str(exc).splitlines()[0]}") from None
        return None
    if proc.returncode != 0 and "cannot connect to server" in (proc.stderr or ""):
        raise ServerDown((proc.stderr or "").strip().splitlines()[-1])
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
    ids = _qstat_ids(job_ids)
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


def _megabytes(value) -> float | None:
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
        peak = _megabytes(used.get("mem"))
        # a mom that never sampled the job (it skips root's processes; a job shorter than its
        # poll interval) reports 0 kb: unknown, not idle
        sampled = bool(peak)
        busy = parse_time(used["cput"]) / elapsed if sampled and used.get("cput") and elapsed else None
        out[jid] = {
            "cpus": cpus,
            "cpus_used": busy,
            "cpu_efficiency": busy / cpus if busy is not None and cpus else None,
            "mem_peak_mb": peak if sampled else None,
            "mem_req_mb": _megabytes(asked.get("mem")),
        }
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
    if missing:
        return checks
    try:
        server = run_command(["qstat", "-B"], timeout=20).stdout.strip().splitlines()
        name = server[-1].split()[0] if server else "?"
        checks.append(Check("PBS server", True, f"{name} answers"))
    except CommandError as exc:
        checks.append(Check("PBS server", False, str(exc).splitlines()[0], "qstat -B must answer: is the server up?"))
        return checks
    res = spec.data["resources"]
    found, limits = queues(), server_limits()
    queue = res["partition"] or limits.get("default_queue", "")
    if queue:
        problems = queue_problems({**res, "partition": queue}, found)
        info = found.get(queue, {})
        detail = problems[0] if problems else f"enabled, started, max walltime {info.get('max_walltime') or 'none'}"
        checks.append(Check(f"queue {queue}", not problems, detail, "set resources.partition" if problems else ""))
    sizes = nodes()
    if sizes:
        problems = fit_problems(res, sizes)
        free = sum(1 for n in sizes if n["state"] == "free")
        detail = problems[0] if problems else f"{res['nodes']} node(s) of {len(sizes)} fit ({free} free now)"
        checks.append(Check("resources fit", not problems, detail, "" if not problems else "ask for less"))
    checks.append(
        Check("max_array_size", True, str(limits.get("max_array_size", "the server's default (10000 on OpenPBS)")))
    )
    return checks


class PBSBackend(Backend):
    name = "pbs"
    submit_command = "qsub"
    # Torque sets PBS_ARRAYID and OpenPBS PBS_ARRAY_INDEX; PBS-on-SLURM wrappers set neither.
    job_id_expr = "${PBS_JOBID:-${SLURM_JOB_ID:-}}"
    job_id_pattern = r"\d+(_\d+|\[\d*\])?(\.[A-Za-z0-9][A-Za-z0-9.-]*)?"  # 123, 123_4 (array element), 123[].srv
    array_index_expr = "${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-0}}}"

    def queue_command(self, job_name: str) -> str:
        return f"qstat -u $USER  (job name {job_name})"

    def release_command(self, job_id: str) -> str:
        return f"qrls {job_id.split('_')[0]}"

    def template(self, resources: dict) -> str:
        return f"pbs/{flavor(resources)}"

    def template_filters(self) -> dict:
        return {
            "pbs_walltime": pbs_walltime,
            "pbs_mem": pbs_mem,
            "pbs_flag": pbs_flag,
            "pbs_reservation_queue": pbs_reservation_queue,
            "pbs_hosts_besides_excluded": hosts_besides_excluded,
        }

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

    def launch_in_allocation(self, nodes, tasks_per_node, argv):
        if not self.inside_allocation() or not os.environ.get("PBS_NODEFILE"):
            return None
        launch = [sys.executable, "-u", "-m", "dlhpc.schedulers.pbs_launch"]
        return [*launch, "--nodes", str(nodes), "--tasks-per-node", str(tasks_per_node), "--", *argv], {}

    def preflight(self, plan) -> list[str]:
        return submission_limits(plan) + preflight(plan)

    def usable_nodes(self, resources: dict) -> list[str] | None:
        sizes = nodes()
        if sizes is None:
            return None
        return [n["name"] for n in sizes if not any(bad in n["state"] for bad in ("offline", "down", "unknown"))]

    def max_array(self) -> int | None:
        return server_limits().get("max_array_size") if self.available() else None

    def job_headroom(self, plan) -> tuple[int | None, str]:
        limit = server_limits().get("max_queued_per_user")
        return (limit, f"the PBS server queues at most {limit:,} jobs per user (max_queued)") if limit else (None, "")

    def test_only(self, script_text: str, workdir: Path) -> str:
        # qsub has no --test-only; preflight() already checked the queue and its walltime limit
        return "rendered; PBS has no test-only submission, queue and walltime were checked with qstat -Q"

    def submit(self, plan, queued: list) -> list[dict]:
        from dlhpc.schedulers.pbs_submitit import PBSExecutor
        from dlhpc.schedulers.submission import submit_plan

        return submit_plan(plan, PBSExecutor, queued)

    def states(self, job_ids, exp_dir, details=False) -> tuple[dict, list]:
        return states(job_ids)

    def dependency_args(self, kind: str, job_ids: list[str]) -> list[str]:
        return ["-W", f"depend={kind}:{':'.join(_qstat_ids(job_ids))}"]

    def submit_followup(self, script, after, name, resources, exp_dir) -> str:
        argv = ["qsub", *self.dependency_args("afterany", after), "-N", name[:230]]
        if flavor(resources) == "torque":
            argv += ["-l", "nodes=1:ppn=1", "-l", "mem=2gb"]
        else:
            argv += ["-l", "select=1:ncpus=1:mem=2gb"]
        argv += ["-l", "walltime=00:15:00", "-j", "oe"]
        argv += ["-o", f"{exp_dir / 'logs'}/"]
        if resources.get("partition"):
            argv += ["-q", resources["partition"]]
        if resources.get("account"):
            argv += ["-A", resources["account"]]
        out = run_command([*argv, str(script)], timeout=60, cwd=exp_dir / "logs").stdout
        return parse_job_id(out)

    def cancel(self, job_ids, exp_dir) -> list[str]:
        ids = _qstat_ids(job_ids)
        if ids:
            run_command(["qdel", "--", *ids], timeout=60, check=False)
        return [i.replace("[]", "") for i in ids]

    def efficiency(self, job_ids, exp_dir) -> dict:
        return efficiency(job_ids)

    def doctor_checks(self, spec) -> list[Check]:
        return doctor_checks(spec)
