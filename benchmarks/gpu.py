"""GPU time to 99%: the cnn spec on one GPU, data already on the device, load and compile apart.

    DLHPC_DATA=../shared/data/mnist .venv/bin/python benchmarks/gpu.py [--spec jobs/mnist-speedrun.yaml]
        [--set train.batch_size=512 ...] [--compile]

Runs one warm-up trial (cuDNN autotuning, torch.compile when asked), then the measured one, and
prints: data load time, warm-up/compile time, time from the first step to the first evaluation
at or above the target, final accuracy and throughput. Target: <= 0.5 s on one H100.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_once(spec_path, sets):
    from dlhpc import experiment
    from dlhpc.spec import load_spec
    from dlhpc.train.loop import train_trial

    out = tempfile.mkdtemp(prefix="dlhpc-gpu-")
    spec = load_spec(spec_path, [f"output={out}", "resources.gpus_per_node=1", *sets], use_site=False)
    p = experiment.materialize(experiment.plan(spec))
    return train_trial(p.exp_dir / p.trials[0].id)


def main():
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default=str(ROOT / "jobs" / "mnist-speedrun.yaml"))
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    sets = args.sets + (["train.compile=true"] if args.compile else [])
    warm = run_once(args.spec, sets)
    result = run_once(args.spec, sets)
    print(json.dumps({"device": result["device"], "load_s": result["load_s"], "compile_s": result["compile_s"],
                      "warmup_run_train_s": warm["train_time_s"],
                      "time_to_target_s": result["time_to_target_s"], "test_acc": result["test_acc"],
                      "images_per_s": result["images_per_s"], "epochs_done": result["epochs_done"]}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("DLHPC_SITE", "/nonexistent")
    main()
