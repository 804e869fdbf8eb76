"""One module per backend with the same verbs: submit, states, cancel, preflight.

STATES tables map every scheduler state to SLURM's words (dlhpc.states); unknown is UNKNOWN.
"""


def backend(name: str):
    if name == "slurm":
        from dlhpc.schedulers import slurm

        return slurm
    if name == "pbs":
        from dlhpc.schedulers import pbs

        return pbs
    from dlhpc.schedulers import local

    return local
