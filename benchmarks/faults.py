"""Faults made for real on the test clusters, each several times; one table of what came of them.

    DLHPC_DATA=/path/to/mnist .venv/bin/python benchmarks/faults.py [--runs 3] [--only NAME,...]

Needs root (a tmpfs is mounted; SLURM's daemons are stopped and started) and the clusters of
scripts/testcluster.sh. For every run of every fault it checks what a user would: did the trial
end COMPLETED after the documented recovery (resubmit --failed, or nothing), how many epochs
were trained twice (done before the fault, after the checkpoint it resumed from), how many
records were lost (an epoch missing or twice in metrics.jsonl, or no result.json), and how long
dlhpc took to say what happened (from the fault to the state or answer that names it).

    fault              runs  recovered  epochs lost  records lost  time to detect (median, max)
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import (  # noqa: E402 - the tests' helpers, one copy
    epochs_of,
    kill_host,
    nodes_back_in_service,
    on_host,
    pbs_nodes_free,
    rank_pid,
    scontrol_job,
    start_controller,
    stop_controller,
    wait_restarted,
)

DATA = os.environ.get("DLHPC_DATA", str(ROOT.parent / "shared" / "data" / "mnist"))
EPOCHS = 12
SPEC = """
name: {name}
model: {{name: {model}}}
train: {{epochs: {epochs}, batch_size: 64}}
data: {{train_subset: 2000, root: {data}}}
resources: {{scheduler: {scheduler}, nodes: {nodes}, tasks_per_node: {ranks}, cpus_per_task: 1, mem: 2G,
            time: "00:10:00", timeouts: {{node: 15}}{more}}}
