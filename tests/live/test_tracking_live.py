"""Tracking (docs/tracking.md): TensorBoard event files written while trials run, for the built-in
trainer and a user's program; `dlhpc tensorboard` serving them; MLflow and W&B exports. The live
requeue case (every step once after two requeues) is in tests/live/test_reliability_live.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, event_steps, sweep, trials_of, write

pytest.importorskip("tensorboard", reason="the tracking extra: pip install 'dlhpc[tracking]'")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

from dlhpc.node.rendezvous import free_port  # noqa: E402
from dlhpc.tracking.events import PATTERN  # noqa: E402


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


def logged(trial: Path, key: str) -> list:
    return [json.loads(line)[key] for line in (trial / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port("127.0.0.1")
    log = open(tmp_path / "mlflow-server.log", "wb")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--default-artifact-root", (tmp_path / "artifacts").as_uri()]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "mlflow-server.log").read_text()
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def mlflow_runs(uri: str, name: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client, client.search_runs([experiment.experiment_id])


def test_mlflow_export_to_a_server_is_one_run_per_trial_and_updates_on_a_second_export(
    dlhpc, finished_sweep, mlflow_server, tmp_path
):
    exp = tmp_path / finished_sweep.name
    shutil.copytree(finished_sweep, exp)  # (this test adds a line to a trial's metrics)
    first = dlhpc("export", "mlflow", exp, "--to", mlflow_server)
    assert first.code == 0 and "2 runs created, 0 updated" in first.out, first
    trial = exp / sorted(d.name for d in exp.iterdir() if (d / "trial.json").is_file())[0]
    with open(trial / "metrics.jsonl", "a") as f:  # the trial went on (a running trial's export)
        f.write(json.dumps({"epoch": 3, "test_acc": 0.5}) + "\n")
    second = dlhpc("export", "mlflow", exp, "--to", mlflow_server)
    assert second.code == 0 and "0 runs created, 2 updated" in second.out, second
    client, runs = mlflow_runs(mlflow_server, "tb")
    assert sorted(r.info.run_name for r in runs) == sorted(
        d.name for d in exp.iterdir() if (d / "trial.json").is_file()
    )
    for run in runs:
        here = exp / run.info.run_name
        history = client.get_metric_history(run.info.run_id, "test_acc")
        assert [(m.step, m.value) for m in history] == list(enumerate(logged(here, "test_acc"), start=1))
        assert float(run.data.params["train.lr"]) == json.loads((here / "trial.json").read_text())["params"]["train.lr"]
        assert run.data.tags["dlhpc.trial"] == here.name and run.data.tags["dlhpc.scheduler"] == "local"
        assert run.info.status == "FINISHED"
        assert run.data.metrics["final.test_acc"] == json.loads((here / "result.json").read_text())["test_acc"]


@pytest.mark.parametrize("store", ["runs.db", "mlruns"])
def test_mlflow_export_to_a_local_store(dlhpc, finished_sweep, tmp_path, store):
    env = {"MLFLOW_ALLOW_FILE_STORE": "true"} if store == "mlruns" else {}
    for _ in range(2):
        r = dlhpc("export", "mlflow", finished_sweep, "--to", tmp_path / store, env=env)
        assert r.code == 0, r
    uri = f"sqlite:///{tmp_path / store}" if store.endswith(".db") else (tmp_path / store).as_uri()
    os.environ.update(env)
    try:
        client, runs = mlflow_runs(uri, "tb")
        assert len(runs) == 2
        for run in runs:
            assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    finally:
        for key in env:
            os.environ.pop(key)


def test_mlflow_refusals_are_one_line_and_exit_2(dlhpc, finished_sweep, tmp_path):
    r = dlhpc("export", "mlflow", finished_sweep, "--to", tmp_path / "mlruns", env={"MLFLOW_ALLOW_FILE_STORE": "false"})
    # (issue 33: dlhpc's fix, an SQLite file, not MLflow's paragraph about its maintenance mode)
    assert r.code == 2 and f"--to {tmp_path / 'mlruns.db'}" in r.err and "maintenance" not in r.err, r
    down = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    r = dlhpc("export", "mlflow", finished_sweep, "--to", down, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert r.code == 2 and down in r.err and "Traceback" not in r.err, r


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (`run-*.wandb`): LevelDB's log format (32 KiB blocks of
    crc32, length, type, data) after a 7-byte header, each record a wandb_internal_pb2.Record."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending, found = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk  # full or first; middle or last
        if kind in (1, 4):
            found.append(wandb_internal_pb2.Record.FromString(pending))
    return found


def test_wandb_export_writes_one_offline_run_per_trial_again_and_again(dlhpc, finished_sweep, tmp_path):
    out = tmp_path / "wb"
    for _ in range(2):
        r = dlhpc("export", "wandb", finished_sweep, "--dir", out)
        assert r.code == 0 and "wandb sync" in r.out, r
    folders = sorted((out / "wandb").glob("offline-run-*"))
    trials = sorted(d for d in finished_sweep.iterdir() if (d / "trial.json").is_file())
    assert len(folders) == len(trials) == 2
    seen = {}
    for folder in folders:
        (path,) = folder.glob("run-*.wandb")
        records = wandb_records(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
        acc = [json.loads(i.value_json) for h in history for i in h.item if list(i.nested_key) == ["test_acc"]]
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
        seen[run.display_name] = (acc, config["train.lr"], exit_record.exit_code, run.project)
    for trial in trials:
        lr = json.loads((trial / "trial.json").read_text())["params"]["train.lr"]
        assert seen[trial.name] == (logged(trial, "test_acc"), lr, 0, "tb")


SECRET = "hunter2-s3cr3t-9f4e"


def test_one_secret_reaches_no_sink_dlhpc_shares(dlhpc, tmp_path, mlflow_server):
    """Issue 33, finding 7 and 12: the same secret through env.vars, a swept env.vars value, params
    with secret-looking keys and a tracker URI's password; it is found in none of what dlhpc writes
    for others to see (TensorBoard's event files, summary, report, MLflow, W&B, every message),
    only in the private record, job script and trial specs."""
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "train.py", "from dlhpc import trial\ntrial.log(epoch=1, test_acc=0.5)\n")
    spec = write(
        folder / "exp.yaml",
        f"""
name: secrets
program: {{script: train.py}}
params: {{hf_token: "{SECRET}", wandb_api_key: "{SECRET}", lr: 0.1}}
env: {{vars: {{HF_TOKEN: "{SECRET}"}}}}
sweep: {{env.vars: [{{HF_TOKEN: "{SECRET}", MY_PASSWORD: "{SECRET}"}}]}}
resources: {{cpus_per_task: 1, time: "00:05:00"}}
tracking: {{tensorboard: true}}
runs_dir: {tmp_path / "runs"}
""",
    )
    said = [dlhpc("run", spec, "--here")]
    assert said[0].code == 0, said[0]
    exp = next(d for d in (tmp_path / "runs").iterdir() if (d / "experiment.json").is_file())
    shared = tmp_path / "shared"
    shared.mkdir()
    host = mlflow_server.split("://", 1)[1]
    said += [
        dlhpc("summary", exp, "--json"),
        dlhpc("summary", exp, "--format", "csv", "-o", shared / "summary.csv"),
        dlhpc("report", exp, "-o", shared / "report.html"),
        dlhpc("export", "mlflow", exp, "--to", f"http://dlhpc:{SECRET}@{host}"),
        dlhpc("export", "mlflow", exp, "--to", f"sqlite:///{shared / 'runs.db'}"),
        dlhpc("export", "wandb", exp, "--dir", shared / "wb"),
        dlhpc("export", "mlflow", exp, "--to", f"http://dlhpc:{SECRET}@127.0.0.1:{free_port('127.0.0.1')}"),
    ]
    assert [r.code for r in said] == [0, 0, 0, 0, 0, 0, 0, 2], said
    assert "dlhpc:***@" in said[4].out and "dlhpc:***@" in said[-1].err, (said[4], said[-1])
    # the owner's own: the record, each trial's spec and parameters, the job scripts, the code
    # copied (the spec file sits in it): what the jobs need, in folders private to the owner
    private = {"experiment.json", "spec.yaml", "trial.json"}
    leaks = [r for r in said if SECRET in r.out or SECRET in r.err]
    for root in (exp, shared, tmp_path / "server.db"):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if path.name in private or path.name.startswith("job-") or "code" in path.relative_to(root).parts:
                continue  # (private to the owner, and the job needs them)
            if SECRET.encode() in path.read_bytes():
                leaks.append(path)
    assert leaks == []
    assert list(exp.rglob("events.out.tfevents.*")), "TensorBoard wrote no events: nothing was checked"
