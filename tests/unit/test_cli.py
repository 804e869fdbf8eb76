"""The CLI as a user meets it: fast login-node commands, a local run, data fetch, a wheel install."""

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT


@pytest.mark.parametrize(
    "args,code",
    [
        (["--help"], 0),
        (["validate", "jobs/mnist-cnn.yaml"], 0),
        (["render", "jobs/sweep-lr.yaml"], 0),
        (["summary", "--json"], 2),
        (["status", "--json"], 2),
    ],
)
def test_login_node_commands_do_not_import_torch(args, code, tmp_path):
    # (summary and status find no experiment in an empty runs folder: exit 2, having imported what they need)
    env = {**os.environ, "DLHPC_RUNS_DIR": str(tmp_path / "none")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlhpc", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "submitit" not in imported
    assert proc.returncode == code, proc.stderr[-2000:]


@pytest.mark.perf
@pytest.mark.parametrize("args", [["--help"], ["validate", "jobs/mnist-cnn.yaml"], ["render", "jobs/sweep-lr.yaml"]])
def test_login_node_commands_answer_fast(args, budget):
    best = min(_timed([sys.executable, "-m", "dlhpc", *args]) for _ in range(3))
    assert best < budget(0.5), f"dlhpc {' '.join(args)} took {best:.2f} s, budget {budget(0.5):.2f} s"


def _timed(argv):
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - t0


def test_run_without_data_says_where_it_looked(dlhpc, tmp_path):
    r = dlhpc(
        "run",
        ROOT / "jobs" / "ci-smoke.yaml",
        "--set",
        f"data.root={tmp_path / 'empty'}",
        "--set",
        "data.download=false",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
    )
    assert r.code == 2, r
    assert str(tmp_path / "empty") in r.err and "dlhpc data fetch" in r.err and "DLHPC_DATA" in r.err
    assert "Traceback" not in r.err
    assert not (tmp_path / "runs").exists()
