"""The states of a trial and its job, which every backend maps its scheduler's words onto (with
a reason code, reasons.py, for the why), and the groups the commands need. One place, so status,
summary and logs agree on "finished"."""

from enum import Enum


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
    STALLED = "STALLED"  # running, but no epoch ended for far longer than its epochs take (node/stall.py)
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value


STATES = tuple(s.value for s in State)
FINISHED = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.TIMEOUT})  # terminal
BAD = FINISHED - {State.COMPLETED}  # a trial in one of these makes summary/status exit 1
# the scheduler has the job
IN_FLIGHT = frozenset({State.PENDING, State.RUNNING, State.REQUEUED, State.PREEMPTED, State.STALLED})


def reconcile(file_state: str | None, sched: dict | None, has_metrics: bool, job_missing: bool) -> tuple[str, list]:
    """One trial's state from what its files say (result.json, metrics.jsonl) and what the
    scheduler says about its job; returns (state, flags). The trainer's own COMPLETED always
    stands; otherwise a scheduler that still holds the job, or ended it badly, is believed."""
    flags = []
    state = file_state
    s = (sched or {}).get("state")
    if s in IN_FLIGHT and state != "COMPLETED":
        state = s
    elif s in BAD and state != "COMPLETED":
        state = s
    elif s == "COMPLETED" and state not in ("COMPLETED", "FAILED"):
        state = "FAILED"
        flags.append("job ended without writing a result")
    if (sched or {}).get("reason") and state in BAD:
        flags.append(sched["reason"])
    if state is None:
        if has_metrics:
            state = "RUNNING"
        elif job_missing:  # neither the scheduler's queue nor its accounting knows the job: never guess FAILED
            state = "UNKNOWN"
            flags.append("the scheduler does not report this job")
        else:
            state = "PENDING"
    return state, flags
