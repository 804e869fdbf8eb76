"""Keep training off login nodes by accident.

Training "here" means the local backend outside any allocation or batch job. Where the site
file names a cluster scheduler, that is refused with the fix, unless the site allows it
(`site.allow_login_node_runs`) or the user says so (`--here`). Where there is no site file
but a scheduler's commands are on PATH, one line of warning, and on: a laptop or CI machine
with a scheduler installed must keep working.
"""

import sys

from dlhpc.errors import UserError
from dlhpc.schedulers import NAMES, backend


def inside_allocation() -> str | None:
    """The scheduler whose job or allocation this process runs in, if any."""
    return next((name for name in NAMES if backend(name).inside_allocation()), None)


def check_training_here(spec, here: bool, command: str) -> None:
    if not backend(spec.data["resources"]["scheduler"]).runs_here or here or inside_allocation():
        return
    site_sched = (spec.site_defaults.get("resources") or {}).get("scheduler")
    if site_sched and not backend(site_sched).runs_here:
        if spec.site.get("allow_login_node_runs"):
            return
        origin = spec.site_origins.get(("resources", "scheduler"))
        raise UserError(
            f"this is a login node of a {site_sched} cluster ({origin or spec.site_file} sets resources.scheduler: "
            f"{site_sched}): `dlhpc {command}` would train here, on a machine everybody shares. Fix: "
            f"`dlhpc submit SPEC` (add --scheduler {site_sched} if the spec pins another) to train on the compute "
            f"nodes, or run inside an allocation (salloc), or pass --here if you really mean this machine"
        )
    if spec.site_file is None:
        clusters = [name for name in NAMES if not backend(name).runs_here and backend(name).available()]
        if clusters:
            print(
                f"dlhpc: note: {', '.join(clusters)} commands are on PATH but no site file says so: training "
                f"on this machine; `dlhpc submit --scheduler {clusters[0]}` would use the cluster",
                file=sys.stderr,
            )
