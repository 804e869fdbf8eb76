"""What each job task runs on the compute node: `python -m dlhpc.schedulers.job_entry FOLDER`.

submitit's own entry (`submitit.core._submit`) unpickles whatever `FOLDER/<job>_submitted.pkl`
holds. In a project folder others can write, that would run their code as you; so first the
experiment folder, the submitit folder and the pickle must be the job user's own and writable by
nobody else (trust.require_own_file). Then submitit's entry runs as usual.
"""

import os
import sys
import time
from pathlib import Path

from dlhpc.node.job import hold_early_signals
from dlhpc.trust import UntrustedFile, require_own_file

PICKLE_WAIT_S = 60  # as submitit: the submitting side may still be moving the pickle into place


def main(argv=None) -> int:
    hold_early_signals()  # a time-limit warning while this process starts must not end it
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]).absolute()
    os.environ["SUBMITIT_FOLDER"] = str(folder)
    from submitit.core import job_environment

    pickle = job_environment.JobEnvironment().paths.submitted_pickle
    deadline = time.monotonic() + PICKLE_WAIT_S
    while not pickle.exists() and time.monotonic() < deadline:
        time.sleep(1)
    try:
        require_own_file(folder.parent, "experiment folder")
        require_own_file(folder, "job folder")
        require_own_file(pickle, "job pickle")
    except UntrustedFile as exc:
        print(f"dlhpc: refused to start the trial: {exc}", file=sys.stderr)
        return 3
    from submitit.core.submission import submitit_main

    sys.argv = [sys.argv[0], str(folder)]
    submitit_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
