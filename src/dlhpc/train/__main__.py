"""`python -m dlhpc.train [--nproc N] TRIAL_DIR`: run one trial here, on N local processes.

Used by `dlhpc run` and the local job template; works under torchrun too (it sets RANK etc.).
"""

import argparse
import sys

from dlhpc.train.launch import run_local


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dlhpc.train", description=__doc__)
    parser.add_argument("--nproc", type=int, default=1, help="DDP processes on this machine")
    parser.add_argument("trial_dir")
    args = parser.parse_args(argv)
    run_local(args.trial_dir, args.nproc)


if __name__ == "__main__":
    sys.exit(main())
