"""Submitting without losing track of a job: a lock, a journal and deferred signals.

- `locked(exp_dir)`: an fcntl lock on the experiment, held around every read-modify-write of
  experiment.json and around a whole resubmission (two at once would number their scripts alike).
- `Journal`: logs/submit-journal.json is written before the first submit command runs and again
  as each job is accepted; if dlhpc dies before the record is complete (SIGKILL, a reboot),
  `read_record` completes the record from it, so `status` and `cancel` still reach those jobs.
- `deferred_signals()`: SIGINT, SIGHUP and SIGTERM (Ctrl-C, a closed ssh session) wait until
  the record is written, then take effect.
"""

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path

from dlhpc.fsutil import atomic_write_json, private_mode, read_json

JOURNAL = Path("logs") / "submit-journal.json"
LOCK = ".lock"


_held: dict = {}  # experiment folder -> depth: the lock is re-entrant within one process


@contextlib.contextmanager
def locked(exp_dir: Path):
    key = str(Path(exp_dir).absolute())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = os.open(Path(exp_dir) / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, private_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)  # closing releases the lock


class Journal(list):
    """The jobs accepted so far, written through to the journal file on every addition."""

    def __init__(self, exp_dir: Path, scripts: list[str]):
        super().__init__()
        self.path = Path(exp_dir) / JOURNAL
        self.entry = {"state": "submitting", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scripts": scripts}
        self._save()

    def _save(self):
        atomic_write_json(self.path, {**self.entry, "jobs": list(self)}, mode=private_mode())

    def append(self, job):
        super().append(job)
        self._save()

    def extend(self, jobs):
        super().extend(jobs)
        self._save()

    def finish(self, state: str, note: str = ""):
        """'recorded' once experiment.json holds the jobs; 'uncertain' when a job may exist unseen."""
        self.entry.update(state=state, note=note)
        self._save()


def mark_recorded(exp_dir: Path) -> None:
    path = Path(exp_dir) / JOURNAL
    entry = read_json(path, None)
    if isinstance(entry, dict):
        atomic_write_json(path, {**entry, "state": "recorded"}, mode=private_mode())


def unrecorded_jobs(exp_dir: Path, record: dict) -> list[dict]:
    """Jobs the journal saw accepted that the record does not hold (dlhpc died in between)."""
    journal = read_json(Path(exp_dir) / JOURNAL, {}) or {}
    if journal.get("state") == "recorded":
        return []
    known = {j.get("job_id") for j in record.get("jobs", [])}
    return [j for j in journal.get("jobs", []) if isinstance(j, dict) and j.get("job_id") not in known]


DEFERRED = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT/SIGHUP/SIGTERM until the block ends, then deliver the first that came."""
    caught: list[int] = []
    previous = {}

    def hold(signum, frame):
        caught.append(signum)

    try:
        for sig in DEFERRED:
            previous[sig] = signal.signal(sig, hold)
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            os.kill(os.getpid(), caught[0])
