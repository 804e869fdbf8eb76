"""The callable that submitit pickles for each trial and runs on every rank of the job.

It must import without torch (the login node pickles it), and be checkpointable: on the
time-limit or preemption signal submitit calls `checkpoint()` on rank 0 and requeues the job with
what it returns. Training state is already on disk (a checkpoint every epoch), so requeueing
the same TrainJob resumes from the last finished epoch.
"""

from pathlib import Path


class TrainJob:
    def __init__(self, trial_dir):
        self.trial_dir = str(Path(trial_dir).absolute())

    def __call__(self):
        from dlhpc.train.loop import train_trial

        return train_trial(self.trial_dir)

    def checkpoint(self, *args, **kwargs):
        import submitit

        _note_requeue(Path(self.trial_dir))
        return submitit.helpers.DelayedSubmission(TrainJob(self.trial_dir))

    def __repr__(self):
        return f"TrainJob({self.trial_dir!r})"


def _note_requeue(trial_dir: Path):
    """Count requeues in the trial directory so status/summary can show them."""
    from dlhpc.fsutil import atomic_write_json, read_json

    info = read_json(trial_dir / "requeues.json", {"count": 0})
    info["count"] = int(info.get("count", 0)) + 1
    atomic_write_json(trial_dir / "requeues.json", info)
