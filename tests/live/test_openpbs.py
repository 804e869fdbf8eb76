"""Against the live OpenPBS 23.06 test cluster (scripts/testcluster.sh: server on n1, a mom on
n1 and n2): arrays with a throttle, two-node DDP, status and summary from `qstat -x`, cancel,
logs, qrerun with exact resume, the walltime warning, dry-run and doctor, hostile values."""

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    DATA,
    PBS_BIN,
    ROOT,
    assert_ran_as_written,
    chain,
    exp_dir_from,
    submit_hostile,
    uninterrupted,
    wait_finished,
    write,
)

pytestmark = pytest.mark.pbs


@pytest.fixture
def pbs(pbs_cluster, dlhpc):
    """dlhpc with OpenPBS's commands first on PATH."""

    def run(*args, env=None, **kwargs):
        return dlhpc(*args, env={**pbs_cluster, **(env or {})}, **kwargs)

    return run


def qstat_jobs(job_id: str) -> dict:
    """The server's own record of a job or array (history included), each element."""
    base = job_id.split("_")[0]
    array = "_" in job_id
    out = subprocess.run(
        [str(PBS_BIN / "qstat"), "-x", "-f", "-t", "-F", "json", f"{base}[]" if array else base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["Jobs"]


def finished_elements(job_id: str, timeout: float = 60) -> list[dict]:
    """Each element's record once the server has moved the whole job into its history (state F).
    A job is E, exiting, for a moment after its result is written, and an array's ended elements
    are X until the array itself ends; every caller waits for a job that has ended as a whole."""
    deadline = time.monotonic() + timeout
    while True:
        elements = [job for jid, job in qstat_jobs(job_id).items() if "[]" not in jid]
        if all(job["job_state"] == "F" for job in elements) or time.monotonic() > deadline:
            return elements
        time.sleep(0.5)


def pbs_spec(tmp_path, name, body):
    return write(tmp_path / f"{name}.yaml", f"name: {name}\n{body}")


def submit(pbs, spec, tmp_path, *extra):
    r = pbs("submit", spec, "--scheduler", "pbs", "--set", f"runs_dir={tmp_path / 'runs'}", *extra)
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    return exp, json.loads((exp / "experiment.json").read_text())


def test_array_with_throttle_status_summary_and_logs(pbs, tmp_path):
    exp, record = submit(pbs, ROOT / "jobs" / "ci-smoke.yaml", tmp_path, "--set", "resources.array_parallelism=1")
    script = (exp / "job-0.sh").read_text()
    assert "#PBS -J 0-1%1" in script, script
    report = wait_finished(pbs, exp, timeout=240)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED", "COMPLETED"], report
    assert all(t["elapsed"] not in (None, "", "00:00:00") for t in report["trials"]), report

    # %1: the server ran the two elements one after the other
    elements = finished_elements(record["jobs"][0]["job_id"])
    spans = sorted((job["stime"], job["obittime"]) for job in elements)
    parse = lambda s: time.mktime(time.strptime(s, "%a %b %d %H:%M:%S %Y"))  # noqa: E731
    assert len(spans) == 2 and parse(spans[1][0]) >= parse(spans[0][1]), spans

    rows = json.loads(pbs("summary", exp, "--efficiency", "--format", "json").out)
    for row in rows:
        assert row["state"] == "COMPLETED" and row["world_size"] == 2 and row["test_acc"] > 0.9, row
        # joined with the server's record, as sacct's for SLURM: elapsed, queue wait, resources
        assert row["core_hours"] > 0 and row["queue_wait_s"] is not None and row["elapsed"], row
        assert row["cpus"] == 2 and row["mem_req_mb"] == 4096, row
        # the mom skips root's processes (the test jobs run as root): use unknown, and no advice
        assert row["cpus_used"] is None and row["mem_peak_mb"] is None and not row["hint"], row
        assert row["device"] in ("cpu:n1", "cpu:n2"), row  # ran on a test host, under its own name
    logs = pbs("logs", exp, "--trial", rows[1]["trial"])
    assert logs.code == 0 and "epoch 1/1" in logs.out, logs


def test_two_nodes_train_together(pbs, tmp_path):
    spec = pbs_spec(
        tmp_path,
        "pbs-two",
        f"""
model: {{name: cnn, width: 8}}
train: {{epochs: 1, batch_size: 64, target_accuracy: 0.9}}
data: {{train_subset: 4000, root: {DATA}}}
resources: {{nodes: 2, tasks_per_node: 1, cpus_per_task: 1, mem: 2G, time: "00:05:00"}}
""",
    )
    exp, record = submit(pbs, spec, tmp_path)
    assert "select=2:ncpus=1" in (exp / "job-0.sh").read_text()
    report = wait_finished(pbs, exp, timeout=240)
    assert report["trials"][0]["state"] == "COMPLETED", report
    result = json.loads((exp / record["jobs"][0]["trial"] / "result.json").read_text())
    assert result["world_size"] == 2 and result["nodes"] == 2
    assert sorted(result["rank_nodes"]) == ["n1", "n2"], result
    addresses = [socket.gethostbyname(node) for node in result["rank_nodes"]]
    assert result["rank_addresses"] == addresses and len(set(addresses)) == 2, result
    assert result["rendezvous"].rsplit(":", 1)[0] == addresses[0] and result["test_acc"] > 0.85, result


LONG = f"""
model: {{name: cnn, width: 8}}
train: {{epochs: 200, batch_size: 64}}
data: {{train_subset: 2000, root: {DATA}}}
resources: {{cpus_per_task: 1, mem: 2G, time: "00:10:00"}}
sweep: {{train.seed: [0, 1]}}
"""


def test_cancel_a_running_array(pbs, tmp_path):
    exp, record = submit(pbs, pbs_spec(tmp_path, "pbs-cancel", LONG), tmp_path)
    deadline = time.monotonic() + 120
    while True:
        states = [t["state"] for t in json.loads(pbs("status", exp, "--json").out)["trials"]]
        if "RUNNING" in states:
            break
        assert time.monotonic() < deadline, states
        time.sleep(1)
    c = pbs("cancel", exp)
    assert c.code == 0 and "cancelled" in c.out, c
    report = wait_finished(pbs, exp, timeout=90)
    assert {t["state"] for t in report["trials"]} == {"CANCELLED"}, report
    elements = finished_elements(record["jobs"][0]["job_id"])
    assert len(elements) == 2 and all(job["job_state"] == "F" for job in elements), elements


def test_qrerun_resumes_exactly(pbs, tmp_path):
    spec = pbs_spec(
        tmp_path,
        "pbs-rerun",
        f"""
model: {{name: cnn, width: 8}}
train: {{epochs: 20, batch_size: 64, lr: 0.1, seed: 3, target_accuracy: 0.9}}
data: {{train_subset: 3000, root: {DATA}}}
resources: {{tasks_per_node: 2, cpus_per_task: 1, mem: 3G, time: "00:10:00"}}
""",
    )
    exp, record = submit(pbs, spec, tmp_path)
    job_id, trial = record["jobs"][0]["job_id"], exp / record["jobs"][0]["trial"]

    def epochs_done():
        try:
            return len((trial / "metrics.jsonl").read_text().splitlines())
        except FileNotFoundError:
            return 0

    deadline = time.monotonic() + 180
    while epochs_done() < 2:
        assert time.monotonic() < deadline, qstat_jobs(job_id)
        time.sleep(0.2)
    assert epochs_done() < 20, "training finished before the rerun could happen"
    subprocess.run([str(PBS_BIN / "qrerun"), job_id], check=True, capture_output=True)
    report = wait_finished(pbs, exp, timeout=300)
    assert report["trials"][0]["state"] == "COMPLETED", report
    (job,) = finished_elements(job_id)
    assert int(job["run_count"]) == 2, job  # it ran twice
    lines = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, 21))  # every epoch exactly once
    result = json.loads((trial / "result.json").read_text())
    assert result["resumed_from_epoch"] is not None and result["resumed_from_epoch"] >= 2, result

    expected = uninterrupted(trial, tmp_path / "reference")
    assert result["test_acc"] == expected["test_acc"] and result["test_loss"] == expected["test_loss"]


