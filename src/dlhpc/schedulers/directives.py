"""Scheduler directives dlhpc writes itself, which `resources.extra` may not add again.

A directive later in a batch script wins over an earlier one, and extra's lines come after
dlhpc's: `extra: {partition: bigmem, account: other}` would quietly undo the spec's checked
resources and the site policy. Each name here is what a spec sets through its own key (named in
the message). Kept apart from the backend modules so that validating a spec imports none of them.
"""

# name in extra → the spec key that sets it (SLURM long and short options, PBS flags)
RESERVED = {
    "slurm": {
        **dict.fromkeys(("partition", "p"), "resources.partition"),
        **dict.fromkeys(("account", "A"), "resources.account"),
        **dict.fromkeys(("qos", "q"), "resources.qos"),
        **dict.fromkeys(("constraint", "C"), "resources.constraint"),
        "reservation": "resources.reservation",
        **dict.fromkeys(("exclude", "x"), "resources.exclude"),
        **dict.fromkeys(("nodes", "N"), "resources.nodes"),
        **dict.fromkeys(("ntasks", "n", "ntasks-per-node", "tasks-per-node"), "resources.tasks_per_node"),
        **dict.fromkeys(("cpus-per-task", "c", "cpus-per-gpu", "mincpus"), "resources.cpus_per_task"),
        **dict.fromkeys(("mem", "mem-per-cpu", "mem-per-gpu"), "resources.mem"),
        **dict.fromkeys(("time", "t", "time-min"), "resources.time"),
        **dict.fromkeys(
            ("gres", "gpus", "G", "gpus-per-node", "gpus-per-task", "gpus-per-socket", "tres-per-task"),
            "resources.gpus_per_node",
        ),
        **dict.fromkeys(("array", "a"), "sweep (and resources.array_parallelism)"),
        **dict.fromkeys(("job-name", "J"), "name"),
        **dict.fromkeys(("output", "o", "error", "e", "open-mode", "chdir", "D"), "runs_dir"),
        **dict.fromkeys(("signal", "requeue", "no-requeue"), "resources.signal_margin_s"),
        **dict.fromkeys(("dependency", "d"), "dlhpc submit --after"),
        **dict.fromkeys(("clusters", "M", "cluster"), "the site file (a cluster per site)"),
        "comment": "nothing: dlhpc tags its jobs with it (dlhpc usage)",
        "uid": "nothing: jobs run as you",
        "gid": "nothing: jobs run as you",
    },
    "pbs": {
        "A": "resources.account",
        "q": "resources.partition (or resources.reservation)",
        "N": "name",
        "J": "sweep (and resources.array_parallelism)",
        "o": "runs_dir",
        "e": "runs_dir",
        "j": "runs_dir",
        "r": "resources.timeout_requeues",
    },
}

# PBS's `-l` carries many things; these resources are the spec's own.
PBS_RESOURCES = {
    "select": "resources.nodes",
    "nodes": "resources.nodes",
    "ncpus": "resources.cpus_per_task",
    "mpiprocs": "resources.tasks_per_node",
    "ngpus": "resources.gpus_per_node",
    "gpus": "resources.gpus_per_node",
    "mem": "resources.mem",
    "vmem": "resources.mem",
    "walltime": "resources.time",
    "place": "resources.nodes",
}


def reserved_use(key: str, value) -> str | None:
    """The spec key to use instead, if `extra: {key: value}` would set what dlhpc sets itself."""
    for scheduler in RESERVED:
        if key in RESERVED[scheduler]:
            return RESERVED[scheduler][key]
    if key in ("l", "W") and isinstance(value, str):
        for part in value.replace(":", ",").split(","):
            name = part.split("=", 1)[0].strip()
            if key == "l" and name in PBS_RESOURCES:
                return PBS_RESOURCES[name]
            if key == "W" and name in ("depend", "group_list", "sandbox"):
                return "dlhpc submit --after" if name == "depend" else "nothing: jobs run as you, in the experiment"
    return None
