"""One trial as an experiment tracker sees a run: a stable id, its parameters, tags, per-step
metrics and final figures, read from the experiment folder (the same for every exporter)."""

from dataclasses import dataclass, field
from pathlib import Path

from dlhpc.fsutil import read_json, read_trial_spec
from dlhpc.results.metrics import finite
from dlhpc.tracking.events import rows, scalars, step_of
from dlhpc.tracking.params import trial_params

NOT_FIGURES = ("nodes", "world_size", "epochs", "target_accuracy", "exit_code", "failed_rank")
# dlhpc's end states, as an MLflow run's status
RUN_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "CANCELLED": "KILLED", "TIMEOUT": "FAILED"}


@dataclass
class TrialRecord:
    uid: str  # the same across exports and requeues: "<experiment folder>/<trial id>"
    trial: str
    state: str  # dlhpc's word: COMPLETED, FAILED, RUNNING...
    params: dict
    tags: dict
    steps: list = field(default_factory=list)  # (step, {key: value}) per metrics.jsonl line
    final: dict = field(default_factory=dict)  # result.json's figures that are not per-step

    @property
    def finished(self) -> bool:
        return self.state in RUN_STATUS


def read_trial(exp_dir: Path, record: dict, trial: dict) -> TrialRecord:
    tdir = exp_dir / trial["id"]
    data = read_trial_spec(tdir / "spec.yaml") if (tdir / "spec.yaml").is_file() else record.get("spec", {})
    result = read_json(tdir / "result.json", {}) or {}
    lines = rows(tdir / "metrics.jsonl")
    state = result.get("state") or ("RUNNING" if lines else "PENDING")
    jobs = [j["job_id"] for j in record.get("jobs", []) if j.get("trial") == trial["id"]]
    tags = {
        "dlhpc.uid": f"{exp_dir.name}/{trial['id']}",
        "dlhpc.experiment": record.get("name", ""),
        "dlhpc.experiment_dir": str(exp_dir),
        "dlhpc.trial": trial["id"],
        "dlhpc.state": state,
        "dlhpc.scheduler": record.get("scheduler", ""),
        "dlhpc.job_ids": ",".join(str(j) for j in jobs),
        "dlhpc.git_commit": ((record.get("git") or {}).get("commit") or ""),
        "dlhpc.image_digest": ((record.get("container") or {}).get("digest") or ""),
    }
    steps = [(step_of(line, i), scalars(line)) for i, line in enumerate(lines)]
    final = {f"final.{k}": float(v) for k, v in result.items() if finite(v) and k not in NOT_FIGURES}
    return TrialRecord(
        uid=tags["dlhpc.uid"],
        trial=trial["id"],
        state=state,
        params=trial_params(data, trial.get("params") or {}),
        tags={k: v for k, v in tags.items() if v},
        steps=[(s, v) for s, v in steps if v],
        final=final,
    )


def read_experiment(exp_dir: Path) -> tuple[dict, list[TrialRecord]]:
    """Every trial of one of your experiments (an export never carries a colleague's trials
    into a tracker under your name: ownership.py)."""
    from dlhpc.ownership import require_own
    from dlhpc.results.rows import read_record

    require_own(exp_dir, "export its trials")
    record = read_record(exp_dir)
    return record, [read_trial(exp_dir, record, t) for t in record.get("trials", [])]
