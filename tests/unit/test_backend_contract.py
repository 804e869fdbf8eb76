"""What every backend in the registry promises (issue 23), parametrized over the registry, in the
style of dask-jobqueue's per-cluster tests: its state words are dlhpc's, its reasons come with
fixes in its own commands, its default script parses."""

import subprocess

import pytest

from conftest import BACKENDS
from dlhpc.reasons import FIXES, Reason, fix
from dlhpc.schedulers import backend


def test_every_reason_has_a_fix():
    assert set(FIXES) == set(Reason)


@pytest.mark.parametrize("name,command", [("slurm", "scontrol release 123"), ("pbs", "qrls 123")])
def test_a_held_job_is_released_with_the_backends_own_command(name, command):
    assert fix(Reason.HELD_BY_USER, "123_4", backend(name)) == f"release it: {command}"


@pytest.mark.parametrize("name", BACKENDS)
def test_the_default_script_parses(name, tmp_path):
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec_text

    spec = load_spec_text(f"name: c\nresources: {{scheduler: {name}}}\nruns_dir: {tmp_path}\n")
    for script in experiment.plan(spec).scripts:
        assert subprocess.run(["bash", "-n"], input=script.text, text=True).returncode == 0


@pytest.mark.parametrize(
    "job,code",
    [
        ({"job_state": "H", "Hold_Types": "u"}, Reason.HELD_BY_USER),
        ({"job_state": "H", "Hold_Types": "s", "depend": "afterok:7.srv"}, Reason.DEPENDENCY),
        ({"job_state": "H", "Hold_Types": "o"}, Reason.HELD_BY_ADMIN),
        ({"job_state": "W"}, Reason.BEGIN_TIME),
        ({"job_state": "F", "Exit_status": -27}, Reason.OUT_OF_MEMORY),
        ({"job_state": "F", "Exit_status": 271}, Reason.CANCELLED),
    ],
)
def test_pbs_reasons_are_dlhpc_reason_codes(job, code):
    from dlhpc.schedulers.pbs import reason_code

    assert reason_code(job) == code


@pytest.mark.parametrize(
    "words,code",
    [("JobHeldUser", Reason.HELD_BY_USER), ("(QOSMaxJobsPerUserLimit)", Reason.LIMIT), ("Weird", None)],
)
def test_slurm_reasons_are_dlhpc_reason_codes(words, code):
    from dlhpc.schedulers.slurm.queue import explain_pending

    assert explain_pending(words)[1] == code


def test_why_says_the_fix_in_the_schedulers_own_words():
    from dlhpc.results.why import classify
    from dlhpc.states import JobStatus, State

    trial = {"state": "PENDING", "job_id": "77_1", "why_pending": "held by you"}
    held = JobStatus(State.PENDING, reason_code=Reason.HELD_BY_USER)
    pbs = classify(trial, held, {}, "", {}, backend=backend("pbs"))
    slurm = classify(trial, held, {}, "", {}, backend=backend("slurm"))
    assert pbs[1] == "release it: qrls 77" and slurm[1] == "release it: scontrol release 77"


@pytest.mark.parametrize(
    "name,recorded",
    [("slurm", ["123", "123_4"]), ("pbs", ["123", "123_4", "123[].srv"]), ("local", ["local-99.0", "local-99.1_3"])],
)
def test_the_job_ids_a_backend_records_are_valid_by_its_own_pattern(name, recorded):
    assert all(backend(name).valid_job_id(job) for job in recorded)
    assert not any(backend(name).valid_job_id(bad) for bad in ("-1", "--all", "1;2", "", "1 2"))


def test_the_local_script_leaves_allocations_to_the_backends():
    """The local template has no scheduler branch: node/launch.py asks each backend."""
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec

    spec = load_spec(None, ["name=local", "resources.scheduler=local", "resources.nodes=2"])
    (script,) = experiment.plan(spec).scripts
    assert "-m dlhpc.node.launch --nodes 2 --tasks-per-node 1" in script.text
    assert not any(word in script.text for word in ("SLURM_", "PBS_", "srun", "pbs_launch"))


# where each backend keeps its tables of the scheduler's words
STATE_TABLES = {
    "slurm": "dlhpc.schedulers.slurm.queue",
    "pbs": "dlhpc.schedulers.pbs.queue",
    "local": "dlhpc.schedulers.local",
}


def test_every_backend_has_its_state_tables_checked():
    from dlhpc.schedulers import REGISTRY

    assert set(STATE_TABLES) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(STATE_TABLES))
def test_every_state_a_backend_can_report_is_a_dlhpc_state(name):
    import importlib

    from dlhpc.states import STATES

    module = importlib.import_module(STATE_TABLES[name])
    words = set(getattr(module, "STATES", {}).values()) | set(getattr(module, "EXIT_STATES", {}).values())
    words |= set(getattr(module, "FINAL", ()))
    assert words and words <= set(STATES), words - set(STATES)
