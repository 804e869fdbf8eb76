"""`dlhpc doctor`: a checklist for a login node, each failure with its fix; exit 1 if any fails."""

import os
import platform

from dlhpc.plan.experiment import runs_root
from dlhpc.schedulers import backend
from dlhpc.schedulers.base import Check


def _common_checks(spec, sched) -> list[Check]:
    from dlhpc.spec import program
    from dlhpc.train import data as mnist

    checks = []
    if program.is_builtin(spec.data):  # a program of one's own brings its own data
        root = mnist.resolve_root(spec.data["data"]["root"])
        checks.append(
            Check("MNIST data", mnist.is_present(root), f"{mnist.raw_dir(root)}", f"dlhpc data fetch --root {root}")
        )
    out = runs_root(spec)
    # jobs on other nodes must see it, unless the trials run on this machine
    local_like = not sched.runs_here and any(
        str(out).startswith(p) for p in ("/tmp", "/var/tmp", "/dev/shm", "/scratch/local", "/local")
    )
    checks.append(
        Check(
            "runs folder",
            None if local_like else True,
            str(out),
            "use a shared filesystem (home, project or scratch) that compute nodes also see" if local_like else "",
        )
    )
    checks.append(Check("Python", True, f"{platform.python_version()} ({os.sys.executable})"))
    try:
        from importlib import metadata

        checks.append(Check("torch", True, metadata.version("torch")))
    except Exception:
        checks.append(Check("torch", False, "not installed", "pip install torch torchvision"))
    return checks


def _policy_checks(spec) -> list[Check]:
    """The site policy in force, one line per rule (a spec that breaks it never gets here)."""
    from dlhpc.spec import policy

    return [Check(f"site policy {rule}", True, f"{value} ({where})") for rule, value, where in policy.rules(spec)]


def run(spec_path, sets, job=False) -> int:
    from rich.console import Console
    from rich.markup import escape

    from dlhpc.spec.load import load_spec

    spec = load_spec(spec_path, sets)
    sched = backend(spec.data["resources"]["scheduler"])
    from dlhpc.plan import code, image

    checks = sched.doctor_checks(spec) + _common_checks(spec, sched) + code.doctor_checks(spec)
    checks += image.doctor_checks(spec) + _policy_checks(spec)
    checks += sched.job_check(spec) if job else []
    console = Console(highlight=False)
    console.print(f"[bold]dlhpc doctor[/] — scheduler {sched.name}, spec {escape(str(spec_path or '(defaults)'))}")
    for c in checks:
        mark = "[green]✓[/]" if c.ok else ("[yellow]![/]" if c.ok is None else "[red]✗[/]")
        console.print(f" {mark} {escape(c.name)}: {escape(str(c.detail))}")
        if not c.ok and c.fix:
            console.print(f"     fix: {escape(str(c.fix))}")
    failed = [c for c in checks if c.ok is False]
    console.print(f"{len(failed)} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0
