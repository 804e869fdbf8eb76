"""Search on the live clusters (issue 34): a pool of agents (an array) works one study; trials
are pruned, one agent is killed mid-trial and its trial finished once by another, one agent is
requeued mid-trial and resumes it from its checkpoint; every trial is accounted for."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PBS_BIN, exp_dir_from, wait_finished, wait_restarted, write

PROGRAM = """
import json, sys, time
from dlhpc import trial

lr = float(trial.params["lr"])
start = 1
if trial.checkpoint_path.exists():
    start = json.loads(trial.checkpoint_path.read_text())["epoch"] + 1
    print(f"resumed from epoch {start - 1}", flush=True)
for epoch in range(start, 9):
    time.sleep(1.0)
    trial.log(epoch=epoch, score=lr * epoch)
    if trial.rank == 0:
        trial.checkpoint_path.write_text(json.dumps({"epoch": epoch}))
    if trial.should_checkpoint() or trial.should_prune():
        sys.exit(0)
"""


@pytest.fixture(params=[pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("pbs", marks=pytest.mark.pbs)])
def cluster(request):
    """(scheduler, environment, requeue(job id))."""
    if request.param == "slurm":
        request.getfixturevalue("slurm_cluster")

        def requeue(job_id):
            subprocess.run(["scontrol", "requeue", job_id], check=True)
            wait_restarted(job_id, restarts=1, timeout=300)

        return "slurm", {}, requeue
    env = request.getfixturevalue("pbs_cluster")

    def rerun(job_id):
        base, index = job_id.split("_")
        subprocess.run([str(PBS_BIN / "qrerun"), f"{base}[{index}]"], check=True, capture_output=True)

    return "pbs", env, rerun


def _claims(exp: Path) -> dict:
    """{trial id: its claim} for every trial an agent has taken."""
    out = {}
    for claim in exp.glob("*/claim.json"):
        try:
            out[claim.parent.name] = json.loads(claim.read_text())
        except ValueError:
            continue
    return out


def _epochs(trial: Path) -> list:
    try:
        return [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return []


def _running_trial_of(exp: Path, agent: str, timeout: float = 180) -> tuple[str, dict]:
    """The trial an agent runs, once it is two epochs in (mid-trial, before it can be pruned)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tid, claim in _claims(exp).items():
            result = exp / tid / "result.json"
            done = result.exists() and json.loads(result.read_text()).get("state") != "RUNNING"
            if claim["agent"] == agent and len(_epochs(exp / tid)) >= 2 and not done:
                return tid, claim
        time.sleep(0.2)
    raise AssertionError(f"{agent} ran no trial within {timeout} s: {_claims(exp)}")


def test_a_pool_of_agents_works_one_study_through_a_kill_and_a_requeue(cluster, dlhpc, tmp_path):
    scheduler, env, requeue = cluster
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "train.py", PROGRAM)
    spec = write(
        folder / "exp.yaml",
        f"""
name: search-{scheduler}
program: {{script: train.py}}
params: {{lr: 0.1}}
resources: {{scheduler: {scheduler}, cpus_per_task: 1, mem: 500M, time: "00:03:00", timeout_requeues: 2}}
search:
  trials: 8
  parallel: 3
  seed: 7
  metric: score
  lost_after_s: 20
  pruner: {{kind: asha, min_epochs: 4, reduction: 2}}
  space:
    params.lr: {{uniform: [0.01, 1.0]}}
""",
    )
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs", env=env)
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    record = json.loads((exp / "experiment.json").read_text())
    jobs = {j["trial"]: j["job_id"] for j in record["jobs"]}
    assert sorted(jobs) == ["agent-0", "agent-1", "agent-2"], record["jobs"]

    # agent-1 is killed (SIGKILL, as the OOM killer or a crashed node would) between ask and tell
    killed_trial, claim = _running_trial_of(exp, "agent-1")
    os.kill(claim["pid"], signal.SIGKILL)
    # agent-2 is requeued by the scheduler mid-trial
    requeued_trial, _ = _running_trial_of(exp, "agent-2")
    requeue(jobs["agent-2"])

    report = wait_finished(dlhpc, exp, timeout=600)
    states = [t["state"] for t in report["trials"]]
    assert len(states) == 8 and set(states) <= {"COMPLETED", "PRUNED"} and "PRUNED" in states, report

    from dlhpc.search import study

    told = [t.state.name for t in study.load(exp, record["name"]).trials]
    assert len(told) == 8 and "RUNNING" not in told and "FAIL" not in told, told
    # the killed agent's trial: taken over once, run to its end once (each epoch logged once)
    taken = json.loads((exp / killed_trial / "claim.json").read_text())
    assert taken["attempt"] == 2 and taken["agent"] != "agent-1", taken
    epochs = _epochs(exp / killed_trial)
    assert epochs == sorted(set(epochs)) and epochs[0] == 1, epochs
    # the requeued agent's trial resumed from its checkpoint: no epoch trained twice
    out = (exp / requeued_trial / "job.out").read_text()
    assert "resumed from epoch" in out, out[-2000:]
    epochs = _epochs(exp / requeued_trial)
    assert epochs == sorted(set(epochs)), epochs

    summary = json.loads(dlhpc("summary", exp, "--json", env=env).out)
    counts = summary["studies"][0]["counts"]
    assert sum(counts.values()) == 8 and counts.get("PRUNED", 0) >= 1, counts


@pytest.mark.slurm
def test_a_two_node_search_trial_is_pruned_on_every_rank_at_once(slurm_cluster, dlhpc, tmp_path):
    """Rank 0's agent works the study; the other node's follows it; the trainer's verdict is an
    all-reduce, so both ranks stop at the same epoch (else the job would hang in DDP)."""
    from conftest import DATA

    spec = write(
        tmp_path / "exp.yaml",
        f"""
name: search-2n
model: {{name: softmax}}
train: {{epochs: 3, batch_size: 256}}
data: {{root: {DATA}, train_subset: 2000, download: false}}
resources: {{scheduler: slurm, nodes: 2, tasks_per_node: 1, cpus_per_task: 1, mem: 3G, time: "00:03:00"}}
search:
  trials: 3
  parallel: 1
  seed: 0
  pruner: {{kind: asha, min_epochs: 1, reduction: 2}}
  space:
    train.lr: {{loguniform: [0.001, 1.0]}}
""",
    )
    r = dlhpc("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    report = wait_finished(dlhpc, exp, timeout=300)
    states = [t["state"] for t in report["trials"]]
    assert set(states) <= {"COMPLETED", "PRUNED"} and "PRUNED" in states and "COMPLETED" in states, report
    for trial in report["trials"]:
        result = json.loads((exp / trial["trial"] / "result.json").read_text())
        assert result["world_size"] == 2 and sorted(set(result["rank_nodes"])) == ["n1", "n2"], result
