"""`dlhpc export wandb EXP`: one Weights & Biases run per trial, written offline on the login node
into run folders that `wandb sync` uploads later, from wherever there is network. Compute nodes
never need it.

Each trial's run id is derived from its stable uid, and an export replaces the folder an earlier
export wrote for it: exporting again leaves one folder per trial, never a second run.
"""

import hashlib
import os
import shutil
from pathlib import Path

from dlhpc.errors import UserError
from dlhpc.fsutil import no_write_for_others
from dlhpc.tracking import INSTALL
from dlhpc.tracking.records import TrialRecord, read_experiment


def run_id(uid: str) -> str:
    return "dlhpc-" + hashlib.sha1(uid.encode()).hexdigest()[:16]


def export(exp_dir: Path, folder: Path | None = None, project: str | None = None, say=print) -> dict:
    try:
        import wandb
    except ImportError:
        raise UserError(f"W&B is not installed in this Python: {INSTALL}") from None
    record, trials = read_experiment(exp_dir)
    folder = (folder or exp_dir).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    project = project or record.get("name") or exp_dir.name
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_SILENT")}
    # never online from here: `wandb sync` uploads, from wherever there is network
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT=saved["WANDB_SILENT"] or "true")
    written = []
    try:
        with no_write_for_others():  # W&B's files land in the experiment: nobody else may write them
            for trial in trials:
                _forget(folder, run_id(trial.uid))
                written.append(_write(wandb, folder, project, trial))
    finally:  # (the API runs in the caller's process: its environment is given back)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    say(f"{project}: {len(written)} offline runs in {folder / 'wandb'}")
    say(f"  upload them where there is network: wandb sync {folder / 'wandb'}/offline-run-*")
    return {"runs": written, "folder": str(folder / "wandb")}


def _forget(folder: Path, rid: str) -> None:
    """The folder an earlier export wrote for this run (this tool's own, under `folder`)."""
    for old in (folder / "wandb").glob(f"offline-run-*-{rid}"):
        shutil.rmtree(old)


def _write(wandb, folder: Path, project: str, trial: TrialRecord) -> str:
    run = wandb.init(
        dir=str(folder),
        project=project,
        id=run_id(trial.uid),
        name=trial.trial,
        config=trial.params,
        tags=[trial.state],
        notes=trial.uid,
        mode="offline",
        reinit="create_new",
        settings=wandb.Settings(console="off", save_code=False),
    )
    try:
        run.config.update({k: v for k, v in trial.tags.items()}, allow_val_change=True)
        for step, values in trial.steps:
            run.log(values, step=step)
        run.summary.update({k: v for k, v in trial.final.items()})
    finally:
        run.finish(exit_code=0 if trial.state in ("COMPLETED", "RUNNING", "PENDING") else 1)
    return run.id
