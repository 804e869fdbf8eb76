"""Job scripts from Jinja2 templates (docs/architecture.md).

Search path, first match wins: user dir (~/.config/dlhpc/templates) > $DLHPC_TEMPLATES (colon-
separated) > site dir (site.template_dir, else /etc/dlhpc/templates) > the templates shipped in
the package. StrictUndefined, so a template typo is an error, not an empty string; `quote` is
shlex.quote for every user-supplied value.
"""

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.sandbox

import dlhpc.containers as containers
from dlhpc._version import __version__
from dlhpc.errors import UserError
from dlhpc.plan.cost import trial_hours
from dlhpc.schedulers import NAMES as SCHEDULER_NAMES
from dlhpc.schedulers import backend
from dlhpc.spec.load import config_dir, spec_hash, tasks_per_node

SITE_TEMPLATES_DEFAULT = "/etc/dlhpc/templates"
SUFFIX = ".sh.j2"


def shipped_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "templates"


def search_path(site: dict | None = None) -> list[tuple[str, Path]]:
    """(origin, directory) pairs in priority order."""
    dirs = [("user", config_dir() / "templates")]
    for extra in filter(None, os.environ.get("DLHPC_TEMPLATES", "").split(":")):
        dirs.append(("env", Path(extra)))
    site_dir = (site or {}).get("template_dir") or SITE_TEMPLATES_DEFAULT
    dirs.append(("site", Path(site_dir)))
    dirs.append(("shipped", shipped_dir()))
    return dirs


