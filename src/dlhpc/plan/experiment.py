"""Spec → trials → job scripts, and the experiment directory that records them (docs/run-directory.md).

`render` and `submit` share `plan()`: render is exactly submit without the submission.
"""

import json
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dlhpc.environment as environment
import dlhpc.ownership as ownership
from dlhpc.errors import UserError
from dlhpc.fsutil import (
    atomic_write_json,
    atomic_write_text,
    current_umask,
    private_mode,
    read_json,
    read_trial_spec,
    write_new,
)
from dlhpc.plan.render import render_script
from dlhpc.spec import sweep
from dlhpc.spec.load import Spec, dump_trial_spec
from dlhpc.spec.search import AGENT_FILE, agent_ids, trials_per_agent

SUBMITIT_DIR = ".submitit"


@dataclass
class Plan:
    spec: Spec
    trials: list
    exp_dir: Path
    scripts: list = field(default_factory=list)  # one Script per job (single job or array)
    max_array: int | None = None
    trials_per_task: int | None = None  # chosen at submit where a scheduler limit needs packing
    submit_args: list = field(default_factory=list)  # for the submit command (a dependency: --after)
    first_script: int = 0  # a resubmission numbers its scripts after the experiment's earlier ones
    code: object = None  # plan.code.CodeSnapshot of the program's folder (None: the built-in trainer)
    image: dict | None = None  # env.container's image, runtime and digest (plan.image.check)

    def script_name(self, i: int) -> str:
        return f"job-{self.first_script + i}.sh"

    @property
    def scheduler(self) -> str:
        return self.spec.data["resources"]["scheduler"]


def submitit_command(folder: Path, python: str | None = None) -> str:
    """The line each task runs: after checking that nobody else could have written it,
    submitit unpickles the trial's TrainJob (from `folder`, the experiment's .submitit/) and
    calls it (schedulers/job_entry.py). Every submitit-backed executor uses this line."""
    entry = "-u -m dlhpc.schedulers.job_entry"
    return " ".join([shlex.quote(python or sys.executable), entry, shlex.quote(str(folder))])


def timestamp() -> str:
    # SOURCE_DATE_EPOCH makes renders reproducible (golden files, diffs between runs).
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(int(epoch)) if epoch else time.localtime())


def runs_root(spec: Spec) -> Path:
    """The folder that holds experiment directories. One resolver for every command: the spec's
    `runs_dir` through its layers (site < user config < $DLHPC_RUNS_DIR < spec < --runs-dir/--set)."""
    return Path(os.path.expanduser(spec.data["runs_dir"])).absolute()


def agent_data(spec: Spec, trials: list) -> dict:
    """What a search's agents are given: a trial's spec, the walltime that of the trials an agent
    runs if none is pruned, as a packed task's (an agent cut short requeues, resuming its trial)."""
    data = trials[0].data
    time_limit = packed_time(data["resources"]["time"], trials_per_agent(spec.search))
    return {**data, "resources": {**data["resources"], "time": time_limit}}


def search_slot_ids(spec: Spec) -> set:
    from dlhpc.spec.search import slot_ids

    return set(slot_ids(spec.search["trials"], spec.search["seed"])) if spec.search else set()


def job_groups(trials, max_array: int | None = None, trials_per_task: int | None = None) -> list[list]:
    """Trials that ask for the same resources share one job array, as tasks of
    `trials_per_task` trials each (one, unless packed); arrays are cut at max_array tasks.
    Returns [array: [task: [trial, ...], ...], ...]."""
    groups: dict = {}
    for trial in trials:
        d = trial.data
        key = json.dumps([d["resources"], d["env"], d["template"]], sort_keys=True, default=str)
        groups.setdefault(key, []).append(trial)
    out = []
    for members in groups.values():
        k = pack_size(members[0].data["resources"], trials_per_task)
        tasks = [members[i : i + k] for i in range(0, len(members), k)]
        step = max_array or len(tasks)
        out.extend(tasks[i : i + step] for i in range(0, len(tasks), step))
    return out


