"""Sweeps at scale: what each trial used of what it asked for, the environment an experiment was
submitted with, limits known before submitting, packing, resubmission. Live on the SLURM test
cluster (and local)."""

import json
import re
import subprocess
import time

import pytest
import yaml

from conftest import CHAIN, chain, wait_finished, wait_restarted, write

IDLE_SPEC = """
name: idle
model: {name: softmax}
train: {epochs: 1}
data: {train_subset: 5000}
env:
  setup: ["sleep 15"]            # holds the CPUs without using them
resources: {scheduler: slurm, cpus_per_task: 2, mem: 6G, time: "00:05:00"}
"""


def git(repo, *args):
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
    )


@pytest.mark.slurm
def test_efficiency_hints_and_the_environment_record(slurm_cluster, dlhpc, tmp_path):
    repo = tmp_path / "project"
    spec = write(repo / "idle.yaml", IDLE_SPEC)
    git(repo, "init", "-q")
    git(repo, "add", "idle.yaml")
    git(repo, "commit", "-q", "-m", "spec")
    write(repo / "idle.yaml", IDLE_SPEC + "# an uncommitted change\n")
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    wait_finished(dlhpc, exp, timeout=180)

    deadline = time.monotonic() + 60  # slurmdbd completes the step records (MaxRSS) after the job ends
    while True:
        (row,) = json.loads(dlhpc("summary", exp, "--efficiency", "--json").out)
        if row["mem_peak_mb"] is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert row["cpus"] == 2 and row["cpus_used"] < 0.5 and row["cpu_efficiency"] < 0.25, row
    assert row["mem_req_mb"] == 6144 and 100 < row["mem_peak_mb"] < 1536, row
    assert "asked for 2 CPUs, used" in row["hint"] and "ask for 1" in row["hint"], row["hint"]
    assert "asked for 6G of memory, the peak was" in row["hint"], row["hint"]
    table = dlhpc("summary", exp, "--efficiency")
    assert "hint: asked for 2 CPUs, used" in table.out

    record = json.loads((exp / "experiment.json").read_text())
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record["git"] == {"repo": str(repo), "commit": head, "dirty": True}
    for package in ("dlhpc", "torch", "submitit", "python"):
        assert record["versions"][package], package
    assert "torch==" in (exp / "environment.txt").read_text()
    shown = dlhpc("show", exp)
    assert shown.code == 0 and f"{head[:12]} (with uncommitted changes)" in shown.out, shown
    assert "nodes n1" in shown.out or "nodes n2" in shown.out
    (trial,) = json.loads(dlhpc("show", exp, "--json").out)["trials"]
    assert trial["rank_nodes"][0] in ("n1", "n2") and trial["software"]["torch"]
    with_commit = dlhpc("summary", exp, "--commit", "--format", "csv")
    assert f"{head[:12]}+dirty" in with_commit.out


def many(n_lr: int, n_seed: int) -> str:
    return (
        f"name: many\nmodel: {{name: softmax}}\ntrain: {{epochs: 1}}\n"
        f"resources: {{scheduler: slurm, cpus_per_task: 1, mem: 1G, time: '00:05:00'}}\n"
        f"sweep:\n  train.lr: {[round(0.01 * (i + 1), 2) for i in range(n_lr)]}\n"
        f"  train.seed: {list(range(n_seed))}\n"
    )


@pytest.mark.slurm
@pytest.mark.perf
def test_ten_thousand_trials_are_refused_in_under_two_seconds(slurm_cluster, dlhpc, tmp_path, budget):
    t0 = time.monotonic()
    spec = write(tmp_path / "many.yaml", many(100, 100))
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", "--set", "resources.trials_per_task=1")
    took = time.monotonic() - t0
    assert r.code == 2, r
    assert took < budget(2), f"refusing took {took:.2f} s, budget {budget(2):.2f} s"
    assert "adds 10,010 jobs" in r.err and "at most 10,000 jobs (MaxJobCount)" in r.err and "Fix:" in r.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slurm
def test_ten_thousand_trials_are_packed_to_fit_when_left_open(slurm_cluster, dlhpc, tmp_path):
    spec = write(tmp_path / "many.yaml", many(100, 100))
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", "--dry-run")
    assert r.code == 0, r
    assert "would add 10,010 jobs, but the cluster holds at most 10,000 jobs (MaxJobCount)" in r.out, r.out
    assert "each array task runs 2 trials one after another (5,000 tasks, walltime 00:10:00 each)" in r.out
    assert r.out.count("accepted: sbatch: Job") == 5 and "nothing was queued" in r.out  # sbatch --test-only


