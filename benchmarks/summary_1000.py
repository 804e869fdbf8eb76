"""`dlhpc summary --format json` over an experiment of 1,000 trials: must answer in under 1 s.

.venv/bin/python benchmarks/summary_1000.py
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(root: Path, n: int = 1000) -> Path:
    exp = root / "big-20260101-000000"
    exp.mkdir(parents=True)
    trials = [{"id": f"{i:04d}-{i:06x}", "index": i, "params": {"train.lr": 0.001 * (i + 1)}} for i in range(n)]
    record = {
        "name": "big",
        "scheduler": "local",
        "swept_keys": ["train.lr"],
        "jobs": [],
        "trials": trials,
        "spec": {"name": "big", "model": {"name": "cnn"}, "train": {"epochs": 10, "target_accuracy": 0.99}},
    }
    (exp / "experiment.json").write_text(json.dumps(record))
    for t in trials:
        d = exp / t["id"]
        d.mkdir()
        lines = [
            {
                "epoch": e,
                "train_loss": 0.1,
                "train_acc": 0.97,
                "test_loss": 0.05,
                "test_acc": 0.98 + e / 1000,
                "epoch_time_s": 1.0,
                "images_per_s": 9000.0,
                "lr": 0.1,
                "world_size": 2,
                "elapsed_s": e,
            }
            for e in range(1, 11)
        ]
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
        (d / "result.json").write_text(
            json.dumps(
                {
                    "state": "COMPLETED",
                    "test_acc": 0.99,
                    "best_test_acc": 0.99,
                    "time_to_target_s": 9.0,
                    "train_time_s": 10.0,
                    "images_per_s": 9000.0,
                    "epochs": 10,
                    "world_size": 2,
                    "job_id": None,
                    "nodes": 1,
                }
            )
        )
    return exp


def main():
    exp = build(Path(tempfile.mkdtemp(prefix="dlhpc-1000-")))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "dlhpc", "summary", str(exp), "--format", "json"], capture_output=True, text=True
        )
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)) == 1000
    times.sort()
    print(
        f"summary --format json over 1,000 trials: median {times[2]:.3f} s (min {times[0]:.3f}, max {times[-1]:.3f}); "
        f"target < 1 s"
    )


if __name__ == "__main__":
    os.environ.setdefault("DLHPC_SITE", "/nonexistent")
    main()