def test_walltime_warning_requeues_then_stops_at_the_bound(pbs, tmp_path):
    spec = pbs_spec(
        tmp_path,
        "pbs-walltime",
        f"""
model: {{name: cnn, width: 8}}
train: {{epochs: 10000, batch_size: 64, target_accuracy: 0.9}}
data: {{train_subset: 2000, root: {DATA}}}
resources: {{cpus_per_task: 1, mem: 2G, time: "00:01:00", signal_margin_s: 45, timeout_requeues: 1}}
""",
    )
    exp, record = submit(pbs, spec, tmp_path)
    trial = exp / record["jobs"][0]["trial"]
    report = wait_finished(pbs, exp, timeout=200)
    (row,) = report["trials"]
    # warned 45 s before the walltime, rank 0 checkpointed and qrerun the job once; warned again,
    # it had no requeue left and stopped: FAILED before the server's limit, not killed at it
    assert row["state"] == "FAILED", report
    (job,) = finished_elements(record["jobs"][0]["job_id"])
    assert int(job["run_count"]) == 2 and int(job["Exit_status"]) != -29, job
    assert json.loads((trial / "requeues.json").read_text())["count"] == 1  # the one rerun PBS counted
    result = json.loads((trial / "result.json").read_text())
    assert result["state"] == "FAILED" and "timed-out too many times" in result["error"], result
    assert len((trial / "metrics.jsonl").read_text().splitlines()) >= 2  # the second run went on


