"""A workshop attendee's day: the workshop in one command, editor help from the JSON Schema."""

import json
import time

import pytest

from conftest import DATA, ROOT, wait_finished


@pytest.mark.slurm
def test_the_workshop_in_one_command_on_the_cluster(slurm_cluster, dlhpc, tmp_path):
    runs = ("--runs-dir", tmp_path / "runs")
    r = dlhpc(
        "submit",
        ROOT / "jobs" / "workshop.yaml",
        "--scheduler",
        "slurm",
        *runs,
        "--set",
        "train.epochs=2",
        "--set",
        "data.train_subset=6000",
        "--set",
        "resources.time=00:10:00",
    )
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    report = wait_finished(dlhpc, exp, timeout=600)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED"] * 4, report
    rows = json.loads(dlhpc("summary", exp, "--json").out)
    assert [row["model.name"] for row in rows] == ["softmax", "mlp", "lenet5", "cnn"]
    accs = [row["test_acc"] for row in rows]
    assert accs[0] > 0.85 and accs[3] > 0.95 and accs[0] < accs[3], accs  # the progression shows
    table = dlhpc("summary", exp, *runs)
    assert all(m in table.out for m in ("softmax", "mlp", "lenet5", "cnn")), table
    plot = dlhpc("plot", exp, "-o", tmp_path / "curves.png")
    assert plot.code == 0 and (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


ALLOC_SPEC = """
name: alloc
model: {name: cnn, width: 8}
train: {epochs: 2, batch_size: 64, lr: 0.1}
data: {train_subset: 4000}
resources: {nodes: 2, tasks_per_node: 1, cpus_per_task: 1}
"""


@pytest.mark.slurm
def test_run_inside_an_allocation_uses_its_nodes(slurm_cluster, tmp_path):
    import subprocess
    import sys

    from conftest import write

    spec = write(tmp_path / "alloc.yaml", ALLOC_SPEC)
    argv = [
        "salloc",
        "-N2",
        "--time=5",
        sys.executable,
        "-m",
        "dlhpc",
        "run",
        str(spec),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ranks run on n1, n2" in proc.stdout
    (result,) = (tmp_path / "runs").glob("*/*/result.json")
    result = json.loads(result.read_text())
    assert result["state"] == "COMPLETED" and result["world_size"] == 2 and result["rank_nodes"] == ["n1", "n2"]
    too_big = subprocess.run(argv + ["--set", "resources.nodes=3"], capture_output=True, text=True, timeout=120)
    assert too_big.returncode == 2 and "asks for 3 node(s), but this slurm allocation" in too_big.stderr
    assert "n1, n2" in too_big.stderr and "--set resources.nodes=2" in too_big.stderr


def submit_spec(dlhpc, tmp_path, name, text):
    from conftest import write

    r = dlhpc("submit", write(tmp_path / f"{name}.yaml", text), "--runs-dir", tmp_path / "runs" / name)
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs" / name).iterdir()
    return exp, json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"]


@pytest.mark.slurm
def test_status_and_why_say_why_a_trial_is_pending(slurm_cluster, dlhpc, tmp_path):
    import subprocess

    exp, job = submit_spec(
        dlhpc,
        tmp_path,
        "later",
        """
name: later
model: {name: softmax}
train: {epochs: 1}
resources: {scheduler: slurm, cpus_per_task: 1, mem: 1G, time: "00:05:00", extra: {begin: "now+3600"}}
""",
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the scheduler records the reason on its next pass
            (trial,) = json.loads(dlhpc("status", exp, "--json").out)["trials"]
            if trial["why_pending"] and "BeginTime" in trial["why_pending"] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert trial["state"] == "PENDING" and trial["why_pending"].startswith("not to start before its begin time")
        assert trial["est_start"]  # squeue's expected start
        assert "expected to start" in dlhpc("status", exp).out
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        subprocess.run(["scontrol", "hold", job], check=True)
        time.sleep(1)
        (answer,) = json.loads(dlhpc("why", exp, "--json").out)
        assert answer["state"] == "PENDING" and "held by an administrator (JobHeldAdmin)" in answer["cause"]
        assert answer["fix"] == "ask the cluster's admins why they hold it"
    finally:
        subprocess.run(["scancel", job])


@pytest.mark.slurm
@pytest.mark.parametrize(
    "name,text,cause,fix",
    [
        (
            "oom",
            "model: {name: cnn, width: 8}\ntrain: {epochs: 1}\ndata: {train_subset: 2000}\n"
            "resources: {scheduler: slurm, cpus_per_task: 1, mem: 150M, time: '00:05:00'}\n",
            "out of memory: asked for resources.mem 150M per node; it used at least",
            "raise resources.mem",
        ),
        (
            "nan",
            "model: {name: mlp}\ntrain: {epochs: 1, lr: 1000, schedule: constant, momentum: 0.99}\n"
            "data: {train_subset: 2000}\nresources: {scheduler: slurm, cpus_per_task: 1, mem: 2G, time: '00:05:00'}\n",
            "training diverged: the loss became NaN or infinite (train.lr 1000.0)",
            "lower train.lr (e.g. --set train.lr=100)",
        ),
        (
            "nodata",
            "model: {name: softmax}\ndata: {root: /nonexistent/mnist, download: false}\n"
            "resources: {scheduler: slurm, cpus_per_task: 1, mem: 2G, time: '00:05:00'}\n",
            "the MNIST data is not where the job looked",
            "dlhpc data fetch --root /nonexistent/mnist",
        ),
    ],
)
def test_why_turns_real_failures_into_cause_and_fix(slurm_cluster, dlhpc, tmp_path, name, text, cause, fix):
    if name == "nodata":  # submit refuses missing data; break it after submitting, as a moved folder would
        text = text.replace("/nonexistent/mnist", str(tmp_path / "mnist"))
        import shutil

        shutil.copytree(DATA, tmp_path / "mnist")
        exp, _ = submit_spec(dlhpc, tmp_path, name, f"name: {name}\n" + text)
        shutil.rmtree(tmp_path / "mnist")
        fix = f"dlhpc data fetch --root {tmp_path / 'mnist'}"
    else:
        exp, _ = submit_spec(dlhpc, tmp_path, name, f"name: {name}\n" + text)
    report = wait_finished(dlhpc, exp, timeout=240)
    assert report["trials"][0]["state"] == "FAILED", report
    r = dlhpc("why", exp)
    assert r.code == 0, r
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert answer["cause"].startswith(cause), answer
    assert answer["fix"].startswith(fix), answer
    assert f"cause: {answer['cause']}" in r.out and f"fix:   {answer['fix']}" in r.out
