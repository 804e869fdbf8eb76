"""Start the DDP ranks of a PBS job: `tasks_per_node` ranks on every node of $PBS_NODEFILE.

    python -m dlhpc.schedulers.pbs_launch --tasks-per-node N -- COMMAND...

PBS has no srun: the batch script runs on the first node only. Ranks on that node are local
child processes; ranks on the other nodes start through the PBS task manager (pbs_tmrsh on
OpenPBS/PBS Pro, pbsdsh on Torque), else ssh. Each rank gets its identity in DLHPC_PBS_*
variables, which PBSJobEnvironment reads; rendezvous is on the first node (dist.py).
Without $PBS_NODEFILE (PBS-on-SLURM wrappers, or a single-node job) the job is this node.
"""

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time


def node_list() -> list[str]:
    path = os.environ.get("PBS_NODEFILE")
    if path and os.path.isfile(path):
        hosts = []
        with open(path) as f:
            for line in f:
                host = line.strip()
                if host and host not in hosts:
                    hosts.append(host)  # the file lists a host once per core: keep order, drop repeats
        if hosts:
            return hosts
    return [socket.gethostname()]


def job_id() -> str:
    """Base id, plus _<index> for an array element (the id dlhpc recorded at submission)."""
    raw = os.environ.get("PBS_JOBID") or os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "0")
    base = raw.split(".")[0].split("[")[0]
    index = os.environ.get("PBS_ARRAY_INDEX") or os.environ.get("PBS_ARRAYID") or os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{base}_{index}" if index not in (None, "") else base


REMOTE_LAUNCHERS = ("pbs_tmrsh", "pbsdsh", "ssh")


def remote_launcher() -> str:
    """How ranks start on the other nodes: the PBS task manager where it is on PATH (pbs_tmrsh
    on OpenPBS/PBS Pro, pbsdsh on Torque), else ssh; a site can choose with DLHPC_PBS_REMOTE."""
    chosen = os.environ.get("DLHPC_PBS_REMOTE")
    if chosen in REMOTE_LAUNCHERS:
        return chosen
    return next((name for name in REMOTE_LAUNCHERS[:2] if shutil.which(name)), "ssh")


def remote_start(host: str, node_index: int, rank_env: dict, command: list[str]) -> subprocess.Popen:
    """Start one rank on another node, in this directory, with its identity in the environment."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in rank_env.items())
    remote = f"cd {shlex.quote(os.getcwd())} && exec env {exports} {shlex.join(command)}"
    launcher = remote_launcher()
    if launcher == "pbs_tmrsh":  # the task manager runs argv as given: no shell parses it again
        return subprocess.Popen(["pbs_tmrsh", host, "bash", "-c", remote])
    if launcher == "pbsdsh":
        return subprocess.Popen(["pbsdsh", "-n", str(node_index), "--", "bash", "-c", remote])
    # ssh joins its arguments into one line for the remote shell: hand it one quoted line. Killing
    # the local ssh does not stop the remote rank, so the rank is tied to ssh's stdin: when the
    # launcher or its ssh ends, the pipe closes and the remote side stops the rank (no orphans).
    # (fd 3: a background job's stdin would be /dev/null; the watcher holds no output of the
    # session, so ssh returns as soon as the rank ends)
    tied = (
        f"exec 3<&0; {remote} & rank=$!; (cat <&3; kill -TERM $rank) >/dev/null 2>&1 & watch=$!; exec 3<&-; "
        "wait $rank; code=$?; kill $watch 2>/dev/null; exit $code"
    )
    argv = ["ssh", "-o", "BatchMode=yes", host, shlex.join(["bash", "-c", tied])]
    return subprocess.Popen(argv, stdin=subprocess.PIPE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlhpc.schedulers.pbs_launch")
    parser.add_argument("--tasks-per-node", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=0, help="use the first N hosts (default: all of $PBS_NODEFILE)")
    parser.add_argument("--walltime", default="", help="the job's walltime (HH:MM:SS), for the warning signal")
    parser.add_argument("--signal-margin", type=int, default=0, help="send USR2 this many seconds before the walltime")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    hosts, per_node = node_list(), max(1, args.tasks_per_node)
    hosts = hosts[: args.nodes] if args.nodes > 0 else hosts
    world = len(hosts) * per_node
    common = {
        "SUBMITIT_EXECUTOR": "pbs",
        "DLHPC_PBS_JOB_ID": job_id(),
        "DLHPC_PBS_NUM_TASKS": str(world),
        "DLHPC_PBS_NUM_NODES": str(len(hosts)),
        "DLHPC_PBS_NODELIST": ",".join(hosts),
        # one id per launch: a rerun job keeps its PBS id, and must not meet its earlier run's ranks
        "DLHPC_LAUNCH_ID": f"{os.getpid()}-{time.time_ns()}",
    }
    procs = []
    for node_index, host in enumerate(hosts):
        for local in range(per_node):
            rank_env = {
                **common,
                "DLHPC_PBS_NODE_RANK": str(node_index),
                "DLHPC_PBS_RANK": str(node_index * per_node + local),
                "DLHPC_PBS_LOCAL_RANK": str(local),
            }
            if node_index == 0:
                procs.append(subprocess.Popen(command, env={**os.environ, **rank_env}))
            else:
                procs.append(remote_start(host, node_index, rank_env, command))

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
        signal.signal(sig, forward)

    def warn():
        # only the ranks on this node (a task-manager client may die of USR2); rank 0 is here,
        # and it checkpoints and requeues the whole job
        for p in procs[:per_node]:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR2)

    warn_at = warning_delay(args.walltime, args.signal_margin)
    if warn_at is not None:
        timer = threading.Timer(warn_at, warn)
        timer.daemon = True
        timer.start()
    return wait_all(procs)


def warning_delay(walltime: str, margin: int) -> float | None:
    """Seconds from now until the warning signal: margin before the walltime (at least 1)."""
    if not walltime or margin <= 0:
        return None
    from dlhpc.spec.schema import parse_time

    return max(1.0, parse_time(walltime) - margin)


def wait_all(procs, poll_s: float = 0.2) -> int:
    """Like srun --kill-on-bad-exit: when one rank fails, stop the others (they would wait in a
    collective until the walltime) and return the failure's exit code."""
    while True:
        codes = [p.poll() for p in procs]
        failed = next((c for c in codes if c not in (None, 0)), None)
        if failed is not None:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
            return failed
        if all(c == 0 for c in codes):
            return 0
        time.sleep(poll_s)


if __name__ == "__main__":
    sys.exit(main())
