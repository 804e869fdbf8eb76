"""`dlhpc doctor` on a PBS login node: commands, the server, the queue, whether a chunk fits."""

from dlhpc.errors import CommandError
from dlhpc.schedulers.base import Check, commands_missing
from dlhpc.schedulers.pbs.limits import fit_problems, nodes, queue_problems, queues, server_limits
from dlhpc.schedulers.pbs_ids import parse_job_id  # noqa: F401 - also pbs.parse_job_id
from dlhpc.shell import run_command


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
