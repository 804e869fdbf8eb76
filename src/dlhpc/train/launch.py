"""Start N DDP ranks on this machine (what torchrun does, without needing it on PATH)."""

import os
import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, trial_dir):
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    from dlhpc.train.loop import train_trial

    train_trial(trial_dir)
    # The run is complete and its files written: skip the interpreter's teardown, where threads
    # of the distributed backend's C++ objects can still abort a finished rank (SIGABRT, "terminate
    # called without an active exception"), which the launcher would report as a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_local(trial_dir: str, nproc: int = 1) -> None:
    if nproc <= 1 or "RANK" in os.environ:
        from dlhpc.train.loop import train_trial

        train_trial(trial_dir)
        return
    import torch.multiprocessing as mp

    # Each rank gets an equal share of this machine's threads.
    threads = max(1, int(os.environ.get("DLHPC_CPUS_PER_TASK") or os.cpu_count() or 1))
    os.environ["DLHPC_CPUS_PER_TASK"] = str(threads)
    mp.start_processes(_worker, args=(nproc, free_port(), trial_dir), nprocs=nproc, join=True, start_method="spawn")
