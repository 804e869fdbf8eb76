"""The one submission pipeline: partition pick → plan → policy → data check → cost → packing →
dependency → preflight → dry run, or materialise → submit-or-roll-back → record → report job →
recovery job.

`submit`, `resubmit` and the Python API (dlhpc.api) all go through here; the CLI only turns its
arguments into options and prints the lines `say` is given.
"""

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlhpc.errors import DlhpcError, UserError
from dlhpc.plan.experiment import find_experiment
from dlhpc.states import BAD, IN_FLIGHT
from dlhpc.submission import keepoff, partitions, recovery, retry
from dlhpc.submission.guard import check_training_here
from dlhpc.submission.journal import deferred_signals


@dataclass
class SubmitOptions:
    here: bool = False  # train on this login node even where the site names a cluster
    dry_run: bool = False  # the scheduler's own check of every script; nothing is queued
    after: list = field(default_factory=list)  # experiments or job ids this one waits for
    after_any: bool = False  # wait for them to end however (afterany), not only well (afterok)
    max_cost: float | None = None  # refuse above this estimated cost (the site's max_cost otherwise)
    runs_root: Path | None = None  # where `after` experiment names are looked up


@dataclass
class ResubmitOptions:
    trials: str | None = None  # comma-separated trial ids; None: failed and missing ones
    failed: bool = False
    missing: bool = False
    here: bool = False


@dataclass
class Submission:
    """What a submission did: its plan (experiment folder, trials, scripts) and the jobs queued
    (none for a dry run, whose scheduler answers are in `dry_run`)."""

    plan: object
    scheduler: str
    jobs: list = field(default_factory=list)
    dry_run: list = field(default_factory=list)

    @property
    def exp_dir(self) -> Path:
        return self.plan.exp_dir


def submit(spec, options: SubmitOptions | None = None, say=print) -> Submission:
    """Submit a resolved spec (spec.load_spec). Raises UserError (exit 2) for anything the user
    can fix, with the fix; nothing is left half-written."""
    from dlhpc.fsutil import no_write_for_others

    options = options or SubmitOptions()
    with no_write_for_others():
        return _submit(spec, options, say)


def _submit(spec, options: SubmitOptions, say) -> Submission:
    from dlhpc.plan import experiment
    from dlhpc.schedulers import backend

    sched = backend(spec.data["resources"]["scheduler"])
    choice = partitions.choose(spec.partition_choices, spec.data["resources"], sched, say=say)
    if choice:
        spec.data["resources"]["partition"] = choice["chosen"]
    p = experiment.plan(spec, max_array=sched.max_array())
    check_training_here(p.spec, options.here, "submit")
    p.code, p.image = check_inputs(spec)
    prepare_data(p.trials, may_fetch=sched.runs_here and not options.dry_run, say=say)
    check_cost(p, options.max_cost, say=say)
    p = pack_to_fit(p, sched, say=say)
    p.submit_args = dependency(options, sched, say=say)
    preflight(p, sched)
    if options.dry_run:
        return Submission(p, sched.name, dry_run=dry_run(p, sched, say=say))
    p = experiment.materialize(p)
    with deferred_signals():  # Ctrl-C or a closed ssh session waits until the record is written
        jobs = submit_or_roll_back(p, sched)
        record_submission(p, sched, jobs, say=say)
        if choice:
            experiment.update_record(p.exp_dir, partition_choice=choice)
    chain_report(p, sched, jobs, say=say)
    recovery.chain(p, sched, jobs, say=say)
    return Submission(p, sched.name, list(jobs))


def resubmit(exp_dir: Path, options: ResubmitOptions | None = None, say=print) -> Submission | None:
    """Some trials of an experiment again, as a new array; each resumes from its checkpoint.
    None when nothing needed resubmitting. Holds the experiment's lock throughout, so a second
    resubmission at the same time waits, then finds these trials queued."""
    from dlhpc.fsutil import no_write_for_others
    from dlhpc.ownership import require_own
    from dlhpc.submission.journal import locked

    require_own(exp_dir, "resubmit it: its env.setup and program would run as you")
    with no_write_for_others(), locked(exp_dir):
        return resubmit_locked(Path(exp_dir), options or ResubmitOptions(), say)


