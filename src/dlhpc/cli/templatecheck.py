"""`dlhpc templates check`: every spec through the effective template search path, for every
scheduler the site uses: render, `bash -n`, and the scheduler's own dry check. For an admin
after a template override or a scheduler upgrade; exit 1 on any failure.

Each script's report says which template file supplied each block, so an override that
shadows more than it meant to shows up.
"""

from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from dlhpc.errors import DlhpcError
from dlhpc.schedulers import NAMES, backend


@dataclass
class ScriptReport:
    spec: str
    scheduler: str
    job: int
    trials: int
    template: str
    blocks: dict = field(default_factory=dict)  # block name → template file
    problems: list = field(default_factory=list)  # (what failed, the fix)
    passed: list = field(default_factory=list)  # checks that passed


def shipped_specs() -> list[Path]:
    return sorted((Path(__file__).resolve().parent.parent / "jobs").glob("*.yaml"))


def schedulers_to_check(site_defaults: dict, wanted: str | None) -> list[str]:
    """The one asked for; else the site's scheduler; else every cluster scheduler on this machine."""
    if wanted:
        return [wanted]
    site_sched = (site_defaults.get("resources") or {}).get("scheduler")
    if site_sched:
        return [site_sched]
    found = [n for n in NAMES if not backend(n).runs_here and backend(n).available()]
    return found or [n for n in NAMES if not backend(n).runs_here]


def block_sources(template: jinja2.Template) -> dict:
    """Block name → the file that supplies it: the first file up the `extends` chain defining it."""
    env, name, sources = template.environment, template.name, {}
    while name:
        source, filename, _ = env.loader.get_source(env, name)
        tree = env.parse(source)
        for block in tree.find_all(jinja2.nodes.Block):
            sources.setdefault(block.name, filename)
        parent = next(tree.find_all(jinja2.nodes.Extends), None)
        name = parent.template.value if parent and isinstance(parent.template, jinja2.nodes.Const) else None
    return sources


def check_spec(spec_path, sched_name: str) -> list[ScriptReport]:
    from dlhpc.plan import experiment
    from dlhpc.plan.render import load_template, template_ref
    from dlhpc.shell import run_command
    from dlhpc.spec.load import load_spec

    label = str(spec_path)
    try:
        spec = load_spec(spec_path, [f"resources.scheduler={sched_name}"])
        sched = backend(sched_name)
        plan = experiment.plan(spec, max_array=sched.max_array() if sched.available() else None)
    except DlhpcError as exc:
        return [
            ScriptReport(label, sched_name, 0, 0, "-", problems=[(str(exc), "fix the spec, site file or template")])
        ]
    reports = []
    preflight = []
    if sched.available():
        try:
            preflight = sched.preflight(plan)
        except DlhpcError as exc:
            preflight = [str(exc)]
    for i, script in enumerate(plan.scripts):
        data = script.data
        report = ScriptReport(
            label,
            sched_name,
            i,
            len(script.trial_ids),
            script.template,
            blocks=block_sources(load_template(template_ref(data), spec.site)),
        )
        syntax = run_command(["bash", "-n"], input=script.text, timeout=30, check=False)
        if syntax.returncode != 0:
            report.problems.append(
                (
                    f"bash -n: {syntax.stderr.strip()}",
                    f"fix the shell in {script.template} (`dlhpc render {spec_path}` shows the script)",
                )
            )
        else:
            report.passed.append("bash -n")
        _check_container(data, script, report)
        for problem in preflight:
            report.problems.append((problem, "see the message; `dlhpc doctor SPEC` lists what the cluster has"))
        if not sched.available():
            report.passed.append(f"{sched_name} commands not on this machine: its own check skipped")
        elif not preflight and syntax.returncode == 0:
            try:
                report.passed.append(sched.test_only(script.text, Path.cwd()).splitlines()[0][:100])
            except DlhpcError as exc:
                report.problems.append((str(exc), f"the scheduler refuses the script from {script.template}"))
        reports.append(report)
    return reports


def _check_container(data: dict, script, report: ScriptReport) -> None:
    """A spec with env.container must get a script that runs its program in the image: a site
    template that replaced the `container` block (or base.sh.j2) would run it on the host."""
    container = (data.get("env") or {}).get("container") or {}
    if not container.get("image"):
        return
    if "DLHPC_CONTAINER=" not in script.text:
        report.problems.append(
            (
                f"env.container asks for {container['image']}, but the script never exports DLHPC_CONTAINER: "
                "the program would run on the host",
                f"keep the `container` block of base.sh.j2 in {script.template}",
            )
        )
    else:
        report.passed.append(f"runs the program in {container['image']}")


def run(specs, site_defaults: dict, wanted_scheduler: str | None) -> list[ScriptReport]:
    reports = []
    for sched_name in schedulers_to_check(site_defaults, wanted_scheduler):
        for spec in specs or shipped_specs():
            reports += check_spec(spec, sched_name)
    return reports


def print_reports(reports, console, site=None) -> None:
    from dlhpc.plan.render import search_path

    def origin(path: str) -> str:
        for name, directory in search_path(site):
            if Path(path).is_relative_to(directory):
                return f"{name}:{Path(path).relative_to(directory)}"
        return path

    for r in reports:
        mark = "[red]✗[/]" if r.problems else "[green]✓[/]"
        console.print(
            f"{mark} {Path(r.spec).name} × {r.scheduler}  job {r.job} ({r.trials} trial(s)), template {r.template}"
        )
        by_file: dict = {}
        for block, path in r.blocks.items():
            by_file.setdefault(origin(path), []).append(block)
        for path, blocks in by_file.items():
            console.print(f"    {path}: {', '.join(blocks)}")
        for check in r.passed:
            console.print(f"    ok: {check}")
        for problem, fix in r.problems:
            console.print(f"    [red]failed:[/] {problem}\n    fix: {fix}")
    bad = sum(1 for r in reports if r.problems)
    console.print(
        f"{len(reports)} script(s) checked, {bad} failed" if bad else f"{len(reports)} script(s) checked, all passed"
    )
