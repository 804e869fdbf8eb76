"""`python -m dlhpc.train TRIAL_DIR`: the built-in trainer, one rank of a trial.

dlhpc's runner (node/runner.py) starts it on every rank with the torchrun contract, exactly as it
starts a user's script; torchrun can start it too. `--nproc N` starts N ranks on this machine
through the runner.
"""

import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dlhpc.train", description=__doc__)
    parser.add_argument("--nproc", type=int, default=1, help="DDP processes on this machine (through the runner)")
    parser.add_argument("trial_dir")
    args = parser.parse_args(argv)
    if args.nproc > 1 and "RANK" not in os.environ:
        from dlhpc.node.__main__ import main as run_here

        return run_here(["--nproc", str(args.nproc), args.trial_dir])
    from dlhpc.fsutil import NO_SPACE_ERRNOS
    from dlhpc.train.loop import train_trial

    try:
        train_trial(args.trial_dir)
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS:
            raise
        # one line, not a traceback: the files written are whole (each write is atomic), the last
        # checkpoint among them; `why` reads this line
        print(f"dlhpc: {exc}; the last checkpoint is kept: free space, then resubmit to resume", file=sys.stderr)
        return 1
    # The run is complete and its files written: skip the interpreter's teardown, where threads
    # of the distributed backend's C++ objects can still abort a finished rank (SIGABRT, "terminate
    # called without an active exception"), which the runner would report as a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