def pack_size(resources: dict, override: int | None = None) -> int:
    """Trials per array task: the spec's trials_per_task, else the submit-time choice, else 1.
    A backend that runs the trials on this machine runs them one after another anyway."""
    from dlhpc.schedulers import backend

    if backend(resources["scheduler"]).runs_here:
        return 1
    return int(resources.get("trials_per_task") or override or 1)


def jobs_added(trials, max_array: int | None, trials_per_task: int | None) -> int:
    """The jobs a scheduler counts for a plan: each array task, plus each array's own record."""
    groups = job_groups(trials, max_array, trials_per_task)
    return sum(len(g) for g in groups) + sum(1 for g in groups if len(g) > 1)


def packed_time(time_limit: str, k: int) -> str:
    """A task's walltime: k trials' one after another."""
    from dlhpc.spec.schema import format_time, parse_time

    return time_limit if k <= 1 else format_time(parse_time(time_limit) * k)


def plan(
    spec: Spec, exp_dir: Path | None = None, max_array: int | None = None, trials=None, trials_per_task=None
) -> Plan:
    """Trials and their job scripts for an experiment directory (not created here)."""
    trials = trials if trials is not None else sweep.expand(spec)
    exp_dir = exp_dir or runs_root(spec) / f"{spec.data['name']}-{timestamp()}"
    p = Plan(spec, trials, exp_dir, max_array=max_array, trials_per_task=trials_per_task)
    digest, command = spec.hash(), submitit_command(exp_dir / SUBMITIT_DIR)
    if spec.search and trials and trials[0].id in search_slot_ids(spec):
        # a search: one array of agents, each taking trials from the study in turn (search/agent.py)
        agents = agent_ids(spec.search["parallel"])
        p.scripts.append(
            render_script(agent_data(spec, trials), agents, exp_dir, command, site=spec.site, spec_digest=digest)
        )
        return p
    for group in job_groups(trials, max_array, trials_per_task):
        data = group[0][0].data
        k = max(len(task) for task in group)
        if k > 1:
            data = {**data, "resources": {**data["resources"], "time": packed_time(data["resources"]["time"], k)}}
        tasks = [[t.id for t in task] for task in group] if k > 1 else None
        ids = [task[0].id for task in group]
        p.scripts.append(render_script(data, ids, exp_dir, command, site=spec.site, spec_digest=digest, tasks=tasks))
    return p


DIR_MODES = {"private": 0o700, "group": 0o750}  # `share`; nobody but the owner ever writes


def dir_mode(spec_data: dict) -> int:
    return DIR_MODES[spec_data.get("share") or "private"]


def _first_missing(folder: Path) -> Path | None:
    """The existing folder that `mkdir -p folder` would create into, if it creates anything."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    return None if probe == folder else probe


def _make_folders(folder: Path) -> None:
    """`mkdir -p` whose new folders nobody else can write, whatever the umask (002 is common)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o755)
        except FileExistsError:
            continue
        os.chmod(new, 0o755 & ~current_umask())


def reserve_dir(exp_dir: Path, mode: int = 0o700) -> Path:
    """Create the experiment directory atomically, with exactly `mode` whatever the umask; a
    second submit in the same second gets -2, -3... The runs folder must be one others cannot
    rearrange (trust.check_runs_folder)."""
    from dlhpc.trust import check_runs_folder

    root = exp_dir.parent
    created_into = _first_missing(root)
    try:
        _make_folders(root)
    except OSError as exc:
        raise UserError(
            f"runs folder {root}: cannot create it ({exc.strerror}); set `runs_dir:` (or --runs-dir) to a "
            "writable folder"
        ) from None
    check_runs_folder(root, created_into)
    candidate, n = exp_dir, 1
    while True:
        try:
            candidate.mkdir(mode=mode)
            os.chmod(candidate, mode)  # the umask may have taken bits away from group reading
            return candidate
        except FileExistsError:
            n += 1
            candidate = exp_dir.with_name(f"{exp_dir.name}-{n}")
        except OSError as exc:
            raise UserError(f"{candidate}: cannot create the experiment directory ({exc.strerror})") from None


