"""Unattended recovery (resources.retry.automatic, issue 37) on the live test clusters: a trial
that fails in a way a retry can mend comes back with no command typed — a program's own "run me
again" exit code and out of time (with more) on SLURM and on PBS, out of memory on SLURM (with
more) — and ends COMPLETED with every epoch once; a bad configuration (an import error) is never
retried. The lost node on PBS is
in test_faults_live.py, beside its manual twin."""

import json
import textwrap
from pathlib import Path

import pytest

from conftest import DATA, epochs_of, exp_dir_from, wait_finished, write

AGAIN = """
name: again
program: {{script: again.py}}
resources: {{scheduler: {scheduler}, cpus_per_task: 1, mem: 500M, time: "00:05:00",
            retry: {{automatic: true, exit_codes: [85]}}}}
"""

# A program of the user's that checkpoints each epoch, and on its first run asks to be run again
# (exit 85, HTCondor's convention) after epoch 2: the retry resumes from its checkpoint.
AGAIN_PY = """
import json, os, sys, time
from pathlib import Path
from dlhpc import trial

state = Path(os.environ["DLHPC_TRIAL_DIR"]) / "state.json"
start = json.loads(state.read_text())["epoch"] if state.exists() else 0
for epoch in range(start + 1, 5):
    time.sleep(0.3)
    trial.log(epoch=epoch, acc=epoch / 4)
    state.write_text(json.dumps({"epoch": epoch}))
    if epoch == 2 and start == 0:
        sys.exit(85)
"""

BROKEN_PY = "import a_module_that_is_not_there\n"


def submit_program(run, tmp_path: Path, scheduler: str, source: str) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    write(folder / "again.py", textwrap.dedent(source))
    spec = write(folder / "exp.yaml", AGAIN.format(scheduler=scheduler))
    r = run("submit", spec, "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    assert "recovery: job " in r.out, r.out
    return Path(exp_dir_from(r.out))


def on_cluster(scheduler: str, request, dlhpc):
    """The CLI, with the PATH of the scheduler's live test cluster (OpenPBS's qsub first)."""
    env = request.getfixturevalue(f"{scheduler}_cluster")
    return lambda *args, **kwargs: dlhpc(*args, env=env if scheduler == "pbs" else None, **kwargs)


def only_trial(exp: Path) -> Path:
    (trial,) = (p for p in exp.iterdir() if (p / "spec.yaml").exists())
    return trial


@pytest.mark.parametrize(
    "scheduler", [pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("pbs", marks=pytest.mark.pbs)]
)
def test_a_listed_exit_code_is_retried_by_itself_and_resumes(scheduler, request, dlhpc, tmp_path):
    run = on_cluster(scheduler, request, dlhpc)
    exp = submit_program(run, tmp_path, scheduler, AGAIN_PY)
    (row,) = wait_finished(run, exp, timeout=240)["trials"]
    assert row["state"] == "COMPLETED", (row, run("why", exp).out)
    assert "retried 1/3: exit code 85" in row["flags"], row
    assert epochs_of(only_trial(exp)) == [1, 2, 3, 4]  # every epoch once: the retry resumed
    record = json.loads((exp / "experiment.json").read_text())
    (retried,) = record["retries"]
    assert retried["automatic"] and retried["why"] == "exit code 85" and retried["attempt"] == 1, retried
    assert len({j["job_id"] for j in record["jobs"]}) == 2  # the first run, and the retry


@pytest.mark.slurm
def test_a_bad_configuration_is_never_retried(slurm_cluster, dlhpc, tmp_path):
    exp = submit_program(dlhpc, tmp_path, "slurm", BROKEN_PY)
    (row,) = wait_finished(dlhpc, exp, timeout=180)["trials"]
    assert row["state"] == "FAILED", row
    assert "not retried: a retry cannot mend it" in row["flags"], row
    record = json.loads((exp / "experiment.json").read_text())
    assert len(record["jobs"]) == 1 and not record.get("retries"), record
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert "a_module_that_is_not_there" in answer["cause"] and "not retried" in answer["cause"], answer


OOM = """
name: oom
model: {{name: cnn, width: 8}}
train: {{epochs: 2}}
data: {{train_subset: 2000, root: {data}}}
resources: {{scheduler: slurm, cpus_per_task: 1, mem: 150M, time: "00:05:00",
            retry: {{automatic: true, factor: 8, max_mem: 2G}}}}
"""


@pytest.mark.slurm
def test_a_trial_killed_for_memory_comes_back_with_more_by_itself(slurm_cluster, dlhpc, tmp_path):
    r = dlhpc("submit", write(tmp_path / "oom.yaml", OOM.format(data=DATA)), "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    (row,) = wait_finished(dlhpc, exp, timeout=300)["trials"]
    assert row["state"] == "COMPLETED", (row, dlhpc("why", exp).out)
    assert "retried 1/3: out of memory, resources.mem 150M -> 1200M" in row["flags"], row
    assert "#SBATCH --mem=1200M" in (exp / "job-1.sh").read_text()
    assert epochs_of(only_trial(exp)) == [1, 2]


SLOW = """
name: slow
program: {{script: again.py}}
resources: {{scheduler: {scheduler}, cpus_per_task: 1, mem: 500M, time: "00:01:00", signal_margin_s: 30,
            timeout_requeues: 0, retry: {{automatic: true, factor: 3, max_time: "00:04:00"}}}}
"""

# Ten 8-second epochs, each saved: more than its one minute. On the stop signal it exits at once
# (its last epoch is saved); the retry resumes after it.
SLOW_PY = """
import json, os, sys, time
from pathlib import Path
from dlhpc import trial

state = Path(os.environ["DLHPC_TRIAL_DIR"]) / "state.json"
start = json.loads(state.read_text())["epoch"] if state.exists() else 0
for epoch in range(start + 1, 11):
    for _ in range(40):
        if trial.should_checkpoint():
            sys.exit(0)
        time.sleep(0.2)
    trial.log(epoch=epoch)
    state.write_text(json.dumps({"epoch": epoch}))
"""


@pytest.mark.parametrize(
    "scheduler", [pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("pbs", marks=pytest.mark.pbs)]
)
def test_a_trial_out_of_time_comes_back_with_more_by_itself(scheduler, request, dlhpc, tmp_path):
    run = on_cluster(scheduler, request, dlhpc)
    folder = tmp_path / "code"
    folder.mkdir()
    write(folder / "again.py", textwrap.dedent(SLOW_PY))
    r = run("submit", write(folder / "exp.yaml", SLOW.format(scheduler=scheduler)), "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    exp = Path(exp_dir_from(r.out))
    (row,) = wait_finished(run, exp, timeout=420)["trials"]
    assert row["state"] == "COMPLETED", (row, run("why", exp).out)
    assert "retried 1/3: out of time, resources.time 00:01:00 -> 00:03:00" in row["flags"], row
    directive = "#SBATCH --time=00:03:00" if scheduler == "slurm" else "walltime=00:03:00"
    assert directive in (exp / "job-1.sh").read_text()
    assert epochs_of(only_trial(exp)) == list(range(1, 11))  # every epoch once
