"""Your own code (docs/own-code.md) on this machine: the spec's program keys, the torchrun
contract every rank gets, the code snapshot, the helper, and a rank that fails. The same on
SLURM and PBS across two hosts: test_own_code_live.py."""

import json
import shutil
import time

from conftest import EXAMPLE, only_experiment, project, wait_finished


def test_every_rank_gets_the_torchrun_contract_in_the_trial_folder(dlhpc, tmp_path):
    spec = project(tmp_path)
    r = dlhpc("run", spec, "--here")
    assert r.code == 0, r
    exp = only_experiment(tmp_path / "runs")
    (trial,) = [d for d in exp.iterdir() if (d / "trial.json").is_file()]
    ranks = [json.loads((trial / f"rank-{n}.json").read_text()) for n in (0, 1)]
    for n, seen in enumerate(ranks):
        assert seen["RANK"] == str(n) and seen["LOCAL_RANK"] == str(n), seen
        assert seen["WORLD_SIZE"] == "2" and seen["LOCAL_WORLD_SIZE"] == "2" and seen["GROUP_RANK"] == "0"
        assert seen["cwd"] == str(trial) and seen["DLHPC_TRIAL_DIR"] == str(trial)
        assert seen["DLHPC_CHECKPOINT"] == str(trial / "checkpoint.pt")
        assert json.loads(seen["DLHPC_PARAMS"]) == {"lr": 0.1, "note": "a b"}
        assert seen["MASTER_ADDR"] == "127.0.0.1" and seen["sum"] == 3.0  # env:// met, all-reduce summed
    assert ranks[0]["TORCHELASTIC_RUN_ID"] == ranks[1]["TORCHELASTIC_RUN_ID"]


def test_example_sweep_shows_the_logged_keys_and_parameters(dlhpc, tmp_path):
    folder = tmp_path / "own-code"
    shutil.copytree(EXAMPLE, folder)
    r = dlhpc("run", folder / "exp.yaml", "--here", "--runs-dir", tmp_path / "runs", "--set", "params.epochs=3")
    assert r.code == 0, r
    exp = only_experiment(tmp_path / "runs")
    rows = json.loads(dlhpc("summary", exp, "--format", "json").out)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"COMPLETED"}, rows
    assert {(r["params.lr"], r["params.seed"]) for r in rows} == {(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1)}
    for row in rows:
        assert row["epochs_done"] == 3 and row["world_size"] == 2 and 0 < row["test_acc"] <= 1, row
        assert row["model"] == "train.py"
    table = dlhpc("summary", exp).out
    assert "train_loss" in table and "params.lr" in table
    status = dlhpc("status", exp, "--json")
    assert json.loads(status.out)["trials"][0]["epochs"] == 3


def test_the_jobs_run_the_code_as_submitted_not_as_edited(dlhpc, tmp_path):
    spec = project(
        tmp_path,
        'import time\ntime.sleep(1)\nopen("ran.txt", "w").write("as submitted")\n',
        f"""
name: snap
program: {{script: train.py}}
resources: {{cpus_per_task: 1, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
""",
    )
    r = dlhpc("submit", spec, "--here")
    assert r.code == 0, r
    (spec.parent / "train.py").write_text('raise SystemExit("the edited script ran")\n')
    exp = only_experiment(tmp_path / "runs")
    report = wait_finished(dlhpc, exp, timeout=120)
    assert report["trials"][0]["state"] == "COMPLETED", report
    (trial,) = [d for d in exp.iterdir() if (d / "trial.json").is_file()]
    assert (trial / "ran.txt").read_text() == "as submitted"
    code = json.loads((exp / "code.json").read_text())
    assert code["script"] == "train.py" and code["files"] == 2 and code["python"]


def test_a_crash_on_rank_1_fails_the_trial_fast_and_why_shows_its_last_lines(dlhpc, tmp_path, budget):
    folder = tmp_path / "own-code"
    shutil.copytree(EXAMPLE, folder)
    t0 = time.monotonic()
    r = dlhpc(
        "run",
        folder / "exp.yaml",
        "--here",
        "--runs-dir",
        tmp_path / "runs",
        "--set",
        "sweep.params.lr=[0.1]",
        "--set",
        "sweep.params.seed=[0]",
        "--set",
        'program.args=["--epochs", "50", "--crash-rank", "1", "--crash-epoch", "2"]',
    )
    took = time.monotonic() - t0
    assert r.code == 1, r
    assert took < budget(60), f"the failed trial took {took:.0f} s to end"  # not the 50 epochs
    exp = only_experiment(tmp_path / "runs")
    (answer,) = json.loads(dlhpc("why", exp, "--json").out)
    assert answer["state"] == "FAILED"
    assert answer["cause"].startswith("rank 1 on ") and "exited with code 1" in answer["cause"], answer
    assert "crashing on purpose after epoch 2" in answer["cause"], answer