def resubmit_locked(exp_dir: Path, options: ResubmitOptions, say, automatic: dict | None = None) -> Submission | None:
    """resubmit, under the experiment's lock. `automatic`: the recovery job's retries entries
    (submission/recovery.py), each trial's raise planned already."""
    from dlhpc.plan import experiment
    from dlhpc.results import status
    from dlhpc.results.rows import read_record
    from dlhpc.schedulers import backend

    record = read_record(exp_dir)
    report = status.collect(exp_dir)
    if (record.get("spec") or {}).get("search"):
        return _resubmit_search(exp_dir, record, report, options, say)
    chosen = trials_to_resubmit(report, options)
    busy = [t["trial"] for t in report["trials"] if t["trial"] in chosen and t["state"] in IN_FLIGHT]
    if busy:
        raise UserError(f"{', '.join(busy)} still queued or running: cancel them first (dlhpc cancel {exp_dir.name})")
    if not chosen:
        say(f"nothing to resubmit in {exp_dir.name}: no trial is failed or missing (see dlhpc status)")
        return None
    spec = spec_of_today(record)
    sched = backend(record["scheduler"])
    check_training_here(spec, options.here, "resubmit")
    if automatic is None:
        raised = retry.raises(exp_dir, chosen, spec)
    else:
        raised = {tid: item for tid, item in automatic.items() if item["resources"]}
    kept_off, keep_off_words = keepoff.plan(exp_dir, chosen, sched)
    for tid, item in (automatic or {}).items():
        item["kept_off"] = kept_off.get(tid, [])
    choice = _partition_again(exp_dir, record, chosen[0], raised, sched, say)

    def adjust(trials):
        retry.apply(trials, raised)
        keepoff.apply(trials, kept_off)
        for trial in trials if choice else []:  # (a retry may move to another listed partition)
            trial.data["resources"]["partition"] = choice["chosen"]

    p = experiment.plan_resubmission(exp_dir, chosen, spec, sched.max_array(), packing_of(record, chosen), adjust)
    p = pack_to_fit(p, sched, say=say)
    preflight(p, sched)
    for line in retry.words(raised):
        say(f"retry with more: {line}")
    for line in keep_off_words:
        say(line)
    experiment.write_resubmission(p)
    with deferred_signals():
        jobs = submit_or_roll_back(p, sched, fresh=False)
        recorded = raised if automatic is None else automatic
        retries = {"retries": retry.record(exp_dir, p.trials, recorded, record.get("retries", []))} if recorded else {}
        not_retried = {t: w for t, w in (record.get("not_retried") or {}).items() if t not in chosen}
        if choice:
            retries["partition_choice"] = choice
        _record_resubmission(exp_dir, record, jobs, not_retried=not_retried, **retries)
        record_submission(p, sched, jobs, again=True, say=say)
    chain_report(p, sched, jobs, say=say)  # the files written after the first jobs are out of date once these end
    recovery.chain(p, sched, jobs, say=say)
    return Submission(p, sched.name, list(jobs))


def _partition_again(exp_dir: Path, record: dict, trial_id: str, raised: dict, sched, say) -> dict | None:
    """A listed resources.partition is picked again for a resubmission, with the resources the
    trials now ask for (a raise included): a retry may move to another listed partition."""
    from dlhpc.fsutil import read_trial_spec

    asked = (record.get("partition_choice") or {}).get("asked") or []
    if not asked:
        return None
    resources = read_trial_spec(exp_dir / trial_id / "spec.yaml")["resources"]
    resources.update({key: new for key, (_, new) in ((raised.get(trial_id) or {}).get("resources") or {}).items()})
    return partitions.choose(asked, resources, sched, say=say)


