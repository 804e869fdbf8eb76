"""Tracking (docs/tracking.md): TensorBoard event files written while trials run, for the built-in
trainer and a user's program; `dlhpc tensorboard` serving them; MLflow and W&B exports. The live
requeue case (every step once after two requeues) is in tests/live/test_reliability_live.py."""

import json
import os
import shutil

import pytest

from conftest import event_steps, sweep, write

pytest.importorskip("tensorboard", reason="the tracking extra: pip install 'dlhpc[tracking]'")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

from dlhpc.tracking.events import PATTERN, EventMirror  # noqa: E402


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
    previous = os.umask(0o002)  # a group-writable umask, as on many project systems
    try:
        second = EventMirror(trial)  # the next run's runner
        second.sync()
    finally:
        os.umask(previous)
    with open(metrics, "a") as f:
        f.write("".join(json.dumps({"epoch": e, "loss": 3.0 / e}) + "\n" for e in (4, 5, 6)))
    second.stop()
    assert event_steps(trial)["loss"] == [1, 2, 3, 4, 5, 6]
    (path,) = trial.glob(PATTERN)
    assert path.stat().st_mode & 0o022 == 0  # nobody else may write into a trial
    # (the loader hands a scalar over as a one-number tensor)
    events = EventFileLoader(str(path)).Load()
    losses = [v.tensor.float_val[0] for ev in events for v in ev.summary.value if v.tag == "loss"]
    assert losses == pytest.approx([2.0, 1.0, 2.0 / 3, 0.75, 0.6, 0.5])


WITHOUT_TENSORBOARD = """
import sys
class NoTensorBoard:  # this Python has no tensorboard package
    def find_spec(self, name, path=None, target=None):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTensorBoard())
"""


def test_without_tensorboard_the_spec_and_the_command_say_how_to_install_it(dlhpc, tmp_path):
    site = write(tmp_path / "site" / "sitecustomize.py", WITHOUT_TENSORBOARD).parent
    env = {"PYTHONPATH": str(site)}
    spec = sweep(tmp_path)
    r = dlhpc("run", spec, "--here", env=env)
    assert r.code == 2 and "tracking.tensorboard needs the tensorboard package" in r.err, r
    assert "pip install 'dlhpc[tracking]'" in r.err and f"{spec}:" in r.err
    assert not (tmp_path / "runs").exists()  # nothing written
    r = dlhpc("tensorboard", "--runs-dir", tmp_path, env=env)
    assert r.code == 2 and "TensorBoard is not installed" in r.err and "pip install 'dlhpc[tracking]'" in r.err, r


def test_the_api_exports_like_the_command(finished_sweep, tmp_path):
    import dlhpc

    exp = dlhpc.load(finished_sweep)
    assert exp.export_mlflow(str(tmp_path / "api.db"))["created"] == 2
    assert exp.export_mlflow(str(tmp_path / "api.db"))["updated"] == 2
    assert len(exp.export_wandb(tmp_path / "wb")["runs"]) == 2


def test_tensorboard_writes_the_events_of_finished_trials_that_ran_without_tracking(finished_sweep, tmp_path):
    from dlhpc.tracking.board import fill_in_events, trials_under

    exp = tmp_path / finished_sweep.name
    shutil.copytree(finished_sweep, exp)
    for path in exp.glob(f"*/{PATTERN}"):
        path.unlink()  # as a trial without tracking.tensorboard leaves it
    trials = trials_under(tmp_path)  # the runs folder: every experiment in it
    assert [t.name for t in trials] == sorted(d.name for d in exp.iterdir() if (d / "trial.json").is_file())
    assert fill_in_events(trials) == 2 and fill_in_events(trials) == 0  # once
    for trial in trials:
        assert event_steps(trial)["test_acc"] == [1, 2]
