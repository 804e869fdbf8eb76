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

        _quiet_sigcont()
        return train_trial(self.trial_dir)

    def checkpoint(self, *args, **kwargs):
        import submitit

        _note_requeue(Path(self.trial_dir))
        return submitit.helpers.DelayedSubmission(TrainJob(self.trial_dir))

    def __repr__(self):
        return f"TrainJob({self.trial_dir!r})"


class PackedTrainJob:
    """Several trials, one after another, in one array task (resources.trials_per_task). Each
    keeps its own directory, log, metrics, result and checkpoint. Run again (a requeue, or a
    resubmission), it skips the trials that completed and resumes the interrupted one from its
    checkpoint. A trial that fails does not stop the others; the task then exits non-zero."""

    def __init__(self, trial_dirs):
        self.trial_dirs = [str(Path(d).absolute()) for d in trial_dirs]
        self._current = None

    def __call__(self):
        import os
        import sys

        from dlhpc.fsutil import read_json
        from dlhpc.train.loop import train_trial

        _quiet_sigcont()
        failed, results = [], []
        for position, trial_dir in enumerate(self.trial_dirs):
            if (read_json(Path(trial_dir) / "result.json", {}) or {}).get("state") == "COMPLETED":
                continue  # done in an earlier run of this task
            self._current = trial_dir
            with _output_to(Path(trial_dir)):
                print(
                    f"dlhpc: trial {Path(trial_dir).name} starting, {position + 1} of {len(self.trial_dirs)} "
                    f"in this task, pid {os.getpid()}",
                    flush=True,
                )
                try:
                    results.append(train_trial(trial_dir))
                except Exception as exc:  # recorded in its result.json by the trainer
                    print(f"dlhpc: trial {Path(trial_dir).name} failed: {exc}", file=sys.stderr, flush=True)
                    failed.append(Path(trial_dir).name)
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(self.trial_dirs)} packed trials failed: {', '.join(failed)}")
        return results

    def checkpoint(self, *args, **kwargs):
        import submitit

        if self._current:
            _note_requeue(Path(self._current))
        return submitit.helpers.DelayedSubmission(PackedTrainJob(self.trial_dirs))

    def __getstate__(self):
        return {"trial_dirs": self.trial_dirs}

    def __setstate__(self, state):
        self.trial_dirs, self._current = state["trial_dirs"], None

    def __repr__(self):
        return f"PackedTrainJob({len(self.trial_dirs)} trials from {Path(self.trial_dirs[0]).name})"


class _output_to:
    """Send this process's stdout and stderr (file descriptors, so library and child output too)
    to a trial's job.out and job.err while it trains; restore them after."""

    def __init__(self, trial_dir: Path):
        self.trial_dir = trial_dir

    def __enter__(self):
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        for fd, name in ((1, "job.out"), (2, "job.err")):
            target = os.open(self.trial_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(target, fd)
            os.close(target)
        return self

    def __exit__(self, *exc):
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        return False


def _quiet_sigcont():
    """SLURM sends SIGCONT with its time-limit warning (USR2). submitit logs every SIGCONT from
    its handler; when USR2's handler raises "timed-out too many times" while that log line is
    being written, the logging module swallows the exception ("--- Logging error ---") and
    training runs on until SLURM kills it at the limit (TIMEOUT instead of a clean stop; seen
    in CI). SIGCONT needs no handler: its default action is the right one."""
    import signal

    signal.signal(signal.SIGCONT, signal.SIG_DFL)


def _note_requeue(trial_dir: Path):
    """Count requeues in the trial directory so status/summary can show them."""
    from dlhpc.fsutil import atomic_write_json, read_json

    info = read_json(trial_dir / "requeues.json", {"count": 0})
    info["count"] = int(info.get("count", 0)) + 1
    atomic_write_json(trial_dir / "requeues.json", info)
