"""What the commands read back from a search, from the trial folders alone (no Optuna: `status`
and `summary` stay quick): each trial's drawn values and agent, its value of the metric, the
counts by state and the best trials."""

import json
import math
from pathlib import Path

from dlhpc.fsutil import read_json


def final_value(tdir: Path, metric: str) -> float | None:
    """The trial's value of the searched metric: the last one it logged."""
    steps = metric_steps(Path(tdir) / "metrics.jsonl", metric)
    return steps[-1][1] if steps else None


def metric_steps(path: Path, metric: str) -> list[tuple]:
    """(step, value) for each line of metrics.jsonl with a finite `metric`; the step is the line's
    `epoch`, else its `step`, else its position among those lines."""
    try:
        with open(path, "rb") as f:
            text = f.read(64 * 1024 * 1024).decode(errors="replace")
    except OSError:
        return []
    out, n = [], 0
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        value = item.get(metric) if isinstance(item, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        n += 1
        step = item.get("epoch", item.get("step", n))
        out.append((step if isinstance(step, (int, float)) and not isinstance(step, bool) else n, float(value)))
    return out


def trial_facts(tdir: Path, names: set) -> dict:
    """A search trial's values and who ran it: {} until an agent took it."""
    if "claim.json" not in names:
        return {}
    info = read_json(tdir / "trial.json", {}) or {}
    claim = read_json(tdir / "claim.json", {}) or {}
    facts = {"params": info.get("params") or {}, "agent": claim.get("agent"), "job_id": claim.get("job_id")}
    if (claim.get("attempt") or 1) > 1:
        facts["attempt"] = claim["attempt"]
    return facts


def study_view(record: dict, rows: list, best: int = 5) -> dict | None:
    """The study as `summary` shows it: counts by state first, then the best trials with their
    values; None for an experiment that does not search."""
    search = (record.get("spec") or {}).get("search")
    if not search:
        return None
    metric, maximize = search["metric"], search["direction"] == "maximize"
    counts: dict = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    scored = [r for r in rows if r["state"] == "COMPLETED" and _finite(r.get("objective"))]
    scored.sort(key=lambda r: r["objective"], reverse=maximize)
    keys = list(search.get("space") or {})
    return {
        "metric": metric,
        "direction": search["direction"],
        "sampler": search["sampler"],
        "pruner": search["pruner"]["kind"],
        "seed": search["seed"],
        "trials": search["trials"],
        "parallel": search["parallel"],
        "counts": counts,
        "keys": keys,
        "best": [{"trial": r["trial"], metric: r["objective"], **{k: r.get(k) for k in keys}} for r in scored[:best]],
    }


def describe_pruned(pruned: dict, metric: str) -> str:
    """'pruned at epoch 3 (ASHA rung 1): test_acc 0.61 against 4 others; it needed 0.72 (best 0.85)'."""
    if not pruned:
        return "pruned by the search"
    kind = {"asha": "ASHA", "hyperband": "Hyperband", "median": "median"}.get(pruned.get("kind"), pruned.get("kind"))
    rung = f" {kind} rung {pruned['rung']}" if "rung" in pruned else f" {kind}" if kind else ""
    words = f"pruned at step {_num(pruned.get('step'))}{(' (' + rung.strip() + ')') if rung else ''}"
    if "value" in pruned:
        words += f": {metric} {_num(pruned['value'])}"
    if pruned.get("compared_with"):
        words += f" against {pruned['compared_with']} other trial(s) there"
    if "needed" in pruned:
        words += f"; it needed {_num(pruned['needed'])} (best {_num(pruned.get('best'))})"
    if pruned.get("settled"):
        words += "; it waited there with its checkpoint and was never in the top to be resumed"
    elif pruned.get("paused"):
        words += "; it waits there with its checkpoint, resumed if it reaches the top (pruner.resume)"
    return words


def _num(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