def materialize(p: Plan) -> Plan:
    """Write the run directory for a plan. If the name was taken, re-plan under the new name."""
    mode = dir_mode(p.spec.data)
    final = reserve_dir(p.exp_dir, mode)
    if final != p.exp_dir:  # the scripts name the directory: render them again for the new one
        code_snapshot, image = p.code, p.image
        p = plan(p.spec, final, max_array=p.max_array, trials=p.trials, trials_per_task=p.trials_per_task)
        p.code, p.image = code_snapshot, image
    try:
        if p.code is not None:
            from dlhpc.plan import code

            code.write(p.code, p.exp_dir, mode, private_mode(executable=True))
        (p.exp_dir / SUBMITIT_DIR).mkdir(mode=mode)
        (p.exp_dir / "logs").mkdir(mode=mode)
        script_of = {}
        file_mode, script_mode = private_mode(), private_mode(executable=True)
        for i, script in enumerate(p.scripts):
            name = p.script_name(i)
            write_new(p.exp_dir / name, script.text.encode(), script_mode)
            for tid in script.trial_ids:
                script_of[tid] = name
        if p.spec.search:  # each agent's folder: its log, its spec (resources), what it has in hand
            agent_spec = dump_trial_spec(agent_data(p.spec, p.trials)).encode()
            for agent in agent_ids(p.spec.search["parallel"]):
                (p.exp_dir / agent).mkdir(mode=mode)
                write_new(p.exp_dir / agent / "spec.yaml", agent_spec, file_mode)
                write_new(p.exp_dir / agent / AGENT_FILE, (json.dumps({"agent": agent}) + "\n").encode(), file_mode)
            script_of.update((t.id, p.script_name(0)) for t in p.trials)
        for trial in p.trials:
            tdir = p.exp_dir / trial.id
            tdir.mkdir(mode=mode)
            write_new(tdir / "spec.yaml", dump_trial_spec(trial.data).encode(), file_mode)
            info = {"id": trial.id, "index": trial.index, "params": trial.params, "script": script_of[trial.id]}
            write_new(tdir / "trial.json", (json.dumps(info) + "\n").encode(), file_mode)
        if p.spec.search:  # the study, made once here so that agents never race to make it
            from dlhpc.search import study

            study.create(p.exp_dir, p.spec.data["name"], p.spec.search, mode)
        write_record(p, jobs=[])  # last, atomically: an experiment exists once its record does
        atomic_write_text(p.exp_dir / "environment.txt", environment.freeze(), mode=private_mode())
    except BaseException:
        shutil.rmtree(p.exp_dir, ignore_errors=True)
        raise
    return p


def plan_resubmission(
    exp_dir: Path, trial_ids: list, spec: Spec, max_array: int | None = None, trials_per_task=None, adjust=None
) -> Plan:
    """A plan for some trials of an existing experiment, as they were resolved at submit
    (their spec.yaml), with scripts numbered after the ones already there. Trials resume from
    their checkpoints when they run. `adjust(trials)` may change their data first (resources.retry)."""
    record = read_json(exp_dir / "experiment.json", {}) or {}
    known = {t["id"]: t for t in record.get("trials", [])}
    trials = []
    for tid in trial_ids:
        data = read_trial_spec(exp_dir / tid / "spec.yaml")
        trials.append(sweep.Trial(known[tid]["index"], tid, known[tid].get("params", {}), data))
    if adjust is not None:
        adjust(trials)
    p = plan(spec, exp_dir, max_array=max_array, trials=trials, trials_per_task=trials_per_task)
    p.first_script = len(list(exp_dir.glob("job-*.sh")))
    return p


def write_resubmission(p: Plan) -> None:
    """Write the new scripts and point the trials at them (the run directory exists already)."""
    for i, script in enumerate(p.scripts):
        atomic_write_text(p.exp_dir / p.script_name(i), script.text, mode=private_mode(executable=True))
        for tid in script.trial_ids:
            info = read_json(p.exp_dir / tid / "trial.json", {}) or {}
            atomic_write_json(p.exp_dir / tid / "trial.json", {**info, "script": p.script_name(i)}, mode=private_mode())


