"""One function per CLI command. Heavy imports (torch, rich, submitit) happen inside them."""

import json
import os
import sys
import time
from pathlib import Path

from dlhpc.errors import DlhpcError, UserError
from dlhpc.spec.load import literal_set, load_spec
from dlhpc.states import BAD
from dlhpc.submission.guard import check_training_here


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def escape(text: str) -> str:
    """User-controlled text (a path, a swept value, an error) shown through rich, as written."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console(stderr=False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    # Piped into a file or CI log: no terminal width to respect, so don't squeeze the table.
    return console if console.is_terminal else Console(stderr=stderr, highlight=False, width=160)


def _runs_sets(args) -> list:
    """--runs-dir DIR is --set runs_dir=DIR, taken literally (a path is not YAML: `0755` stays
    `0755`, `r #1` keeps its `#1`): one resolver (experiment.runs_root) for every command."""
    return [literal_set("runs_dir", args.runs_dir)] if getattr(args, "runs_dir", None) else []


def json_text(data) -> str:
    """Indented for a person at a terminal; compact into a pipe or file, where json's C encoder
    writes it (10,000 trials: about 0.05 s instead of 0.4 s indented)."""
    return json.dumps(data, indent=2 if sys.stdout.isatty() else None, default=str) + "\n"


def _json(data) -> None:
    _out(json_text(data))


# ---- init / validate / render -------------------------------------------------------------------


def cmd_init(args):
    from dlhpc.cli.starter import starter_spec
    from dlhpc.fsutil import atomic_write_text
    from dlhpc.spec.load import load_spec_text

    if args.workshop:
        return _init_workshop(Path(args.workshop), args)
    path = Path(args.path)
    if path.exists() and not args.force:
        raise UserError(f"{path} already exists; pick another path or pass --force to overwrite it")
    if not path.absolute().parent.is_dir():
        raise UserError(f"{path}: the folder {path.absolute().parent} does not exist; create it first (mkdir -p)")
    text = starter_spec(path.stem, args.model, args.scheduler)
    load_spec_text(text, str(path))  # the starter must itself validate
    atomic_write_text(path, text)
    where = f"the {args.scheduler} scheduler" if args.scheduler else "the site's scheduler"
    _out(f"wrote {path}: a {args.model} spec for {where}. Next: dlhpc validate {path}")


def _init_workshop(folder: Path, args):
    from dlhpc.cli.starter import workshop_specs
    from dlhpc.fsutil import atomic_write_text
    from dlhpc.spec.load import load_spec_text

    specs = workshop_specs(args.scheduler)
    taken = [name for name in specs if (folder / name).exists()]
    if taken and not args.force:
        raise UserError(f"{folder}: {', '.join(taken)} already exist; pick another folder or pass --force")
    for name, text in specs.items():
        load_spec_text(text, name)  # each step must itself validate
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in specs.items():
        atomic_write_text(folder / name, text)
    _out(
        f"wrote the workshop's four steps to {folder}: {', '.join(specs)}. Next: dlhpc run {folder / next(iter(specs))}"
    )
    return 0


def cmd_validate(args):
    from dlhpc import api

    reports = []
    for path in args.specs:
        try:
            report = api.validate(path, sets=args.sets)
        except UserError as exc:
            reports.append({"spec": path, "ok": False, "error": str(exc)})
            if not args.json:
                print(f"dlhpc: error: {exc}", file=sys.stderr)
            continue
        reports.append({"spec": path, "ok": True, **report})
        if not args.json:
            n = report["trials"]
            _out(f"ok: {path} ({report['name']}, {n} trial{'s' if n != 1 else ''}, scheduler {report['scheduler']})")
    if args.json:
        _json(reports)
    return 2 if any(not r["ok"] for r in reports) else 0


def _plan(args):
    from dlhpc.plan import experiment
    from dlhpc.schedulers import backend

    spec = load_spec(args.spec, _runs_sets(args) + list(args.sets))
    return experiment.plan(spec, max_array=backend(spec.data["resources"]["scheduler"]).max_array())


def cmd_render(args):
    from dlhpc.fsutil import atomic_write_text, user_mode

    p = _plan(args)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i, script in enumerate(p.scripts):
            path = out / f"{p.spec.data['name']}-job-{i}.sh"
            atomic_write_text(path, script.text, mode=user_mode(executable=True))
            _out(f"wrote {path} ({script.runs}, template {script.template})")
        return 0
    for i, script in enumerate(p.scripts):
        print(
            f"dlhpc: job {i}: template {script.template}; {script.runs}: {', '.join(script.trial_ids[:5])}"
            f"{' ...' if len(script.trial_ids) > 5 else ''}",
            file=sys.stderr,
        )
        sys.stdout.write(script.text)
        if i + 1 < len(p.scripts):
            sys.stdout.write("\n")
    return 0


# ---- submit / run -------------------------------------------------------------------------------


def cmd_submit(args):
    """The submission pipeline (pipeline.submit), its lines printed as they come."""
    from dlhpc.submission import pipeline

    if args.best_of:
        from dlhpc.search.best import retrain_spec

        if args.spec:
            raise UserError("submit --best-of EXP takes no SPEC: it trains the experiment's spec; change it with --set")
        spec = retrain_spec(_find(args.best_of, args), _runs_sets(args) + list(args.sets), say=_out)
    elif not args.spec:
        raise UserError("submit needs a SPEC (a YAML file), or --best-of EXP to train a search's best trial again")
    else:
        spec = load_spec(args.spec, _runs_sets(args) + list(args.sets))
    options = pipeline.SubmitOptions(
        here=args.here,
        dry_run=args.dry_run,
        after=list(args.after or []),
        after_any=args.after_any,
        max_cost=args.max_cost,
        runs_root=_runs_root(args),
    )
    pipeline.submit(spec, options, say=_out)
    return 0


def cmd_resubmit(args):
    """Some trials again, as a new array in the same experiment; each resumes from its checkpoint."""
    from dlhpc.submission import pipeline

    options = pipeline.ResubmitOptions(trials=args.trials, failed=args.failed, missing=args.missing, here=args.here)
    pipeline.resubmit(_find(args.exp, args), options, say=_out)
    return 0


def _say_where_ranks_run(spec, console):
    """Inside an allocation the ranks go to its nodes: refuse a spec that needs more of them."""
    from dlhpc.schedulers import backend
    from dlhpc.spec.sweep import expand
    from dlhpc.submission.guard import inside_allocation

    name = inside_allocation()
    if name is None:
        console.print("ranks run on this machine")
        return
    job, nodes = backend(name).allocation()
    wanted = max(t.data["resources"]["nodes"] for t in expand(spec))
    if wanted > len(nodes):
        raise UserError(
            f"the spec asks for {wanted} node(s), but this {name} allocation (job {job}) has "
            f"{len(nodes)}: {', '.join(nodes)}. Fix: --set resources.nodes={len(nodes)}, or ask for "
            f"{wanted} nodes when you allocate"
        )
    console.print(escape(f"inside {name} allocation {job}: ranks run on {', '.join(nodes[:wanted])}"))


def cmd_run(args):
    """Run the spec here, in the foreground: the local backend's rendered scripts, one trial
    after another, with a progress bar on a terminal and a plain line per epoch elsewhere."""
    from dlhpc.fsutil import no_write_for_others

    with no_write_for_others():
        return _run_here(args)


def _run_here(args) -> int:
    from dlhpc.cli.progress import progress_for
    from dlhpc.plan import experiment
    from dlhpc.schedulers.local import Cancelled, LocalBackend, Runner, plan_jobs, write_report_if_asked
    from dlhpc.submission import pipeline

    spec = load_spec(args.spec, _runs_sets(args) + list(args.sets) + [f"resources.scheduler={LocalBackend.name}"])
    check_training_here(spec, args.here, "run")
    console = _console()
    _say_where_ranks_run(spec, console)
    p = experiment.plan(spec)
    pipeline.preflight(p, LocalBackend())
    p.code, p.image = pipeline.check_inputs(spec)
    pipeline.prepare_data(p.trials, may_fetch=True, say=_out)
    p = experiment.materialize(p)
    jobs = plan_jobs(p, os.getpid())
    experiment.update_record(p.exp_dir, jobs=jobs, submitted=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    console.print(f"experiment [bold]{escape(str(p.exp_dir))}[/] — {len(p.trials)} trial(s)")
    try:
        with progress_for(console, p.trials) as progress:
            codes = Runner(p.exp_dir, jobs, on_epoch=progress.epoch, on_trial_end=progress.trial_end).run()
    except Cancelled:  # `dlhpc cancel` from another terminal: the runner marked what was left
        console.print(f"[red]cancelled[/]: {escape(str(p.exp_dir))} (dlhpc status shows each trial)")
        return 1
    write_report_if_asked(p.exp_dir)
    from dlhpc.results.rows import columns, experiment_rows, rich_table

    record, rows = experiment_rows(p.exp_dir)
    console.print(rich_table(rows, columns(rows, record.get("swept_keys", [])), title=p.exp_dir.name))
    for r in rows:
        if r.get("flags"):
            console.print(f"[yellow]{escape(r['trial'])}[/]: {escape(str(r['flags']))}")
    # a trial that ended badly, or a job that did (a search's agents end well when their trials do not)
    failed = {r["trial"] for r in rows if r["state"] in BAD} | {tid for tid, code in codes.items() if code != 0}
    if failed:
        console.print(f"[red]{len(failed)} trial(s) failed[/]: see {escape(str(p.exp_dir))}/<trial>/job.err")
        return 1
    return 0


# ---- status / summary / logs / cancel ---------------------------------------------------------


def cmd_status(args):
    from dlhpc.results import status

    exp_dir = _find(args.exp, args)
    if args.watch and not args.json:
        return status.watch(exp_dir, all_rows=args.all)
    report = status.collect(exp_dir)
    if args.json:
        _json(report)
    else:
        status.print_report(report, _console(), all_rows=args.all)
    return status.exit_code(report)


def _runs_root(args) -> Path:
    from dlhpc.plan.experiment import runs_root

    return runs_root(load_spec(None, _runs_sets(args), enforce_policy=False))


def _find(ref, args):
    from dlhpc.plan.experiment import find_experiment

    return find_experiment(ref, _runs_root(args))


def _inside_own(exp_dir: Path, name: str, doing: str) -> Path:
    from dlhpc.ownership import require_own

    require_own(exp_dir, doing)
    return exp_dir / name


def cmd_summary(args):
    from dlhpc.results import rows as results

    if args.save:
        return _save_summary(args)
    rows, swept, studies = _summary_rows(args)
    rows = results.sort_rows(rows, args.sort)
    cols = _summary_columns(args, rows, swept)
    fmt = "json" if args.json else args.format
    renderers = {
        "json": lambda: json_text(results.json_rows(rows) if not studies else _with_studies(rows, studies)),
        "csv": lambda: results.render_csv(rows, cols + ["flags"]),
        "markdown": lambda: results.render_markdown(rows, cols + ["flags"]),
    }
    if fmt in renderers:
        _write_text(renderers[fmt](), args.out, f"wrote {len(rows)} row(s) to {args.out}")
    else:
        for view in studies:  # a search: the study first (counts, then the best trials)
            _print_study(view)
        rows = _print_summary_table(rows, cols, args)
    return 1 if any(r["state"] in BAD for r in rows) else 0


def _with_studies(rows: list, studies: list) -> dict:
    from dlhpc.results import rows as results

    return {"studies": studies, "trials": results.json_rows(rows)}


def _print_study(view: dict) -> None:
    """'search of 27 trials (tpe, asha; seed 0), maximize test_acc: 9 COMPLETED, 18 PRUNED' and the
    best trials with their values."""
    console = _console()
    counts = ", ".join(f"{n:,} {state}" for state, n in sorted(view["counts"].items(), key=lambda kv: -kv[1]))
    console.print(
        escape(
            f"{view['experiment']}: search of {view['trials']:,} trials by {view['parallel']} agents "
            f"({view['sampler']}, pruner {view['pruner']}; seed {view['seed']}), {view['direction']} "
            f"{view['metric']}: {counts}"
        )
    )
    for place, best in enumerate(view["best"], 1):
        values = ", ".join(f"{k}={_plain(best.get(k))}" for k in view["keys"])
        score = _plain(best[view["metric"]])
        console.print(escape(f"  best {place}: {best['trial']} {view['metric']} {score}  {values}"))
    if not view["best"]:
        console.print("  no trial has completed yet")


def _plain(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def _save_summary(args) -> int:
    from dlhpc.results import summaryfiles

    if len(args.exps) > 1:
        raise UserError("summary --save writes into one experiment: name one EXP (or none for the latest)")
    exp_dir = _find(args.exps[0] if args.exps else None, args)
    for path in summaryfiles.save(exp_dir, accounting=not args.no_accounting):
        _out(f"wrote {path}")
    return 0


def _summary_rows(args) -> tuple[list, list, list]:
    """Every named experiment's rows (one scheduler query each), their swept keys and the studies
    of those that search; the scheduler's warnings go to stderr."""
    from dlhpc.results import rows as results
    from dlhpc.results import status
    from dlhpc.search.results import study_view

    all_rows, swept, warnings, studies = [], [], [], []
    for ref in args.exps or [None]:
        exp_dir = _find(ref, args)
        sched, warn = (None, []) if args.no_accounting else status.scheduler_info(exp_dir, details=False)
        warnings += warn
        record, rows = results.experiment_rows(exp_dir, sched)
        view = study_view(record, rows)
        if view is not None:
            studies.append({"experiment": exp_dir.name, **view})
        if args.efficiency:
            results.add_efficiency(rows, status.efficiency_info(exp_dir))
        all_rows += rows
        swept += [k for k in record.get("swept_keys", []) if k not in swept]
    for w in warnings:
        print(f"dlhpc: warning: {w}", file=sys.stderr)
    return all_rows, swept, studies


