"""Accuracy: jobs/mnist-best.yaml (augmented cnn), three seeds, against the same cnn without
augmentation (jobs/mnist-cnn.yaml) measured in the same run.

    DLHPC_DATA=/path/to/mnist .venv/bin/python benchmarks/best.py [--seeds 0,1,2] [--no-baseline]

Target: mean test accuracy >= 99.65 % over the seeds, each seed within 15 minutes on 2 CPU cores.
"""

import argparse
import time

from common import mean, run_spec


def seeds_of(spec: str, seeds: list[int]) -> list[dict]:
    out = []
    for seed in seeds:
        t0 = time.perf_counter()
        (r,) = run_spec(spec, f"train.seed={seed}")
        r["wall_s"] = time.perf_counter() - t0
        print(
            f"  {spec} seed {seed}: {100 * r['test_acc']:.2f} % after {r['epochs_done']} epochs, "
            f"{r['wall_s'] / 60:.1f} min wall ({r['train_time_s']:.0f} s training)",
            flush=True,
        )
        out.append(r)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-baseline", action="store_true", help="skip jobs/mnist-cnn.yaml")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    best = seeds_of("jobs/mnist-best.yaml", seeds)
    base = [] if args.no_baseline else seeds_of("jobs/mnist-cnn.yaml", seeds)
    acc = mean(100 * r["test_acc"] for r in best)
    slowest = max(r["wall_s"] for r in best) / 60
    print("\nsummary:")
    if base:
        print(f"  jobs/mnist-cnn.yaml (baseline)  mean {mean(100 * r['test_acc'] for r in base):.3f} %")
    print(f"  jobs/mnist-best.yaml            mean {acc:.3f} %  (seeds {', '.join(map(str, seeds))})")
    print(
        f"  target mean >= 99.65 %: {'met' if acc >= 99.65 else 'NOT met'}; slowest seed {slowest:.1f} min "
        f"(target <= 15): {'met' if slowest <= 15 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
