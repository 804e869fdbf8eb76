"""Accuracy of the shipped workshop specs on the real 10k MNIST test set, mean of 3 seeds.

    DLHPC_DATA=/path/to/mnist .venv/bin/python benchmarks/accuracy.py [softmax mlp lenet5 cnn]

Targets: softmax >= 92.0%, mlp >= 98.0%, lenet5 >= 99.0%, cnn >= 99.4%.
"""

import sys

from common import mean, run_spec

SPECS = {
    "softmax": ("jobs/mnist-softmax.yaml", 0.920),
    "mlp": ("jobs/mnist-mlp.yaml", 0.980),
    "lenet5": ("jobs/mnist-lenet5.yaml", 0.990),
    "cnn": ("jobs/mnist-cnn.yaml", 0.994),
}


def main(models):
    for model in models:
        spec, target = SPECS[model]
        trials = run_spec(spec, "sweep.train.seed=[0,1,2]")
        accs = [t["test_acc"] for t in trials]
        ok = "meets" if mean(accs) >= target else "BELOW"
        print(
            f"{model:8s} {spec:28s} seeds 0,1,2: "
            + ", ".join(f"{100 * a:.2f}%" for a in accs)
            + f"  mean {100 * mean(accs):.2f}% ({ok} target {100 * target:.1f}%)  "
            f"train time {mean(t['train_time_s'] for t in trials):.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:] or list(SPECS))