def _summary_columns(args, rows: list, swept: list) -> list:
    from dlhpc.results import rows as results

    cols = results.columns(rows, swept)
    if args.commit:
        cols.insert(1, "commit")
        if any(r.get("image") for r in rows):
            cols.insert(2, "image")
    if args.efficiency:
        cols += ["cpu_efficiency", "cpus_used", "mem_peak_mb", "mem_req_mb", "gpu_util"]
        cols += ["hint"] if fmt_is_file(args) else []
    return cols


def _output_file(out) -> Path:
    """An -o FILE whose folder exists (else one line naming it, not a FileNotFoundError)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: there is no folder {out.parent}; create it first (mkdir -p {out.parent})")
    return out


def _write_text(text: str, out, said: str) -> None:
    """To --out (atomically; `said` on stderr), else to stdout."""
    if out:
        from dlhpc.fsutil import atomic_write_text

        atomic_write_text(_output_file(out), text)
        print(said, file=sys.stderr)
    else:
        sys.stdout.write(text)


def _print_summary_table(rows: list, cols: list, args) -> list:
    """The rich table (to --out, or the terminal: counts first, the rows that need attention),
    then each shown row's flags and hints; returns the rows shown."""
    from dlhpc.results import rows as results

    console = _console()
    if args.out:
        from rich.console import Console

        with open(args.out, "w") as f:
            Console(file=f, width=200).print(results.rich_table(rows, cols))
    else:
        rows = _shown_rows(rows, args, console)
        console.print(results.rich_table(rows, cols))
    for r in rows:
        if r.get("flags"):
            console.print(f"[yellow]{escape(r['trial'])}[/]: {escape(str(r['flags']))}")
        if r.get("hint"):
            console.print(f"[cyan]{escape(r['trial'])}[/]: hint: {escape(str(r['hint']))}")
    return rows


