"""Crash-safe files, scheduler faults, hostile input, concurrent use — and, on the live cluster,
requeue with exact resume and time limits."""

import json

from conftest import (
    ROOT,
    fake_commands,
    slurm_experiment,
    write,
)


def test_squeue_fallback_reports_running_jobs(dlhpc, tmp_path):
    exp = slurm_experiment(tmp_path)
    env = fake_commands(tmp_path, sacct="exit 1", squeue="echo '77_1|RUNNING|0:42|n2'")
    report = json.loads(dlhpc("status", exp, "--json", env=env).out)
    assert {t["trial"]: t["state"] for t in report["trials"]}["001-bbbbbb"] == "RUNNING"


def test_every_slurm_state_maps_to_a_known_one():
    from dlhpc.schedulers.slurm import queue as slurm
    from dlhpc.states import STATES

    known = {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "REQUEUED", "UNKNOWN"}
    # the words every backend maps to (docs/run-directory.md), and STALLED and PRUNED, which only
    # a trial's own runner or search agent says (node/stall.py, search/agent.py), never a scheduler
    assert set(STATES) == known | {"STALLED", "PRUNED"}
    for raw in list(slurm.STATES) + ["CANCELLED by 0", "COMPLETED+", "SOMETHING_NEW", ""]:
        assert slurm.map_state(raw) in known
    assert slurm.map_state("CANCELLED by 1000") == "CANCELLED"
    assert slurm.map_state("SOMETHING_NEW") == "UNKNOWN"
    assert slurm.map_state("PREEMPTED") == "PREEMPTED" and slurm.map_state("REQUEUED") == "REQUEUED"
    assert slurm._expand_array_row("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]


def test_sbatch_printing_garbage_is_a_clear_error(dlhpc, tmp_path):
    env = fake_commands(
        tmp_path,
        sbatch="echo 'Welcome to the cluster!'; exit 0",
        scontrol="echo 'PartitionName=debug Default=YES MaxTime=UNLIMITED State=UP'",
        srun="exit 0",
    )
    r = dlhpc("submit", ROOT / "jobs" / "ci-smoke.yaml", "--set", f"runs_dir={tmp_path / 'runs'}", env=env)
    assert r.code == 1, r
    assert "Welcome to the cluster!" in r.err and "Submitted batch job" in r.err and "Traceback" not in r.err
    # sbatch answered 0: a job may be queued that dlhpc cannot name, and it would run in the folder
    (exp,) = (tmp_path / "runs").iterdir()
    assert f"so {exp} is kept" in r.err


def test_sbatch_refusal_reports_command_and_output(dlhpc, tmp_path):
    env = fake_commands(
        tmp_path,
        sbatch="echo 'sbatch: error: Batch job submission failed: Invalid account' >&2; exit 1",
        scontrol="echo 'PartitionName=debug Default=YES MaxTime=UNLIMITED State=UP'",
        srun="exit 0",
    )
    r = dlhpc("submit", ROOT / "jobs" / "ci-smoke.yaml", "--set", f"runs_dir={tmp_path / 'runs'}", env=env)
    assert r.code == 1, r
    assert "exit 1" in r.err and "sbatch" in r.err and "Invalid account" in r.err
    assert not any((tmp_path / "runs").iterdir())


def test_names_that_escape_the_output_folder_are_refused(dlhpc, tmp_path):
    for name in ("..", "../x", "/etc/passwd", "a/b", ".hidden"):
        spec = write(tmp_path / "s.yaml", f"name: '{name}'\n")
        r = dlhpc("validate", spec)
        assert r.code == 2 and "name" in r.err, (name, r)


def test_sacct_summary_row_of_unstarted_elements_does_not_hide_running_ones(tmp_path, monkeypatch):
    # sacct prints the elements not started yet as one summary row, after (or before) the rows
    # of the elements that did start; seen on the live cluster with array_parallelism 1
    from dlhpc.schedulers.slurm import queue as slurm

    rows = [
        "113_0|COMPLETED|00:00:07|t|t|t|cpu=2|n1|0:0|None",
        "113_2|RUNNING|00:00:19|t|t|t|cpu=2|n1|0:0|None",
        "113_[2-3%1]|PENDING|00:00:00|t|Unknown|Unknown||None assigned|0:0|JobArrayTaskLimit",
    ]
    for n, order in enumerate((rows, rows[::-1])):
        (tmp_path / str(n)).mkdir()
        body = "cat <<'EOF'\n" + "\n".join(order) + "\nEOF"
        monkeypatch.setenv("PATH", fake_commands(tmp_path / str(n), sacct=body)["PATH"])
        states, _ = slurm.states(["113_0", "113_2", "113_3"])
        assert {j: s.state for j, s in states.items()} == {
            "113_0": "COMPLETED",
            "113_2": "RUNNING",
            "113_3": "PENDING",
        }
        assert "array_parallelism" in states["113_3"].pending_reason
