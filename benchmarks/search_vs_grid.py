"""Search against the grid, side by side in one run (issue 34).

    python benchmarks/search_vs_grid.py accuracy [--subset 6000] [--epochs 9] [--seeds 0,1,2] [--scheduler local]
    python benchmarks/search_vs_grid.py idle [--trials 12] [--parallel 3]      (live SLURM test cluster)

accuracy: the same space twice, through the real CLI (`dlhpc run`, or `submit` to a scheduler):
a 27-point grid (train.lr x train.batch_size x model.hidden, the MLP), every point trained to
its last epoch, against TPE + ASHA with 27 configurations, once per search seed (the grid once).
It prints each one's best test accuracy, the grid's cost (the core-hours of all its trials: the
grid knows its best only once every point has run) and the search's core-hours until its first
trial within 0.1 points of the grid's best (trials in the order the study ran them; a pruned
trial costs what it trained: its loading, training and testing time, not the wait for verdicts
or the process's start, which a trial of minutes or hours does not notice).
Goal: the search's at most a third of the grid's (the median over the seeds).

idle: agents on the live SLURM cluster running trials whose lengths vary 5x (a program that
sleeps 6-30 s per trial): the share of the agents' slot-seconds (their jobs' elapsed time, from
sacct) in which no trial ran. Goal: under 5 %.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT
from dlhpc.search.asha import rung_steps

LRS = [0.003, 0.03, 0.3]
BATCHES = [32, 128, 512]
HIDDEN = [[32], [128], [512]]


def _spec(folder: Path, name: str, body: str, args) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"""name: {name}
model: {{name: mlp}}
train: {{epochs: {args.epochs}, seed: 0}}
data: {{root: {DATA}, train_subset: {args.subset}, download: false}}
resources: {{scheduler: {args.scheduler}, cpus_per_task: 1, time: "00:20:00"}}
runs_dir: {folder / "runs"}
{body}"""
    )
    return path


def _run(spec: Path, args) -> Path:
    command = "run" if args.scheduler == "local" else "submit"
    proc = subprocess.run(
        [sys.executable, "-m", "dlhpc", command, str(spec), "--here"] if command == "run" else
        [sys.executable, "-m", "dlhpc", command, str(spec)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{spec.name}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    runs = spec.parent / "runs"
    exp = max((d for d in runs.iterdir() if d.name.startswith(spec.stem)), key=lambda d: d.stat().st_mtime)
    if command == "submit":
        _wait(exp)
    return exp


def _wait(exp: Path) -> None:
    while True:
        out = subprocess.run(
            [sys.executable, "-m", "dlhpc", "status", str(exp), "--json"], capture_output=True, text=True
        )
        if json.loads(out.stdout).get("finished"):
            return
        time.sleep(5)


def _trials(exp: Path) -> list[dict]:
    """Each trial in the order it ran: its final accuracy and the core-seconds it used."""
    record = json.loads((exp / "experiment.json").read_text())
    out = []
    for trial in record["trials"]:
        result = json.loads((exp / trial["id"] / "result.json").read_text())
        cores = record["spec"]["resources"]["cpus_per_task"] * (result.get("world_size") or 1)
        seconds = (result.get("train_time_s") or 0) + (result.get("load_s") or 0)
        epoch_s = {}
        for line in (exp / trial["id"] / "metrics.jsonl").read_text().splitlines():
            entry = json.loads(line)
            epoch_s[entry["epoch"]] = entry["epoch_time_s"]
        number = json.loads((exp / trial["id"] / "trial.json").read_text()).get("number")
        out.append(
            {
                "state": result["state"],
                "acc": result.get("test_acc"),
                "core_s": cores * seconds,
                "number": number,
                "cores": cores,
                "epoch_s": epoch_s,
                "load_s": result.get("load_s") or 0.0,
            }
        )
    return out


def _search_spec(folder: Path, args, seed: int) -> Path:
    return _spec(
        folder,
        f"search-seed{seed}",
        f"""search:
  trials: 27
  parallel: {args.parallel}
  seed: {seed}
  sampler: tpe
  pruner: {{kind: asha, min_epochs: {args.min_epochs}, reduction: {args.reduction}, resume: {str(args.resume).lower()}}}
  space:
    train.lr: {{loguniform: [{LRS[0]}, {LRS[-1]}]}}
    train.batch_size: {{choice: {BATCHES}}}
    model.hidden: {{choice: {json.dumps(HIDDEN)}}}
