"""CPU speed: time to 99% test accuracy, ours against the pytorch/examples recipe, side by side.

    DLHPC_DATA=/path/to/mnist .venv/bin/python benchmarks/speed.py [--seeds 0,1,2]

Runs, on this machine and in this order: the pytorch/examples baseline (until it first reaches
99%), jobs/mnist-cnn.yaml and jobs/mnist-speedrun.yaml for each seed (the median time counts;
every seed must reach 99%, and the cnn's final accuracies must average >= 99.4%); then one
epoch of each model for images/s and the share of step time spent getting a batch. Time to
target is measured the same way for both: wall time from the first training step to the first
evaluation at or above 99%.
Targets (issue 16): cnn/baseline <= 0.05, speedrun/baseline <= 0.010, batch share <= 2%.
"""

import argparse
import statistics

from common import examples_recipe, mean, run_spec

# (spec, the ratio to the recipe it must stay under, the final accuracy its seeds must average)
TARGETS = {"jobs/mnist-cnn.yaml": (0.05, 0.994), "jobs/mnist-speedrun.yaml": (0.010, 0.99)}


def baseline() -> float:
    recipe = examples_recipe(max_epochs=6)
    for line in recipe["epochs"]:
        print(f"  baseline epoch {line['epoch']}: test acc {100 * line['test_acc']:.2f}%  at {line['elapsed_s']:.1f} s")
    return recipe["time_to_target_s"]


def seeds_of(spec: str, seeds: list[int], base: float) -> dict:
    runs = []
    for seed in seeds:
        (r,) = run_spec(spec, f"train.seed={seed}")
        ttt = r["time_to_target_s"]
        runs.append(r)
        print(
            f"  {spec} seed {seed}: time to 99% {'not reached' if ttt is None else f'{ttt:.2f} s'} "
            f"(final {100 * r['test_acc']:.2f}% after {r['epochs_done']} epochs)",
            flush=True,
        )
    times = [r["time_to_target_s"] for r in runs]
    reached = [t for t in times if t is not None]
    # a seed that never reaches 99% counts as infinitely slow: the median is then honest
    median = statistics.median([t if t is not None else float("inf") for t in times])
    return {
        "spec": spec,
        "median": median,
        "ratio": median / base,
        "reached": f"{len(reached)}/{len(times)}",
        "final_mean": mean(r["test_acc"] for r in runs),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("pytorch/examples mnist recipe (baseline):")
    base = baseline()
    print(f"  time to 99%: {base:.1f} s", flush=True)
    rows = [seeds_of(spec, seeds, base) for spec in TARGETS]
    print("\nthroughput, one epoch on 60k images (training only):")
    for model in ("softmax", "mlp", "lenet5", "cnn"):
        sets = ["train.epochs=1", f"model.name={model}"] + (["model.hidden=[512,256]"] if model == "mlp" else [])
        (r,) = run_spec("jobs/mnist-cnn.yaml", *sets)
        m = r["metrics"][0]
        print(
            f"  {model:8s} {m['images_per_s']:>9,.0f} images/s   "
            f"batch fetch {100 * m['batch_wait_frac']:.2f}% of step time"
        )
    print("\nsummary:")
    print(f"  baseline time to 99%          {base:8.2f} s")
    for row in rows:
        ratio_max, acc_min = TARGETS[row["spec"]]
        ok = row["ratio"] <= ratio_max and row["reached"] == f"{len(seeds)}/{len(seeds)}"
        ok = ok and row["final_mean"] >= acc_min
        print(
            f"  {row['spec']:30s}{row['median']:8.2f} s median, ratio {row['ratio']:.4f} (<= {ratio_max}), "
            f"reached {row['reached']}, final mean {100 * row['final_mean']:.2f}% (>= {100 * acc_min:.1f}): "
            f"{'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
