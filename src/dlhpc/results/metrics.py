"""What a trial's metrics.jsonl says, for any program: the built-in trainer's lines (train_loss,
test_acc, images_per_s...) and whatever keys a user's program logs (dlhpc.trial.log)."""

import json
import math
from pathlib import Path

from dlhpc.spec.program import is_builtin

# Keys every line may carry that are bookkeeping, not results
BOOKKEEPING = ("epoch", "step", "time", "elapsed_s", "epoch_time_s", "world_size")


def read_metrics(path: Path) -> tuple[list, str | None]:
    """Lines of metrics.jsonl; a torn last line is skipped and reported."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], None
    out, problem = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if isinstance(item, dict):
                out.append(item)
        except json.JSONDecodeError:
            problem = f"metrics.jsonl line {n} is unreadable"
    return out, problem


def total_epochs(data: dict) -> int | None:
    """Epochs a trial will run, when known: train.epochs for the built-in trainer, params.epochs
    for a program that names it."""
    if not is_builtin(data):
        value = (data.get("params") or {}).get("epochs")
    else:
        value = (data.get("train") or {}).get("epochs")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def describe(m: dict) -> str:
    """One epoch's line in a few words."""
    if finite(m.get("test_acc")) and finite(m.get("images_per_s")):  # the built-in trainer's
        losses = "".join(f"{k} {m[k]:.4f} " for k in ("train_loss", "test_loss") if finite(m.get(k)))
        return f"{losses}test acc {100 * m['test_acc']:.2f}%  {m['images_per_s']:.0f} img/s"
    shown = [f"{k} {_num(v)}" for k, v in m.items() if k not in BOOKKEEPING and finite(v)]
    return "  ".join(shown[:4])


def logged_keys(lines: list) -> list[str]:
    """The result keys the lines carry, in the order they first appear."""
    keys: dict = {}
    for m in lines:
        for k, v in m.items():
            if k not in BOOKKEEPING and (finite(v) or isinstance(v, str)):
                keys.setdefault(k, None)
    return list(keys)


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
