"""CPU speed: time to 99% test accuracy, ours against the pytorch/examples recipe, side by side.

    DLHPC_DATA=/path/to/mnist .venv/bin/python benchmarks/speed.py

Runs, on this machine and in this order: the pytorch/examples baseline (until it first reaches
99%), jobs/mnist-cnn.yaml, jobs/mnist-speedrun.yaml; then one epoch of each model for images/s
and the share of step time spent getting a batch. Time to target is measured the same way for
both: wall time from the first training step to the first evaluation at or above 99%.
Targets (issue 16): cnn/baseline <= 0.05, speedrun/baseline <= 0.010, batch share <= 2%.
"""

from common import examples_recipe, run_spec


def baseline() -> float:
    recipe = examples_recipe(max_epochs=6)
    for line in recipe["epochs"]:
        print(f"  baseline epoch {line['epoch']}: test acc {100 * line['test_acc']:.2f}%  at {line['elapsed_s']:.1f} s")
    return recipe["time_to_target_s"]


def main():
    print("pytorch/examples mnist recipe (baseline):")
    base = baseline()
    print(f"  time to 99%: {base:.1f} s")
    rows = []
    for spec in ("jobs/mnist-cnn.yaml", "jobs/mnist-speedrun.yaml"):
        (r,) = run_spec(spec)
        ttt = r["time_to_target_s"]
        rows.append((spec, ttt, r["test_acc"]))
        print(
            f"{spec}: time to 99% {ttt:.2f} s (final {100 * r['test_acc']:.2f}% after {r['epochs_done']} epochs); "
            f"ratio to baseline {ttt / base:.3f}"
        )
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
    for spec, ttt, _ in rows:
        print(f"  {spec:30s}{ttt:8.2f} s   ratio {ttt / base:.3f}")


if __name__ == "__main__":
    main()