def test_dry_run_and_doctor_against_the_server(pbs, tmp_path):
    spec = ROOT / "jobs" / "ci-smoke.yaml"
    runs = f"runs_dir={tmp_path / 'runs'}"
    ok = pbs("submit", spec, "--scheduler", "pbs", "--dry-run", "--set", runs)
    assert ok.code == 0 and "nothing was queued" in ok.out, ok
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    wrong = pbs("submit", spec, "--scheduler", "pbs", "--dry-run", "--set", runs, "--set", "resources.partition=gpuq")
    assert wrong.code == 2 and "queue 'gpuq' does not exist (queues: short, workq)" in wrong.err, wrong
    too_long = pbs(
        "submit", spec, "--scheduler", "pbs", "--dry-run", "--set", runs, "--set", "resources.partition=short"
    )
    assert too_long.code == 2 and "exceeds queue 'short''s limit 00:05:00" in too_long.err, too_long
    too_big = pbs(
        "submit", spec, "--scheduler", "pbs", "--dry-run", "--set", runs, "--set", "resources.cpus_per_task=64"
    )
    assert too_big.code == 2 and "must hold 128 CPUs" in too_big.err and "0 of the 2 usable" in too_big.err, too_big

    qmgr = str(PBS_BIN / "qmgr")
    subprocess.run([qmgr, "-c", "create queue closed queue_type=execution"], check=True, capture_output=True)
    try:
        closed = pbs(
            "submit", spec, "--scheduler", "pbs", "--dry-run", "--set", runs, "--set", "resources.partition=closed"
        )
        assert closed.code == 2 and "queue 'closed' is not enabled and started" in closed.err, closed
    finally:
        subprocess.run([qmgr, "-c", "delete queue closed"], capture_output=True)

    doctor = pbs("doctor", spec, "--set", "resources.scheduler=pbs")
    assert "PBS server" in doctor.out and "queue workq" in doctor.out and "enabled, started" in doctor.out, doctor
    assert "1 node(s) of 2 fit" in doctor.out, doctor


def test_hostile_values_run_exactly_as_written(pbs, tmp_path):
    exp, record = submit_hostile(pbs, tmp_path, "pbs")
    (job,) = qstat_jobs(record["jobs"][0]["job_id"]).values()
    assert job["Job_Name"] == "hostile" and job["Resource_List"]["walltime"] == "00:05:00"
    assert_ran_as_written(pbs, tmp_path, exp, record, timeout=180)


def test_after_and_the_report_job(pbs_cluster, dlhpc, tmp_path):
    first, second = chain(dlhpc, tmp_path, "pbs", env=pbs_cluster)
    ids = [json.loads((exp / "experiment.json").read_text())["jobs"][0]["job_id"] for exp in (first, second)]
    parse = lambda s: time.mktime(time.strptime(s, "%a %b %d %H:%M:%S %Y"))  # noqa: E731
    ends = [parse(job["obittime"]) for job in finished_elements(ids[0])]
    starts = [parse(job["stime"]) for job in finished_elements(ids[1])]
    assert min(starts) >= max(ends), (starts, ends)  # second began after first ended
    (array,) = [job for jid, job in qstat_jobs(ids[1]).items() if "[]" in jid]
    assert f"-W depend=afterok:{ids[0].split('_')[0]}[]" in array["Submit_arguments"], array["Submit_arguments"]


def test_packed_trials_and_the_servers_queued_limit(pbs, tmp_path):
    qmgr = str(PBS_BIN / "qmgr")
    spec = pbs_spec(
        tmp_path,
        "pbs-packed",
        f"""
model: {{name: softmax}}
train: {{epochs: 1}}
data: {{train_subset: 1000, root: {DATA}}}
resources: {{cpus_per_task: 1, mem: 1G, time: "00:02:00"}}
sweep: {{train.seed: [0, 1, 2]}}
""",
    )
    runs = f"runs_dir={tmp_path / 'runs'}"
    subprocess.run([qmgr, "-c", "set server max_queued = [u:PBS_GENERIC=3]"], check=True, capture_output=True)
    try:
        one_each = pbs("submit", spec, "--scheduler", "pbs", "--set", runs, "--set", "resources.trials_per_task=1")
        assert one_each.code == 2 and "queues at most 3 jobs per user (max_queued)" in one_each.err, one_each
        exp, record = submit(pbs, spec, tmp_path)  # left open: packed to fit
    finally:
        subprocess.run([qmgr, "-c", "unset server max_queued"], capture_output=True)
    assert "#PBS -J 0-1%2" in (exp / "job-0.sh").read_text() and "walltime=00:04:00" in (exp / "job-0.sh").read_text()
    assert [j.get("task_size") for j in record["jobs"]] == [2, 2, 1]
    report = wait_finished(pbs, exp, timeout=180)
    assert [t["state"] for t in report["trials"]] == ["COMPLETED"] * 3, report
    for trial in record["trials"]:  # each trial kept its own files
        assert json.loads((exp / trial["id"] / "result.json").read_text())["state"] == "COMPLETED"
        assert f"trial {trial['id']} starting" in (exp / trial["id"] / "job.out").read_text()