def _shown_rows(rows: list, args, console) -> list:
    """Past 40 trials the terminal table starts with the counts and shows the failed trials, then
    the best (or the --sort order), 40 rows in all; --all (or -o, csv, json) has every row."""
    from dlhpc.results import status

    if args.all or len(rows) <= status.SHOWN_ROWS:
        return rows
    shown = [r for r in rows if r["state"] in BAD][: status.SHOWN_ROWS]
    ranked = rows if args.sort else results_by_accuracy(rows)
    shown += [r for r in ranked if r["state"] not in BAD][: status.SHOWN_ROWS - len(shown)]
    console.print(escape(status.count_line(rows)))
    console.print(
        f"{len(shown)} of {len(rows):,} rows: the failed, then the best; every row with --all or --format csv"
    )
    return shown


def results_by_accuracy(rows: list) -> list:
    from dlhpc.results.rows import sort_rows

    return sort_rows(rows, "test_acc")


def fmt_is_file(args) -> bool:
    """csv, json, markdown: every column; the terminal table prints long text (hints) below it."""
    return args.json or args.format != "table"


def cmd_logs(args):
    from dlhpc.results.rows import read_record

    exp_dir = _find(args.exp, args)
    record = read_record(exp_dir)
    ids = [t["id"] for t in record.get("trials", [])]
    tid = args.trial or (ids[0] if ids else None)
    if tid not in ids:
        raise UserError(f"no trial {args.trial!r} in {exp_dir}; trials: {', '.join(ids[:20])}")
    if args.follow:
        from dlhpc.results import status

        def write(chunk):
            sys.stdout.write(chunk)
            sys.stdout.flush()

        return status.follow_logs(exp_dir, tid, write)
    files = [exp_dir / tid / "job.out", exp_dir / tid / "job.err"]
    for f in files:
        if f.exists():
            print(f"==> {f} <==")
            sys.stdout.write(f.read_text(errors="replace"))
    if not any(f.exists() for f in files):
        print(f"no output yet for trial {tid} (the job may still be pending)")
    return 0


