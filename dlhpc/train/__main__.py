"""`python -m dlhpc.train [--nproc N] TRIAL_DIR`: run one trial here, on N local processes.

Used by `dlhpc run` and the local job template; works under torchrun too (it sets RANK etc.).
"""

import argparse
import os
import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, trial_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from dlhpc.train.loop import train_trial

    train_trial(trial_dir)


def run_local(trial_dir: str, nproc: int = 1) -> None:
    if nproc <= 1 or "RANK" in os.environ:
        from dlhpc.train.loop import train_trial

        train_trial(trial_dir)
        return
    import torch.multiprocessing as mp

    mp.start_processes(_worker, args=(nproc, free_port(), trial_dir), nprocs=nproc, join=True, start_method="spawn")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dlhpc.train", description=__doc__)
    parser.add_argument("--nproc", type=int, default=1, help="DDP processes on this machine")
    parser.add_argument("trial_dir")
    args = parser.parse_args(argv)
    run_local(args.trial_dir, args.nproc)


if __name__ == "__main__":
    sys.exit(main())
