"""A trial that stops making progress while its job runs on (a rank stopped, or stuck in a loop or
a collective): each node's runner watches its own ranks, says so in `stall-<node>.json` in the
trial's folder (what `status` and `why` read) and, when the spec asks (resources.stall.action
fail), ends the trial instead of letting it wait until the walltime.

Progress is an epoch ending (a line in metrics.jsonl). A trial is stalled when no epoch ended for
`factor` times its longest epoch so far, and at least `min_s`; until an epoch has ended in this
run, nothing is judged (how long an epoch takes is not known yet, and a long start is no hang).
Which rank: one the kernel shows stopped (SIGSTOP, a debugger), else one that burns CPU while
the others sleep (a loop), else none in particular (all wait: a collective, I/O, or a rank on
another node). A rank in a container is its runtime's process: only "all wait" is said of it.
"""

import os
import socket
import sys
import threading
import time
from pathlib import Path

from dlhpc.fsutil import atomic_write_json
from dlhpc.results.metrics import read_metrics

TICKS = os.sysconf("SC_CLK_TCK")


def stall_file(trial_dir: Path, node: str) -> Path:
    return Path(trial_dir) / f"stall-{node}.json"


def _epochs(metrics: Path) -> list[dict]:
    try:
        lines, _ = read_metrics(metrics)
    except OSError:  # (a shared file system's hiccup must not end the watch)
        return []
    return [line for line in lines if "epoch" in line]


def _proc(pid: int) -> tuple[str, float] | None:
    """(kernel state letter, CPU seconds) of a process and its children's time, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], sum(int(x) for x in fields[11:15]) / TICKS


class StallWatch:
    """One thread per node's runner. `ranks` are (rank, pid) of this node's ranks."""

    def __init__(self, trial_dir: Path, ranks, settings: dict, on_stall=None, poll_s: float | None = None):
        self.trial_dir, self.ranks = Path(trial_dir), list(ranks)
        self.factor = float(settings.get("factor") or 5)
        self.min_s = float(settings.get("min_s") or 300)
        self.on_stall = on_stall  # called once, with the verdict, when the action is to end it
        self.poll_s = poll_s or min(10.0, self.min_s / 4)
        self.node = socket.gethostname()
        self.verdict: dict | None = None
        self._stop = threading.Event()

    def start(self) -> "StallWatch":
        # (an earlier run of this trial on this node that was killed, not ended, left its verdict)
        stall_file(self.trial_dir, self.node).unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._watch, daemon=True, name="dlhpc-stall-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)  # (so that no verdict is written after the file is gone)
        stall_file(self.trial_dir, self.node).unlink(missing_ok=True)

    def _watch(self) -> None:
        seen = len(_epochs(self.trial_dir / "metrics.jsonl"))  # (a resumed run's history is not its progress)
        last_change, longest, cpu = time.monotonic(), 0.0, {}
        while not self._stop.wait(self.poll_s):
            epochs = _epochs(self.trial_dir / "metrics.jsonl")
            usage = {rank: _proc(pid) for rank, pid in self.ranks}
            if len(epochs) != seen:
                if len(epochs) > seen:
                    longest = max([longest] + [float(e.get("epoch_time_s") or 0) for e in epochs[seen:]])
                seen, last_change = len(epochs), time.monotonic()
                self._clear()
            elif longest > 0:
                quiet = time.monotonic() - last_change
                window = max(self.factor * longest, self.min_s)
                if quiet > window:
                    self._stalled(epochs, quiet, window, longest, usage, cpu)
            cpu = {rank: u[1] for rank, u in usage.items() if u}

    def _stalled(self, epochs, quiet, window, longest, usage, before) -> None:
        ranks = []
        for rank, pid in self.ranks:
            state, seconds = usage.get(rank) or ("gone", 0.0)
            busy = seconds - before.get(rank, seconds)
            ranks.append({"rank": rank, "pid": pid, "state": state, "cpu_s_last_poll": round(busy, 2)})
        verdict = {
            "node": self.node,
            "no_epoch_for_s": round(quiet, 1),
            "window_s": round(window),
            "longest_epoch_s": round(longest, 2),
            "last_epoch": epochs[-1].get("epoch") if epochs else None,
            "ranks": ranks,
            "suspect": _suspect(ranks, self.node, self.poll_s),
        }
        first = self.verdict is None
        self.verdict = verdict
        atomic_write_json(stall_file(self.trial_dir, self.node), verdict)
        if first:
            print(f"dlhpc: trial stalled: {describe(verdict)}", file=sys.stderr, flush=True)
            if self.on_stall is not None:
                self.on_stall(verdict)

    def _clear(self) -> None:
        if self.verdict is not None:
            self.verdict = None
            stall_file(self.trial_dir, self.node).unlink(missing_ok=True)
            print("dlhpc: trial making progress again", file=sys.stderr, flush=True)


def _suspect(ranks: list[dict], node: str, poll_s: float) -> dict | None:
    stopped = [r for r in ranks if r["state"] in ("T", "t")]
    if stopped:
        return {"rank": stopped[0]["rank"], "node": node, "why": "is stopped (SIGSTOP, or held by a debugger)"}
    busy = [r for r in ranks if r["cpu_s_last_poll"] > 0.5 * poll_s]
    if busy and len(busy) < len(ranks):
        return {"rank": busy[0]["rank"], "node": node, "why": "keeps computing while the others wait (a loop?)"}
    return None


def describe(verdict: dict) -> str:
    """One line: for how long, against what, and which rank (where one stands out)."""
    suspect = verdict.get("suspect")
    who = (
        f"rank {suspect['rank']} on {suspect['node']} {suspect['why']}"
        if suspect
        else f"no rank on {verdict['node']} stands out (all wait: a collective, I/O, or a rank elsewhere)"
    )
    return (
        f"no epoch ended for {verdict['no_epoch_for_s']} s (after epoch {verdict['last_epoch']}; the longest took "
        f"{verdict['longest_epoch_s']} s, the limit is {verdict['window_s']} s); {who}"
    )
