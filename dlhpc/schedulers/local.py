"""The local backend: every trial runs on this machine, one after another.

Each trial is a child process (`python -m dlhpc.train --nproc N TRIAL_DIR`), so a crash in one
trial cannot take the others or the CLI down; the parent follows metrics.jsonl for progress.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dlhpc.fsutil import atomic_write_json, read_json
from dlhpc.spec import tasks_per_node


def trial_command(trial_dir: Path, nproc: int) -> list:
    return [sys.executable, "-u", "-m", "dlhpc.train", "--nproc", str(nproc), str(trial_dir)]


def run_trial(trial_dir: Path, data: dict, on_epoch=None, poll_s: float = 0.25) -> int:
    """Run one trial to the end; call on_epoch(metrics_line) as epochs finish. Returns the exit code."""
    env = dict(os.environ, DLHPC_CPUS_PER_TASK=str(data["resources"]["cpus_per_task"]),
               OMP_NUM_THREADS=str(data["resources"]["cpus_per_task"]), DLHPC_JOB_ID=f"local-{os.getpid()}")
    # No cluster: the ranks of every "node" run here, so a multi-node spec still runs (slowly).
    nproc = data["resources"]["nodes"] * tasks_per_node(data["resources"])
    with open(trial_dir / "job.out", "ab") as out, open(trial_dir / "job.err", "ab") as err:
        proc = subprocess.Popen(trial_command(trial_dir, nproc), stdout=out, stderr=err, env=env,
                                stdin=subprocess.DEVNULL)
        seen = 0
        try:
            while True:
                code = proc.poll()
                seen = _report_new_epochs(trial_dir, seen, on_epoch)
                if code is not None:
                    break
                time.sleep(poll_s)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            _mark(trial_dir, "CANCELLED", "interrupted by the user")
            raise
    if code != 0:
        result = read_json(trial_dir / "result.json", {})
        if result.get("state") != "FAILED":
            _mark(trial_dir, "FAILED", f"training process exited with code {code}; see {trial_dir / 'job.err'}")
    return code


def _report_new_epochs(trial_dir: Path, seen: int, on_epoch) -> int:
    try:
        lines = (trial_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return seen
    for line in lines[seen:]:
        try:
            metrics = json.loads(line)
        except json.JSONDecodeError:
            return seen
        if on_epoch:
            on_epoch(metrics)
        seen += 1
    return seen


def _mark(trial_dir: Path, state: str, reason: str):
    result = read_json(trial_dir / "result.json", {}) or {}
    result.update(state=state, error=reason)
    atomic_write_json(trial_dir / "result.json", result)


def run_experiment(exp_dir: Path, trials, progress=True) -> dict:
    """Run every trial of a materialised experiment in the foreground, with a progress bar."""
    codes = {}
    if not progress:
        for trial in trials:
            codes[trial.id] = run_trial(exp_dir / trial.id, trial.data)
        return codes
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("epochs  {task.fields[acc]}"), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        for trial in trials:
            label = f"{trial.id} {trial.data['model']['name']}"
            task = bar.add_task(label, total=trial.data["train"]["epochs"], acc="")

            def on_epoch(m, task=task):
                bar.update(task, completed=m["epoch"],
                           acc=f"test acc {100 * m['test_acc']:.2f}%  {m['images_per_s']:.0f} img/s")

            codes[trial.id] = run_trial(exp_dir / trial.id, trial.data, on_epoch)
            if codes[trial.id] != 0:
                bar.update(task, acc="[red]FAILED")
    return codes


def main(argv=None):
    """`python -m dlhpc.schedulers.local EXP_DIR`: the detached runner behind `submit --scheduler local`."""
    import yaml

    exp_dir = Path((argv or sys.argv[1:])[0])
    record = read_json(exp_dir / "experiment.json", {})
    for trial in record.get("trials", []):
        data = yaml.safe_load((exp_dir / trial["id"] / "spec.yaml").read_text())
        run_trial(exp_dir / trial["id"], data)


if __name__ == "__main__":
    main()
