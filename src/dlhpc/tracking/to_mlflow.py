"""`dlhpc export mlflow EXP --to URI`: one MLflow run per trial, written from the login node (no
compute node ever talks to a tracking server, and one writer means no file-store races).

A run is found again by its `dlhpc.uid` tag, so exporting again updates it: new metrics lines
are added (the count already sent is kept in the `dlhpc.lines_exported` tag), tags and state
are brought up to date, nothing is duplicated. A file store (`file:///path`, a plain path) and a
server (`http://127.0.0.1:5000`) alike.
"""

import contextlib
import io
import os
import time
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.results import redact
from dlhpc.tracking import INSTALL
from dlhpc.tracking.records import RUN_STATUS, TrialRecord, read_experiment

BATCH = 1000  # metrics per log_batch call (MLflow's limit)
PARAMS_PER_BATCH = 100
LINES_TAG = "dlhpc.lines_exported"


def store_uri(to: str) -> str:
    """A URI as given; a plain path: an SQLite file (`runs.db`) or a folder (MLflow's file store)."""
    if "://" in to:
        return to
    path = Path(to).expanduser().absolute()
    return f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    # a server that is down: a clear error within a minute, not MLflow's default of minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return MlflowClient(tracking_uri=uri)


def existing_runs(client, experiment_id: str, exp_dir: Path) -> dict:
    """{dlhpc.uid: run} for the runs an earlier export made from this experiment folder."""
    found, token = {}, None
    wanted = f"tags.`dlhpc.experiment_dir` = '{_quoted(str(exp_dir))}'"
    while True:
        page = client.search_runs([experiment_id], filter_string=wanted, max_results=5000, page_token=token)
        for run in page:
            uid = run.data.tags.get("dlhpc.uid")
            if uid:
                found[uid] = run
        token = page.token
        if not token:
            return found


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def export(exp_dir: Path, to: str, experiment: str | None = None, say=print) -> dict:
    """Export every trial; {"created": n, "updated": n, "experiment_id": id}. MLflow's own
    refusals (a server that cannot be reached, a store it will not write) become one UserError."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # (the first mlflow import of the export: said here, not as an internal error)
        raise UserError(f"MLflow is not installed in this Python: {INSTALL}") from None
    shown = redact.uri(to)  # (user:password@ in a server's URI is never echoed)
    try:
        return _export(exp_dir, store_uri(to), experiment, lambda line: say(redact.uri(line)))
    except MlflowException as exc:
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "filesystem tracking backend" in said:  # MLflow 3 refuses file stores (./mlruns)
            db = Path(to).expanduser().absolute().with_suffix(".db")
            raise UserError(
                f"MLflow {mlflow_version()} no longer writes a folder store like {shown}: export into an SQLite file "
                f"instead, --to {db} (sqlite:///{db}); `mlflow ui --backend-store-uri sqlite:///{db}` shows it"
            ) from None
        raise UserError(redact.uri(f"MLflow at {shown}: {said}")) from None


def mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


def _export(exp_dir: Path, uri: str, experiment: str | None, say) -> dict:
    record, trials = read_experiment(exp_dir)
    client = client_for(uri)
    name = experiment or record.get("name") or exp_dir.name
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    runs = existing_runs(client, experiment_id, exp_dir)
    created = 0
    for trial in trials:
        run = runs.get(trial.uid)
        if run is None:
            run = client.create_run(experiment_id, run_name=trial.trial, tags=trial.tags)
            created += 1
        write_run(client, run, trial)
    say(f"{name}: {created} runs created, {len(trials) - created} updated ({uri})")
    if uri.startswith(("http://", "https://")):
        say(f"  {uri.rstrip('/')}/#/experiments/{experiment_id}")
    return {"created": created, "updated": len(trials) - created, "experiment_id": experiment_id}


def write_run(client, run, trial: TrialRecord) -> None:
    from mlflow.entities import Metric, Param, RunTag

    run_id = run.info.run_id
    done = int(run.data.tags.get(LINES_TAG) or 0)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for step, values in trial.steps[done:] for k, v in values.items()]
    if trial.finished:
        metrics += [Metric(k, v, now, 0) for k, v in trial.final.items() if k not in run.data.metrics]
    params = [Param(k, str(v)) for k, v in trial.params.items() if k not in run.data.params]
    tags = [RunTag(k, str(v)) for k, v in {**trial.tags, LINES_TAG: max(done, len(trial.steps))}.items()]
    for start in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH])
    for start in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[start : start + PARAMS_PER_BATCH])
    for start in range(0, len(tags), PARAMS_PER_BATCH):
        client.log_batch(run_id, tags=tags[start : start + PARAMS_PER_BATCH])
    status = RUN_STATUS.get(trial.state)
    if status and run.info.status != status:
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints two links per ended run
            client.set_terminated(run_id, status)