def write_record(p: Plan, jobs: list, extra: dict | None = None) -> None:
    record = {
        "name": p.spec.data["name"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scheduler": p.scheduler,
        "spec_source": p.spec.source,
        "spec_hash": p.spec.hash(),
        "spec": p.spec.data,
        "swept_keys": list(p.spec.sweep) or list((p.spec.search or {}).get("space") or {}),
        "trials": [{"id": t.id, "index": t.index, "params": t.params} for t in p.trials],
        "jobs": jobs,
        **environment.record(p.spec.source),  # versions, git commit of the spec's repository, host
        **({"container": p.image} if p.image else {}),
        **(extra or {}),
    }
    atomic_write_json(p.exp_dir / "experiment.json", record, mode=private_mode())


def update_record(exp_dir: Path, **fields) -> None:
    """Change some fields of experiment.json, under the experiment's lock (journal.locked)."""
    from dlhpc.submission.journal import locked

    with locked(exp_dir):
        record = read_json(exp_dir / "experiment.json", {})
        record.update(fields)
        atomic_write_json(exp_dir / "experiment.json", record, mode=private_mode())


STAMPED = re.compile(r"(?P<name>.+)-\d{8}-\d{6}(-\d+)?")  # <name>-<date>-<time>[-n], see reserve_dir


def find_experiment(ref: str | None, root: Path) -> Path:
    """EXP is an experiment directory, the exact name of one under the runs folder, or an
    experiment's `name` (your newest run of it); None means your newest experiment. Nothing else:
    no prefixes or patterns, so `cancel` never reaches an experiment the user did not name. A
    name or no reference resolves only among your own experiments (ownership.py): in a shared runs
    folder a colleague's experiment of the same name is never picked. A folder named exactly may
    be someone else's (to read a `share: group` one); whatever writes checks (require_own)."""
    if ref is None:
        found = own_experiments_under(root)
        if not found:
            raise UserError(f"no experiments of yours under {root}/; pass an experiment directory, or submit one first")
        return max(found, key=lambda d: d.stat().st_mtime)
    path = Path(ref)
    if ref and "\x00" not in ref and _is_experiment(path):
        return path
    if ref and "/" not in ref and "\x00" not in ref and ref not in (".", ".."):
        exact = root / ref
        if _is_experiment(exact):
            return exact
        named = [d for d in _folders_under(root) if (m := STAMPED.fullmatch(d.name)) and m["name"] == ref]
        own = [d for d in named if ownership.is_own(d)]
        if own:
            return max(own, key=lambda d: d.stat().st_mtime)
        others = [d for d in named if _someone_elses_folder(d)]  # (readable or not: theirs)
        if others:
            newest = max(others, key=lambda d: d.stat().st_mtime)
            raise ownership.NotYours(
                f"no experiment of yours is named {ref!r}: {ownership.not_yours_words(newest, 'pick it by name')}"
            )
    for folder in (path, root / ref) if ref and "\x00" not in ref else ():
        # (a colleague's private experiment: we cannot even see its record, only its name)
        if STAMPED.fullmatch(folder.name or "-") and _someone_elses_folder(folder):
            raise ownership.NotYours(ownership.not_yours_words(folder, "read it"))
    raise UserError(
        f"no experiment {ref!r}: name an experiment directory, or one of these under {root}/: {_candidates(root)}"
    )


def _folders_under(root: Path) -> list[Path]:
    try:
        return [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
    except OSError:
        return []


def _someone_elses_folder(folder: Path) -> bool:
    try:
        return folder.is_dir() and folder.stat().st_uid != os.getuid()
    except OSError:
        return False


def _is_experiment(folder: Path) -> bool:
    try:
        return (folder / "experiment.json").is_file()
    except OSError:  # a name too long for the file system, and the like: not an experiment
        return False


def experiments_under(root: Path) -> list[Path]:
    """The experiment folders in a runs folder, in no order (a link is not one: in a shared
    runs folder it could point anywhere)."""
    return [d for d in root.iterdir() if not d.is_symlink() and _is_experiment(d)] if root.is_dir() else []


def own_experiments_under(root: Path) -> list[Path]:
    """The caller's own experiment folders in a runs folder (ownership.py), in no order."""
    return [d for d in experiments_under(root) if ownership.is_own(d)]


def _candidates(root: Path, shown: int = 10) -> str:
    names = sorted((d.name for d in own_experiments_under(root)), reverse=True)
    if not names:
        return "(none)"
    more = f" and {len(names) - shown} more (ls {root})" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