def cmd_cancel(args):
    from dlhpc.results import status

    if args.exp is None and not args.latest:
        return _refuse_cancel_without_experiment(args)
    exp_dir = _find(args.exp, args)
    cancelled = status.cancel(exp_dir)
    if cancelled:
        _out(f"cancelled {len(cancelled)} job(s) of {exp_dir.name}: {', '.join(cancelled)}")
    else:
        _out(f"nothing to cancel in {exp_dir.name}")
    return 0


def _refuse_cancel_without_experiment(args):
    """Like scancel with no job id: name what could be cancelled, cancel nothing."""
    from dlhpc.plan.experiment import own_experiments_under
    from dlhpc.results import status

    root = _runs_root(args)
    live = []
    for exp_dir in sorted(own_experiments_under(root), key=lambda d: d.stat().st_mtime):
        try:
            jobs = status.live_jobs(exp_dir)
        except DlhpcError:
            continue
        if jobs:
            live.append(f"{exp_dir.name} ({len(jobs)} job(s) queued or running)")
    listing = (
        ("experiments with live jobs under " + str(root) + ":\n  " + "\n  ".join(live))
        if live
        else f"no experiment under {root} has live jobs"
    )
    raise UserError(
        "name the experiment to cancel (dlhpc cancel EXP), or pass --latest for the newest one.\n" + listing
    )


