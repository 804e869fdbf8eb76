"""Your own code (docs/own-code.md) on this machine: the spec's program keys, the torchrun
contract every rank gets, the code snapshot, the helper, and a rank that fails. The same on
SLURM and PBS across two hosts: test_own_code_live.py."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_finished, write

EXAMPLE = ROOT / "examples" / "own-code"

PROBE = """
import json, os, torch, torch.distributed as dist
dist.init_process_group("gloo")  # env://, as under torchrun
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
names = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
         "TORCHELASTIC_RUN_ID", "DLHPC_TRIAL_DIR", "DLHPC_PARAMS", "DLHPC_CHECKPOINT"]
seen = {n: os.environ.get(n) for n in names}
seen.update(cwd=os.getcwd(), sum=t.item())
with open(f"rank-{dist.get_rank()}.json", "w") as f:
    json.dump(seen, f)
dist.destroy_process_group()
"""


def project(tmp_path: Path, script: str = PROBE, spec: str = "") -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "train.py", script)
    return write(
        folder / "exp.yaml",
        spec
        or f"""
name: probe
program: {{script: train.py, args: ["--lr", "{{params.lr}}"]}}
params: {{lr: 0.1, note: "a b"}}
resources: {{tasks_per_node: 2, cpus_per_task: 1, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
""",
    )


def only_experiment(runs: Path) -> Path:
    (exp,) = [d for d in runs.iterdir() if (d / "experiment.json").is_file()]
    return exp


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


def test_a_program_that_logs_nothing_completes_by_its_exit_code(dlhpc, tmp_path):
    spec = project(
        tmp_path,
        "print('done')\n",
        f"""
name: quiet
program: {{script: train.py}}
resources: {{cpus_per_task: 1, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
""",
    )
    assert dlhpc("run", spec, "--here").code == 0
    (row,) = json.loads(dlhpc("summary", only_experiment(tmp_path / "runs"), "--format", "json").out)
    assert row["state"] == "COMPLETED" and "no metrics logged" in row["flags"], row


def test_helper_logs_every_epoch_once_when_a_run_resumes_from_an_older_snapshot(tmp_path, monkeypatch):
    import importlib

    monkeypatch.setenv("DLHPC_TRIAL_DIR", str(tmp_path))
    monkeypatch.setenv("DLHPC_PARAMS", json.dumps({"lr": 0.5}))
    from dlhpc import trial

    trial = importlib.reload(trial)
    assert trial.params == {"lr": 0.5} and trial.checkpoint_path == Path("checkpoint.pt")
    for epoch in (1, 2, 3):
        trial.log(epoch=epoch, loss=1.0 / epoch)
    for epoch in (2, 3, 4):  # resumed from the snapshot of epoch 1
        trial.log(epoch=epoch, loss=0.5 / epoch)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4] and lines[1]["loss"] == 0.25


@pytest.mark.parametrize(
    "spec, words",
    [
        ("program: {script: train.py, module: mypkg}", "names both script and module"),
        ("program: {script: nope.py}", "program.script: no file"),
        ("program: {script: train.py}\ntrain: {lr: 0.1}", "train.lr configures dlhpc's built-in trainer"),
        ('program: {script: train.py, args: ["{params.lr}"]}', "'params.lr' is not a parameter"),
        ("program: {args: [x]}", "no program is named"),
        ("program: {script: train.py, python: /no/such/python}", "program.python /no/such/python does not run"),
        ("program: {script: train.py, code_max_mb: 1}", "at most 1 MB"),
        ("program: {script: train.py}\nsweep: {model.name: [mlp, cnn]}", "cannot sweep model.name"),
    ],
)
def test_a_bad_program_is_refused_before_anything_is_written(dlhpc, tmp_path, spec, words):
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "train.py", "print('hi')\n")
    write(folder / "weights.bin", "x" * 1_500_000)
    write(folder / "exp.yaml", spec + f"\nruns_dir: {tmp_path / 'runs'}\n")
    validated = dlhpc("validate", folder / "exp.yaml")
    assert validated.code == 2 and words in validated.err, validated
    r = dlhpc("submit", folder / "exp.yaml", "--here")
    assert r.code == 2 and words in r.err and "Traceback" not in r.err, r
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_the_copy_leaves_out_what_git_ignores_and_the_runs_folder(tmp_path):
    import subprocess

    from dlhpc.plan import code
    from dlhpc.spec.load import load_spec

    folder = tmp_path / "repo"
    folder.mkdir()
    write(folder / "train.py", "print('hi')\n")
    write(folder / "lib" / "model.py", "X = 1\n")
    write(folder / ".gitignore", "data/\n")
    write(folder / "data" / "big.bin", "x" * 1000)
    write(folder / "runs" / "old" / "metrics.jsonl", "{}\n")
    spec_path = write(folder / "exp.yaml", f"program: {{script: train.py}}\nruns_dir: {folder / 'runs'}\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for argv in (["init", "-q"], ["add", "train.py", ".gitignore"], ["commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(folder), *argv], check=True, env=env)
    (folder / "train.py").write_text("print('changed')\n")
    snap = code.collect(load_spec(spec_path), exclude=folder / "runs")
    assert sorted(snap.files) == [".gitignore", "exp.yaml", "lib/model.py", "train.py"]
    assert snap.git["dirty"] is True and "+print('changed')" in snap.diff


def test_doctor_checks_the_program_and_its_interpreter(dlhpc, tmp_path):
    folder = tmp_path / "own-code"
    shutil.copytree(EXAMPLE, folder)
    r = dlhpc("doctor", folder / "exp.yaml", "--set", "resources.scheduler=local")
    assert "program code: 2 files" in r.out and "program's Python" in r.out and "torch 2." in r.out, r
    assert "MNIST data" not in r.out  # the program brings its own data
    bad = dlhpc("doctor", folder / "exp.yaml", "--set", "resources.scheduler=local", "--set", "program.script=gone.py")
    assert bad.code == 1 and "program.script: no file" in bad.out, bad
