"""When the cluster misbehaves (issue 26), with the fault made for real: the SLURM controller and
its accounting daemon stopped while a trial trains, a full disk (a small tmpfs), a rank stopped
(SIGSTOP) mid-training, a trial killed for memory and resubmitted with more. benchmarks/faults.py
repeats them for figures, with the same helpers (conftest)."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (
    DATA,
    epochs_of,
    nodes_back_in_service,
    rank_pid,
    start_controller,
    stop_controller,
    wait_finished,
    write,
)
from test_slurm import exp_dir_from


@pytest.mark.slurm
def test_status_in_a_controller_outage_shows_the_last_known_state_and_the_job_finishes_after(
    slurm_cluster, dlhpc, tmp_path
):
    spec = write(
        tmp_path / "outage.yaml",
        f"""
name: outage
model: {{name: cnn, width: 8}}
train: {{epochs: 250, batch_size: 64, target_accuracy: 0.9}}
data: {{train_subset: 2000, root: {DATA}}}
resources: {{scheduler: slurm, tasks_per_node: 1, cpus_per_task: 1, mem: 2G, time: "00:10:00"}}
""",
    )
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    exp = exp_dir_from(r.out)
    metrics = next(iter((tmp_path / "runs").glob("*/0*"))) / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not metrics.exists():  # training, an epoch done
        assert time.monotonic() < deadline, dlhpc("status", exp).out
        time.sleep(0.5)
    stop_controller()  # (training goes on: it needs neither while it runs)
    try:
        status = dlhpc("status", exp, "--json")
        summary = dlhpc("summary", exp)
    finally:
        start_controller()
    try:
        result = json.loads(metrics.parent.joinpath("result.json").read_text())
        assert result["state"] == "RUNNING", "the trial ended in the outage: train longer"  # the precondition
        assert status.code == 0, status
        report = json.loads(status.out)
        words = report["warnings"][0]
        assert report["scheduler_answers"] is False and words.startswith("SLURM does not answer"), report
        (trial,) = report["trials"]
        assert trial["state"] == "RUNNING" and "last known: the scheduler does not answer" in trial["flags"], trial
        assert summary.code == 0 and "RUNNING" in summary.out and "SLURM does not answer" in summary.err, summary
        final = wait_finished(dlhpc, exp, timeout=300)
    finally:
        nodes_back_in_service()
    assert final["scheduler_answers"] is True and final["trials"][0]["state"] == "COMPLETED", final
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, 251))  # nothing lost, nothing twice


FULL = """
name: full
model: {{name: mlp, hidden: [512, 256]}}
train: {{epochs: {epochs}, batch_size: 128}}
data: {{train_subset: 2000, root: {data}}}
resources: {{scheduler: local}}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A file system of its own (tmpfs, 64 MiB) that a test can fill; needs root, as CI has."""
    where = tmp_path / "small"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield where
    subprocess.run(["umount", "-l", str(where)])


def test_a_full_disk_keeps_the_last_checkpoint_and_resubmit_resumes_from_it(small_disk, dlhpc, tmp_path):
    # how big one checkpoint of this model is, from a run of one epoch elsewhere
    r = dlhpc("submit", write(tmp_path / "one.yaml", FULL.format(epochs=1, data=DATA)), "--runs-dir", tmp_path / "ref")
    assert r.code == 0, r
    (reference,) = (tmp_path / "ref").iterdir()
    wait_finished(dlhpc, reference, timeout=120)
    size = next(reference.glob("*/checkpoint.pt")).stat().st_size
    assert size > 2 * 2**20, size  # (so that half a checkpoint is more room than the other files need)

    # the disk holds the first checkpoint, but not a second beside it while it replaces the first:
    # the disk fills while the checkpoint of epoch 2 is written
    runs = small_disk / "runs"
    spec = write(tmp_path / "full.yaml", FULL.format(epochs=4, data=DATA))
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    subprocess.run(["fallocate", "-l", str(free - size - size // 2), str(filler)], check=True)
    r = dlhpc("submit", spec, "--runs-dir", runs)
    assert r.code == 0, r
    (exp,) = runs.iterdir()
    report = wait_finished(dlhpc, exp, timeout=120)
    (row,) = report["trials"]
    trial = exp / row["trial"]
    assert row["state"] == "FAILED", report
    epochs = [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1], epochs  # (an epoch's line is written after its checkpoint)
    why = dlhpc("why", exp)
    assert f"no space left on {trial}" in why.out and "Traceback" not in why.out + why.err, why
    assert "dlhpc resubmit EXP --failed" in why.out, why
    assert "Traceback" not in (trial / "job.err").read_text()

    filler.unlink()  # space again: the trial goes on from epoch 1's checkpoint, whole
    again = dlhpc("resubmit", exp, "--failed")
    assert again.code == 0, again
    report = wait_finished(dlhpc, exp, timeout=120)
    assert report["trials"][0]["state"] == "COMPLETED", report
    epochs = [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4], epochs  # every epoch once
    assert json.loads((trial / "result.json").read_text())["resumed_from_epoch"] == 1


STALL = """
name: stall
model: {{name: cnn, width: 8}}
train: {{epochs: 40, batch_size: 64}}
data: {{train_subset: 2000, root: {data}}}
resources: {{scheduler: {scheduler}, tasks_per_node: 2, cpus_per_task: 1, mem: 3G, time: "00:10:00",
            stall: {{factor: 3, min_s: 8, action: {action}}}}}
