"""The state words of every scheduler (SLURM's; each backend maps its own onto them) and the
groups the commands need. One place, so status, summary and logs agree on "finished"."""

STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "REQUEUED", "UNKNOWN")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
BAD = FINISHED - {"COMPLETED"}  # a trial in one of these makes summary/status exit 1
IN_FLIGHT = {"PENDING", "RUNNING", "REQUEUED", "PREEMPTED"}  # the scheduler still has the job


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
