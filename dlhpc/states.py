"""The state words of every scheduler (SLURM's; each backend maps its own onto them) and the
groups the commands need. One place, so status, summary and logs agree on "finished"."""

STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "REQUEUED", "UNKNOWN")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
BAD = FINISHED - {"COMPLETED"}  # a trial in one of these makes summary/status exit 1
IN_FLIGHT = {"PENDING", "RUNNING", "REQUEUED", "PREEMPTED"}  # the scheduler still has the job