"""
STALL_WINDOW_S = 8 + 3 * 10  # (min_s, or 3 of its epochs: under 10 s each here, even on a busy machine)


def stop_rank_one_after_two_epochs(dlhpc, tmp_path, scheduler, action, env=None):
    """Submit, wait for epoch 2, SIGSTOP rank 1; (experiment, trial, when it was stopped)."""
    spec = write(tmp_path / "stall.yaml", STALL.format(data=DATA, scheduler=scheduler, action=action))
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    (trial,) = (p for p in exp.iterdir() if (p / "spec.yaml").exists())
    deadline = time.monotonic() + 180
    while len(epochs_of(trial)) < 2:
        assert time.monotonic() < deadline, dlhpc("status", exp).out
        time.sleep(0.2)
    os.kill(rank_pid(trial, 1), signal.SIGSTOP)
    return exp, trial, time.monotonic()


@pytest.mark.slurm
def test_a_stopped_rank_shows_as_stalled_naming_it_within_a_bounded_time(slurm_cluster, dlhpc, tmp_path):
    exp, trial, stopped = stop_rank_one_after_two_epochs(dlhpc, tmp_path, "slurm", "wait")
    try:
        said_stalled(dlhpc, exp, trial, stopped)
    finally:  # (a stalled trial left to wait holds its node until its time limit)
        assert dlhpc("cancel", exp).code == 0
    assert wait_finished(dlhpc, exp, timeout=120)["trials"][0]["state"] == "CANCELLED"


def said_stalled(dlhpc, exp, trial, stopped):
    while True:
        r = dlhpc("status", exp, "--json")
        (row,) = json.loads(r.out)["trials"]
        if row["state"] == "STALLED":
            break
        assert row["state"] == "RUNNING", row
        assert time.monotonic() - stopped < STALL_WINDOW_S + 30, row
        time.sleep(1)
    assert r.code == 0  # (still in flight: not a failure yet)
    (node,) = json.loads((trial / "result.json").read_text())["hostnames"]  # (n1 or n2: SLURM's choice)
    assert f"rank 1 on {node} is stopped (SIGSTOP, or held by a debugger)" in row["flags"], row
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert (
        answer["cause"].startswith("stalled: no epoch ended for ") and f"rank 1 on {node} is stopped" in answer["cause"]
    )
    assert "py-spy dump --pid" in answer["fix"], answer


def test_a_stalled_trial_is_ended_when_the_spec_says_so_and_resumes_after(dlhpc, tmp_path):
    exp, trial, stopped = stop_rank_one_after_two_epochs(dlhpc, tmp_path, "local", "fail")
    report = wait_finished(dlhpc, exp, timeout=STALL_WINDOW_S + 60)
    took = time.monotonic() - stopped
    assert report["trials"][0]["state"] == "FAILED", report
    assert took < STALL_WINDOW_S + 30, took
    result = json.loads((trial / "result.json").read_text())
    assert result["failed_rank"] == 1 and result["error"].startswith("stalled: no epoch ended for "), result
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert "is stopped (SIGSTOP" in answer["cause"] and "resubmit EXP --failed" in answer["fix"], answer
    done = epochs_of(trial)

    assert dlhpc("resubmit", exp, "--failed").code == 0  # (rank 1 is a new process: nothing stops it)
    report = wait_finished(dlhpc, exp, timeout=180)
    assert report["trials"][0]["state"] == "COMPLETED", report
    assert epochs_of(trial) == list(range(1, 41)), (done, epochs_of(trial))  # every epoch once


OOM = """
name: oom
model: {{name: cnn, width: 8}}
train: {{epochs: 1}}
data: {{train_subset: 2000, root: {data}}}
resources: {{scheduler: slurm, cpus_per_task: 1, mem: 150M, time: "00:05:00", retry: {{factor: 8, max_mem: 2G}}}}
"""


@pytest.mark.slurm
def test_a_trial_killed_for_memory_is_resubmitted_with_more_up_to_its_cap(slurm_cluster, dlhpc, tmp_path):
    r = dlhpc("submit", write(tmp_path / "oom.yaml", OOM.format(data=DATA)), "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    (row,) = wait_finished(dlhpc, exp, timeout=180)["trials"]
    assert row["state"] == "FAILED", row
    trial = row["trial"]

    again = dlhpc("resubmit", exp, "--failed")
    assert again.code == 0, again
    assert f"retry with more: {trial}: out of memory: resources.mem 150M -> 1200M" in again.out, again.out
    assert "#SBATCH --mem=1200M" in (exp / "job-1.sh").read_text()
    (row,) = wait_finished(dlhpc, exp, timeout=180)["trials"]
    assert row["state"] == "COMPLETED", row
    assert "retried, out of memory: resources.mem 150M -> 1200M" in row["flags"], row
    (retried,) = json.loads((exp / "experiment.json").read_text())["retries"]
    assert retried["trial"] == trial and retried["resources"] == {"mem": ["150M", "1200M"]}


@pytest.mark.parametrize(
    "resources,policy,raised",
    [
        ({"mem": "1G", "retry": {"factor": 2, "max_mem": "8G"}}, {}, {"mem": ["1G", "2048M"]}),
        ({"mem": "1G", "retry": {"factor": 4, "max_mem": "3G"}}, {}, {"mem": ["1G", "3072M"]}),  # the user's cap
        ({"mem": "1G", "retry": {"factor": 4, "max_mem": "8G"}}, {"max_mem": "1500M"}, {"mem": ["1G", "1500M"]}),
        ({"mem": "1G", "retry": {"factor": 4, "max_mem": None}}, {}, {}),  # no cap set: never raised
        ({"mem": "4G", "retry": {"factor": 2, "max_mem": "4G"}}, {}, {}),  # at its cap already
    ],
)
def test_more_memory_stays_within_the_users_cap_and_the_site_policy(resources, policy, raised):
    from dlhpc.submission.retry import _more_memory

    assert _more_memory(resources, policy) == raised


def test_more_time_stays_within_the_users_cap_and_the_site_policy():
    from dlhpc.submission.retry import _more_time

    resources = {"time": "01:00:00", "retry": {"factor": 3, "max_time": "02:30:00"}}
    assert _more_time(resources, {}) == {"time": ["01:00:00", "02:30:00"]}
    assert _more_time(resources, {"max_time": "01:30:00"}) == {"time": ["01:00:00", "01:30:00"]}
