"""Your own code (docs/own-code.md) on this machine: the spec's program keys, the torchrun
contract every rank gets, the code snapshot, the helper, and a rank that fails. The same on
SLURM and PBS across two hosts: test_own_code_live.py."""

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLE, only_experiment, project, write


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
        ("program: {script: train.py, python: /no/such/python}", "program.python: /no/such/python does not exist here"),
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
    assert sorted(snap.files) == ["exp.yaml", "lib/model.py", "train.py"]
    assert snap.skipped == [{"path": ".gitignore", "why": "hidden"}]
    assert snap.git["dirty"] is True and "+print('changed')" in snap.diff


def test_doctor_checks_the_program_and_its_interpreter(dlhpc, tmp_path):
    folder = tmp_path / "own-code"
    shutil.copytree(EXAMPLE, folder)
    r = dlhpc("doctor", folder / "exp.yaml", "--set", "resources.scheduler=local")
    assert "program code: 2 files" in r.out and "program's Python" in r.out and "torch 2." in r.out, r
    assert "MNIST data" not in r.out  # the program brings its own data
    bad = dlhpc("doctor", folder / "exp.yaml", "--set", "resources.scheduler=local", "--set", "program.script=gone.py")
    assert bad.code == 1 and "program.script: no file" in bad.out, bad
