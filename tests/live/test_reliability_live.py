"""Crash-safe files, scheduler faults, hostile input, concurrent use — and, on the live cluster,
requeue with exact resume and time limits."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import (
    DATA,
    ROOT,
    assert_ran_as_written,
    event_steps,
    exp_dir_from,
    fake_commands,
    release_if_requeued,
    scontrol_job,
    slurm_experiment,
    submit_hostile,
    uninterrupted,
    wait_finished,
    write,
)

WRITER = textwrap.dedent("""
    import json, os, sys
    from dlhpc.fsutil import atomic_write_json, atomic_write_bytes, append_line_atomic
    d = sys.argv[1]
    m = d + "/metrics.jsonl"
    i = json.loads(open(m).read().splitlines()[-1])["epoch"] if os.path.exists(m) else 0
    while True:
        i += 1
        payload = {"version": i, "pad": "x" * (1000 + 97 * (i % 50))}
        atomic_write_json(d + "/result.json", payload)
        atomic_write_bytes(d + "/checkpoint.pt", json.dumps(payload).encode() * 50)
        append_line_atomic(d + "/metrics.jsonl", json.dumps({"epoch": i}))
""")


def test_files_survive_sigkill_at_random_points(tmp_path):
    script = write(tmp_path / "writer.py", WRITER)
    kills = 0
    rng = random.Random(0)
    last_epochs = 0
    while kills < 120:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)], env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
        )
        time.sleep(0.06 + rng.random() * 0.05)  # interpreter start-up, then a random point in the loop
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if not (tmp_path / "result.json").exists():
            continue
        result = json.loads((tmp_path / "result.json").read_text())  # never truncated
        assert len(result["pad"]) >= 1000
        checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
        one = len(checkpoint) // 50
        assert json.loads(checkpoint[:one])["version"] >= 1 and checkpoint == checkpoint[:one] * 50
        lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(line)["epoch"] for line in lines]  # every line whole
        assert epochs == sorted(epochs) and len(epochs) >= last_epochs
        last_epochs = len(epochs)
    assert kills >= 100 and last_epochs > 0


@pytest.mark.parametrize(
    "sacct,warned",
    [
        ("echo 'sacct: error: Problem talking to the database' >&2; exit 1", True),
        ("sleep 10", True),
        ("exit 0", False),
        ("echo 'garbage without pipes'", False),
    ],
)
def test_status_degrades_when_sacct_misbehaves(dlhpc, tmp_path, sacct, warned, budget):
    exp = slurm_experiment(tmp_path)
    env = fake_commands(tmp_path, sacct=sacct, squeue="exit 0")
    t0 = time.monotonic()
    r = dlhpc("status", exp, "--json", env=env)
    assert time.monotonic() - t0 < budget(8)
    assert r.code == 0, r
    assert "Traceback" not in r.err
    report = json.loads(r.out)
    states = {t["trial"]: t["state"] for t in report["trials"]}
    assert states["000-aaaaaa"] == "COMPLETED"  # the result file still counts
    assert states["001-bbbbbb"] == "UNKNOWN"  # left squeue, not (yet) in sacct: not FAILED
    assert any("sacct failed" in w for w in report["warnings"]) == warned, report
    summary = dlhpc("summary", exp, "--format", "json", env=env)
    assert summary.code == 0 and "Traceback" not in summary.err


def test_summary_while_a_run_writes(dlhpc, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlhpc",
            "run",
            str(ROOT / "jobs" / "ci-smoke.yaml"),
            "--set",
            f"runs_dir={out}",
            "--set",
            "train.epochs=3",
            "--set",
            "data.train_subset=3000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen = 0
    try:
        while proc.poll() is None:
            if out.exists() and any(out.iterdir()):
                r = dlhpc("summary", out / next(out.iterdir()).name, "--format", "json", cwd=tmp_path)
                assert r.code == 0 and "Traceback" not in r.err, r  # nothing has failed
                rows = json.loads(r.out)
                for row in rows:
                    assert row["state"] in ("PENDING", "RUNNING", "COMPLETED")
                    assert 0 <= row["epochs_done"] <= 3
                seen += 1
            time.sleep(0.2)
    finally:
        proc.wait()
    assert seen >= 3 and proc.returncode == 0


def submit_one(dlhpc, tmp_path, name, spec_text):
    """Submit a one-trial spec; return (experiment dir, job id, trial dir)."""
    spec = write(tmp_path / f"{name}.yaml", spec_text)
    r = dlhpc("submit", spec, "--set", f"runs_dir={tmp_path / 'runs'}")
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    record = json.loads((exp / "experiment.json").read_text())
    return exp, record["jobs"][0]["job_id"], exp / record["jobs"][0]["trial"]


@pytest.mark.slurm
def test_requeued_twice_resumes_exactly(slurm_cluster, dlhpc, tmp_path):
    text = f"""
