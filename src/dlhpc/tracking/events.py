"""A trial's metrics.jsonl, mirrored as TensorBoard event files in the trial's folder while it
runs (spec `tracking.tensorboard`). The runner on rank 0 does it (node/runner.py), for the
built-in trainer and a user's program alike: whatever a program logs through `dlhpc.trial.log`
becomes a curve, with no extra lines.

metrics.jsonl is the record; the event file is rebuilt from it. New lines are appended; when
earlier lines changed (a requeued trial resumed from its checkpoint and logged an epoch again,
which metrics.jsonl keeps once), the file is written again whole under a new name and the old one
removed, so the folder always holds one run with every step once. TensorBoard, reading live,
sees steps start again from 1 and drops the ones it had (its purge of orphaned data).

Needs the `tensorboard` package (no TensorFlow, no torch): `pip install dlhpc[tracking]`.
"""

import os
import socket
import sys
import threading
import time
from pathlib import Path

from dlhpc.fsutil import private_mode
from dlhpc.results.metrics import finite
from dlhpc.tracking import params

PATTERN = "events.out.tfevents.*.dlhpc"
NOT_CURVES = ("epoch", "step", "time", "world_size")  # a line's position, not a result


def rows(path: Path) -> list[dict]:
    """metrics.jsonl's lines that parse (a line being written is skipped until it is whole)."""
    from dlhpc.results.metrics import read_metrics

    try:
        return read_metrics(path)[0]
    except OSError:  # unreadable now: the next sync tries again
        return []


def step_of(row: dict, index: int) -> int:
    """A line's step: its `step`, else its `epoch`, else its position (from 1)."""
    for key in ("step", "epoch"):
        value = row.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return index + 1


def scalars(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k not in NOT_CURVES and finite(v)}


class EventFile:
    """One event file, written record by record (synchronously: a requeue may end the process
    at any moment, and what was flushed stays readable)."""

    def __init__(self, path: Path):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.path, self._event = path, event_pb2.Event
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private_mode())  # as every file of a trial
        self._file = os.fdopen(fd, "wb")  # (kept open while the trial runs)
        self._writer = RecordWriter(self._file)
        self._add(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _add(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def hparams(self, values: dict, trial: str) -> None:
        from tensorboard.plugins.hparams import summary_v2

        self._add(self._event(wall_time=time.time(), step=0, summary=summary_v2.hparams_pb(values, trial_id=trial)))

    def scalars(self, step: int, values: dict, wall_time: float) -> None:
        from tensorboard.compat.proto import summary_pb2

        points = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
        summary = summary_pb2.Summary(value=points)
        self._add(self._event(wall_time=wall_time, step=step, summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class EventMirror:
    """Keep `trial_dir`'s event file equal to its metrics.jsonl: `sync()` once, or `start()` a
    thread that syncs every `every_s` until `stop()` (which syncs a last time)."""

    def __init__(self, trial_dir, every_s: float = 5.0):
        self.trial_dir = Path(trial_dir)
        self.every_s = every_s
        self.file: EventFile | None = None
        self.written: list[dict] = []  # the lines the current file holds
        self.seen_at: dict[int, float] = {}  # step -> when it was first written (its wall time)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        lines = rows(self.trial_dir / "metrics.jsonl")
        if self.file is not None and lines[: len(self.written)] == self.written:
            new = lines[len(self.written) :]
        else:
            self._start_file()
            new = lines
        if not new:
            return
        for index, row in enumerate(new, start=len(self.written)):
            values = scalars(row)
            if values:
                step = step_of(row, index)
                self.file.scalars(step, values, self.seen_at.setdefault(step, time.time()))
        self.file.flush()
        self.written = lines

    def _start_file(self) -> None:
        """A new file (first sync, or earlier lines changed): written whole, then the old ones go."""
        if self.file is not None:
            self.file.close()
        old = set(self.trial_dir.glob(PATTERN))
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{time.monotonic_ns()}.dlhpc"
        self.file = EventFile(self.trial_dir / name)
        self.file.hparams(params.of_trial(self.trial_dir), self.trial_dir.name)
        self.written = []
        for path in old:
            path.unlink(missing_ok=True)

    def start(self) -> "EventMirror":
        import tensorboard.summary.writer.record_writer  # noqa: F401 (not there: say so now, not in the thread)

        self._thread = threading.Thread(target=self._loop, name="dlhpc-tensorboard", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                self.sync()
            except OSError as exc:  # a full disk ends the curves, not the training
                print(f"dlhpc: TensorBoard events not written: {exc}", file=sys.stderr, flush=True)
                return

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sync()
        if self.file is not None:
            self.file.close()
            self.file = None
