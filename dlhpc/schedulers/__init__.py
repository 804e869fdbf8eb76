"""One module per backend with the same verbs: submit, states, cancel, preflight.

STATES tables map every scheduler state to SLURM's words; anything unknown is UNKNOWN.
"""

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "PREEMPTED", "SUSPENDED", "CONFIGURING", "COMPLETING"}


def backend(name: str):
    if name == "slurm":
        from dlhpc.schedulers import slurm

        return slurm
    if name == "pbs":
        from dlhpc.schedulers import pbs

        return pbs
    from dlhpc.schedulers import local

    return local
