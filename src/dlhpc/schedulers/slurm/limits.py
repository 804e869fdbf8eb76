"""SLURM's limits and checks before a submission: scontrol's configuration and partitions,
association and QOS submit limits (sacctmgr), sbatch --test-only."""

import re
import shutil
import uuid
from pathlib import Path

from dlhpc.errors import CommandError, DlhpcError
from dlhpc.schedulers.reservations import problems as reservation_problems
from dlhpc.shell import run_command
from dlhpc.spec.schema import parse_time


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
    """Refuse what SLURM would refuse later: unknown partition, walltime above its limit, a
    reservation the job cannot run in."""
    problems, parts = [], partitions()
    for script in plan.scripts:
        res = script.data["resources"]  # a script's trials share their resources (its walltime: all of theirs)
        if res.get("reservation"):
            problems += reservation_problems(res, reservations())
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


def job_limits(res: dict) -> list[tuple[int, int, str]]:
    """job_limits_now, asked once per command (submit's packing choice and its preflight share it)."""
    from dlhpc.schedulers import backend

    return backend("slurm").asked(f"job_limits:{res.get('account')}:{res.get('qos')}", lambda: job_limits_now(res))


# squeue's words for a job that has ended (still listed until slurmctld purges it): it counts
# against MaxJobCount, but not against the limits on a user's submitted jobs
ENDED = frozenset(
    {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
    | {"OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}
)


def job_limits_now(res: dict) -> list[tuple[int, int, str]]:
    """Limits on the number of jobs in the system, as (limit, jobs already counted against it,
    what it is): MaxJobCount, and where accounting is on, the user's association and QOS limits
    on submitted jobs (MaxSubmitJobs, GrpSubmitJobs, MaxSubmitJobsPerUser). Every array task
    counts as a job; against MaxJobCount, so does every job that ended and slurmctld has not yet
    purged (MinJobAge after its end): a sweep cancelled a minute ago still takes room. One squeue
    and two sacctmgr calls."""
    import getpass

    user, limits = getpass.getuser(), []
    command = ["squeue", "-h", "-r", "--states=all", "-o", "%i|%u|%T"]
    records = [line.split("|") for line in run_command(command, timeout=20).stdout.splitlines()]
    mine = sum(1 for r in records if len(r) == 3 and r[1] == user and r[2] not in ENDED)
    max_jobs = _limit(config().get("MaxJobCount", ""))
    if max_jobs is not None:
        what = "the cluster holds at most {limit:,} jobs (MaxJobCount) and has {used:,}"
        limits.append((max_jobs, len(records), what))
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


def reservations():
    """reservations_now, asked once per command."""
    from dlhpc.schedulers import backend

    return backend("slurm").asked("reservations", reservations_now)


def reservations_now() -> list:
    """Every reservation `scontrol show reservation` lists (times are the controller's local time)."""
    from dlhpc.schedulers.reservations import Reservation

    try:
        out = run_command(["scontrol", "show", "reservation", "-o"], timeout=20, check=False).stdout
    except CommandError:
        return []
    found = []
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "ReservationName" not in fields:
            continue
        found.append(
            Reservation(
                name=fields["ReservationName"],
                state=fields.get("State", "?"),
                usable=fields.get("State") in ("ACTIVE", "INACTIVE"),
                start=_local_time(fields.get("StartTime")),
                end=_local_time(fields.get("EndTime")),
                users=_listed(fields.get("Users")),
                accounts=_listed(fields.get("Accounts")),
            )
        )
    return found


def _listed(value: str | None) -> list[str]:
    return [] if value in (None, "", "(null)") else value.split(",")


def _local_time(value: str | None) -> float:
    import time

    try:
        return time.mktime(time.strptime(value or "", "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return float("inf")  # "Unknown", or a year past what this machine counts: no limit we can read


# node states (sinfo %t, the short form, "*" for not responding) in which no job starts
_NOT_USABLE = ("down", "drain", "drng", "fail", "maint", "unk", "npc", "pow", "boot", "resv", "futr", "inval")


def usable_nodes(partition: str | None) -> list[str] | None:
    """The partition's nodes (every partition's when None) that could take a job now, from
    one `sinfo` call; None when sinfo does not answer."""
    command = ["sinfo", "-h", "-N", "-o", "%N %t"] + (["-p", partition] if partition else [])
    try:
        out = run_command(command, timeout=20, check=True).stdout
    except (CommandError, DlhpcError):
        return None
    nodes = []
    for line in out.splitlines():
        name, _, state = line.strip().partition(" ")
        if name and not state.endswith("*") and not state.startswith(_NOT_USABLE) and name not in nodes:
            nodes.append(name)
    return nodes


def start_estimates(resources: dict, partitions: list[str]) -> dict:
    """{partition: (expected start as a Unix time, or None when it cannot run there; SLURM's words)}
    from one `sbatch --test-only` per partition with the job group's resources (nothing queued)."""
    from datetime import datetime

    argv = ["sbatch", "--test-only", f"--nodes={resources.get('nodes') or 1}"]
    argv += [f"--ntasks-per-node={resources.get('tasks_per_node') or 1}"]
    argv += [f"--cpus-per-task={resources.get('cpus_per_task') or 1}", f"--time={resources['time']}"]
    if resources.get("mem"):
        argv.append(f"--mem={resources['mem']}")
    if resources.get("gpus_per_node"):
        argv.append(f"--gpus-per-node={resources['gpus_per_node']}")
    for key in ("account", "qos", "constraint", "reservation"):
        if resources.get(key):
            argv.append(f"--{key}={resources[key]}")
    if resources.get("exclude"):
        argv.append(f"--exclude={','.join(resources['exclude'])}")
    out = {}
    for name in partitions:
        proc = run_command([*argv, f"--partition={name}", "--wrap=true"], timeout=30, check=False)
        words = " ".join((proc.stdout + proc.stderr).split())
        found = re.search(r"to start at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", words)
        when = datetime.fromisoformat(found.group(1)).timestamp() if proc.returncode == 0 and found else None
        words = re.sub(r"^(sbatch: )?(Job \d+ )?", "", words)[:200]  # (the number of a job never queued)
        out[name] = (when, words or f"sbatch --test-only exited {proc.returncode}")
    return out
