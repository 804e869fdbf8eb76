"""resources.reservation on the live clusters (issue 26): a job runs in its reservation, and a
reservation it could not run in is refused before anything is queued, naming what exists."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DATA, exp_dir_from, scontrol_job, wait_finished, write

PBS_BIN = Path("/opt/pbs/bin")


SPEC = f"""
name: inresv
model: {{name: softmax}}
train: {{epochs: 1, target_accuracy: 0.5}}
data: {{train_subset: 1000, root: {DATA}}}
resources: {{cpus_per_task: 1, mem: 1G, time: "00:05:00"}}
"""


def spec_file(tmp_path: Path) -> Path:
    return write(tmp_path / "inresv.yaml", SPEC)


@pytest.fixture
def slurm_reservation(slurm_cluster):
    """A 20-minute reservation of both nodes for this user (root here), and one for another user."""
    name, other = f"dlhpc-ws-{os.getpid()}", f"dlhpc-theirs-{os.getpid()}"
    try:
        # theirs starts in an hour: reservations that overlap in time block each other's nodes
        for reservation, users, start in ((name, "root", "now"), (other, "nobody", "now+1hour")):
            subprocess.run(
                ["scontrol", "create", "reservation", f"ReservationName={reservation}", f"StartTime={start}"]
                + ["Duration=00:20:00", f"Users={users}", "Nodes=n1,n2", "Flags=IGNORE_JOBS"],
                check=True,
                capture_output=True,
            )
        yield name, other
    finally:
        for reservation in (name, other):
            jobs = subprocess.run(["squeue", "-h", "-R", reservation, "-o", "%i"], capture_output=True, text=True)
            if jobs.stdout.split():  # (a reservation with jobs in it cannot be deleted)
                subprocess.run(["scancel", *jobs.stdout.split()], capture_output=True)
                time.sleep(2)
            subprocess.run(["scontrol", "delete", f"ReservationName={reservation}"], capture_output=True)


@pytest.mark.slurm
def test_a_job_runs_in_its_slurm_reservation(slurm_reservation, dlhpc, tmp_path):
    name, _ = slurm_reservation
    r = dlhpc(
        "submit", spec_file(tmp_path), "--scheduler", "slurm", "--runs-dir", tmp_path / "runs",
        "--set", f"resources.reservation={name}",
    )  # fmt: skip
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    job_id = json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"]
    assert scontrol_job(job_id)["Reservation"] == name
    assert wait_finished(dlhpc, exp)["trials"][0]["state"] == "COMPLETED"


@pytest.mark.slurm
@pytest.mark.parametrize(
    "which, time_limit, words",
    [
        ("nosuch", "00:05:00", "reservation 'nosuch' does not exist (reservations: {theirs}, {ours})"),
        ("ours", "01:00:00", "resources.time 01:00:00 is longer than reservation '{ours}' has left"),
        ("theirs", "00:05:00", "reservation '{theirs}' is for nobody, not root"),
    ],
)
def test_a_reservation_the_job_cannot_run_in_is_refused(slurm_reservation, dlhpc, tmp_path, which, time_limit, words):
    ours, theirs = slurm_reservation
    name = {"ours": ours, "theirs": theirs}.get(which, which)
    r = dlhpc(
        "submit", spec_file(tmp_path), "--scheduler", "slurm", "--runs-dir", tmp_path / "runs",
        "--set", f"resources.reservation={name}", "--set", f"resources.time={time_limit}",
    )  # fmt: skip
    assert r.code == 2 and words.format(ours=ours, theirs=theirs) in r.err and "Traceback" not in r.err, r
    assert not (tmp_path / "runs").exists()


def pbs_env(pbs_cluster) -> dict:
    return {**os.environ, **pbs_cluster}


@pytest.fixture(scope="module")
def pbs_reservation(pbs_cluster):
    """A PBS reservation of one node starting in a few seconds, confirmed by the scheduler (one
    for the module: a deleted reservation holds its node for a while after)."""
    name = f"dlhpc-ws-{os.getpid()}"
    # the full date: with hhmm alone, pbs_rsub may take a time a few seconds ahead for tomorrow's
    start = time.strftime("%Y%m%d%H%M.%S", time.localtime(time.time() + 10))
    out = subprocess.run(
        [PBS_BIN / "pbs_rsub", "-N", name, "-R", start, "-D", "00:20:00", "-l", "select=1:ncpus=2"],
        check=True,
        capture_output=True,
        text=True,
        env=pbs_env(pbs_cluster),
    ).stdout
    rid = out.split()[0]
    deadline = time.monotonic() + 60
    while "RESV_CONFIRMED" not in (state := rstat(rid, pbs_cluster)) and "RESV_RUNNING" not in state:
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    yield name, rid.split(".")[0]
    subprocess.run([PBS_BIN / "pbs_rdel", rid], capture_output=True, env=pbs_env(pbs_cluster))
    deadline = time.monotonic() + 120
    while rstat(rid, pbs_cluster) and time.monotonic() < deadline:  # gone, before the next test wants the node
        time.sleep(1)


def rstat(rid: str, pbs_cluster) -> str:
    return subprocess.run(
        [PBS_BIN / "pbs_rstat", "-f", rid], capture_output=True, text=True, env=pbs_env(pbs_cluster)
    ).stdout


@pytest.mark.pbs
def test_a_job_runs_in_its_pbs_reservation_by_name(pbs_reservation, pbs_cluster, dlhpc, tmp_path):
    name, queue = pbs_reservation
    r = dlhpc(
        "submit", spec_file(tmp_path), "--scheduler", "pbs", "--runs-dir", tmp_path / "runs",
        "--set", f"resources.reservation={name}", env=pbs_cluster,
    )  # fmt: skip
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    assert f"#PBS -q {queue}\n" in (exp / "job-0.sh").read_text()
    report = wait_finished(lambda *a: dlhpc(*a, env=pbs_cluster), exp, timeout=300)
    assert report["trials"][0]["state"] == "COMPLETED", report


@pytest.mark.pbs
def test_a_pbs_reservation_that_does_not_exist_is_refused_naming_the_ones_that_do(
    pbs_reservation, pbs_cluster, dlhpc, tmp_path
):
    name, _ = pbs_reservation
    r = dlhpc(
        "submit", spec_file(tmp_path), "--scheduler", "pbs", "--runs-dir", tmp_path / "runs",
        "--set", "resources.reservation=nosuch", env=pbs_cluster,
    )  # fmt: skip
    assert r.code == 2 and f"reservation 'nosuch' does not exist (reservations: {name})" in r.err, r
    assert not (tmp_path / "runs").exists()
