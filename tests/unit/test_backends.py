"""The scheduler boundary: one Backend interface, local a real backend, gentle polling, and the
submitit internals dlhpc relies on."""

import inspect
import io
import re

import pytest

from conftest import ROOT, fake_commands, make_experiment
from dlhpc.results import status
from dlhpc.schedulers import NAMES, backend
from dlhpc.schedulers.base import Backend

# Every module outside schedulers/ is generic: it asks the Backend, never names a scheduler.
# Two still do, named here so that no other joins them: the schema (the default scheduler, and
# PBS's flavours, which belong in the PBS backend) and node/identity.py (the one place that reads
# each launcher's node-side variables; the trainer and the runner read only the torchrun contract).
NOT_YET_GENERIC = {"spec/schema", "node/identity"}


GENERIC = sorted(
    name
    for path in (ROOT / "src" / "dlhpc").rglob("*.py")
    if "schedulers" not in path.parts
    and (name := str(path.relative_to(ROOT / "src" / "dlhpc").with_suffix(""))) not in NOT_YET_GENERIC
)


def code_without_docstrings(text: str) -> str:
    """The module's code, comments and docstrings blanked (an example in a docstring is prose)."""
    import ast

    lines = text.splitlines()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                for i in range(body[0].lineno - 1, body[0].end_lineno):
                    lines[i] = ""
    return "\n".join(line.split("#")[0] for line in lines)


@pytest.mark.parametrize("module", GENERIC)
def test_generic_modules_never_ask_which_scheduler(module):
    code = code_without_docstrings((ROOT / "src" / "dlhpc" / f"{module}.py").read_text())
    named = re.findall(r"""["'](?:slurm|pbs|local|torque|openpbs)["']""", code)
    assert not named, f"dlhpc/{module}.py names a scheduler: {named}; ask the Backend instead"


def test_every_backend_implements_the_interface():
    for name in NAMES:
        b = backend(name)
        assert isinstance(b, Backend) and b.name == name
        assert not getattr(type(b), "__abstractmethods__", None), name
        assert b.job_id_expr and b.array_index_expr


def test_an_unknown_scheduler_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="unknown scheduler 'typo'; known schedulers: slurm, pbs, local"):
        backend("typo")


class FakeClock:
    """Ten minutes pass in a moment: sleep() moves the clock and stops the loop at the end."""

    class Done(Exception):
        pass

    def __init__(self, stop_at: float):
        self.now, self.stop_at = 0.0, stop_at

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.now >= self.stop_at:
            raise self.Done()


def test_watch_and_follow_ask_the_scheduler_rarely(tmp_path, monkeypatch, capsys):
    trials = [(f"{i:03d}-{i:06x}", {"train.seed": i}, {}) for i in range(100)]
    exp = make_experiment(
        tmp_path / "runs",
        trials,
        swept=("train.seed",),
        scheduler="slurm",
        jobs=[(f"900_{i}", tid) for i, (tid, _, _) in enumerate(trials)],
    )
    calls = tmp_path / "sacct-calls"
    env = fake_commands(
        tmp_path,
        sacct=f'echo "$*" >> {calls}\n'
        "echo '900_[0-99]|PENDING|00:00:00|2026-01-01T00:00:00|Unknown|Unknown||"
        "None assigned|0:0|Priority'",
        squeue=f"echo \"squeue $*\" >> {calls}\necho '900_[0-99]|Priority|2026-01-01T01:00:00'",
    )
    monkeypatch.setenv("PATH", env["PATH"])
    from rich.console import Console

    ten_minutes = 600
    watch_clock = FakeClock(ten_minutes)
    with pytest.raises(FakeClock.Done):
        status.watch(exp, clock=watch_clock.clock, sleep=watch_clock.sleep, console=Console(file=io.StringIO()))
    watch_calls = len(calls.read_text().splitlines())
    follow_clock = FakeClock(ten_minutes)
    with pytest.raises(FakeClock.Done):
        status.follow_logs(
            exp, trials[0][0], write=lambda chunk: None, clock=follow_clock.clock, sleep=follow_clock.sleep
        )
    lines = calls.read_text().splitlines()
    # one batched query each: sacct for the states, now and then squeue for the expected start
    assert all(line.startswith(("-X -n -P -j 900 ", "squeue -h -t PD -j 900 ")) for line in lines), lines[:3]
    with capsys.disabled():
        print(
            f"\n10 min of status --watch: {watch_calls} scheduler calls; of logs --follow: {len(lines) - watch_calls}; "
            f"total {len(lines)} for a 100-trial array"
        )
    assert len(lines) <= 20


def test_backoff_grows_to_two_minutes_and_resets_on_change():
    clock = FakeClock(10_000)
    backoff = status.Backoff(clock.clock)
    delays = []
    for _ in range(8):
        backoff.asked(changed=False)
        delays.append(backoff.delay)
    assert delays == [10, 20, 40, 80, 120, 120, 120, 120]
    backoff.asked(changed=True)
    assert backoff.delay == 5


SUBMITIT_CONTRACT = {
    # class: {method: parameter names dlhpc's override expects}
    "submitit.core.core.Executor": {"_internal_process_submissions": ["self", "delayed_submissions"], "batch": None},
    "submitit.core.core.PicklingExecutor": {
        "_submit_command": ["self", "command"],
        "_internal_process_submissions": ["self", "delayed_submissions"],
        "_submitit_command_str": None,
        "_num_tasks": ["self"],
        "_make_submission_file_text": ["self", "command", "uid"],
        "_make_submission_command": ["self", "submission_file_path"],
        "_get_job_id_from_submission_command": ["string"],
    },
    "submitit.slurm.slurm.SlurmExecutor": {
        "_internal_process_submissions": ["self", "delayed_submissions"],
        "_make_submission_file_text": ["self", "command", "uid"],
    },
    "submitit.core.utils.JobPaths": {
        "get_first_id_independent_folder": ["folder"],
        "move_temporary_file": ["self", "tmp_path", "name", "keep_as_symlink"],
    },
    "submitit.core.utils.DelayedSubmission": {
        "set_timeout": ["self", "timeout_min", "max_num_timeout"],
        "dump": ["self", "filepath"],
    },
    "submitit.core.job_environment.JobEnvironment": {"_requeue": ["self", "countdown"], "_env": None},
}


@pytest.mark.parametrize("qualname", sorted(SUBMITIT_CONTRACT))
def test_submitit_still_has_what_dlhpc_overrides(qualname):
    import importlib

    module, cls_name = qualname.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), cls_name)
    for method, params in SUBMITIT_CONTRACT[qualname].items():
        assert hasattr(cls, method), f"submitit {qualname}.{method} is gone: dlhpc's override needs updating"
        if params is None:
            continue
        attr = inspect.getattr_static(cls, method)
        func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        got = [p for p in inspect.signature(func).parameters][: len(params)]
        assert got == params, f"submitit {qualname}.{method} now takes {got}, dlhpc expects {params}"


def test_submitit_version_is_the_tested_range():
    from importlib import metadata

    from packaging.version import Version

    assert Version("1.5") <= Version(metadata.version("submitit")) < Version("1.6")