name: requeue
model: {{name: cnn, width: 8}}
train: {{epochs: 20, batch_size: 64, lr: 0.1, seed: 3, target_accuracy: 0.9}}
data: {{train_subset: 3000, root: {DATA}}}
resources: {{scheduler: slurm, tasks_per_node: 2, cpus_per_task: 1, mem: 3G, time: "00:10:00"}}
tracking: {{tensorboard: true}}
"""
    exp, job_id, trial = submit_one(dlhpc, tmp_path, "requeue", text)

    def epochs_done():
        try:
            return len((trial / "metrics.jsonl").read_text().splitlines())
        except FileNotFoundError:
            return 0

    def wait_for(condition, what, timeout=180):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {scontrol_job(job_id)}"
            release_if_requeued(job_id)
            time.sleep(0.2)

    for n in (1, 2):
        # running again (after n-1 requeues), and training in this run, then requeue it
        wait_for(
            lambda n=n: (
                scontrol_job(job_id).get("JobState") == "RUNNING" and scontrol_job(job_id).get("Restarts") == str(n - 1)
            ),
            f"run {n}",
        )
        first = epochs_done()
        wait_for(lambda first=first: epochs_done() > first, f"an epoch in run {n}")
        assert epochs_done() < 20, "training finished before the requeue could happen"
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        wait_for(lambda n=n: scontrol_job(job_id).get("Restarts") == str(n), f"restart {n}")
    report = wait_finished(dlhpc, exp, timeout=300)
    assert report["trials"][0]["state"] == "COMPLETED", report
    assert scontrol_job(job_id).get("Restarts") == "2"
    lines = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, 21))  # every epoch exactly once
    # The runner's last sync of the event file follows the trainer's result.json by up to one
    # sync period (5 s); the file is whole once the job has ended.
    wait_for(lambda: scontrol_job(job_id).get("JobState") == "COMPLETED", "the job's end", timeout=60)
    steps = event_steps(trial)  # and once in TensorBoard's files, one run
    assert steps["test_acc"] == steps["train_loss"] == list(range(1, 21)), steps
    result = json.loads((trial / "result.json").read_text())
    assert result["resumed_from_epoch"] is not None

    expected = uninterrupted(trial, tmp_path / "reference")
    assert result["test_acc"] == expected["test_acc"] and result["test_loss"] == expected["test_loss"]


@pytest.mark.slurm
def test_time_limit_requeues_then_fails_cleanly_at_the_bound(slurm_cluster, dlhpc, tmp_path):
    text = f"""
name: timelimit
model: {{name: cnn, width: 8}}
train: {{epochs: 10000, batch_size: 64, target_accuracy: 0.9}}
data: {{train_subset: 2000, root: {DATA}}}
resources: {{scheduler: slurm, tasks_per_node: 1, cpus_per_task: 1, mem: 2G, time: "00:01:00",
            signal_margin_s: 40, timeout_requeues: 1}}
"""
    exp, job_id, trial = submit_one(dlhpc, tmp_path, "timelimit", text)
    deadline = time.monotonic() + 400
    while scontrol_job(job_id).get("JobState") not in ("FAILED", "TIMEOUT", "COMPLETED", "CANCELLED"):
        assert time.monotonic() < deadline, scontrol_job(job_id)
        release_if_requeued(job_id)
        time.sleep(0.5)
    report = wait_finished(dlhpc, exp, timeout=60)
    (row,) = report["trials"]
    # submitit stops on the last warning signal, before SLURM's limit: the job FAILED, not TIMEOUT
    assert row["state"] == "FAILED", report
    assert scontrol_job(job_id).get("Restarts") == "1"  # requeued once on the time limit, then stopped
    requeues = json.loads((trial / "requeues.json").read_text())
    assert requeues["count"] == 1  # the one SLURM counted
    result = json.loads((trial / "result.json").read_text())
    assert result["state"] == "FAILED" and "timed-out too many times" in result["error"], (result, job_err(trial))
    summary = json.loads(dlhpc("summary", exp, "--format", "json").out)
    assert summary[0]["state"] == "FAILED" and "timed-out" in summary[0]["flags"]
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert answer["cause"].startswith("out of time: resources.time 00:01:00 ran out with no requeues left")
    assert "raise resources.time, or resources.timeout_requeues" in answer["fix"]


def job_err(trial: Path, lines: int = 40) -> str:
    try:
        return "\n".join((trial / "job.err").read_text().splitlines()[-lines:])
    except OSError:
        return "(no job.err)"


def entry_process(folder: Path) -> tuple[str, bool] | None:
    """(pid, whether it has a handler for USR2) of the job's entry process for `folder`, if running."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        interpreter = os.path.basename(argv[0]).startswith(b"python")  # (not the srun that started it)
        if interpreter and b"dlhpc.schedulers.job_entry" in argv and str(folder).encode() in argv:
            caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
            return proc.name, bool(caught & (1 << (signal.SIGUSR2 - 1)))
    return None


