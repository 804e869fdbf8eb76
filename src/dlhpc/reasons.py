"""Why a job waits or ended, as codes every backend maps its scheduler's words onto.

A backend's states() row carries `reason_code` (a Reason) beside the scheduler's own words; `why`
and `status` say the reason's fix, filled in with the backend's own commands (Backend.release_
command), so they hold no scheduler knowledge and no rewording of a scheduler message breaks them.
"""

from enum import Enum


class Reason(str, Enum):
    # waiting
    JUST_SUBMITTED = "just-submitted"
    QUEUED = "queued"  # behind other jobs, or for nodes to free up
    LIMIT = "limit"  # a QOS, account or user limit on running jobs
    ARRAY_THROTTLE = "array-throttle"
    NODES_UNAVAILABLE = "nodes-unavailable"
    PARTITION_DOWN = "partition-down"
    DEPENDENCY = "dependency"
    DEPENDENCY_NEVER = "dependency-never"
    BEGIN_TIME = "begin-time"
    RESERVATION = "reservation"
    HELD_BY_USER = "held-by-user"
    HELD_BY_ADMIN = "held-by-admin"
    TIME_OVER_LIMIT = "time-over-limit"
    NODES_OVER_LIMIT = "nodes-over-limit"
    # ended
    OUT_OF_MEMORY = "out-of-memory"
    NODE_FAIL = "node-fail"
    PREEMPTED = "preempted"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    NO_SPACE = "no-space"  # the file system (or the user's quota) was full


# The fix for each reason. {release} is the backend's command that releases a held job.
FIXES = {
    Reason.JUST_SUBMITTED: "nothing to do: the scheduler has not looked at it yet",
    Reason.QUEUED: "wait, or ask for less (fewer nodes or GPUs, less time) to start sooner",
    Reason.LIMIT: "wait for your other jobs to finish, or submit fewer at once",
    Reason.ARRAY_THROTTLE: "nothing to do: resources.array_parallelism caps how many trials run at once",
    Reason.NODES_UNAVAILABLE: "pick another partition (resources.partition), or wait for the nodes",
    Reason.PARTITION_DOWN: "pick another partition (resources.partition), or ask the admins",
    Reason.DEPENDENCY: "nothing to do: it starts when those jobs end",
    Reason.DEPENDENCY_NEVER: "dlhpc cancel EXP, then submit again without that dependency",
    Reason.BEGIN_TIME: "nothing to do: it starts at its begin time",
    Reason.RESERVATION: "nothing to do: it starts with its reservation",
    Reason.HELD_BY_USER: "release it: {release}",
    Reason.HELD_BY_ADMIN: "ask the cluster's admins why they hold it",
    Reason.TIME_OVER_LIMIT: "lower resources.time",
    Reason.NODES_OVER_LIMIT: "lower resources.nodes",
    Reason.OUT_OF_MEMORY: "raise resources.mem (e.g. --set resources.mem=8G), or fewer ranks per node",
    Reason.NODE_FAIL: "submit again: it resumes from its checkpoint",
    Reason.PREEMPTED: "submit again: it resumes from its checkpoint",
    Reason.TIMEOUT: "raise resources.time, or resources.timeout_requeues to go on from the checkpoint",
    Reason.CANCELLED: "submit again if that was not meant",
    Reason.NO_SPACE: (
        "free space there (or ask for more quota: see `quota` or the site's docs), then "
        "dlhpc resubmit EXP --failed: it resumes from the last checkpoint, which was kept whole"
    ),
}
DEFAULT_PENDING_FIX = "wait, or ask for less (fewer nodes or GPUs, less time)"


def parse(value) -> Reason | None:
    try:
        return Reason(value) if value else None
    except ValueError:
        return None


def fix(reason, job_id, backend) -> str:
    """The fix for a reason code, with the backend's commands for this job filled in."""
    code = parse(reason)
    if code is None:
        return DEFAULT_PENDING_FIX
    return FIXES[code].format(release=backend.release_command(str(job_id or "JOBID")))
