"""How `dlhpc run` shows training as it goes: progress bars on a terminal; one plain line per
epoch per trial anywhere else (a CI log, `| tee`, a batch job's output file)."""

import contextlib
import sys


def _accuracy(m: dict) -> str:
    return f"test acc {100 * m['test_acc']:.2f}%  {m['images_per_s']:.0f} img/s"


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
        self.bar.update(self.tasks[trial], completed=m["epoch"], acc=_accuracy(m))

    def trial_end(self, trial: str, state: str):
        if state != "COMPLETED":
            self.bar.update(self.tasks[trial], acc=f"[red]{state}")


class Lines:
    def __init__(self, trials, stream=None):
        self.stream = stream or sys.stdout
        self.epochs = {t.id: t.data["train"]["epochs"] for t in trials}

    def _say(self, text: str):
        self.stream.write(text + "\n")
        self.stream.flush()

    def epoch(self, trial: str, m: dict):
        self._say(
            f"{trial} epoch {m['epoch']}/{self.epochs[trial]} train_loss {m['train_loss']:.4f} "
            f"test_loss {m['test_loss']:.4f} {_accuracy(m)} ({m['epoch_time_s']:.2f} s)"
        )

    def trial_end(self, trial: str, state: str):
        self._say(f"{trial} {state}")


@contextlib.contextmanager
def progress_for(console, trials):
    if console.is_terminal:
        bars = Bars(console, trials)
        with bars.bar:
            yield bars
    else:
        yield Lines(trials)
