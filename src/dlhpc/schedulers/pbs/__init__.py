"""PBS (OpenPBS / PBS Pro and Torque): the dlhpc backend. Jobs are submitted through the
submitit plugin in pbs_submitit.py and their ranks started by pbs_launch.py.

Job ids: dlhpc records `<base>` for a single job and `<base>_<index>` for array elements, the
same shape as SLURM's; pbs_launch computes the same id inside the job, so submitit finds each
element's pickle.
By concern: limits.py (before submitting), queue.py (states, accounting), doctor.py, backend.py
(the Backend).
"""

from dlhpc.schedulers.pbs.backend import PBSBackend
from dlhpc.schedulers.pbs.limits import server_limits, submission_limits
from dlhpc.schedulers.pbs.queue import efficiency, exit_reason, map_state, reason_code, states
from dlhpc.schedulers.pbs_ids import parse_job_id

__all__ = [
    "PBSBackend",
    "efficiency",
    "exit_reason",
    "map_state",
    "parse_job_id",
    "reason_code",
    "server_limits",
    "states",
    "submission_limits",
]
