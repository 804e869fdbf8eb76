"""`python -m dlhpc.node [--nproc N] TRIAL_DIR`: run a trial's program here.

The job scripts start it once per rank where a launcher (srun inside an allocation, pbs_launch)
starts the ranks, and once per machine with --nproc where dlhpc starts them itself (the local
scheduler, `dlhpc run`). Exit code: 0 when every rank exited 0.
"""

import argparse
import sys
from pathlib import Path

from dlhpc.node.identity import detect
from dlhpc.node.runner import TrialFailed, run_trial
from dlhpc.spec.search import AGENT_FILE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlhpc.node", description=__doc__)
    parser.add_argument("--nproc", type=int, default=1, help="ranks to start on this machine")
    parser.add_argument("trial_dir")
    args = parser.parse_args(argv)
    folder = Path(args.trial_dir)
    if (folder / AGENT_FILE).is_file():  # a search's agent (the local scheduler): trials from its study
        from dlhpc.search.agent import SearchAgent

        SearchAgent(folder.parent, folder.name).work(detect(args.nproc))
        return 0
    try:
        code = run_trial(args.trial_dir, detect(args.nproc))
    except TrialFailed as exc:
        print(f"dlhpc: trial failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
