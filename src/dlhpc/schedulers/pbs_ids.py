"""The job id in what qsub prints: shared by the backend (follow-up jobs) and the submitit
executor (arrays), so neither imports the other."""

import re

from dlhpc.errors import DlhpcError

_JOB_ID = re.compile(r"^\s*(\d+)(\[\])?(\.[^\s]+)?\s*$", re.MULTILINE)


def parse_job_id(output: str) -> str:
    """qsub prints '123.server' (OpenPBS/Torque), '123[].server' for arrays, or '123' (wrappers)."""
    m = _JOB_ID.search(output or "")
    if not m:
        raise DlhpcError(
            f"qsub printed something dlhpc cannot read (expected a job id like 123.server):\n{(output or '').strip()}"
        )
    return m.group(1)


# ---- the dlhpc verbs --------------------------------------------------------------------------