def make_environment(site: dict | None = None, first_dir: Path | None = None) -> jinja2.Environment:
    dirs = ([first_dir] if first_dir else []) + [d for _, d in search_path(site)]
    loaders = [jinja2.FileSystemLoader(str(d)) for d in dirs]
    # "shipped/slurm/default.sh.j2" always means the packaged file, so an override of the same
    # name can extend the original instead of itself.
    loaders.append(jinja2.PrefixLoader({"shipped": jinja2.FileSystemLoader(str(shipped_dir()))}))
    # Templates come from spec authors and site folders, and `render` is a preview people run on
    # specs others wrote: templates render in Jinja's sandbox (no attribute walks to Python
    # internals, no mutating the spec), so rendering never runs the template author's code.
    env = _Sandbox(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(quote=_quote)
    for name in SCHEDULER_NAMES:  # each backend's own filters (PBS: pbs_walltime, pbs_mem, pbs_flag)
        env.filters.update(backend(name).template_filters())
    return env


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja's sandbox, with `**` and `*` bounded too: `{{ 9**9**9 }}` or `{{ "a" * 10**9 }}` in
    a shared template would otherwise hang the login node or fill its memory."""

    intercepted_binops = frozenset(["**", "*"])
    MAX_EXPONENT, MAX_REPEAT = 256, 100_000

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > self.MAX_EXPONENT:
            raise jinja2.sandbox.SecurityError(f"exponent {right!r} is above {self.MAX_EXPONENT}")
        if operator == "*":
            text, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(text, (str, list, tuple)) and isinstance(count, int) and count * len(text) > self.MAX_REPEAT:
                raise jinja2.sandbox.SecurityError(f"repeating a value {count} times is above {self.MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


def _quote(value) -> str:
    return shlex.quote(str(value))


def template_ref(data: dict) -> str:
    """The spec's template, else the one its scheduler ships for these resources."""
    return data.get("template") or backend(data["resources"]["scheduler"]).template(data["resources"])


def load_template(ref: str, site: dict | None = None) -> jinja2.Template:
    """A template by name (slurm/default) or by file path; errors name the file and line."""
    path = Path(os.path.expanduser(ref))
    if path.is_file():  # a file of the user's; its folder is searched first, so it can extend others
        env = make_environment(site, first_dir=path.resolve().parent)
        name = path.name
    else:
        env = make_environment(site)
        name = ref if ref.endswith(SUFFIX) else ref + SUFFIX
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        known = ", ".join(t["name"] for t in list_templates(site)) or "none"
        raise UserError(
            f"template {ref!r} not found (looked for {exc.name}); known templates: {known}. See `dlhpc templates list`."
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}") from None
    except (ArithmeticError, ValueError, RecursionError, MemoryError) as exc:
        # compiling a template evaluates its literals: `{{ 99...9 }}` of 5,000 digits is over
        # Python's digit limit, and that is the template's error, not dlhpc's
        said = str(exc).split("; use sys.set_int_max_str_digits")[0]  # (advice for Python code, not templates)
        raise UserError(f"{path if path.is_file() else name}: template error: {said}") from None


@dataclass
class Script:
    text: str
    template: str  # the file the script came from
    trial_ids: list  # every trial the script runs
    tasks: list = None  # the trial ids each job (array task) runs, in order; one each unless packed
    data: dict = None  # the resolved spec its jobs get (a packed task's or a search agent's walltime)

    def __post_init__(self):
        if self.tasks is None:
            self.tasks = [[tid] for tid in self.trial_ids]

    @property
    def runs(self) -> str:
        """What its jobs run, in words: '3 trial(s)', or a search's '4 search agents'."""
        if self.trial_ids and self.trial_ids[0].startswith("agent-"):
            return f"{len(self.trial_ids)} search agent(s)"
        return f"{len(self.trial_ids)} trial(s)"


def render_script(
    data: dict,
    trial_ids: list,
    exp_dir: Path,
    command: str,
    *,
    site=None,
    spec_digest: str | None = None,
    python: str | None = None,
    tasks: list | None = None,
) -> Script:
    """Render the job script for trials that share one resource request (an array if > 1).
    Packed (`tasks`: lists of trial ids, run one after another by each array task), the script
    knows each task by its first trial, whose job.out receives the task's own output."""
    if tasks is not None:
        trial_ids = [task[0] for task in tasks]
    template = load_template(template_ref(data), site)
    context = _context(data, trial_ids, exp_dir, command, site, spec_digest, python)
    text = _render(template, context)
    if tasks is not None:
        return Script(text, template.filename or template.name, [t for task in tasks for t in task], tasks, data)
    return Script(text, template.filename or template.name, list(trial_ids), data=data)


def _context(data, trial_ids, exp_dir, command, site, spec_digest, python) -> dict:
    """What a template may read: the spec's sections, the trials, and the few facts of the
    scheduler and the environment dlhpc computes (no user input in those)."""
    sched = backend(data["resources"]["scheduler"])
    container = containers.prefix(data, exp_dir)
    return {
        "version": __version__,
        "template_name": template_ref(data),
        "name": data["name"],
        "spec_hash": spec_digest or spec_hash(data),
        "trial_ids": list(trial_ids),
        "array": len(trial_ids) > 1,
        "exp_dir": str(exp_dir),
        "resources": data["resources"],
        "tasks_per_node": tasks_per_node(data["resources"]),
        "env": data["env"],
        "train": data["train"],
        "model": data["model"],
        "data": data["data"],
        "command": command,
        "python": python or sys.executable,
        "site": site or {},
        "share": data.get("share") or "private",
        # env.container: the command the program runs in (JSON), and its runtime
        "container": containers.to_json(container),
        "container_runtime": containers.runtime_of(data["env"]["container"]).name if container else "",
        # the tag dlhpc finds its jobs by in accounting: experiment and the trial's estimated hours
        "tag": "dlhpc:{}:{:.4g}:{:.4g}".format(data["name"], *trial_hours(data["resources"])),
        # what the job script needs to know of its scheduler (no user input in these)
        "job_id_expr": sched.job_id_expr,
        "array_index": sched.array_index_expr,
    }


def _render(template, context: dict) -> str:
    """The template's text; whatever it raises is that template's error, said as one line."""
    try:
        return template.render(context)
    except jinja2.sandbox.SecurityError as exc:
        raise UserError(
            f"{_template_error(exc, template)}; templates render in a sandbox and may not reach Python "
            "internals: use the values dlhpc passes (docs/security.md)"
        ) from None
    except jinja2.TemplateError as exc:
        raise UserError(_template_error(exc, template)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as exc:
        # a template is code its author wrote: whatever it raises is that template's error
        raise UserError(_template_error(exc, template)) from None


def _template_error(exc, template) -> str:
    """Name the template file and line where rendering failed (jinja keeps them in the traceback)."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or filename.endswith(".sh"):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    where = where or (template.filename or template.name)
    return f"{where}: template error: {exc}"


def list_templates(site=None) -> list[dict]:
    """Every template on the search path: name, origin and file; earlier dirs shadow later ones."""
    seen: dict = {}
    for origin, directory in search_path(site):
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*" + SUFFIX)):
            name = str(path.relative_to(directory))[: -len(SUFFIX)]
            seen.setdefault(name, {"name": name, "origin": origin, "file": str(path)})
    return sorted(seen.values(), key=lambda t: t["name"])
