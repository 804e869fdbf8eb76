"""`python -m dlhpc.node.launch --nodes N --tasks-per-node T TRIAL_DIR`: what the local template
runs (`dlhpc run`, the local scheduler). Inside a scheduler's allocation (salloc, qsub -I, a
batch job) the ranks go to its nodes the way that scheduler's jobs start them (each backend's
`launch_in_allocation`); anywhere else every rank runs on this machine. The scheduler knowledge
stays in the backends: the template has no branch of its own.
"""

import argparse
import os
import sys


def command(nodes: int, tasks_per_node: int, trial_dir: str) -> tuple[list[str], dict]:
    from dlhpc.schedulers import NAMES, backend

    per_rank = [sys.executable, "-u", "-m", "dlhpc.node", trial_dir]
    for name in NAMES:
        launch = backend(name).launch_in_allocation(nodes, tasks_per_node, per_rank)
        if launch is not None:
            return launch
    return [sys.executable, "-u", "-m", "dlhpc.node", "--nproc", str(nodes * tasks_per_node), trial_dir], {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlhpc.node.launch", description=__doc__)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--tasks-per-node", type=int, default=1)
    parser.add_argument("trial_dir")
    args = parser.parse_args(argv)
    argv, extra = command(args.nodes, args.tasks_per_node, args.trial_dir)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, {**os.environ, **extra})  # (the launcher takes this process's place: signals reach it)


if __name__ == "__main__":
    sys.exit(main())
