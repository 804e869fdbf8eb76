"""The Python API (docs/api.md): the CLI's use-cases from Python, on the local backend."""

import subprocess
import sys

import pytest

from conftest import QUICK_SETS, ROOT


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
        ROOT / "jobs" / "mnist-softmax.yaml", set={**QUICK_SETS, "train.epochs": 500}, runs_dir=runs, quiet=True
    )
    assert exp.cancel() and exp.wait(timeout=60, refresh_s=0.2).counts == {"CANCELLED": 1}


def test_importing_dlhpc_imports_neither_torch_nor_submitit():
    code = "import sys, dlhpc; dlhpc.load; print('torch' in sys.modules, 'submitit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
