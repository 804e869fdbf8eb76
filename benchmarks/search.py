"""Hyperparameter search for issue 16: many spec variants x seeds, several trainings at once.

    DLHPC_DATA=/path/to/mnist [SEARCH_GPU=1] python benchmarks/search.py best|cnn [--workers 12]
        [--budget-s 420] [--seeds 0,1,2] [--out search.jsonl] [--only LABEL,...] [--set KEY=VALUE]
    python benchmarks/search.py --report search.jsonl

Meant for a GPU machine (one small model leaves most of a GPU idle, so a dozen processes share
it) to shortlist variants cheaply; the figures that count are measured afterwards on 2 CPU
cores by best.py and speed.py. Accuracy carries over between devices (same algorithm, same
seeds; only floating-point rounding differs); times do not, so the time-relevant figure printed
here is the *epoch* at which 99 % was first reached. Each finished run is appended to --out at
once, so a run cut short by its time limit still leaves every result it had.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path

BEST = "jobs/mnist-best.yaml"
CNN = "jobs/mnist-cnn.yaml"
# (label, spec, --set values)
SEARCHES = {
    "best": [
        ("best as shipped", BEST, []),
        ("2 convs per block", BEST, ["model.convs_per_block=2"]),
        ("no label smoothing", BEST, ["train.label_smoothing=0"]),
        ("2 convs, no smoothing", BEST, ["model.convs_per_block=2", "train.label_smoothing=0"]),
        ("2 convs, 20 epochs", BEST, ["model.convs_per_block=2", "train.epochs=20"]),
        ("2 convs, 40 epochs", BEST, ["model.convs_per_block=2", "train.epochs=40"]),
        ("40 epochs", BEST, ["train.epochs=40"]),
        ("ema 0.999", BEST, ["train.ema_decay=0.999"]),
        ("2 convs, ema 0.998", BEST, ["model.convs_per_block=2", "train.ema_decay=0.998"]),
        (
            "stronger aug (3px, 15deg, 0.15)",
            BEST,
            ["train.augment_shift_px=3", "train.augment_rotate_deg=15", "train.augment_scale=0.15"],
        ),
        (
            "2 convs, hidden 512, dropout 0.4",
            BEST,
            ["model.convs_per_block=2", "model.hidden=[512]", "model.dropout=0.4"],
        ),
        ("dropout 0.4", BEST, ["model.dropout=0.4"]),
        ("wd 0.001", BEST, ["train.weight_decay=0.001"]),
        ("hidden 512", BEST, ["model.hidden=[512]"]),
        ("width 48", BEST, ["model.width=48"]),
        ("lr 0.2", BEST, ["train.lr=0.2"]),
        ("2 convs, width 24", BEST, ["model.convs_per_block=2", "model.width=24"]),
        ("3 convs per block", BEST, ["model.convs_per_block=3"]),
    ],
    "cnn": [
        ("cnn as shipped", CNN, []),
        ("stride stem", CNN, ["model.stem=stride"]),
        ("warmup 0.04", CNN, ["train.warmup_frac=0.04"]),
        ("ema 0.995", CNN, ["train.ema_decay=0.995"]),
        ("10 epochs", CNN, ["train.epochs=10"]),
        ("warmup 0.04, ema 0.995", CNN, ["train.warmup_frac=0.04", "train.ema_decay=0.995"]),
        (
            "stride, warmup 0.04, ema 0.995",
            CNN,
            ["model.stem=stride", "train.warmup_frac=0.04", "train.ema_decay=0.995"],
        ),
        ("stride, 10 epochs", CNN, ["model.stem=stride", "train.epochs=10"]),
        ("batch 256 lr 0.2", CNN, ["train.batch_size=256", "train.lr=0.2"]),
        ("stride, dropout 0.1", CNN, ["model.stem=stride", "model.dropout=0.1"]),
    ],
    # every cnn variant above needs 2 epochs for 99 %: a cheaper epoch is what is left
    "cnn-cheaper": [
        ("width 24", CNN, ["model.width=24"]),
        ("width 24, 10 epochs", CNN, ["model.width=24", "train.epochs=10"]),
        ("width 20", CNN, ["model.width=20"]),
        ("width 16", CNN, ["model.width=16"]),
        ("width 24, hidden 128", CNN, ["model.width=24", "model.hidden=[128]"]),
        ("width 32, hidden 128", CNN, ["model.hidden=[128]"]),
        ("width 24, dropout 0.1", CNN, ["model.width=24", "model.dropout=0.1"]),
        ("width 24, warmup 0.04", CNN, ["model.width=24", "train.warmup_frac=0.04"]),
        ("width 24, lr 0.15", CNN, ["model.width=24", "train.lr=0.15"]),
        ("width 20, 10 epochs", CNN, ["model.width=20", "train.epochs=10"]),
    ],
    "best-confirm": [
        ("2 convs, 20 epochs", BEST, []),
        ("3 convs, 20 epochs", BEST, ["model.convs_per_block=3"]),
    ],
}


def run_once(task):
    from common import train_in_process

    label, spec_path, sets, seed = task
    gpus = ["resources.gpus_per_node=1"] if os.environ.get("SEARCH_GPU") == "1" else []
    started = time.perf_counter()
    try:
        result = train_in_process(spec_path, *gpus, *sets, f"train.seed={seed}")
    except BaseException as exc:  # one broken variant must not end the search
        return {"label": label, "seed": seed, "sets": sets, "error": repr(exc)[:500]}
    accs = [m["test_acc"] for m in result["metrics"]]
    first_99 = next((i + 1 for i, a in enumerate(accs) if a >= 0.99), None)
    return {
        "label": label,
        "seed": seed,
        "sets": sets,
        "test_acc": result["test_acc"],
        "best_acc": max(accs),
        "epoch_of_99": first_99,
        "test_accs": accs,
        "train_time_s": result["train_time_s"],
        "wall_s": round(time.perf_counter() - started, 1),
        "device": result.get("device"),
    }


def report(rows):
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    lines = []
    for label, runs in by_label.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            lines.append((0, f"{label:40s} ERROR {runs[0]['error'][:120]}"))
            continue
        finals = [r["test_acc"] for r in ok]
        e99 = [r["epoch_of_99"] for r in sorted(ok, key=lambda r: r["seed"])]
        mean = statistics.mean(finals)
        lines.append(
            (
                mean,
                f"{label:40s} n={len(ok)} mean {100 * mean:.3f}  min {100 * min(finals):.2f}  "
                f"max {100 * max(finals):.2f}  epoch of 99% {e99}  "
                f"{statistics.mean(r['wall_s'] for r in ok):.0f} s/run",
            )
        )
    for _, line in sorted(lines, reverse=True):
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search", nargs="?", choices=sorted(SEARCHES))
    parser.add_argument("--report", metavar="JSONL", help="only print the table of an earlier --out file")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--budget-s", type=float, default=420)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="search.jsonl")
    parser.add_argument("--only", default="", help="comma-separated labels")
    parser.add_argument("--set", action="append", default=[], help="added to every variant")
    args = parser.parse_args()
    if args.report:
        report([json.loads(line) for line in Path(args.report).read_text().splitlines() if line.strip()])
        return
    if not args.search:
        parser.error("name a search (best or cnn), or --report FILE")

    seeds = [int(s) for s in args.seeds.split(",")]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    variants = [v for v in SEARCHES[args.search] if not only or v[0] in only]
    # seed-major order: every variant gets its first seed before any gets its third
    tasks = [(label, spec, [*sets, *args.set], seed) for seed in seeds for label, spec, sets in variants]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # many processes: one thread each
    deadline = time.monotonic() + args.budget_s
    rows = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.workers, maxtasksperchild=1) as pool, open(args.out, "a") as out:
        pending = pool.imap_unordered(run_once, tasks)
        while True:
            try:
                row = pending.next(timeout=max(1.0, deadline - time.monotonic()))
            except StopIteration:
                break
            except multiprocessing.TimeoutError:
                print(f"budget of {args.budget_s:.0f} s spent: {len(rows)} of {len(tasks)} runs done", flush=True)
                pool.terminate()
                break
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(
                f"[{len(rows)}/{len(tasks)}] {row['label']} seed {row['seed']}: "
                f"{row.get('test_acc', row.get('error'))}",
                flush=True,
            )
    report(rows)


if __name__ == "__main__":
    main()