"""
PBS = "/opt/pbs"
# OpenPBS's qsub, not Debian's SLURM wrapper of that name (sbatch and squeue are not in it)
os.environ["PATH"] = f"{PBS}/bin:{os.environ['PATH']}"


def dlhpc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlhpc", *map(str, args)], capture_output=True, text=True)


def submit(
    work: Path, name: str, scheduler: str, ranks=1, model="cnn", epochs=EPOCHS, runs=None, nodes=1, more=""
) -> Path:
    spec = work / f"{name}.yaml"
    options = dict(model=model, epochs=epochs, data=DATA, scheduler=scheduler, ranks=ranks, nodes=nodes, more=more)
    text = SPEC.format(name=name, **options)
    spec.write_text(text)
    runs = runs or work / "runs"
    r = dlhpc("submit", spec, "--runs-dir", runs)
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    return max(runs.glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)


def trial_of(exp: Path) -> Path:
    return next(p for p in exp.iterdir() if (p / "spec.yaml").exists())


def wait_until(condition, timeout: float, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"waited {timeout} s")


def status(exp: Path) -> dict:
    return json.loads(dlhpc("status", exp, "--json").stdout)


def finished(exp: Path, timeout=300) -> dict:
    return wait_until(lambda: (lambda s: s if s["finished"] else None)(status(exp)), timeout, poll=1)


def outcome(exp: Path, before_fault: int, detect_s: float | None, commanded: bool, epochs_in_all=EPOCHS) -> dict:
    """What the run came to, once recovered (or not); `commanded`: whether the recovery needed a
    dlhpc command (resubmit) rather than none. A program of one's own that logs every epoch it
    trains shows an epoch trained twice as a line twice (no resumed_from_epoch in its result)."""
    trial = trial_of(exp)
    report = finished(exp, timeout=600)
    epochs = epochs_of(trial)
    result = json.loads((trial / "result.json").read_text()) if (trial / "result.json").exists() else None
    resumed = (result or {}).get("resumed_from_epoch") or 0
    recovered = report["trials"][0]["state"] == "COMPLETED"
    if not recovered:  # (why, for the one reading the table)
        print(dlhpc("why", exp).stdout, file=sys.stderr, flush=True)
    twice = len(epochs) - len(set(epochs))
    return {
        "recovered": recovered,
        "unattended": recovered and not commanded,
        "epochs_lost": max(0, before_fault - resumed) if "resumed_from_epoch" in (result or {}) else twice,
        "records_lost": len(set(range(1, epochs_in_all + 1)) ^ set(epochs)) + twice + (not result),
        "detect_s": detect_s,
    }


# ---- the faults: each returns outcome() ----


def rank_stopped(work: Path) -> dict:
    """Rank 1 of two SIGSTOPped after epoch 2 (local; resources.stall.action fail), then resubmit."""
    exp = submit(work, "stopped", "local", ranks=2, more=", stall: {factor: 3, min_s: 8, action: fail}")
    trial = trial_of(exp)
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    os.kill(rank_pid(trial, 1), signal.SIGSTOP)
    stopped, before = time.monotonic(), max(epochs_of(trial))
    failed = finished(exp, timeout=120)
    detect = time.monotonic() - stopped
    assert failed["trials"][0]["state"] == "FAILED", failed
    dlhpc("resubmit", exp, "--failed")
    return outcome(exp, before, detect, commanded=True)


def disk_full(work: Path) -> dict:
    """The runs folder's file system full while the checkpoint of epoch 2 is written, then freed
    and resubmitted. Detect: from the last good checkpoint to the FAILED result."""
    reference = submit(work, "ref", "local", model="mlp", epochs=1, runs=work / "ref")
    finished(reference)
    size = (trial_of(reference) / "checkpoint.pt").stat().st_size
    disk = work / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        subprocess.run(["fallocate", "-l", str(free - size - size // 2), str(disk / "filler")], check=True)
        exp = submit(work, "full", "local", model="mlp", runs=disk / "runs")
        trial = trial_of(exp)
        failed = finished(exp, timeout=120)
        assert failed["trials"][0]["state"] == "FAILED", failed
        detect = (trial / "result.json").stat().st_mtime - (trial / "checkpoint.pt").stat().st_mtime
        before = max(epochs_of(trial))
        (disk / "filler").unlink()
        dlhpc("resubmit", exp, "--failed")
        return outcome(exp, before, detect, commanded=True)
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def controller_down(work: Path) -> dict:
    """slurmctld and slurmdbd stopped for 20 s while the trial trains. Detect: how long `status`
    takes to answer that the scheduler does not (with the last known states)."""
    exp = submit(work, "outage", "slurm", epochs=EPOCHS)
    trial = trial_of(exp)
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    stop_controller()
    t0 = time.monotonic()
    try:
        answered = status(exp)
        detect = time.monotonic() - t0
        assert answered["scheduler_answers"] is False, answered
        time.sleep(max(0.0, 20 - detect))
    finally:
        start_controller()
        nodes_back_in_service()
    return outcome(exp, 0, detect, commanded=False)


def requeued(work: Path) -> dict:
    """`scontrol requeue` after epoch 3 (a preemption or an admin's requeue); SLURM's 2-minute
    hold is lifted 3 s after (as the tests do). Detect: none to do (not a failure)."""
    exp = submit(work, "requeue", "slurm", epochs=EPOCHS)
    trial = trial_of(exp)
    job = json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"]
    wait_until(lambda: len(epochs_of(trial)) >= 3, 180)
    before = max(epochs_of(trial))
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_restarted(job, restarts=1, timeout=180)
    return outcome(exp, before, None, commanded=False)


def _lost_after(trial: Path, t0: float) -> float:
    """Seconds from t0 until result.json names the lost node."""
    wait_until(lambda: "lost_node" in (json.loads((trial / "result.json").read_text()) or {}), 120)
    return time.monotonic() - t0


def node_died_pbs(work: Path) -> dict:
    """Every process of test host n2 (its pbs_mom, the job's runner and rank) killed after epoch 2
    of a two-node PBS trial; the mom started again, then resubmit --failed. Detect: to the record
    that names n2 lost."""
    exp = submit(work, "nodedied", "pbs", nodes=2)
    trial = trial_of(exp)
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    kill_host("n2", keep=("slurmd",))
    t0, before = time.monotonic(), max(epochs_of(trial))
    try:
        detect = _lost_after(trial, t0)
        finished(exp, timeout=120)
    finally:
        on_host("n2", "env", "PBS_CONF_FILE=/etc/pbs-n2.conf", f"{PBS}/sbin/pbs_mom")
        pbs_nodes_free()
    dlhpc("resubmit", exp, "--failed")
    return outcome(exp, before, detect, commanded=True)


def node_died_slurm(work: Path) -> dict:
    """As node_died_pbs on SLURM (slurmd killed with the job's processes): the runner on n1 ends in
    bounded time and requeues the job (as SLURM would, after SlurmdTimeout); slurmd started again,
    the requeued job resumes by itself."""
    exp = submit(work, "nodedied", "slurm", nodes=2)
    trial = trial_of(exp)
    job = json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"]
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    kill_host("n2", keep=("pbs_mom",))
    t0, before = time.monotonic(), max(epochs_of(trial))
    try:
        detect = _lost_after(trial, t0)
        wait_until(lambda: scontrol_job(job).get("JobState") == "PENDING", 180, poll=1)
    finally:
        on_host("n2", "slurmd", "-N", "n2")
        nodes_back_in_service()
    # (SLURM's own hold of the requeued job is kept: the revived slurmd may still end the dead run)
    wait_until(lambda: scontrol_job(job).get("JobState") == "COMPLETED", 420, poll=2)
    return outcome(exp, before, detect, commanded=False)


def link_down(work: Path) -> dict:
    """n2's network link taken down for 25 s after epoch 2 of a two-node PBS trial (no process
    dies: the ranks hang in their collective). Detect: to the record that names n2 lost
    (resources.timeouts.node 15 s). Then the link up, and resubmit --failed."""
    exp = submit(work, "linkdown", "pbs", nodes=2)
    trial = trial_of(exp)
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    subprocess.run(["ip", "link", "set", "veth-n2", "down"], check=True)
    t0, before = time.monotonic(), max(epochs_of(trial))
    try:
        detect = _lost_after(trial, t0)
        time.sleep(max(0.0, 25 - detect))
    finally:
        subprocess.run(["ip", "link", "set", "veth-n2", "up"], check=True)
    finished(exp, timeout=300)
    pbs_nodes_free()
    dlhpc("resubmit", exp, "--failed")
    return outcome(exp, before, detect, commanded=True)


# ---- recovered without a command (resources.retry.automatic, and the SLURM job that ends itself) ----

AUTOMATIC = "retry: {automatic: true, exit_codes: [85], factor: 3, max_mem: 2G, max_time: '00:04:00'}"
# a program of one's own: six 1-second epochs, each saved; on its first run it exits 85 ("run me
# again") after epoch 2; on the stop signal it exits at once (its last epoch is saved)
AGAIN_PY = """
import json, os, sys, time
from pathlib import Path
from dlhpc import trial

state = Path(os.environ["DLHPC_TRIAL_DIR"]) / "state.json"
start = json.loads(state.read_text())["epoch"] if state.exists() else 0
for epoch in range(start + 1, int(os.environ.get("EPOCHS", "6")) + 1):
    for _ in range(int(float(os.environ.get("EPOCH_S", "1")) * 5)):
        if trial.should_checkpoint():
            sys.exit(0)
        time.sleep(0.2)
    trial.log(epoch=epoch)
    state.write_text(json.dumps({"epoch": epoch}))
    if epoch == 2 and start == 0 and os.environ.get("ASK_AGAIN"):
        sys.exit(85)
"""


def submit_program(work: Path, name: str, resources: str, env: dict) -> Path:
    folder = work / name
    folder.mkdir()
    (folder / "again.py").write_text(AGAIN_PY)
    variables = ", ".join(f"{k}: '{v}'" for k, v in env.items())
    spec = folder / "exp.yaml"
    spec.write_text(
        f"name: {name}\nprogram: {{script: again.py}}\nenv: {{vars: {{{variables}}}}}\n"
        f"resources: {{{resources}, {AUTOMATIC}}}\n"
    )
    r = dlhpc("submit", spec, "--runs-dir", work / "runs")
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    return max((work / "runs").glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)


def _retry_queued_after(exp: Path, t0: float) -> float:
    """Seconds from t0 until status says the trial is being (or was) retried."""
    said = ("retrying ", "retried ", "not retried")  # (the last: it ends here, and outcome says so)
    wait_until(lambda: any(w in (status(exp)["trials"][0].get("flags") or "") for w in said), 300, poll=0.5)
    return time.monotonic() - t0


def _failed_at(exp: Path) -> float:
    """When status first shows the trial failed (its recovery job then decides)."""
    said = ("recovery job", "retrying ", "retried ", "not retried")
    wait_until(lambda: any(w in (status(exp)["trials"][0].get("flags") or "") for w in said), 300, poll=0.5)
    return time.monotonic()


def exit_code_auto(work: Path, scheduler: str) -> dict:
    """A program that exits 85 after epoch 2 of 6 on its first run (retry.exit_codes: [85]).
    Detect: from epoch 2's line to the retry queued."""
    resources = f'scheduler: {scheduler}, cpus_per_task: 1, mem: 500M, time: "00:05:00"'
    exp = submit_program(work, "again", resources, {"ASK_AGAIN": "1"})
    trial = trial_of(exp)
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    return outcome(exp, 0, _retry_queued_after(exp, time.monotonic()), commanded=False, epochs_in_all=6)


def timeout_auto(work: Path) -> dict:
    """Ten 8-second epochs with one minute and no requeue left (SLURM): out of time, retried with
    3 times the time. Detect: from the FAILED state to the retry queued."""
    resources = (
        'scheduler: slurm, cpus_per_task: 1, mem: 500M, time: "00:01:00", signal_margin_s: 30, timeout_requeues: 0'
    )
    exp = submit_program(work, "slow", resources, {"EPOCHS": "10", "EPOCH_S": "8"})
    failed = _failed_at(exp)
    return outcome(exp, 0, _retry_queued_after(exp, failed), commanded=False, epochs_in_all=10)


def oom_auto(work: Path) -> dict:
    """The built-in trainer killed for memory at 150M on SLURM, retried at 1200M by itself.
    Detect: from the FAILED state to the retry queued."""
    (work / "oom.yaml").write_text(
        f"name: oom\nmodel: {{name: cnn, width: 8}}\ntrain: {{epochs: 2}}\n"
        f"data: {{train_subset: 2000, root: {DATA}}}\n"
        'resources: {scheduler: slurm, cpus_per_task: 1, mem: 150M, time: "00:05:00", '
        "retry: {automatic: true, factor: 8, max_mem: 2G}}\n"
    )
    r = dlhpc("submit", work / "oom.yaml", "--runs-dir", work / "runs")
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    exp = max((work / "runs").glob("oom-*"), key=lambda p: p.stat().st_mtime)
    failed = _failed_at(exp)
    return outcome(exp, 0, _retry_queued_after(exp, failed), commanded=False, epochs_in_all=2)


def node_died_pbs_auto(work: Path) -> dict:
    """node_died_pbs with retry.automatic: the recovery job resubmits it (no command); the mom is
    started again meanwhile. Detect: from the kill to the retry queued."""
    exp = submit(work, "nodedied", "pbs", nodes=2, more=", retry: {automatic: true}")
    trial = trial_of(exp)
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    kill_host("n2", keep=("slurmd",))
    t0, before = time.monotonic(), max(epochs_of(trial))
    try:
        detect = _retry_queued_after(exp, t0)
    finally:
        on_host("n2", "env", "PBS_CONF_FILE=/etc/pbs-n2.conf", f"{PBS}/sbin/pbs_mom")
        pbs_nodes_free()
    return outcome(exp, before, detect, commanded=False)


def node_back_fast_slurm(work: Path) -> dict:
    """node_died_slurm, but n2's slurmd back 3 s after the kill (a quick reboot: SLURM never
    declares NODE_FAIL): rank 0's runner requeues the job itself. Detect: from the kill to the
    job leaving RUNNING (before the fix it held both nodes to its walltime)."""
    exp = submit(work, "nodeback", "slurm", nodes=2)
    trial = trial_of(exp)
    job = json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"]
    wait_until(lambda: len(epochs_of(trial)) >= 2, 180)
    kill_host("n2", keep=("pbs_mom",))
    t0, before = time.monotonic(), max(epochs_of(trial))
    try:
        time.sleep(3)
        on_host("n2", "slurmd", "-N", "n2")
        wait_until(lambda: scontrol_job(job).get("JobState") != "RUNNING", 900, poll=0.5)
        detect = time.monotonic() - t0
    finally:
        nodes_back_in_service()
    wait_until(lambda: scontrol_job(job).get("JobState") == "COMPLETED", 420, poll=2)
    return outcome(exp, before, detect, commanded=False)


FAULTS = {
    "rank stopped": rank_stopped,
    "node died (PBS)": node_died_pbs,
    "node died (SLURM)": node_died_slurm,
    "link down (PBS)": link_down,
    "disk full": disk_full,
    "controller down": controller_down,
    "requeued": requeued,
    "node back fast (SLURM)": node_back_fast_slurm,
    "out of memory (auto)": oom_auto,
    "time-out (auto)": timeout_auto,
    "node died (PBS) auto": node_died_pbs_auto,
    "exit 85 (SLURM) auto": lambda work: exit_code_auto(work, "slurm"),
    "exit 85 (PBS) auto": lambda work: exit_code_auto(work, "pbs"),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(FAULTS), help="faults, comma-separated")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    rows = []
    print(
        f"{'fault':22} {'runs':>4} {'recovered':>9} {'without a command':>17} {'epochs lost':>11} {'records lost':>12}"
        "  time to detect"
    )
    for name in args.only.split(","):
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="dlhpc-fault-") as work:
                results.append(FAULTS[name](Path(work)))
        detect = [r["detect_s"] for r in results if r["detect_s"] is not None]
        row = {
            "fault": name,
            "runs": len(results),
            "recovered": sum(r["recovered"] for r in results),
            "without_a_command": sum(r["unattended"] for r in results),
            "epochs_lost": sum(r["epochs_lost"] for r in results),
            "records_lost": sum(r["records_lost"] for r in results),
            "detect_median_s": round(statistics.median(detect), 1) if detect else None,
            "detect_max_s": round(max(detect), 1) if detect else None,
        }
        rows.append(row)
        when = f"{row['detect_median_s']} s, {row['detect_max_s']} s" if detect else "-"
        print(
            f"{name:22} {row['runs']:>4} {row['recovered']:>9} {row['without_a_command']:>17} {row['epochs_lost']:>11}"
            f" {row['records_lost']:>12}  {when}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
