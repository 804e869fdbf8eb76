"""Tracking (docs/tracking.md): TensorBoard event files written while trials run, for the built-in
trainer and a user's program; `dlhpc tensorboard` serving them; MLflow and W&B exports. The live
requeue case (every step once after two requeues) is in test_reliability.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import DATA, ROOT, event_steps, write

pytest.importorskip("tensorboard", reason="the tracking extra: pip install 'dlhpc[tracking]'")

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

from dlhpc.tracking.events import PATTERN, EventMirror  # noqa: E402


def sweep(tmp_path: Path, epochs: int = 3) -> Path:
    spec = write(
        tmp_path / "tb.yaml",
        f"""
name: tb
model: {{name: softmax}}
train: {{epochs: {epochs}, target_accuracy: 0.5}}
data: {{train_subset: 1000, root: {DATA}}}
resources: {{cpus_per_task: 1, time: "00:05:00"}}
tracking: {{tensorboard: true}}
sweep: {{train.lr: [0.05, 0.1]}}
runs_dir: {tmp_path / "runs"}
""",
    )
    return spec


def trials_of(runs: Path) -> list[Path]:
    (exp,) = [d for d in runs.iterdir() if (d / "experiment.json").is_file()]
    return sorted(d for d in exp.iterdir() if (d / "trial.json").is_file())


def test_each_trial_is_one_tensorboard_run_with_every_epoch_and_its_parameters(dlhpc, tmp_path):
    assert dlhpc("run", sweep(tmp_path), "--here").code == 0
    trials = trials_of(tmp_path / "runs")
    for trial in trials:
        assert len(list(trial.glob(PATTERN))) == 1
        steps = event_steps(trial)
        for tag in ("train_loss", "test_loss", "test_acc", "lr", "images_per_s"):
            assert steps[tag] == [1, 2, 3], (tag, steps)
        assert steps["_hparams_/session_start_info"] == [0]
    lrs = []
    for trial in trials:
        (path,) = trial.glob(PATTERN)
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    from tensorboard.plugins.hparams import plugin_data_pb2

                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    lrs.append(data.session_start_info.hparams["train.lr"].number_value)
    assert lrs == [0.05, 0.1]


def test_a_history_that_went_back_is_written_again_as_one_run(tmp_path):
    """What a requeue does to metrics.jsonl: epochs 1-5 logged, the run resumed from the epoch-3
    checkpoint and logged 4 and 5 again (metrics.jsonl keeps each once)."""
    trial = tmp_path / "000-abc"
    write(trial / "spec.yaml", json.dumps({"model": {"name": "cnn"}, "train": {"lr": 0.1}}))
    write(trial / "trial.json", json.dumps({"id": "000-abc", "params": {}}))
    metrics = trial / "metrics.jsonl"
    write(metrics, "".join(json.dumps({"epoch": e, "loss": 1.0 / e}) + "\n" for e in range(1, 6)))
    first = EventMirror(trial)
    first.sync()  # the first run, then killed by the requeue (no last sync, no close)
    write(metrics, "".join(json.dumps({"epoch": e, "loss": 2.0 / e}) + "\n" for e in range(1, 4)))
    second = EventMirror(trial)  # the next run's runner
    second.sync()
    with open(metrics, "a") as f:
        f.write("".join(json.dumps({"epoch": e, "loss": 3.0 / e}) + "\n" for e in (4, 5, 6)))
    second.stop()
    assert event_steps(trial)["loss"] == [1, 2, 3, 4, 5, 6]
    (path,) = trial.glob(PATTERN)
    # (the loader hands a scalar over as a one-number tensor)
    events = EventFileLoader(str(path)).Load()
    losses = [v.tensor.float_val[0] for ev in events for v in ev.summary.value if v.tag == "loss"]
    assert losses == pytest.approx([2.0, 1.0, 2.0 / 3, 0.75, 0.6, 0.5])


def test_tensorboard_command_serves_the_curves_and_stops_on_ctrl_c(dlhpc, tmp_path):
    assert dlhpc("run", sweep(tmp_path, epochs=2), "--here").code == 0
    trial = trials_of(tmp_path / "runs")[0]
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlhpc", "tensorboard", trial.parent],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        url = lines[1].strip()
        assert url.startswith("http://127.0.0.1:"), (lines, proc.stderr.read() if proc.poll() is not None else "")
        assert f"ssh -N -L {url.rsplit(':', 1)[1].rstrip('/')}:127.0.0.1:" in lines[2]
        query = f"data/plugin/scalars/scalars?run={trial.name}&tag=test_acc"
        with urllib.request.urlopen(url + query, timeout=30) as answer:
            points = json.loads(answer.read())
        logged = [json.loads(line)["test_acc"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
        assert [p[1] for p in points] == [1, 2] and [p[2] for p in points] == pytest.approx(logged)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(OSError):  # TensorBoard went with it
        urllib.request.urlopen(url, timeout=5)


def test_a_programs_logged_keys_become_curves_with_no_extra_lines(dlhpc, tmp_path):
    folder = tmp_path / "own-code"
    shutil.copytree(ROOT / "examples" / "own-code", folder)
    spec = write(
        folder / "one.yaml",
        """
name: spirals
program: {script: train.py, args: ["--epochs", "2", "--lr", "0.1"]}
resources: {cpus_per_task: 1, time: "00:05:00"}
tracking: {tensorboard: true}
""",
    )
    r = dlhpc("run", spec, "--here", "--runs-dir", tmp_path / "runs")
    assert r.code == 0, r
    (trial,) = trials_of(tmp_path / "runs")
    logged = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    steps = event_steps(trial)
    for key in ("train_loss", "test_acc"):
        assert steps[key] == [m["epoch"] for m in logged] == [1, 2]
