"""Sweeps at scale on a live SLURM cluster: how long submit, status and summary take for 1,000,
10,000 and 100,000 trials (packed by submit where one job per trial would break MaxJobCount), how
many scheduler calls each makes, and how each grows with the count (the time per trial, and the
ratio to the size before: 10 for a tenfold count means linear).

    DLHPC_DATA=/path/to/mnist .venv/bin/python benchmarks/scale.py [--sizes 1000,10000,100000]

Every scheduler command dlhpc runs goes through a counting shim put first on PATH (it logs,
then runs the real command). The experiments are cancelled right after they are measured.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEDULER_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sacctmgr", "sinfo")


def shims(folder: Path, log: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SCHEDULER_COMMANDS:
        real = shutil.which(name)
        if real:
            (folder / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
            (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def spec_text(n: int) -> str:
    seeds = max(1, n // 100)
    lrs = [round(0.001 * (i + 1), 3) for i in range(n // seeds)]
    return (
        f"name: scale{n}\nmodel: {{name: softmax}}\ntrain: {{epochs: 1}}\ndata: {{train_subset: 1000}}\n"
        # held (sbatch --hold): on the test cluster the compute nodes share this machine's cores, and
        # trials training there while submit and status run would time the trainings, not dlhpc
        f"resources: {{scheduler: slurm, cpus_per_task: 1, mem: 1G, time: '00:05:00', array_parallelism: 2, "
        "extra: {hold: null}}\n"
        f"sweep:\n  train.lr: {lrs}\n  train.seed: {list(range(seeds))}\n"
    )


def timed(argv, env, log: Path) -> tuple[float, int, subprocess.CompletedProcess]:
    before = len(log.read_text().splitlines()) if log.exists() else 0
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    calls = (len(log.read_text().splitlines()) if log.exists() else 0) - before
    return took, calls, proc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dlhpc-scale-"))
    log = work / "calls.log"
    env = shims(work / "bin", log)
    dlhpc = [sys.executable, "-m", "dlhpc"]
    rows = []
    wait_purged()
    for n in map(int, args.sizes.split(",")):
        spec = work / f"scale{n}.yaml"
        spec.write_text(spec_text(n))
        runs = work / f"runs{n}"
        took, calls, proc = timed([*dlhpc, "submit", str(spec), "--runs-dir", str(runs)], env, log)
        row = {"trials": n, "submit_s": round(took, 2), "submit_calls": calls, "submitted": proc.returncode == 0}
        packing = [line for line in proc.stdout.splitlines() if line.startswith("packing:")]
        if packing:
            row["packed"] = packing[0].split("runs ", 1)[1].split(" trials", 1)[0] + " trials per task"
        if proc.returncode != 0:
            row["refused"] = proc.stderr.strip().splitlines()[-1][:160]
        else:
            (exp,) = runs.iterdir()
            for command in ("status", "summary"):
                took, calls, out = timed([*dlhpc, command, str(exp), "--json"], env, log)
                row[f"{command}_s"], row[f"{command}_calls"] = round(took, 2), calls
                row[f"{command}_rows"] = len(
                    json.loads(out.stdout)["trials"] if command == "status" else json.loads(out.stdout)
                )
            subprocess.run([*dlhpc, "cancel", str(exp)], env=env, capture_output=True)
        wait_purged()
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(runs, ignore_errors=True)  # (100,000 trial folders: gone before the next size)
    print_table(rows)
    shutil.rmtree(work, ignore_errors=True)


def wait_purged(timeout_s: float = 300) -> None:
    """Until slurmctld has forgotten every job (MinJobAge after they end): a job array counts one
    job per task against MaxJobCount, so the next size would meet this one's leftovers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i"], capture_output=True, text=True)
        if listed.returncode == 0 and not listed.stdout.strip():
            return
        time.sleep(5)


def print_table(rows: list) -> None:
    print(f"\n{'trials':>7} {'submit s':>9} {'calls':>6} {'status s':>9} {'calls':>6} {'summary s':>10} {'calls':>6}")
    for r in rows:
        print(
            f"{r['trials']:>7} {r['submit_s']:>9} {r['submit_calls']:>6} {r.get('status_s', '-')!s:>9} "
            f"{r.get('status_calls', '-')!s:>6} {r.get('summary_s', '-')!s:>10} {r.get('summary_calls', '-')!s:>6}"
            + (f"   refused: {r['refused']}" if "refused" in r else "")
            + (f"   packed: {r['packed']}" if "packed" in r else "")
        )
    print("\ngrowth: microseconds per trial (and the ratio to the size before)")
    for before, r in zip([None, *rows], rows, strict=False):
        cells = []
        for key in ("submit_s", "status_s", "summary_s"):
            if key not in r:
                cells.append(f"{key[:-2]} -")
                continue
            ratio = (
                f" (x{r[key] / before[key]:.1f} for x{r['trials'] / before['trials']:.0f} trials)"
                if (before and before.get(key))
                else ""
            )
            cells.append(f"{key[:-2]} {r[key] / r['trials'] * 1e6:.0f} us{ratio}")
        print(f"{r['trials']:>7}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
