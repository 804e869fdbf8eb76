"""The Python API: what the CLI does, for notebooks and scripts (docs/api.md).

    import dlhpc
    exp = dlhpc.submit("exp.yaml", set={"train.lr": 0.1}, scheduler="slurm")
    exp.wait(timeout=3600)            # the same gentle polling as `dlhpc status --watch`
    exp.summary().to_pandas()         # or .rows: a list of dicts

The CLI is a thin layer over the same modules (pipeline, status, results); nothing here imports
torch. Errors are dlhpc.UserError (bad input, with the fix) and dlhpc.DlhpcError (the work failed).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from dlhpc.errors import UserError


def _sets(values: dict | None, scheduler: str | None, runs_dir) -> list:
    """Keyword arguments as `--set` items: values are data (a str stays a str), not YAML text."""
    from dlhpc.spec.load import literal_set

    items = []
    for key, value in (values or {}).items():
        items.append(literal_set(key, value) if isinstance(value, str) else _yaml_set(key, value))
    if scheduler:
        items.append(literal_set("resources.scheduler", scheduler))
    if runs_dir is not None:
        items.append(literal_set("runs_dir", str(runs_dir)))
    return items


def _yaml_set(key: str, value) -> str:
    import json

    return f"{key}={json.dumps(value)}"  # JSON is YAML: numbers, lists and mappings as they are


def submit(
    spec,
    set: dict | None = None,  # noqa: A002 - the CLI's --set, by name
    *,
    scheduler: str | None = None,
    runs_dir=None,
    here: bool = False,
    dry_run: bool = False,
    after: list | None = None,
    after_any: bool = False,
    max_cost: float | None = None,
    quiet: bool = False,
) -> "Experiment":
    """Submit a spec file, like `dlhpc submit`. `set` overrides keys ({"train.lr": 0.1});
    `scheduler` and `runs_dir` override theirs. Returns the Experiment (for a dry run: the
    experiment it would have been, not created). Progress lines go to stdout unless quiet."""
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec
    from dlhpc.submission import pipeline

    loaded = load_spec(spec, _sets(set, scheduler, runs_dir))
    options = pipeline.SubmitOptions(
        here=here,
        dry_run=dry_run,
        after=list(after or []),
        after_any=after_any,
        max_cost=max_cost,
        runs_root=experiment.runs_root(loaded),
    )
    done = pipeline.submit(loaded, options, say=(lambda _line: None) if quiet else print)
    return Experiment(done.exp_dir)


def validate(spec, set: dict | None = None, *, sets: list | None = None) -> dict:  # noqa: A002
    """Check a spec file as `dlhpc validate` does, submitting nothing: its keys and values, the
    site policy, its template (and each one a sweep names) on the search path, the program's
    code, the image and what tracking needs. Returns {"name", "trials", "scheduler"}; bad input
    is a UserError that says what is wrong and the fix. `sets`: the CLI's KEY=VALUE strings."""
    from dlhpc.plan import render
    from dlhpc.spec.load import load_spec
    from dlhpc.spec.sweep import count_trials
    from dlhpc.submission import pipeline

    loaded = load_spec(spec, _sets(set, None, None) + list(sets or []))
    for name in filter(None, {loaded.data.get("template")} | _as_strings(loaded.sweep.get("template"))):
        render.load_template(str(name), loaded.site)  # a typo found here, not at submit
    pipeline.check_inputs(loaded)
    return {
        "name": loaded.data["name"],
        "trials": count_trials(loaded),
        "scheduler": loaded.data["resources"]["scheduler"],
    }


def _as_strings(values) -> set:
    return {str(v) for v in values or []}


def load(ref, runs_dir=None) -> "Experiment":
    """An experiment by folder, folder name or experiment name (its newest run)."""
    from dlhpc.plan.experiment import find_experiment

    return Experiment(find_experiment(str(ref), _runs_root(runs_dir)))


def experiments(runs_dir=None) -> list["Experiment"]:
    """Every experiment of yours under the runs folder, oldest first."""
    from dlhpc.plan.experiment import own_experiments_under

    found = own_experiments_under(_runs_root(runs_dir))
    return [Experiment(d) for d in sorted(found, key=lambda d: d.stat().st_mtime)]


def _runs_root(runs_dir) -> Path:
    from dlhpc.plan.experiment import runs_root
    from dlhpc.spec.load import literal_set, load_spec

    sets = [literal_set("runs_dir", str(runs_dir))] if runs_dir is not None else []
    return runs_root(load_spec(None, sets, enforce_policy=False))