""",
        args,
    )


def _reached(exp: Path, trials: list[dict], target: float, rungs: list[int]):
    """(trials started, core-seconds spent) until the first trial completed at or above target,
    or None. The epochs in the order the study heard of them (its journal: with paused trials
    resumed later, trials no longer end in the order they began); each epoch costs its own
    time, and a trial's loading is counted at its first epoch and again after each rung (where a
    paused trial is loaded again; counted for every trial that passed a rung, which is more than
    it was)."""
    by_id = {t["number"]: t for t in trials}
    spent, started = 0.0, set()
    for line in (exp / "study" / "journal.log").read_text().splitlines():
        op = json.loads(line)
        trial = by_id.get(op.get("trial_id"))
        if trial is None:
            continue
        if op["op_code"] == 7:  # an epoch's value
            step = op["step"]
            started.add(trial["number"])
            spent += trial["cores"] * (
                trial["epoch_s"].get(step, 0.0) + (trial["load_s"] if step == 1 or step - 1 in rungs else 0.0)
            )
        elif (
            op["op_code"] == 6 and op.get("state") == 1 and trial["state"] == "COMPLETED" and trial["acc"] >= target
        ):  # told complete
            return len(started), spent
    return None


def accuracy(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dlhpc-search-bench-"))
    grid = _spec(
        folder,
        "grid",
        f"sweep: {{train.lr: {LRS}, train.batch_size: {BATCHES}, model.hidden: {json.dumps(HIDDEN)}}}\n",
        args,
    )
    t0 = time.monotonic()
    grid_trials = _trials(_run(grid, args))
    grid_wall = time.monotonic() - t0
    grid_best = max(t["acc"] for t in grid_trials)
    grid_cost = sum(t["core_s"] for t in grid_trials)
    space = f"train.lr {LRS[0]}-{LRS[-1]} x batch {BATCHES} x MLP hidden {HIDDEN}"
    pruning = f"ASHA rungs from epoch {args.min_epochs}, 1/{args.reduction} kept" + (
        ", paused trials resumed" if args.resume else ""
    )
    print(f"space: {space}; {args.epochs} epochs on {args.subset} images; {pruning}")
    print(
        f"grid (27 points, all to the end): best {100 * grid_best:.2f} %, {grid_cost / 3600:.4f} core-h, "
        f"{grid_wall:.0f} s wall"
    )
    ratios, rungs = [], rung_steps(args.min_epochs, args.reduction, args.epochs)
    for seed in args.seeds:
        t0 = time.monotonic()
        exp = _run(_search_spec(folder, args, seed), args)
        trials = _trials(exp)
        wall = time.monotonic() - t0
        best = max(t["acc"] for t in trials if t["state"] == "COMPLETED")
        pruned = sum(t["state"] == "PRUNED" for t in trials)
        reached = _reached(exp, trials, grid_best - 0.001, rungs)
        ratio = reached[1] / grid_cost if reached else float("inf")
        ratios.append(ratio)
        line = (
            f"TPE + ASHA seed {seed} (27 trials, {pruned} pruned): best {100 * best:.2f} %, "
            f"{sum(t['core_s'] for t in trials) / 3600:.4f} core-h in all, {wall:.0f} s wall; "
        )
        if reached:
            n, cost = reached
            line += (
                f"within 0.1 points of the grid's best with {n} trials begun: {cost / 3600:.4f} core-h = {ratio:.2f}x"
            )
        else:
            line += "never within 0.1 points of the grid's best"
        print(line, flush=True)
    median = statistics.median(ratios)
    print(f"median over seeds {args.seeds}: {median:.2f}x of the grid's core-hours (goal <= 0.33)")


IDLE_PROGRAM = """
import time
from dlhpc import trial

seconds = float(trial.params["seconds"])
time.sleep(seconds)
trial.log(epoch=1, score=seconds)
"""


def idle(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dlhpc-idle-bench-"))
    (folder / "sleep.py").write_text(IDLE_PROGRAM)
    spec = folder / "idle.yaml"
    spec.write_text(
        f"""name: idle
program: {{script: sleep.py}}
params: {{seconds: 10}}
resources: {{scheduler: slurm, cpus_per_task: 1, mem: 500M, time: "00:05:00"}}
runs_dir: {folder / "runs"}
search:
  trials: {args.trials}
  parallel: {args.parallel}
  sampler: random
  metric: score
  pruner: {{kind: none}}
  space:
    params.seconds: {{uniform: [6, 30]}}
"""
    )
    args.scheduler = "slurm"
    exp = _run(spec, args)
    record = json.loads((exp / "experiment.json").read_text())
    busy = 0.0
    for trial in record["trials"]:
        busy += json.loads((exp / trial["id"] / "trial.json").read_text())["params"]["params.seconds"]
    jobs = sorted({j["job_id"] for j in record["jobs"]})
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,ElapsedRaw", "-j", ",".join(j.split("_")[0] for j in jobs)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    slots = sum(int(line.split("|")[1]) for line in out.splitlines() if line.split("|")[0] in jobs)
    print(
        f"{args.trials} trials of 6-30 s (5x) by {args.parallel} agents: {busy:.0f} s of trials in {slots} agent slot-s"
    )
    print(
        f"idle share: {1 - busy / slots:.1%} of slot-seconds (goal < 5 %; the rest is each trial's start, ask and tell)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["accuracy", "idle"])
    parser.add_argument("--subset", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")], default=[0, 1, 2])
    parser.add_argument("--min-epochs", type=int, default=1, help="ASHA's first rung")
    parser.add_argument("--reduction", type=int, default=3)
    parser.add_argument("--resume", action="store_true", help="ASHA that pauses trials (search.pruner.resume)")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--scheduler", default="local")
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    accuracy(args) if args.what == "accuracy" else idle(args)


if __name__ == "__main__":
    main()