@pytest.mark.slurm
def test_a_time_limit_warning_while_the_job_starts_requeues_it(slurm_cluster, dlhpc, tmp_path):
    """The warning (USR2) can come before the job's interpreter has loaded submitit and the trial
    (a slow start on a loaded node): it must requeue the job like any other, not end it. The job
    is held in that window here by keeping its pickle away while the signal is sent."""
    text = f"""
name: early
model: {{name: softmax}}
train: {{epochs: 1, target_accuracy: 0.5}}
data: {{train_subset: 1000, root: {DATA}}}
resources: {{scheduler: slurm, cpus_per_task: 1, mem: 2G, time: "00:05:00", timeout_requeues: 1}}
"""
    exp, job_id, trial = submit_one(dlhpc, tmp_path, "early", text)
    (pickle,) = (exp / ".submitit").glob(f"{job_id}_submitted.pkl")
    aside = pickle.with_name("aside.pkl")
    pickle.rename(aside)  # the job's entry waits for it (up to a minute), signal handlers not yet set
    deadline, seen = time.monotonic() + 120, None
    while True:  # until the entry runs, and has a handler for USR2 (without one: 5 s, long enough to set it)
        assert time.monotonic() < deadline, scontrol_job(job_id)
        found = entry_process(exp / ".submitit")
        seen = seen or (found and time.monotonic())
        if found and (found[1] or time.monotonic() - seen > 5):
            break
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    time.sleep(1.0)
    aside.rename(pickle)
    while scontrol_job(job_id).get("JobState") not in ("FAILED", "TIMEOUT", "COMPLETED", "CANCELLED"):
        assert time.monotonic() < deadline + 120, scontrol_job(job_id)
        release_if_requeued(job_id)
        time.sleep(0.5)
    report = wait_finished(dlhpc, exp, timeout=60)
    history = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode,Start,End"],
        capture_output=True,
        text=True,
    ).stdout  # (every run of the job, for a failure's message)
    result = (trial / "result.json").read_text() if (trial / "result.json").exists() else None
    assert report["trials"][0]["state"] == "COMPLETED", (result, history, job_err(trial))
    assert scontrol_job(job_id).get("Restarts") == "1"


@pytest.mark.slurm
def test_hostile_values_run_exactly_as_written(slurm_cluster, dlhpc, tmp_path):
    exp, record = submit_hostile(dlhpc, tmp_path, "slurm")
    job = scontrol_job(record["jobs"][0]["job_id"])
    assert job["JobName"] == "hostile" and job["TimeLimit"] == "00:05:00" and job["NumNodes"] in ("1", "1-1")
    assert_ran_as_written(dlhpc, tmp_path, exp, record)


@pytest.mark.slurm
def test_two_submits_at_once_get_two_directories(slurm_cluster, tmp_path):
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}  # force the same timestamp
    argv = [
        sys.executable,
        "-m",
        "dlhpc",
        "submit",
        str(ROOT / "jobs" / "ci-smoke.yaml"),
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
        "--set",
        "train.epochs=1",
        "--set",
        "data.train_subset=500",
    ]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    dirs = sorted(d.name for d in (tmp_path / "runs").iterdir())
    assert len(dirs) == 2 and dirs[0] != dirs[1], dirs
    for d in dirs:
        record = json.loads((tmp_path / "runs" / d / "experiment.json").read_text())
        assert len(record["jobs"]) == 2
        assert str(tmp_path / "runs" / d) in (tmp_path / "runs" / d / "job-0.sh").read_text()
        subprocess.run([sys.executable, "-m", "dlhpc", "cancel", str(tmp_path / "runs" / d)], capture_output=True)