@dataclass
class Experiment:
    """One experiment folder and what can be asked of it."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        if not (self.path / "experiment.json").is_file():
            raise UserError(f"{self.path}: not an experiment folder (no experiment.json)")

    @property
    def name(self) -> str:
        return self.path.name

    def status(self) -> "Status":
        """Each trial's state, epoch and accuracy now (one scheduler query)."""
        from dlhpc.results import status

        return Status(status.collect(self.path))

    def wait(self, timeout: float | None = None, refresh_s: float = 2.0) -> "Status":
        """Until every trial has finished; the scheduler is asked as gently as `status --watch`
        does (every 5 s, backing off to 2 minutes while nothing changes). TimeoutError after
        `timeout` seconds."""
        from dlhpc.results import status

        watcher, deadline = status.Watcher(self.path), None if timeout is None else time.monotonic() + timeout
        report = watcher.report()
        while not report["finished"]:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: not finished after {timeout} s ({Status(report).counts})")
            time.sleep(refresh_s)
            report = watcher.report()
        return Status(report)

    def summary(self, accounting: bool = True) -> "Summary":
        """The results table: one row per trial (dicts), swept parameters as columns."""
        from dlhpc.results import rows as results
        from dlhpc.results import status

        info = status.scheduler_info(self.path, details=False)[0] if accounting else None
        record, rows = results.experiment_rows(self.path, info)
        return Summary(results.json_rows(rows), results.columns(rows, record.get("swept_keys", [])))

    def cancel(self) -> list[str]:
        """Cancel the experiment's queued and running jobs; the ids cancelled."""
        from dlhpc.results import status

        return status.cancel(self.path)

    def resubmit(self, trials: list | None = None, quiet: bool = False) -> "Experiment":
        """Failed and missing trials again (or these trial ids); each resumes from its checkpoint."""
        from dlhpc.submission import pipeline

        options = pipeline.ResubmitOptions(trials=",".join(trials) if trials else None)
        pipeline.resubmit(self.path, options, say=(lambda _line: None) if quiet else print)
        return self

    def study(self):
        """The search's Optuna study (optuna.Study), read from its journal file, for Optuna's own
        tools (optuna.visualization, importances, optuna-dashboard). Read it, do not change it:
        the agents number trials as they ask them."""
        from dlhpc.results.rows import read_record
        from dlhpc.search import study

        record = read_record(self.path)
        if not (record.get("spec") or {}).get("search"):
            raise UserError(f"{self.name} does not search (no search: block): it has no study")
        study.need_optuna()
        return study.load(self.path, record["name"])

    def best(self) -> dict:
        """The search's best completed trial: {trial, params, value, metric}."""
        from dlhpc.search.best import best_trial

        return best_trial(self.path)

    def why(self, trial: str | None = None) -> list[dict]:
        """Why trials failed or wait: a cause and a fix each."""
        from dlhpc.results import why

        return why.diagnose(self.path, trial)

    def plot(self, out=None) -> "Figure":
        """The learning curves as a PNG (in the experiment unless `out`); shows itself in Jupyter."""
        from dlhpc.results import plot

        target = Path(out) if out else self._inside_own("curves.png", "write its curves into it; pass out=")
        return Figure(plot.plot_experiment(self.path, target))

    def report(self, out=None) -> Path:
        """The one-page HTML report (table, curves, environment), secrets redacted."""
        from dlhpc.fsutil import atomic_write_text, private_mode
        from dlhpc.results import report

        target = Path(out) if out else self._inside_own("report.html", "write its report into it; pass out=")
        atomic_write_text(target, report.build(self.path), mode=None if out else private_mode())
        return target

    def export_mlflow(self, to: str, experiment: str | None = None) -> dict:
        """One MLflow run per trial at `to` (a server URL, an SQLite `.db` file, a file store);
        again later, it updates the same runs. {"created", "updated", "experiment_id"}."""
        from dlhpc.tracking import to_mlflow

        return to_mlflow.export(self.path, to, experiment, say=lambda _line: None)

    def export_wandb(self, folder=None, project: str | None = None) -> dict:
        """One offline W&B run per trial (for `wandb sync`), in `folder`/wandb (default: the
        experiment's). {"runs": run ids, "folder": where}."""
        from dlhpc.tracking import to_wandb

        return to_wandb.export(self.path, Path(folder) if folder else None, project, say=lambda _line: None)

    def _inside_own(self, name: str, doing: str) -> Path:
        from dlhpc.ownership import require_own

        require_own(self.path, doing)
        return self.path / name

    def _repr_html_(self) -> str:
        return self.status()._repr_html_()

    def __rich__(self):
        return self.status().__rich__()


@dataclass
class Status:
    """`dlhpc status --json` as an object: `trials` (dicts), `finished`, `counts`."""

    report: dict

    @property
    def trials(self) -> list[dict]:
        return self.report["trials"]

    @property
    def finished(self) -> bool:
        return self.report["finished"]

    @property
    def counts(self) -> dict:
        from dlhpc.results.status import state_counts

        return state_counts(self.trials)

    def __rich__(self):
        from dlhpc.results.status import report_table

        return report_table(self.report)

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{c}</th>" for c in ("trial", "job", "state", "epoch", "test acc %", "notes"))
        rows = []
        for t in self.trials:
            acc = f"{100 * t['test_acc']:.2f}" if isinstance(t.get("test_acc"), (int, float)) else "-"
            cells = (t["trial"], t["job_id"] or "-", t["state"], f"{t['epoch'] or 0}/{t['epochs'] or '?'}", acc)
            notes = t.get("why_pending") or t.get("flags") or ""
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (*cells, notes)) + "</tr>")
        title = html.escape(f"{self.report['name']} ({self.report['scheduler']}): {self.counts}")
        return f"<table><caption>{title}</caption><tr>{head}</tr>{''.join(rows)}</table>"


@dataclass
class Summary:
    """The results table: `rows` (dicts, as `summary --json`), `columns` (the table's)."""

    rows: list
    columns: list = field(default_factory=list)

    def to_pandas(self):
        """A pandas DataFrame of the rows (pandas must be installed: pip install pandas)."""
        try:
            import pandas
        except ImportError:
            raise UserError("Summary.to_pandas needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __rich__(self):
        from dlhpc.results.rows import rich_table

        return rich_table(self.rows, self.columns)

    def _repr_html_(self) -> str:
        from dlhpc.results.report import table_html

        return table_html(self.rows, self.columns)


@dataclass
class Figure:
    """A PNG file that shows itself in Jupyter."""

    path: Path

    def _repr_png_(self) -> bytes:
        return Path(self.path).read_bytes()
