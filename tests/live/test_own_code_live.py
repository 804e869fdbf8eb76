"""Your own code on the live test clusters: examples/own-code's torchrun script, unchanged, as a
2x2 sweep with `nodes: 2` across both test hosts on SLURM and on PBS, through a time-limit
requeue that resumes from the script's own snapshot, and under `dlhpc run` inside `salloc -N2`."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, exp_dir_from, release_if_requeued, scontrol_job, wait_finished

EXAMPLE = ROOT / "examples" / "own-code"
TWO_NODES = ["--set", "resources.nodes=2", "--set", "resources.tasks_per_node=1", "--set", "params.epochs=4"]
ONE_TRIAL = ["--set", "sweep.params.lr=[0.2]", "--set", "sweep.params.seed=[1]"]


def example(tmp_path: Path) -> Path:
    folder = tmp_path / "own-code"
    shutil.copytree(EXAMPLE, folder)
    return folder / "exp.yaml"


def submit_example(run, tmp_path: Path, scheduler: str, *sets: str) -> str:
    """Submit a copy of examples/own-code with these --set options; the experiment's folder."""
    r = run("submit", example(tmp_path), "--scheduler", scheduler, "--runs-dir", tmp_path / "runs", *sets)
    assert r.code == 0, r
    return exp_dir_from(r.out)


def check_sweep(run, exp: str, timeout: int = 400) -> list:
    report = wait_finished(run, exp, timeout=timeout)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED"] * 4, report
    rows = json.loads(run("summary", exp, "--format", "json").out)
    assert {(r["params.lr"], r["params.seed"]) for r in rows} == {(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1)}
    for row in rows:
        assert row["world_size"] == 2 and row["epochs_done"] == 4 and 0.5 < row["test_acc"] <= 1, row
        result = json.loads((Path(exp) / row["trial"] / "result.json").read_text())
        assert result["nodes"] == 2 and sorted(result["hostnames"]) == ["n1", "n2"], result
    print(run("summary", exp).out)  # the closing note quotes this table
    return rows


@pytest.mark.slurm
def test_example_sweep_on_two_slurm_hosts(slurm_cluster, dlhpc, tmp_path):
    check_sweep(dlhpc, submit_example(dlhpc, tmp_path, "slurm", *TWO_NODES))


@pytest.mark.pbs
def test_example_sweep_on_two_pbs_hosts(pbs_cluster, dlhpc, tmp_path):
    def pbs(*args, **kwargs):
        return dlhpc(*args, env=pbs_cluster, **kwargs)

    check_sweep(pbs, submit_example(pbs, tmp_path, "pbs", *TWO_NODES))


@pytest.mark.slurm
def test_a_time_limit_requeue_resumes_the_script_from_its_snapshot_exactly(slurm_cluster, dlhpc, tmp_path):
    exp = submit_example(
        dlhpc,
        tmp_path,
        "slurm",
        *ONE_TRIAL,
        "--set",
        "params.epochs=10",
        "--set",
        'program.args=["--epochs", "{params.epochs}", "--lr", "{params.lr}", "--seed", "{params.seed}", '
        '"--step-sleep", "0.1"]',
        "--set",
        "program.grace_s=20",
        "--set",
        'resources={time: "00:03:00", signal_margin_s: 120, timeout_requeues: 5, mem: 4G}',
    )
    exp = Path(exp)
    record = json.loads((exp / "experiment.json").read_text())
    job_id, trial = record["jobs"][0]["job_id"], exp / record["jobs"][0]["trial"]
    deadline = time.monotonic() + 600
    while scontrol_job(job_id).get("JobState") not in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"):
        assert time.monotonic() < deadline, scontrol_job(job_id)
        release_if_requeued(job_id)
        time.sleep(0.5)
    report = wait_finished(dlhpc, exp, timeout=60)
    assert report["trials"][0]["state"] == "COMPLETED", (report, dlhpc("why", exp).out)
    restarts = int(scontrol_job(job_id).get("Restarts", 0))
    assert restarts >= 1  # stopped at the warning, requeued, resumed (how often depends on the machine's speed)
    assert json.loads((trial / "requeues.json").read_text())["count"] == restarts  # each one counted once
    assert "resuming from snapshot" in (trial / "job.out").read_text()
    lines = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, 11))  # every epoch exactly once

    # the same trial start to end, uninterrupted, on two local ranks: the same numbers
    spec = tmp_path / "own-code" / "exp.yaml"
    ten = ["--set", "params.epochs=10"]
    reference = dlhpc("run", spec, "--here", "--runs-dir", tmp_path / "reference", *ONE_TRIAL, *ten)
    assert reference.code == 0, reference
    (expected,) = (tmp_path / "reference").glob("*/*/metrics.jsonl")
    final = [json.loads(line) for line in expected.read_text().splitlines()][-1]
    assert lines[-1]["test_acc"] == final["test_acc"] and lines[-1]["train_loss"] == final["train_loss"]


@pytest.mark.slurm
def test_run_inside_salloc_spans_both_hosts(slurm_cluster, tmp_path):
    spec = example(tmp_path)
    argv = ["salloc", "-N2", "--time=5", sys.executable, "-m", "dlhpc", "run", str(spec)]
    argv += ["--runs-dir", str(tmp_path / "runs"), *TWO_NODES, "--set", "sweep.params.seed=[0]"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ranks run on n1, n2" in proc.stdout
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/*/result.json")]
    assert len(results) == 2 and all(r["state"] == "COMPLETED" and r["world_size"] == 2 for r in results)
    assert all(sorted(r["hostnames"]) == ["n1", "n2"] for r in results), results


@pytest.mark.slurm
def test_a_crash_on_rank_1_on_the_second_host_fails_fast_and_why_shows_its_lines(
    slurm_cluster, dlhpc, tmp_path, budget
):
    t0 = time.monotonic()
    crash = 'program.args=["--epochs", "200", "--crash-rank", "1", "--crash-epoch", "2"]'
    exp = submit_example(dlhpc, tmp_path, "slurm", *TWO_NODES, *ONE_TRIAL, "--set", crash)
    report = wait_finished(dlhpc, exp, timeout=180)
    took = time.monotonic() - t0
    assert report["trials"][0]["state"] == "FAILED", report
    assert took < budget(150), f"the failed trial took {took:.0f} s to end"  # not its 200 epochs
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert answer["cause"].startswith("rank 1 on n2 exited with code 1"), answer
    assert "crashing on purpose after epoch 2" in answer["cause"], answer


@pytest.mark.slurm
def test_a_script_edited_after_submit_runs_as_submitted_on_slurm(slurm_cluster, dlhpc, tmp_path):
    exp = submit_example(dlhpc, tmp_path, "slurm", *ONE_TRIAL, "--set", "params.epochs=2")
    (tmp_path / "own-code" / "train.py").write_text('raise SystemExit("the edited script ran")\n')
    report = wait_finished(dlhpc, exp, timeout=180)
    assert report["trials"][0]["state"] == "COMPLETED", report
    assert report["trials"][0]["epoch"] == 2, report
