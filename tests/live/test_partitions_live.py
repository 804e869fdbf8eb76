"""resources.partition as a list (issue 37): each job group goes to the listed partition whose
start SLURM promises first (sbatch --test-only), said and recorded, on the test cluster's two
one-node partitions `left` (n1) and `right` (n2) with different loads."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DATA, exp_dir_from, scontrol_job, wait_finished, write

SPEC = """
name: parts
model: {{name: mlp}}
train: {{epochs: 1}}
data: {{train_subset: 1000, root: {data}}}
resources: {{scheduler: slurm, partition: [left, right], cpus_per_task: 1, mem: 1G, time: "00:05:00"}}
"""


@pytest.mark.slurm
def test_a_job_group_goes_to_the_listed_partition_that_starts_it_first(slurm_cluster, dlhpc, tmp_path):
    busy = ["sbatch", "--parsable", "--partition=left", "--exclusive", "--time=00:05:00", "--wrap=sleep 300"]
    blocker = subprocess.run(busy, capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while scontrol_job(blocker).get("JobState") != "RUNNING":  # n1, all of it, for five minutes
            assert time.monotonic() < deadline, scontrol_job(blocker)
            time.sleep(0.5)
        r = dlhpc("submit", write(tmp_path / "parts.yaml", SPEC.format(data=DATA)), "--runs-dir", tmp_path / "runs")
        assert r.code == 0, r
        assert "partition: right, the earliest start of left, right" in r.out, r.out
        exp = Path(exp_dir_from(r.out))
        choice = json.loads((exp / "experiment.json").read_text())["partition_choice"]
        assert choice["chosen"] == "right" and choice["asked"] == ["left", "right"], choice
        assert "in partition left" in choice["estimates"]["left"], choice  # (its start: when n1 frees)
        assert "#SBATCH --partition=right" in (exp / "job-0.sh").read_text()
        (row,) = wait_finished(dlhpc, exp, timeout=180)["trials"]
        assert row["state"] == "COMPLETED", row
        (trial,) = (p for p in exp.iterdir() if (p / "result.json").exists())
        assert json.loads((trial / "result.json").read_text())["hostnames"] == ["n2"]
    finally:
        subprocess.run(["scancel", blocker])


PBS_SPEC = SPEC.replace("scheduler: slurm, partition: [left, right]", "scheduler: pbs, partition: [short, workq]")


@pytest.mark.pbs
def test_a_pbs_job_group_goes_to_the_listed_queue_with_no_job_waiting_in_it(pbs_cluster, dlhpc, tmp_path):
    """PBS promises no start time: a queue with a job waiting in it (one no node can hold) comes
    after a queue where the job can start now."""
    qsub = [f"{pbs_cluster['PATH'].split(':')[0]}/qsub", "-q", "short", "-l", "select=1:ncpus=999", "--", "/bin/true"]
    waiting = subprocess.run(qsub, capture_output=True, text=True, check=True).stdout.strip()
    try:
        spec = write(tmp_path / "parts.yaml", PBS_SPEC.format(data=DATA))
        r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", env=pbs_cluster)
        assert r.code == 0, r
        assert "partition: workq, the earliest start of short, workq" in r.out, r.out
        assert "short: later: 1 job(s) queued" in r.out, r.out
        exp = Path(exp_dir_from(r.out))
        assert "#PBS -q workq" in (exp / "job-0.sh").read_text()
        (row,) = wait_finished(lambda *a, **k: dlhpc(*a, env=pbs_cluster, **k), exp, timeout=180)["trials"]
        assert row["state"] == "COMPLETED", row
    finally:
        subprocess.run([qsub[0].replace("qsub", "qdel"), waiting])