def _resubmit_search(exp_dir: Path, record: dict, report: dict, options: ResubmitOptions, say) -> Submission | None:
    """A search whose agents are all gone with trials left: a new array of agents, which go on
    with the same study (trials they find half-run resume from their checkpoints)."""
    from dlhpc.plan import experiment
    from dlhpc.results import status
    from dlhpc.schedulers import backend
    from dlhpc.spec import sweep
    from dlhpc.spec.search import agent_ids
    from dlhpc.states import FINISHED

    if options.trials or options.failed or options.missing:
        raise UserError(
            f"{exp_dir.name} searches: its agents choose the trials. `dlhpc resubmit {exp_dir.name}` (no --trials, "
            "--failed or --missing) queues new agents for the trials left"
        )
    spec = spec_of_today(record)
    sched = backend(record["scheduler"])
    check_training_here(spec, options.here, "resubmit")
    agents = agent_ids(spec.search["parallel"])
    left = [t["trial"] for t in report["trials"] if t["state"] not in FINISHED]
    if not left:
        say(f"nothing to resubmit in {exp_dir.name}: every trial of the search has ended (dlhpc summary)")
        return None
    jobs_of = results_jobs(record, agents)
    info, _ = status.scheduler_info(exp_dir, only=set(jobs_of.values()), details=False)
    busy = sorted(a for a, job in jobs_of.items() if (info or {}).get(job) and info[job].state in IN_FLIGHT)
    if busy:
        raise UserError(
            f"{exp_dir.name}: agents {', '.join(busy)} are still queued or running; they work the trials left "
            f"(dlhpc cancel {exp_dir.name} first to start afresh)"
        )
    from dlhpc.fsutil import read_trial_spec

    first = record["trials"][0]
    trials = [sweep.Trial(first["index"], first["id"], {}, read_trial_spec(exp_dir / first["id"] / "spec.yaml"))]
    trials += [sweep.Trial(t["index"], t["id"], {}, trials[0].data) for t in record["trials"][1:]]
    p = experiment.plan(spec, exp_dir, trials=trials)
    p.first_script = len(list(exp_dir.glob("job-*.sh")))
    preflight(p, sched)
    from dlhpc.fsutil import atomic_write_text, private_mode

    atomic_write_text(exp_dir / p.script_name(0), p.scripts[0].text, mode=private_mode(executable=True))
    with deferred_signals():
        jobs = submit_or_roll_back(p, sched, fresh=False)
        _record_resubmission(exp_dir, record, jobs)
        say(f"{len(left)} trial(s) of the search left: {len(agents)} new agents take them")
        record_submission(p, sched, jobs, again=True, say=say)
    return Submission(p, sched.name, list(jobs))


def _record_resubmission(exp_dir: Path, record: dict, jobs: list, **extra) -> None:
    """experiment.json gains the new jobs (every job a trial had stays) and the time."""
    from dlhpc.plan import experiment

    experiment.update_record(
        exp_dir,
        jobs=record.get("jobs", []) + list(jobs),
        resubmitted=record.get("resubmitted", []) + [time.strftime("%Y-%m-%dT%H:%M:%S%z")],
        **extra,
    )


def results_jobs(record: dict, agents: list) -> dict:
    """{agent: its latest job id}."""
    from dlhpc.results.rows import latest_jobs

    latest = latest_jobs(record)
    return {a: latest[a] for a in agents if a in latest}


def spec_of_today(record: dict):
    """The experiment's spec as resolved at submit, under the site's policy of today."""
    from dlhpc.spec import policy
    from dlhpc.spec.load import Spec, load_spec

    site = load_spec(None, enforce_policy=False)
    spec = Spec(record["spec"], {}, site.site, record.get("spec_source") or "<experiment>")
    spec.site_file, spec.site_defaults, spec.site_origins = site.site_file, site.site_defaults, site.site_origins
    policy.enforce(spec)  # the site's policy today governs what is submitted today
    return spec