def cmd_show(args):
    from dlhpc.results import show

    env = show.environment(_find(args.exp, args))
    if args.json:
        _json(env)
    else:
        _out("\n".join(show.lines(env)))
    return 0


def cmd_report(args):
    from dlhpc.fsutil import atomic_write_text
    from dlhpc.results import report

    exp_dir = _find(args.exp, args)
    out = (
        _output_file(args.out)
        if args.out
        else _inside_own(exp_dir, "report.html", "write its report into it; give -o FILE")
    )
    atomic_write_text(out, report.build(exp_dir))
    _out(f"wrote {out}: one page with the table, the curves and the environment; open it in a browser")
    return 0


def cmd_why(args):
    from dlhpc.results import why

    exp_dir = _find(args.exp, args)
    answers = why.diagnose(exp_dir, args.trial)
    if args.trial and not answers:
        raise UserError(f"no trial {args.trial!r} in {exp_dir}")
    if args.json:
        _json(answers)
        return 0
    if not answers:
        _out(f"{exp_dir.name}: every trial completed")
    for a in answers:
        _out(f"{a['trial']} {a['state']}" + (f" (job {a['job_id']})" if a.get("job_id") else ""))
        _out(f"  cause: {a['cause']}")
        if a["fix"]:
            _out(f"  fix:   {a['fix']}")
    return 0


