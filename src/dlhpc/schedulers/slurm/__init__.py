"""SLURM: submit through submitit with dlhpc's rendered script, states from one batched sacct call.

submitit's SlurmExecutor renders its own sbatch text, and for job arrays builds a fresh
SlurmExecutor inside _internal_process_submissions, so overriding _make_submission_file_text alone
would give arrays submitit's built-in script. DlhpcSlurmExecutor (backend.py) overrides both paths.
By concern: limits.py (before submitting), queue.py (states), accounting.py (what jobs used,
usage), doctor.py, backend.py (the Backend).
"""

from dlhpc.schedulers.slurm.backend import SlurmBackend

__all__ = ["SlurmBackend"]