def check_inputs(spec):
    """What the spec names outside itself is there: the program's code (its snapshot), the
    container image (its digest) and what tracking needs. (code, image) for the plan."""
    check_tracking(spec)
    if spec.search:
        from dlhpc.search.study import need_optuna

        need_optuna(spec.search["sampler"])
    return snapshot_code(spec), check_image(spec)


def check_tracking(spec) -> None:
    """tracking.tensorboard needs the tensorboard package where the runner runs: the Python that
    submits (the jobs start the same one)."""
    from dlhpc.tracking import INSTALL, has

    if spec.data["tracking"]["tensorboard"] and not has("tensorboard"):
        from dlhpc.spec.yamlsource import where

        at = where(spec.origins, ("tracking", "tensorboard")).rsplit(": ", 1)[0]
        raise UserError(
            f"{at}: tracking.tensorboard needs the tensorboard package, which {sys.executable} lacks. "
            f"Fix: {INSTALL}, or set tracking.tensorboard: false"
        )


def snapshot_code(spec):
    """The program's code folder as it will be copied (None for the built-in trainer); the runs
    folder is never part of it."""
    from dlhpc.plan import code
    from dlhpc.plan.experiment import runs_root

    return code.collect(spec, exclude=runs_root(spec))


def check_image(spec):
    """The container image is there (env.container); its digest for the record."""
    from dlhpc.plan import image

    return image.check(spec)


def prepare_data(trials, *, may_fetch: bool, say=print):
    """The data must be at data.root before anything runs: compute nodes often have no internet.
    Where this machine runs the trials itself (may_fetch) and the spec allows it, download first."""
    from dlhpc.spec import program
    from dlhpc.train import data as mnist

    trials = [t for t in trials if program.is_builtin(t.data)]  # a program brings its own data
    for t in trials:  # pin the resolved root, so the job reads what this check saw
        t.data["data"]["root"] = str(mnist.resolve_root(t.data["data"]["root"]).absolute())
    for root in sorted({t.data["data"]["root"] for t in trials}):
        if mnist.is_present(Path(root)):
            continue
        if may_fetch and all(t.data["data"]["download"] for t in trials if t.data["data"]["root"] == root):
            say(f"MNIST not in {root}: downloading it (checksummed)")
            mnist.fetch(Path(root))
        else:
            raise UserError(mnist.missing_message(Path(root)))


def dependency(options, sched, say=print) -> list:
    """--after EXP|JOBID (repeatable, comma lists too) → the scheduler's dependency arguments.
    An experiment stands for the latest job of each of its trials. Jobs that have all ended
    already need no dependency (and SLURM forgets finished jobs); afterok on one that failed
    would never start, so that is refused."""
    from dlhpc.results.rows import latest_jobs, read_record
    from dlhpc.states import FINISHED

    if not options.after:
        if options.after_any:
            raise UserError("--after-any goes with --after EXP|JOBID")
        return []
    kind = "afterany" if options.after_any else "afterok"
    job_ids, sources = [], []
    for ref in (r.strip() for item in options.after for r in item.split(",")):
        if not ref:
            continue
        if re.fullmatch(r"\d+(_\d+)?", ref):
            job_ids.append(ref)
            sources.append(f"job {ref}")
            continue
        exp_dir = find_experiment(ref, options.runs_root)
        record = read_record(exp_dir)
        if record.get("scheduler") != sched.name:
            raise UserError(
                f"--after {ref}: that experiment ran on {record.get('scheduler')}, this one goes to {sched.name}"
            )
        ids = sorted(set(latest_jobs(record).values()))
        if not ids:
            raise UserError(f"--after {ref}: the experiment has no jobs (was it submitted?)")
        job_ids += ids
        sources.append(exp_dir.name)
    states, _ = sched.states(job_ids, Path.cwd(), False)
    ended = {j: states[j].state.value if j in states else None for j in job_ids}
    if kind == "afterok":
        bad = sorted(j for j, s in ended.items() if s in FINISHED - {"COMPLETED"})
        if bad:
            raise UserError(
                f"--after: job(s) {', '.join(bad[:5])} did not complete ({ended[bad[0]]}), so afterok would never "
                "start this submission. Fix: --after-any, or resubmit those trials first (dlhpc resubmit)"
            )
    waiting = [j for j, s in ended.items() if s not in FINISHED]
    if not waiting:
        say(f"--after: {', '.join(sources)} ended already; nothing to wait for")
        return []
    say(f"--after: starts when {len(waiting)} job(s) of {', '.join(sources)} have ended ({kind})")
    return sched.dependency_args(kind, waiting)