def cmd_tensorboard(args):
    from dlhpc.tracking import board

    folder = _find(args.exp, args) if args.exp else _runs_root(args)
    if not folder.is_dir():
        raise UserError(f"no runs folder at {folder}: submit something first, or name one with --runs-dir")
    return board.serve(folder, args.port, say=_out)


def cmd_export(args):
    exp_dir = _find(args.exp, args)
    if args.export_to == "mlflow":
        from dlhpc.tracking import to_mlflow

        to_mlflow.export(exp_dir, args.to, args.experiment, say=_out)
    else:
        from dlhpc.tracking import to_wandb

        to_wandb.export(exp_dir, Path(args.dir) if args.dir else None, args.project, say=_out)
    return 0


def cmd_plot(args):
    from dlhpc.results import plot

    exp_dir = _find(args.exp, args)
    name = "search.png" if args.search else "curves.png"
    out = Path(args.out) if args.out else _inside_own(exp_dir, name, "write its plot into it; give -o FILE")
    if args.search:
        from dlhpc.search.plot import plot_search

        plot_search(exp_dir, out)
    else:
        plot.plot_experiment(exp_dir, out)
    _out(f"wrote {out}")
    return 0


# ---- templates / data / doctor ------------------------------------------------------------------


def cmd_templates(args):
    from dlhpc.plan import render
    from dlhpc.spec.load import load_spec

    action = args.templates_command or "list"
    if action == "check":
        return _check_templates(args)
    site = load_spec(None, enforce_policy=False).site
    if action == "list":
        for t in render.list_templates(site):
            _out(f"{t['name']:<24} {t['origin']:<8} {t['file']}")
        return 0
    template = render.load_template(args.name, site)
    text = Path(template.filename).read_text()
    if action == "show":
        print(f"# {template.filename}", file=sys.stderr)
        sys.stdout.write(text)
        return 0
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / Path(template.filename).name
    if dest.exists():
        raise UserError(f"{dest} already exists; remove it or pick another destination")
    from dlhpc.fsutil import atomic_write_text

    atomic_write_text(dest, text)
    _out(f"copied {template.filename} to {dest}")
    return 0


def _check_templates(args):
    from dlhpc.cli import templatecheck

    if args.site:
        if not Path(args.site).is_file():
            raise UserError(f"--site {args.site}: no such file")
        os.environ["DLHPC_SITE"] = str(Path(args.site).absolute())  # this command checks against that site
    base = load_spec(None, enforce_policy=False)
    reports = templatecheck.run(args.specs, base.site_defaults, args.scheduler)
    templatecheck.print_reports(reports, _console(), base.site)
    return 1 if any(r.problems for r in reports) else 0


def cmd_usage(args):
    from dlhpc.results import usage
    from dlhpc.schedulers import backend

    base = load_spec(None, [f"resources.scheduler={args.scheduler}"] if args.scheduler else [], enforce_policy=False)
    rows, warnings = backend(base.data["resources"]["scheduler"]).usage(args.since, args.account, args.all_users)
    for w in warnings:
        print(f"dlhpc: warning: {w}", file=sys.stderr)
    lines = usage.aggregate(rows, base.site.get("charge_rates") or {})
    if args.json:
        _json(lines)
    elif args.csv:
        sys.stdout.write(usage.render_csv(lines))
    else:
        _console().print(usage.rich_table(lines, f"dlhpc jobs since {args.since}"))
    return 0


def cmd_schema(args):
    from dlhpc.spec.jsonschema import spec_json_schema

    _json(spec_json_schema())
    return 0


def cmd_data(args):
    from dlhpc.submission import staging

    if (args.data_command or "fetch") == "fetch":
        root = staging.fetch(args.root)
        _out(f"MNIST is in {root} (checksums verified). Point data.root or $DLHPC_DATA at {root}.")
    return 0


def cmd_doctor(args):
    from dlhpc.cli import doctor

    return doctor.run(args.spec, args.sets, job=args.job)
