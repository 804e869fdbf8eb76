"""The Python API (docs/api.md): the CLI's use-cases from Python, on the local backend."""

import subprocess
import sys

import pytest

from conftest import ROOT

QUICK = {"train.epochs": 1, "data.train_subset": 1000, "resources.cpus_per_task": 1}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


def test_submit_wait_and_summary(runs):
    import dlhpc

    exp = dlhpc.submit(
        ROOT / "jobs" / "mnist-softmax.yaml", set={**QUICK, "sweep.train.lr": [0.05, 0.1]}, runs_dir=runs, quiet=True
    )
    status = exp.wait(timeout=300, refresh_s=0.2)
    assert status.finished and status.counts == {"COMPLETED": 2}
    summary = exp.summary()
    assert [row["train.lr"] for row in summary.rows] == [0.05, 0.1]
    assert all(0.5 < row["test_acc"] <= 1 for row in summary)
    assert "<table" in summary._repr_html_() and "train.lr" in summary._repr_html_()
    assert list(summary.to_pandas()["train.lr"]) == [0.05, 0.1]
    assert [e.path for e in dlhpc.experiments(runs)] == [exp.path] and dlhpc.load(exp.name, runs).path == exp.path
    assert exp.plot()._repr_png_().startswith(b"\x89PNG")


def test_a_string_value_is_data_not_yaml(runs):
    import dlhpc

    with pytest.raises(dlhpc.UserError, match=r"train.lr: must be a number"):
        dlhpc.submit(ROOT / "jobs" / "mnist-softmax.yaml", set={"train.lr": "0.1"}, runs_dir=runs, quiet=True)


def test_bad_references_are_user_errors(runs):
    import dlhpc

    with pytest.raises(dlhpc.UserError, match="no experiment 'nope'"):
        dlhpc.load("nope", runs)


def test_cancel_stops_a_running_experiment(runs):
    import dlhpc

    exp = dlhpc.submit(
        ROOT / "jobs" / "mnist-softmax.yaml", set={**QUICK, "train.epochs": 500}, runs_dir=runs, quiet=True
    )
    assert exp.cancel() and exp.wait(timeout=60, refresh_s=0.2).counts == {"CANCELLED": 1}


def test_importing_dlhpc_imports_neither_torch_nor_submitit():
    code = "import sys, dlhpc; dlhpc.load; print('torch' in sys.modules, 'submitit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_submitting_leaves_the_notebooks_umask_as_it_was(runs):
    import os

    import dlhpc
    from dlhpc.fsutil import current_umask

    old = os.umask(0o002)
    try:
        exp = dlhpc.submit(ROOT / "jobs" / "mnist-softmax.yaml", set=QUICK, runs_dir=runs, quiet=True)
        assert current_umask() == 0o002
    finally:
        os.umask(old)
    assert exp.path.stat().st_mode & 0o777 == 0o700  # the experiment is private all the same
    exp.wait(timeout=120, refresh_s=0.2)
