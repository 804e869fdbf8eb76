"""Helpers shared by the benchmark scripts: run a jobs/ spec through the real CLI, read results."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = os.environ.get("DLHPC_DATA") or str(ROOT.parent / "shared" / "data" / "mnist")


def run_spec(spec: str, *sets: str) -> list[dict]:
    """`dlhpc run SPEC --set ...` in a scratch output folder; returns each trial's result + metrics."""
    out = tempfile.mkdtemp(prefix="dlhpc-bench-")
    argv = [sys.executable, "-m", "dlhpc", "run", str(ROOT / spec), "--set", f"runs_dir={out}"]
    for s in sets:
        argv += ["--set", s]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "DLHPC_DATA": DATA}, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (exp,) = Path(out).iterdir()
    trials = []
    for tdir in sorted(p for p in exp.iterdir() if (p / "result.json").is_file()):
        result = json.loads((tdir / "result.json").read_text())
        result["metrics"] = [json.loads(line) for line in (tdir / "metrics.jsonl").read_text().splitlines()]
        trials.append(result)
    return trials


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def examples_recipe(max_epochs: int) -> dict:
    """The pytorch/examples MNIST recipe on this machine (its GPU if it has one), until it first
    reaches 99 %: {"epochs": [per-epoch lines], "time_to_target_s": seconds or None}."""
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "pytorch_examples_mnist.py"),
        "--epochs",
        str(max_epochs),
        "--stop-at-target",
        "--data",
        DATA,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return {"epochs": lines[:-1], "time_to_target_s": lines[-1]["time_to_target_s"]}
