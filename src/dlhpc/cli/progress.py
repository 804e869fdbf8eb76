"""How `dlhpc run` shows training as it goes: progress bars on a terminal; one plain line per
epoch per trial anywhere else (a CI log, `| tee`, a batch job's output file)."""

import contextlib
import sys

from dlhpc.results.metrics import describe, total_epochs
from dlhpc.spec.program import named


class Bars:
    def __init__(self, console, trials):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  {task.fields[acc]}"),
            TimeElapsedColumn(),
        )
        self.bar = Progress(*columns, console=console, transient=False)
        self.tasks = {
            t.id: self.bar.add_task(f"{t.id} {t.data['model']['name']}", total=t.data["train"]["epochs"], acc="")
            for t in trials
        }

    def epoch(self, trial: str, m: dict):
        self.bar.update(self.tasks[trial], completed=m.get("epoch"), acc=describe(m))

    def trial_end(self, trial: str, state: str):
        if state != "COMPLETED" and trial in self.tasks:  # (a search's agent is not a trial)
            self.bar.update(self.tasks[trial], acc=f"[red]{state}")


class Lines:
    def __init__(self, trials, stream=None):
        self.stream = stream or sys.stdout
        self.epochs = {t.id: total_epochs(t.data) or "?" for t in trials}

    def _say(self, text: str):
        self.stream.write(text + "\n")
        self.stream.flush()

    def epoch(self, trial: str, m: dict):
        took = f" ({m['epoch_time_s']:.2f} s)" if isinstance(m.get("epoch_time_s"), float) else ""
        self._say(f"{trial} epoch {m.get('epoch', '?')}/{self.epochs[trial]} {describe(m)}{took}")

    def trial_end(self, trial: str, state: str):
        self._say(f"{trial} {state}")


def _what(data: dict) -> str:
    return named(data) or data["model"]["name"]


@contextlib.contextmanager
def progress_for(console, trials):
    if console.is_terminal:
        bars = Bars(console, trials)
        with bars.bar:
            yield bars
    else:
        yield Lines(trials)
