"""Helpers shared by the benchmark scripts: run a jobs/ spec through the real CLI, read results."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # train_in_process runs from a checkout, installed or not
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


def train_in_process(spec: str, *sets: str) -> dict:
    """One trial of a jobs/ spec trained in this process (no CLI, no subprocess: the GPU and search
    benchmarks time and run many of them); returns its result + metrics, like run_spec."""
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec
    from dlhpc.train.loop import train_trial

    out = tempfile.mkdtemp(prefix="dlhpc-bench-")
    loaded = load_spec(ROOT / spec, [f"runs_dir={out}", f"data.root={DATA}", *sets], use_site=False)
    plan = experiment.materialize(experiment.plan(loaded))
    tdir = plan.exp_dir / plan.trials[0].id
    result = train_trial(tdir)
    result["metrics"] = [json.loads(line) for line in (tdir / "metrics.jsonl").read_text().splitlines()]
    return result


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
