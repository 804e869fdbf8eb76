"""Before submitting: the server's and queues' limits (qstat -B/-Q), the nodes (pbsnodes), the
reservations, and the spec's PBS options and template filters (walltime, memory, flavour)."""

import json
import re
import time

from dlhpc.errors import CommandError, UserError
from dlhpc.schedulers.pbs.queue import pbs_megabytes
from dlhpc.schedulers.pbs_ids import parse_job_id  # noqa: F401 - also pbs.parse_job_id
from dlhpc.shell import run_command
from dlhpc.spec.schema import mem_megabytes, parse_time


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
        elif key == "state_count":  # Transit:0 Queued:2 Held:0 Waiting:0 Running:1 ...
            counts = dict(item.split(":", 1) for item in value.split() if ":" in item)
            current["queued"] = int(counts.get("Queued", "0") or 0)
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
                "mem_mb": pbs_megabytes(avail.get("mem")),
                "ngpus": int(avail.get("ngpus") or 0),
                "state": node.get("state", ""),
            }
        )
    return found


def hosts_besides_excluded(res: dict) -> list[str]:
    """For resources.exclude: the first `nodes` usable hosts (pbsnodes) that are not excluded, one
    per chunk of the select (OpenPBS cannot exclude a host, only name the ones to use)."""

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
    """Whether `nodes` nodes of the cluster can each hold one chunk of the job. A node down or
    unknown counts (PBS holds the job until it is back: a mom restarting, a node rebooting, a
    retry queued right after a node was lost); one an admin set offline does not."""
    usable = [n for n in sizes if "offline" not in n["state"]]
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


def start_estimates(res: dict, names: list[str]) -> dict:
    """{queue: (a rank by when it could start: now, or later the more jobs wait in it; None where
    the queue cannot take the job), words}. PBS promises no start time: a queue whose job could
    start now (no job queued in it, enough free nodes that fit a chunk) comes first."""
    import time

    found, sizes = queues(), nodes() or []
    want = chunk(res)
    free = [
        n
        for n in sizes
        if n["state"] == "free"
        and n["ncpus"] >= want["ncpus"]
        and n["ngpus"] >= want["ngpus"]
        and (n["mem_mb"] is None or n["mem_mb"] >= want["mem_mb"])
    ]
    now, out = time.time(), {}
    for name in names:
        problems = queue_problems({**res, "partition": name}, found)
        if problems:
            out[name] = (None, problems[0])
            continue
        ahead = int(found.get(name, {}).get("queued") or 0)
        if ahead == 0 and len(free) >= int(res.get("nodes") or 1):
            out[name] = (now, f"can start now: no job queued, {len(free)} free node(s) fit")
        else:
            out[name] = (now + 1 + ahead, f"later: {ahead} job(s) queued, {len(free)} free node(s) fit")
    return out
