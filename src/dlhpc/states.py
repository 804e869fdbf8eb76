"""The states of a trial and its job, which every backend maps its scheduler's words onto (with
a reason code, reasons.py, for the why), and the groups the commands need. One place, so status,
summary and logs agree on "finished"."""

from dataclasses import dataclass
from enum import Enum

from dlhpc.reasons import Reason


class State(str, Enum):
    """A trial's or job's state. A str, so records and JSON hold the plain word."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    REQUEUED = "REQUEUED"
    PRUNED = "PRUNED"  # a search stopped it early: its metric was behind the others' (search/agent.py)
    STALLED = "STALLED"  # running, but no epoch ended for far longer than its epochs take (node/stall.py)
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value


STATES = tuple(s.value for s in State)
FINISHED = frozenset({State.COMPLETED, State.PRUNED, State.FAILED, State.CANCELLED, State.TIMEOUT})  # terminal
BAD = FINISHED - {State.COMPLETED, State.PRUNED}  # a trial in one of these makes summary/status exit 1
# the scheduler has the job
IN_FLIGHT = frozenset({State.PENDING, State.RUNNING, State.REQUEUED, State.PREEMPTED, State.STALLED})


@dataclass
class JobStatus:
    """What a backend's states() says about one job, the same fields whatever the scheduler (as
    Parsl's JobStatus): generic code reads these and never a scheduler's own columns."""

    state: State
    reason_code: Reason | None = None  # why it waits or ended; its fix is in reasons.FIXES
    reason: str = ""  # why it ended badly, in words (shown as a flag)
    pending_reason: str = ""  # why it waits, in plain words
    exit_code: int | None = None
    signal: int | None = None
    nodes: str = ""  # where it ran, in the scheduler's notation
    raw_state: str = ""  # the scheduler's own word, for a user who knows it
    submit: str | None = None  # times as the scheduler printed them
    start: str | None = None
    end: str | None = None
    elapsed: str | None = None  # [D-]HH:MM:SS
    est_start: str | None = None  # a pending job's expected start, where the scheduler estimates one
    # accounting, where the scheduler records it
    queue_wait_s: float | None = None
    elapsed_s: float | None = None
    core_hours: float | None = None
    gpu_hours: float | None = None

    def __post_init__(self):
        # a backend's word outside State, or a reason outside Reason, fails here, not in `why`
        self.state = State(self.state)
        if self.reason_code is not None:
            self.reason_code = Reason(self.reason_code)


def reconcile(
    file_state: str | None, sched: JobStatus | None, has_metrics: bool, job_missing: bool
) -> tuple[str, list]:
    """One trial's state from what its files say (result.json, metrics.jsonl) and what the
    scheduler says about its job; returns (state, flags). The trainer's own COMPLETED always
    stands; otherwise a scheduler that still holds the job, or ended it badly, is believed."""
    flags = []
    state = file_state
    s = sched.state.value if sched else None  # rows hold plain words
    done = state in ("COMPLETED", "PRUNED")  # the program's own end stands
    if s in IN_FLIGHT and not done:
        state = s
    elif s in BAD and not done and not (s == "CANCELLED" and state == "FAILED"):
        state = s  # (a trial that failed, then its job was ended, stays FAILED: the cause is its own)
    elif s == "COMPLETED" and not done and state != "FAILED":
        state = "FAILED"
        flags.append("job ended without writing a result")
    if sched and sched.reason and state in BAD:
        flags.append(sched.reason)
    if state is None:
        if has_metrics:
            state = "RUNNING"
        elif job_missing:  # neither the scheduler's queue nor its accounting knows the job: never guess FAILED
            state = "UNKNOWN"
            flags.append("the scheduler does not report this job")
        else:
            state = "PENDING"
    return state, flags
