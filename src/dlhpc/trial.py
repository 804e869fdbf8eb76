"""The helper a program may use to talk to dlhpc (optional: a torchrun script runs without it).
Imports no torch, and works outside dlhpc too (then it keeps quiet and saves nothing).

    from dlhpc import trial
    trial.params                  # this trial's parameters (dict), from $DLHPC_PARAMS
    trial.checkpoint_path         # where to save: <trial folder>/checkpoint.pt
    trial.log(epoch=3, test_acc=0.97)   # one line of metrics.jsonl (rank 0 writes; others no-op)
    if trial.should_checkpoint(): ...   # true once the time-limit (or preemption) signal came
    if trial.should_prune(): return      # under a search: its pruner stops this trial (PRUNED)

On the signal dlhpc sends before the time limit (program.stop_signal, TERM by default; on SLURM
the warning SIGUSR2 reaches the program too) the helper only sets a flag: the program saves at
its next step and exits, and the job requeues; the next run finds the checkpoint in the same
folder. docs/own-code.md has the whole contract.
"""

import json
import os
import signal
import time
from pathlib import Path

_stop_at: float | None = None
_last_step = None  # the step (epoch) of the last line logged: what should_prune asks about


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


params: dict = json.loads(os.environ.get("DLHPC_PARAMS") or "{}")
trial_dir: Path = _env_path("DLHPC_TRIAL_DIR", ".")
checkpoint_path: Path = _env_path("DLHPC_CHECKPOINT", "checkpoint.pt")
rank: int = int(os.environ.get("RANK") or 0)
world_size: int = int(os.environ.get("WORLD_SIZE") or 1)
restart_count: int = int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)
under_dlhpc: bool = "DLHPC_TRIAL_DIR" in os.environ


def _on_stop(signum, frame):
    global _stop_at
    if _stop_at is None:
        _stop_at = time.monotonic()


def _install() -> None:
    if not under_dlhpc:
        return
    wanted = {os.environ.get("DLHPC_STOP_SIGNAL") or "TERM", "USR2"}
    for name in wanted:
        signum = getattr(signal, "SIG" + name, None)
        if signum is not None and signal.getsignal(signum) in (signal.SIG_DFL, None):
            try:
                signal.signal(signum, _on_stop)
            except ValueError:  # imported outside the main thread: the signal ends the program
                pass


def should_checkpoint() -> bool:
    """True once dlhpc asked the program to save and stop (the time limit is near, or the job
    is preempted); the program should save to checkpoint_path and exit soon."""
    return _stop_at is not None


def report(step, value) -> None:
    """Under a search: one value of the metric it optimizes, at this step (an epoch, an
    evaluation); the same as log(step=step, <metric>=value). Outside a search it logs `objective`."""
    from dlhpc.search.verdict import searched_metric

    global _last_step
    _last_step = step
    log(step=step, **{searched_metric() or "objective": value})


def should_prune(step=None) -> bool:
    """Under a search: True when its pruner says this trial is behind the others at the last step
    logged (or `step`; pass it on every rank of a multi-rank program): save nothing, return, and
    the trial is PRUNED. Waits a moment for the verdict of that step. Always False outside a
    search; a program that never asks is never stopped."""
    from dlhpc.search import verdict

    if not under_dlhpc or verdict.searched_metric() is None:
        return False
    step = _last_step if step is None else step
    told = verdict.should_stop(trial_dir, step) if step is not None else _latest_prune()
    if told and rank == 0:
        from dlhpc.fsutil import atomic_write_json

        atomic_write_json(trial_dir / verdict.STOPPED, {"step": told.get("step")})
    return bool(told)


def _latest_prune():
    from dlhpc.search import verdict

    current = verdict.read(trial_dir)
    return current if current and current.get("prune") else None


def log(**metrics) -> None:
    """Append one line to the trial's metrics.jsonl (rank 0 only), e.g. log(epoch=3, loss=0.2).
    Numbers, text and true/false; `epoch` lets `status` show epoch k/N. A run resumed from an
    older snapshot logs some epochs again: the lines of those epochs from before are dropped, so
    every epoch appears once."""
    global _last_step
    step = metrics.get("epoch", metrics.get("step"))
    searched = os.environ.get("DLHPC_SEARCH_METRIC")
    if searched in metrics and isinstance(step, (int, float)) and not isinstance(step, bool):
        _last_step = step  # (a line without the metric gets no verdict: nothing to wait for)
    if rank != 0:
        return
    line = json.dumps({k: _plain(v) for k, v in metrics.items()}, allow_nan=True) + "\n"
    path = trial_dir / "metrics.jsonl"
    epoch = metrics.get("epoch")
    kept = _lines_before(path, epoch) if isinstance(epoch, (int, float)) else None
    if kept is None:
        with open(path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(kept) + line)
    os.replace(tmp, path)


def _lines_before(path: Path, epoch) -> list | None:
    """The lines to keep when `epoch` is logged again (None: nothing to drop, just append)."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except OSError:
        return None
    kept, dropped = [], False
    for text in lines:
        try:
            earlier = json.loads(text).get("epoch")
        except (ValueError, AttributeError):
            earlier = None
        if isinstance(earlier, (int, float)) and earlier >= epoch:
            dropped = True
        else:
            kept.append(text if text.endswith("\n") else text + "\n")
    return kept if dropped else None


def _plain(value):
    if hasattr(value, "item"):  # a tensor or numpy scalar
        value = value.item()
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


_install()