def chain_report(p, sched, jobs, say=print):
    """resources.report: a small job, afterany on all of the experiment's jobs, writes
    summary.md, summary.csv and curves.png into the experiment directory."""
    from dlhpc.plan import experiment
    from dlhpc.submission.followup import write_script

    res = p.trials[0].data["resources"] if p.trials else {}
    if not res.get("report") or sched.runs_here:
        return  # the local runner writes them itself when it is done
    purpose = "the scheduler runs it once every job of this experiment has ended"
    argv = ["-m", "dlhpc", "summary", p.exp_dir, "--save"]
    script = write_script(p.exp_dir, "report.sh", purpose, argv, sched.submit_command)
    after = sorted({j["job_id"] for j in jobs})
    job_id = sched.submit_followup(script, after, f"{p.spec.data['name']}-report", res, p.exp_dir)
    experiment.update_record(p.exp_dir, report_job=job_id)
    say(f"report: job {job_id} writes summary.md, summary.csv and curves.png into the experiment when it ends")


def packing_of(record: dict, trial_ids: list) -> int | None:
    """The trials per task these trials had when they were last submitted (a packing chosen at
    submit is not in their spec), so a resubmission packs them alike."""
    from dlhpc.results.rows import latest_entries

    entries = latest_entries(record)
    sizes = [entries.get(t, {}).get("task_size") or 1 for t in trial_ids]
    return max(sizes) if sizes and max(sizes) > 1 else None


def check_cost(p, max_cost=None, say=print):
    from dlhpc.plan import cost

    estimate = cost.estimate(p)
    limit = max_cost if max_cost is not None else p.spec.site.get("max_cost")
    say(cost.describe(estimate))
    if limit is not None and estimate["cost"] > limit:
        raise UserError(
            f"estimated cost {estimate['cost']:.2f} {estimate['unit']} exceeds the limit of {limit:g} "
            "(--max-cost or the site's max_cost); ask for fewer trials, nodes or less time"
        )


def pack_to_fit(p, sched, say=print):
    """Where the trials as one job each would break a limit on the number of jobs (SLURM's
    MaxJobCount or submit limits, PBS's max_queued) and the spec leaves trials_per_task open,
    pack just enough trials into each array task to fit, and say so."""
    import math

    from dlhpc.plan import experiment

    if sched.runs_here or not p.trials or any(t.data["resources"]["trials_per_task"] for t in p.trials):
        return p
    adding = experiment.jobs_added(p.trials, p.max_array, None)
    room, limit = sched.job_headroom(p)
    if room is None or adding <= room or room < 2:
        return p  # fits, or nothing known, or no room at all: preflight says what to do
    k = max(2, math.ceil(len(p.trials) / room))
    while k < len(p.trials) and experiment.jobs_added(p.trials, p.max_array, k) > room:
        k += 1
    packed = experiment.plan(p.spec, p.exp_dir, max_array=p.max_array, trials=p.trials, trials_per_task=k)
    packed.first_script = p.first_script
    tasks = sum(len(s.tasks) for s in packed.scripts)
    time_limit = experiment.packed_time(p.trials[0].data["resources"]["time"], k)
    say(
        f"packing: {len(p.trials):,} trials as one job each would add {adding:,} jobs, but {limit}; so each "
        f"array task runs {k} trials one after another ({tasks:,} tasks, walltime {time_limit} each). "
        "Set resources.trials_per_task to choose"
    )
    return packed