@pytest.mark.slurm
def test_packing_counts_the_jobs_slurm_has_not_yet_forgotten(slurm_cluster, dlhpc, tmp_path):
    # a cancelled array stays in slurmctld's memory, and against MaxJobCount, until MinJobAge
    # after it ended: a sweep submitted just after cancelling another must leave room for it
    # (squeue's default list leaves it out, and 10,000 more jobs were refused, sbatch retrying)
    queued = subprocess.run(
        ["sbatch", "--parsable", "--begin=now+1hour", "--array=0-999", "-o", "/dev/null", "--wrap", "true"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    subprocess.run(["scancel", queued.stdout.strip().split(";")[0]], check=True)
    remembered = subprocess.run(["squeue", "-h", "-r", "--states=all"], capture_output=True, text=True).stdout
    assert len(remembered.splitlines()) >= 1000, remembered[-500:]  # (the precondition: still remembered)
    r = dlhpc("submit", write(tmp_path / "many.yaml", many(100, 100)), "--runs-dir", tmp_path / "runs", "--dry-run")
    assert r.code == 0, r
    counted = re.search(r"at most 10,000 jobs \(MaxJobCount\) and has ([\d,]+)", r.out)
    assert counted and int(counted.group(1).replace(",", "")) >= 1000, r.out  # the cancelled array's 1,000 among them


PACKED = """
name: packed
model: {{name: cnn, width: 8}}
train: {{epochs: {epochs}, batch_size: 64}}
data: {{train_subset: 3000}}
resources: {{scheduler: slurm, cpus_per_task: 1, mem: 2G, time: "00:05:00", trials_per_task: 2}}
sweep: {{train.seed: [0, 1, 2]}}
"""


@pytest.mark.slurm
def test_packed_trials_keep_their_own_files_and_a_requeue_skips_finished_ones(slurm_cluster, dlhpc, tmp_path):
    r = dlhpc("submit", write(tmp_path / "packed.yaml", PACKED.format(epochs=20)), "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    assert "#SBATCH --array=0-1%2" in (exp / "job-0.sh").read_text()  # 3 trials in 2 tasks
    assert "#SBATCH --time=00:10:00" in (exp / "job-0.sh").read_text()  # two trials' time
    record = json.loads((exp / "experiment.json").read_text())
    by_trial = {j["trial"]: j for j in record["jobs"]}
    first, second, third = (t["id"] for t in record["trials"])
    assert by_trial[first]["job_id"] == by_trial[second]["job_id"] != by_trial[third]["job_id"]
    assert (by_trial[first]["task_position"], by_trial[second]["task_position"]) == (0, 1)

    # while the task trains its first trial, the second waits in it, and says so
    deadline = time.monotonic() + 120
    while not (exp / first / "metrics.jsonl").exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    rows = {t["trial"]: t for t in json.loads(dlhpc("status", exp, "--json").out)["trials"]}
    assert rows[first]["state"] == "RUNNING" and rows[second]["state"] == "PENDING", rows
    assert "waiting for the trials before it in its task" in rows[second]["why_pending"], rows

    # requeue the task once its second trial has an epoch: the first is not trained again
    job = by_trial[second]["job_id"]
    while not (exp / second / "checkpoint.pt").exists():
        assert time.monotonic() < deadline + 120
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_restarted(job, restarts=1, timeout=300)  # (SLURM holds a requeued job ~2 min: not here)
    report = wait_finished(dlhpc, exp, timeout=300)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED"] * 3, report
    for trial in (first, second, third):
        epochs = [json.loads(line)["epoch"] for line in (exp / trial / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 21)), (trial, epochs)  # every epoch exactly once
        assert json.loads((exp / trial / "result.json").read_text())["state"] == "COMPLETED"
    assert (exp / first / "job.out").read_text().count(f"trial {first} starting, 1 of 2") == 1
    assert (exp / second / "job.out").read_text().count(f"trial {second} starting, 2 of 2") == 2
    assert json.loads((exp / second / "result.json").read_text())["resumed_from_epoch"] >= 1
    rows = json.loads(dlhpc("summary", exp, "--json").out)
    shared = [row["core_hours"] for row in rows if row["trial"] in (first, second)]
    assert shared[0] == shared[1] > 0  # the task's hours, shared by its two trials


@pytest.mark.slurm
def test_association_limit_is_known_before_submitting(slurm_cluster, dlhpc, tmp_path):
    limit = ["sacctmgr", "-i", "modify", "user", "root", "set"]
    subprocess.run([*limit, "MaxSubmitJobs=5"], check=True, capture_output=True)
    try:
        spec = write(tmp_path / "eight.yaml", many(4, 2))
        r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", "--set", "resources.trials_per_task=1")
        assert r.code == 2, r
        assert "allows 5 submitted jobs (MaxSubmitJobs)" in r.err and "adds 9" in r.err, r.err
        assert not (tmp_path / "runs").exists()
        # left open, submit packs two trials to a task: 4 tasks and the array's record fit in 5
        packed = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", "--dry-run")
        assert packed.code == 0 and "each array task runs 2 trials one after another (4 tasks" in packed.out
    finally:
        subprocess.run([*limit, "MaxSubmitJobs=-1"], check=True, capture_output=True)


RESUME_SPEC = """
name: again
model: {{name: cnn, width: 8}}
train: {{epochs: {epochs}, batch_size: 64}}
data: {{train_subset: 6000}}
resources: {{scheduler: {scheduler}, cpus_per_task: 1, mem: 2G, time: "00:10:00"}}
sweep: {{train.seed: [0, 1]}}
"""


@pytest.mark.parametrize(
    "scheduler",
    ["local", pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("pbs", marks=pytest.mark.pbs)],
)
def test_resubmit_runs_failed_trials_again_from_their_checkpoints(request, dlhpc, tmp_path, scheduler):
    if scheduler == "slurm":
        request.getfixturevalue("slurm_cluster")
    if scheduler == "pbs":  # OpenPBS's commands first on PATH
        env = request.getfixturevalue("pbs_cluster")
        plain = dlhpc

        def dlhpc(*args, **kwargs):
            return plain(*args, env=env, **kwargs)

    spec = write(tmp_path / "again.yaml", RESUME_SPEC.format(epochs=30, scheduler=scheduler))
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    deadline = time.monotonic() + 120
    while not (exp / "000-6fb706" / "checkpoint.pt").exists():  # the first trial has an epoch to resume from
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert dlhpc("cancel", exp).code == 0
    cancelled = wait_finished(dlhpc, exp, timeout=120)
    assert {t["state"] for t in cancelled["trials"]} == {"CANCELLED"}, cancelled
    first_jobs = [t["job_id"] for t in cancelled["trials"]]
    # shorter now, so the test ends: the trials' spec.yaml is what a resubmission runs
    for trial in ("000-6fb706", "001-31606b"):
        path = exp / trial / "spec.yaml"
        data = yaml.safe_load(path.read_text())
        data["train"]["epochs"] = 3
        path.write_text(yaml.safe_dump(data))
    again = dlhpc("resubmit", exp, "--failed")
    assert again.code == 0 and "resubmitted 2 trial(s)" in again.out, again
    report = wait_finished(dlhpc, exp, timeout=300)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED", "COMPLETED"], report
    assert all(t["job_id"] not in first_jobs for t in report["trials"])  # status shows the latest job
    record = json.loads((exp / "experiment.json").read_text())
    assert len(record["jobs"]) == 4 and len(record["resubmitted"]) == 1  # every job a trial ever had
    resumed = json.loads((exp / "000-6fb706" / "result.json").read_text())["resumed_from_epoch"]
    assert resumed is not None and resumed >= 1  # went on from its checkpoint
    nothing = dlhpc("resubmit", exp)
    assert nothing.code == 0 and "nothing to resubmit" in nothing.out


@pytest.mark.slurm
def test_after_and_the_report_job_on_slurm(slurm_cluster, dlhpc, tmp_path):
    first, second = chain(dlhpc, tmp_path, "slurm")
    ids = [
        json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"].split("_")[0] for exp in (first, second)
    ]
    rows = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,Start,End", "-j", ",".join(ids)], capture_output=True, text=True
    ).stdout.splitlines()
    ends = [r.split("|")[2] for r in rows if r.startswith(ids[0] + "_")]
    starts = [r.split("|")[1] for r in rows if r.startswith(ids[1] + "_")]
    assert len(ends) == len(starts) == 2 and min(starts) >= max(ends), rows  # second began after first ended


def test_report_files_from_a_local_run(dlhpc, tmp_path):
    spec = write(tmp_path / "local.yaml", CHAIN.format(name="here", setup="true", scheduler="local"))
    r = dlhpc("run", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    assert (exp / "curves.png").stat().st_size > 1000 and (exp / "summary.md").read_text().count("| COMPLETED |") == 2
