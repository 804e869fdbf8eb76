"""resources.partition as a list: at each submission (and each resubmission or retry) the job
group goes to the listed partition (PBS: queue) whose start the scheduler promises first —
`sbatch --test-only` on SLURM, the queue's limits, the jobs queued in it and the free nodes on PBS
(schedulers' start_estimates) — within the site policy's allowed partitions (checked at load,
each name). The choice and every estimate are said and kept in experiment.json's
`partition_choice`. (SLURM's own comma-separated form, `partition: "a,b"`, is left to SLURM,
which starts the job wherever it can first while it waits.)"""

import time

from dlhpc.errors import UserError


def choose(names: list, resources: dict, sched, say=print) -> dict | None:
    """{asked, estimates: {name: words}, chosen, at} for a list of two or more names, with the
    chosen one; None for one name or a scheduler that runs here. UserError when none can take it."""
    if len(names) < 2 or sched.runs_here:
        return None
    estimates = sched.start_estimates(resources, names)
    if estimates is None:
        raise UserError(
            f"resources.partition lists {', '.join(names)}, but {sched.name} cannot say which would start the job "
            "first; give one partition"
        )
    usable = [n for n in names if estimates[n][0] is not None]
    if not usable:
        said = "; ".join(f"{n}: {estimates[n][1]}" for n in names)
        raise UserError(
            f"none of resources.partition's {', '.join(names)} can take the job ({said}); fix it or list others"
        )
    chosen = min(usable, key=lambda n: (estimates[n][0], names.index(n)))  # (ties: the order given)
    say(f"partition: {chosen}, the earliest start of {', '.join(names)}")
    for name in names:
        say(f"  {name}: {estimates[name][1]}")
    return {
        "asked": list(names),
        "estimates": {n: words for n, (_, words) in estimates.items()},
        "chosen": chosen,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