def preflight(p, sched):
    sched.check()
    problems = sched.preflight(p)
    if problems:
        raise UserError("the scheduler would refuse this submission:\n  " + "\n  ".join(problems))


def dry_run(p, sched, say=print) -> list[str]:
    """The scheduler's own check of every script (sbatch --test-only...): what each said."""
    answers = []
    for i, script in enumerate(p.scripts):
        try:
            answer = sched.test_only(script.text, Path.cwd())
        except DlhpcError as exc:
            raise UserError(f"job {i} ({script.runs}): {exc}") from None
        answers.append(answer)
        say(f"job {i} ({script.runs}, template {script.template}): accepted: {answer}")
    say("dry run: nothing was queued")
    return answers


def submit_or_roll_back(p, sched, fresh: bool = True) -> list:
    """Submit every script, each accepted job written to the journal at once. If one is refused,
    cancel what was queued and (a fresh experiment) remove the run directory, so nothing
    half-runs and nothing half-written is left. Where the scheduler may have queued a job dlhpc
    could not see (a submit command that timed out, an answer it could not read), the folder
    stays: that job would run in it."""
    import shutil

    from dlhpc.submission.journal import Journal

    queued = Journal(p.exp_dir, [p.script_name(i) for i in range(len(p.scripts))])
    try:
        jobs = sched.submit(p, queued)
    except BaseException as exc:
        if queued:
            sched.cancel([j["job_id"] for j in queued], p.exp_dir)
        if not scheduler_said_no(exc):
            queued.finish("uncertain", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise DlhpcError(
                f"{exc}\nThe scheduler may have queued a job that dlhpc could not read back, so {p.exp_dir} is "
                f"kept (such a job would run in it). Look for it with `{sched.queue_command(p.spec.data['name'])}` "
                "and cancel it if it is there."
            ) from None
        if fresh:
            shutil.rmtree(p.exp_dir, ignore_errors=True)
        raise
    return jobs


def scheduler_said_no(exc) -> bool:
    """The submit command ran to the end and refused (so it queued nothing unseen)."""
    from dlhpc.errors import CommandError

    if isinstance(exc, CommandError):
        return exc.returncode > 0  # not a time-out (-1): the command answered, and refused
    return isinstance(exc, UserError)


def trials_to_resubmit(report: dict, options) -> list:
    if options.trials:
        wanted = [t.strip() for t in options.trials.split(",") if t.strip()]
        known = {t["trial"] for t in report["trials"]}
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise UserError(
                f"no trial {', '.join(unknown)} in {report['experiment']}; trials: {', '.join(sorted(known))}"
            )
        return wanted
    failed, missing = options.failed or not options.missing, options.missing or not options.failed
    return [
        t["trial"] for t in report["trials"] if (failed and t["state"] in BAD) or (missing and t["state"] == "UNKNOWN")
    ]


def record_submission(p, sched, jobs, again=False, say=print):
    from dlhpc.plan import experiment
    from dlhpc.schedulers.base import base_ids
    from dlhpc.submission.journal import mark_recorded

    if not again:
        experiment.update_record(p.exp_dir, jobs=list(jobs), submitted=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    mark_recorded(p.exp_dir)
    verb = "resubmitted" if again else "submitted"
    ids = ", ".join(base_ids(j["job_id"] for j in jobs))
    if p.spec.search:
        say(f"{verb} a search of {len(p.trials):,} trials, {p.scripts[0].runs} in one array, to {sched.name}: {ids}")
    else:
        say(f"{verb} {len(p.trials)} trial(s) as {len(p.scripts)} job(s) to {sched.name}: {ids}")
    if sched.submitted_note:
        say(sched.submitted_note)
    say(f"experiment: {p.exp_dir}")
    say(f"next: dlhpc status {p.exp_dir}   |   dlhpc summary {p.exp_dir}")
