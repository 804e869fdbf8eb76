"""The CLI as a user meets it: fast login-node commands, a local run, data fetch, a wheel install."""

import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import DATA, ROOT, write


def test_local_run_of_ci_smoke(dlhpc, tmp_path):
    r = dlhpc("run", ROOT / "jobs" / "ci-smoke.yaml", "--set", f"runs_dir={tmp_path / 'runs'}")
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    record = json.loads((exp / "experiment.json").read_text())
    assert record["scheduler"] == "local" and len(record["trials"]) == 2
    for trial in record["trials"]:
        tdir = exp / trial["id"]
        assert (tdir / "spec.yaml").is_file() and (tdir / "checkpoint.pt").is_file()
        result = json.loads((tdir / "result.json").read_text())
        assert result["state"] == "COMPLETED" and result["world_size"] == 2
        assert 0.9 < result["test_acc"] <= 1.0
        assert len((tdir / "metrics.jsonl").read_text().splitlines()) == 1
    assert "COMPLETED" in r.out and trial["id"] in r.out  # the closing table


def test_data_fetch_downloads_and_verifies(dlhpc, tmp_path, mnist_mirror):
    served, url = mnist_mirror
    root = tmp_path / "shared data"
    r = dlhpc("data", "fetch", "--root", root, env={"DLHPC_MNIST_MIRROR": url})
    assert r.code == 0, r
    assert str(root) in r.out
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (root / "MNIST" / "raw" / name).read_bytes() == (DATA / "MNIST" / "raw" / name).read_bytes()
    again = dlhpc("data", "fetch", "--root", root, env={"DLHPC_MNIST_MIRROR": "http://127.0.0.1:9/"})
    assert again.code == 0, again  # idempotent: nothing to download the second time


def test_data_fetch_rejects_a_corrupt_download(dlhpc, tmp_path, mnist_mirror):
    served, url = mnist_mirror
    with gzip.open(served / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not mnist")
    r = dlhpc("data", "fetch", "--root", tmp_path / "d", env={"DLHPC_MNIST_MIRROR": url})
    assert r.code == 2, r
    assert "could not download MNIST" in r.err and "checksum mismatch" in r.err and "Traceback" not in r.err


def test_wheel_install_ships_templates(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("dlhpc-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # no torch needed to render: install only what the login-node path imports
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel), "pyyaml", "jinja2", "markupsafe"],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    spec = write(tmp_path / "s.yaml", "name: wheel\nresources: {scheduler: slurm}\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run(
        [str(venv / "bin" / "dlhpc"), "render", str(spec)],
        cwd=work,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --job-name=wheel" in proc.stdout
    assert "site-packages/dlhpc/templates/slurm/default.sh.j2" in proc.stderr


@pytest.mark.perf
def test_local_submit_returns_at_once_and_finishes_in_the_background(dlhpc, tmp_path, budget):
    t0 = time.monotonic()
    r = dlhpc(
        "submit",
        ROOT / "jobs" / "mnist-softmax.yaml",
        "--set",
        "train.epochs=1",
        "--set",
        "data.train_subset=2000",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
    )
    assert r.code == 0, r
    assert time.monotonic() - t0 < budget(5)
    assert "background" in r.out
    exp = next((tmp_path / "runs").iterdir())
    watch = dlhpc("status", exp, "--watch", timeout=120)
    assert watch.code == 0, watch
    report = json.loads(dlhpc("status", exp, "--json").out)
    assert report["finished"] and report["trials"][0]["state"] == "COMPLETED", report
    logs = dlhpc("logs", exp, "--follow", timeout=30)
    assert logs.code == 0 and "epoch 1/1" in logs.out
    bad = dlhpc("logs", exp, "--trial", "nope")
    assert bad.code == 2 and "no trial 'nope'" in bad.err


def test_local_run_trains_all_four_models(dlhpc, tmp_path):
    r = dlhpc(
        "run",
        ROOT / "jobs" / "mnist-softmax.yaml",
        "--set",
        f"runs_dir={tmp_path / 'runs'}",
        "--set",
        "train.epochs=1",
        "--set",
        "data.train_subset=5000",
        "--set",
        "train.lr=0.05",
        "--set",
        "sweep.model.name=[softmax, mlp, lenet5, cnn]",
        "--set",
        "train.momentum=0.9",
    )
    assert r.code == 0, r
    (exp,) = (tmp_path / "runs").iterdir()
    rows = json.loads(dlhpc("summary", exp, "--format", "json").out)
    assert [row["model"] for row in rows] == ["softmax", "mlp", "lenet5", "cnn"]
    for row in rows:
        assert row["state"] == "COMPLETED" and row["test_acc"] > 0.5, row  # far above chance (0.1)
        # stdout is a pipe here, not a terminal: one plain line per epoch per trial, as it happens
        assert f"{row['trial']} epoch 1/1 train_loss" in r.out and f"{row['trial']} COMPLETED" in r.out
