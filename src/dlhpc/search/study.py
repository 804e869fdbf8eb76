"""The search's Optuna study: one journal file in the experiment folder, no server (docs/search.md).

Optuna's journal storage appends each change (a trial asked, a value reported, a trial told) to
`study/journal.log` and replays the file to read the study; writers take Optuna's own lock file
(`JournalFileOpenLock`: an exclusive create, which works on NFS where `fcntl` locks often do
not). Every agent opens the same file; nothing on a compute node talks to a network.
"""

import json
import sys
from pathlib import Path

from dlhpc.errors import UserError

STUDY_DIR = "study"
JOURNAL = "journal.log"
INSTALL = 'pip install "dlhpc[search]"'


def need_optuna(sampler: str | None = None) -> None:
    """A clear message where the optional extra is missing (submit, plot --search, exp.study())."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UserError(f"search needs Optuna, which {sys.executable} lacks. Fix: {INSTALL}") from None
    if sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise UserError(
                f"search.sampler cmaes needs the cmaes package, which {sys.executable} lacks. "
                "Fix: pip install cmaes, or use sampler: tpe"
            ) from None


def journal_path(exp_dir: Path) -> Path:
    return Path(exp_dir) / STUDY_DIR / JOURNAL


def storage(exp_dir: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = str(journal_path(exp_dir))
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def create(exp_dir: Path, name: str, search: dict, mode: int = 0o700) -> None:
    """The study, made at submit (so that agents never race to create it), with the search as
    it was asked for in its user attributes; its folder has the experiment's mode."""
    import os

    import optuna

    folder = Path(exp_dir) / STUDY_DIR
    folder.mkdir(mode=mode)
    os.chmod(folder, mode)
    study = optuna.create_study(study_name=name, storage=storage(exp_dir), direction=search["direction"])
    study.set_user_attr("dlhpc_search", json.loads(json.dumps(search)))


def load(exp_dir: Path, name: str, search: dict | None = None, for_number: int = 0):
    """The study; with the search section, with its sampler and pruner (an agent's). The sampler
    is seeded by the search's seed and the number of the trial about to be asked, so two agents
    asking at once never draw alike, and a requeued one does not draw its last values again."""
    import optuna

    if search is None:
        return optuna.load_study(study_name=name, storage=storage(exp_dir))
    return optuna.load_study(
        study_name=name,
        storage=storage(exp_dir),
        sampler=sampler(search, seed=search["seed"] * 100_003 + for_number),
        pruner=pruner(search),
    )


def sampler(search: dict, seed: int):
    import optuna

    kind = search["sampler"]
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler(grid_space(search), seed=search["seed"])
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    # TPE: the "constant liar" counts running trials as bad, so parallel agents spread out
    startup = max(2, min(10, search["trials"] // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def pruner(search: dict):
    import optuna

    cfg = search["pruner"]
    if cfg["kind"] == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg["min_epochs"], reduction_factor=cfg["reduction"], min_early_stopping_rate=0
        )
    if cfg["kind"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg["min_epochs"], reduction_factor=cfg["reduction"])
    if cfg["kind"] == "median":
        startup = min(5, search["trials"] // 4)
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=cfg["min_epochs"] - 1)
    return optuna.pruners.NopPruner()


def grid_space(search: dict) -> dict:
    """The grid sampler's lists: each choice's values (as Optuna holds them), each int range."""
    from dlhpc.spec.search import space_of

    grid = {}
    for dim in space_of(search):
        if dim.kind == "choice":
            grid[dim.key] = [encode(c) for c in dim.choices]
        else:
            grid[dim.key] = list(range(dim.low, dim.high + 1, dim.step or 1))
    return grid


def encode(choice):
    """A choice as Optuna stores it: plain values as they are, a list or mapping as JSON text."""
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else json.dumps(choice)


def suggest(trial, search: dict) -> dict:
    """Draw every searched key for an Optuna trial: {dotted key: value as the spec takes it}."""
    from dlhpc.spec.search import space_of

    values = {}
    for dim in space_of(search):
        if dim.kind == "choice":
            options = [encode(c) for c in dim.choices]
            picked = trial.suggest_categorical(dim.key, options)
            values[dim.key] = dim.choices[options.index(picked)]
        elif dim.kind == "int":
            values[dim.key] = trial.suggest_int(dim.key, dim.low, dim.high, step=dim.step or 1, log=dim.log)
        else:
            values[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, step=dim.step, log=dim.log)
    return values


def trial_of(study, number: int):
    """The running trial `number` as an Optuna Trial (to report to and ask the pruner), from any
    process. Optuna has no public call for this: the storage's lookup by number is public, the
    study's id is not (bounded: tests/unit/test_search.py fails if a release changes either)."""
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)
