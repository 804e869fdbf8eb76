"""The training payload on the real MNIST: models, sharding, exact resume, DDP parity."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import SMALL, make_trial, read
from dlhpc.train.loop import train_trial


@pytest.mark.parametrize("sets", [[], ["train.augment=true"]], ids=["plain", "augmented"])
def test_killed_run_resumes_exactly(tmp_path, sets):
    reference = make_trial(tmp_path / "a", SMALL, sets)
    expected = train_trial(reference)

    trial = make_trial(tmp_path / "b", SMALL, sets)
    env = {**os.environ, "DLHPC_CPUS_PER_TASK": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlhpc.train", str(trial)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once epoch 1 is checkpointed, mid-way through epoch 2
        if (trial / "metrics.jsonl").exists() and len(read(trial / "metrics.jsonl")) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read(trial / "metrics.jsonl")) < 3, "the run finished before it could be interrupted"
    checkpointed = torch.load(trial / "checkpoint.pt", weights_only=False)["epoch"]
    resumed = train_trial(trial)
    assert resumed["resumed_from_epoch"] == checkpointed  # the last checkpoint written before the kill
    lines = read(trial / "metrics.jsonl")
    assert [m["epoch"] for m in lines] == [1, 2, 3]  # every epoch exactly once
    assert resumed["test_acc"] == expected["test_acc"]
    assert resumed["test_loss"] == expected["test_loss"]
    ref_lines = read(reference / "metrics.jsonl")
    assert [m["test_loss"] for m in lines] == [m["test_loss"] for m in ref_lines]


def test_ddp_two_ranks_match_one_rank(tmp_path):
    text = """
name: ddp
model: {name: cnn, width: 16}
train: {epochs: 2, lr: 0.1, seed: 1}
data: {train_subset: 20000}
resources: {cpus_per_task: 1}
"""
    one = make_trial(tmp_path / "one", text, ["train.batch_size=128", "resources.cpus_per_task=2"])
    two = make_trial(tmp_path / "two", text, ["train.batch_size=64", "resources.tasks_per_node=2"])
    r1 = train_trial(one)
    proc = subprocess.run(
        [sys.executable, "-m", "dlhpc.train", "--nproc", "2", str(two)],
        env={**os.environ, "DLHPC_CPUS_PER_TASK": "1"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r2 = json.loads((two / "result.json").read_text())
    assert r2["world_size"] == 2 and r1["world_size"] == 1
    assert read(two / "metrics.jsonl")[0]["world_size"] == 2
    assert abs(r1["test_acc"] - r2["test_acc"]) <= 0.003, (r1["test_acc"], r2["test_acc"])


def test_compile_time_is_reported_apart(tmp_path):
    trial = make_trial(
        tmp_path, SMALL, ["train.epochs=1", "data.train_subset=2000", "train.compile=true", "train.target_accuracy=0.5"]
    )
    result = train_trial(trial)
    assert result["state"] == "COMPLETED" and result["compile_s"] > 0
    assert result["time_to_target_s"] < result["compile_s"]  # compiling happens before the clock starts
