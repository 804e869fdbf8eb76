"""The callable that submitit pickles for each trial and runs on every rank of the job: it runs
the trial's program on this rank (node/runner.py), the built-in trainer and the user's alike.

It must import without torch (the login node pickles it), and be checkpointable: on the
time-limit or preemption signal submitit calls `checkpoint()` on rank 0, which passes the stop
signal to the ranks, waits up to program.grace_s for them to save and exit, and returns the job
to requeue. The program resumes from what it saved (the built-in trainer: every epoch).
"""

import signal
import time
from pathlib import Path

_held_signals: list[int] = []


def hold_early_signals() -> None:
    """The job's entry calls this first thing. A time-limit warning (SIGUSR2) that comes while the
    interpreter is still loading submitit and the trial's pickle has no handler yet: its default
    action would end the process, the job FAILED with no requeue and no word in result.json (a
    slow start under load, in CI). Held here instead, it is raised again once the trial's
    callable runs with submitit's handler in place (`_replay_held_signals`)."""
    signal.signal(signal.SIGUSR2, lambda signum, frame: _held_signals.append(signum))


def _replay_held_signals() -> None:
    while _held_signals:
        signal.raise_signal(_held_signals.pop(0))  # its handler runs here, and may raise


class _RunsATrial:
    """What both callables share: the run in progress on this rank, and how to stop it."""

    _run = None

    def _start(self, trial_dir):
        from dlhpc.node.identity import detect
        from dlhpc.node.runner import run_trial

        def keep(run):
            self._run = run

        return run_trial(trial_dir, detect(), on_start=keep)

    def _stop_for_requeue(self):
        """The time-limit signal: the ranks stop (saving their checkpoint); submitit then requeues
        the job, if it has a requeue left (the rerun counts itself: node/runner.py)."""
        run = self._run
        if run is not None and run.ranks is not None:
            run.stop()
            run.ranks.wait_stopped(run.grace_s)

    def _wait_for_requeue(self):
        """A rank other than 0 whose program stopped on the time-limit signal: rank 0 requeues
        the job, which ends this one; a non-zero exit here would end the job step first."""
        run = self._run
        if run is not None and run.ranks is not None and run.ranks.stop_requested is not None:
            time.sleep(run.grace_s + 120)


class TrainJob(_RunsATrial):
    def __init__(self, trial_dir):
        self.trial_dir = str(Path(trial_dir).absolute())

    def __call__(self):
        _quiet_sigcont()
        try:
            _replay_held_signals()
            code = self._start(self.trial_dir)
        except Exception as exc:
            _record_error(self.trial_dir, exc)
            raise
        self._wait_for_requeue()
        return code

    def checkpoint(self, *args, **kwargs):
        import submitit

        self._stop_for_requeue()
        return submitit.helpers.DelayedSubmission(TrainJob(self.trial_dir))

    def __getstate__(self):
        return {"trial_dir": self.trial_dir}

    def __setstate__(self, state):
        self.trial_dir = state["trial_dir"]

    def __repr__(self):
        return f"TrainJob({self.trial_dir!r})"


class PackedTrainJob(_RunsATrial):
    """Several trials, one after another, in one array task (resources.trials_per_task). Each
    keeps its own directory, log, metrics, result and checkpoint. Run again (a requeue, or a
    resubmission), it skips the trials that completed and resumes the interrupted one from its
    checkpoint. A trial that fails does not stop the others; the task then exits non-zero."""

    def __init__(self, trial_dirs):
        self.trial_dirs = [str(Path(d).absolute()) for d in trial_dirs]

    def __call__(self):
        import os
        import sys

        from dlhpc.fsutil import read_json

        _quiet_sigcont()
        _replay_held_signals()
        failed, results = [], []
        for position, trial_dir in enumerate(self.trial_dirs):
            if (read_json(Path(trial_dir) / "result.json", {}) or {}).get("state") == "COMPLETED":
                continue  # done in an earlier run of this task
            with _output_to(Path(trial_dir)):
                print(
                    f"dlhpc: trial {Path(trial_dir).name} starting, {position + 1} of {len(self.trial_dirs)} "
                    f"in this task, pid {os.getpid()}",
                    flush=True,
                )
                try:
                    results.append(self._start(trial_dir))
                    self._wait_for_requeue()
                except Exception as exc:
                    _record_error(trial_dir, exc)
                    if _out_of_time(exc):  # the task's time is up: the trials left wait for its requeue
                        raise
                    print(f"dlhpc: trial {Path(trial_dir).name} failed: {exc}", file=sys.stderr, flush=True)
                    failed.append(Path(trial_dir).name)
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(self.trial_dirs)} packed trials failed: {', '.join(failed)}")
        return results

    def checkpoint(self, *args, **kwargs):
        import submitit

        self._stop_for_requeue()
        return submitit.helpers.DelayedSubmission(PackedTrainJob(self.trial_dirs))

    def __getstate__(self):
        return {"trial_dirs": self.trial_dirs}

    def __setstate__(self, state):
        self.trial_dirs, self._run = state["trial_dirs"], None

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


def _record_error(trial_dir, exc: Exception) -> None:
    """An error that ended this rank's run outside its program (submitit's "timed-out too many
    times" at any moment, a trial folder that cannot be read): rank 0 writes it into the trial's
    result.json, so the trial reads FAILED and says why. A rank's own failure (TrialFailed) was
    recorded by the runner with its last lines already."""
    from dlhpc.fsutil import atomic_write_json, read_json
    from dlhpc.node.identity import detect
    from dlhpc.node.runner import TrialFailed

    if isinstance(exc, TrialFailed):
        return
    try:
        if detect().rank != 0:
            return
    except Exception:  # (no word on who this rank is: the error itself says more than this one)
        return
    path = Path(trial_dir) / "result.json"
    result = read_json(path, {}) or {}
    atomic_write_json(path, {**result, "state": "FAILED", "error": f"{type(exc).__name__}: {exc}"})


def _out_of_time(exc: Exception) -> bool:
    from submitit.core.utils import UncompletedJobError

    return isinstance(exc, UncompletedJobError)
